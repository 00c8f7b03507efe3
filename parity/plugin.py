"""pytest plugin: options, markers' behaviour, fixtures, and the readable parity summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from parity.quiet import quiet_libraries


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption("--family", action="append", default=None, help="run only these zoo families (repeatable)")
    group.addoption("--model-path", default=None, help="a local diffusers pipeline folder instead of the tiny model")
    group.addoption("--lora", action="append", default=[], help="a user LoRA file to check (repeatable)")
    group.addoption(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "auto"),
        help="cpu (default), cuda, or auto (cuda where available); CUDA cases skip without a GPU",
    )
    group.addoption("--parity-report", default=None, help="write a readable summary (markdown + JSON) here")
    group.addoption(
        "--compile-backend",
        default=None,
        choices=("eager", "aot_eager", "inductor"),
        help="torch.compile backend for hotswap checks (default: eager on CPU, inductor on CUDA)",
    )
    group.addoption("--compile-mode", default=None, help='torch.compile mode for inductor, e.g. "reduce-overhead"')
    group.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden baselines of the selected cases (others are left untouched)",
    )
    group.addoption("--golden-dir", default=None, help="golden image root (default: <rootdir>/golden)")
    group.addoption(
        "--bench-size",
        default="tiny",
        choices=("tiny", "full"),
        help="benchmarks: tiny zoo models (seconds on a CPU) or full-size denoisers with real shapes (GPU)",
    )
    group.addoption(
        "--bench-rounds", type=int, default=None, help="benchmarks: timed rounds per case (default: by size and kind)"
    )
    group.addoption(
        "--bench-blocks",
        type=int,
        default=None,
        help="benchmarks at full size: transformer blocks to build (default: a few; latency is linear in blocks)",
    )
    group.addoption(
        "--golden-report",
        default=None,
        help="where golden mismatches write side-by-side PNGs and index.html (default: <rootdir>/reports/golden)",
    )
    group.addoption(
        "--golden-class",
        default=None,
        help="compare against this device class's folder (default: this device's, e.g. cpu or cuda-sm90)",
    )


def pytest_configure(config: pytest.Config) -> None:
    quiet_libraries()
    worker = getattr(config, "workerinput", {}).get("workerid")
    if cuda_available():
        index = worker_cuda_index(worker, torch.cuda.device_count())
        if index is not None:
            # "cuda" everywhere in the suite means the current device: each worker gets its own GPU.
            torch.cuda.set_device(index)


def worker_cuda_index(worker: str | None, device_count: int) -> int | None:
    """The GPU an xdist worker ``gwN`` is pinned to: N mod the device count; None outside xdist
    or with one GPU (nothing to choose)."""
    if worker is None or device_count < 2 or not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    return int(worker[2:]) % device_count


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _case_family(item: pytest.Item) -> str | None:
    for name, value in getattr(getattr(item, "callspec", None), "params", {}).items():
        if name == "family" and isinstance(value, str):
            return value
        family = getattr(value, "family", None) or getattr(getattr(value, "layout", None), "family", None)
        if isinstance(family, str):
            return family
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    families = config.getoption("--family")
    if families:
        keep, drop = [], []
        for item in items:
            fam = _case_family(item)
            (drop if fam is not None and fam not in families else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def compile_options(request: pytest.FixtureRequest):
    """(backend or None for the device default, mode) from --compile-backend / --compile-mode."""
    return request.config.getoption("--compile-backend"), request.config.getoption("--compile-mode")


def resolve_device(option: str) -> str:
    """--device auto means CUDA where a GPU exists; an explicit cuda without one skips."""
    if option == "auto":
        return "cuda" if cuda_available() else "cpu"
    if option == "cuda" and not cuda_available():
        pytest.skip("--device cuda: no GPU on this machine")
    return option


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    return resolve_device(request.config.getoption("--device"))


@pytest.fixture
def model_path(request: pytest.FixtureRequest) -> str | None:
    return request.config.getoption("--model-path")


@pytest.fixture(autouse=True)
def restore_global_state():
    """Every check starts from, and leaves, the same torch globals."""
    default_dtype = torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    matmul_precision = torch.get_float32_matmul_precision()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    rng = torch.random.get_rng_state()
    torch.manual_seed(0)
    # Merge bounds assume float32 products; TF32 would carry a 2^-11 unit roundoff instead.
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.set_default_dtype(default_dtype)
    torch.use_deterministic_algorithms(deterministic)
    torch.set_float32_matmul_precision(matmul_precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.random.set_rng_state(rng)


@pytest.fixture
def parity_record(request: pytest.FixtureRequest, record_property):
    """Record one summary row: shows in JUnit properties and in the --parity-report summary."""

    def record(check: str, dtype: str, max_ulps: float, max_bound_ratio: float, detail: str = "") -> None:
        row = {
            "check": check,
            "case": request.node.callspec.id if hasattr(request.node, "callspec") else request.node.name,
            "dtype": dtype,
            "max_ulps": round(float(max_ulps), 3),
            "max_bound_ratio": round(float(max_bound_ratio), 3),
            "detail": detail,
        }
        record_property("parity", json.dumps(row))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs in the xdist controller too, where the workers' user_properties arrive.
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == "parity":
            row = json.loads(value)
            row["outcome"] = report.outcome
            _ROWS.append(row)


_ROWS: list[dict] = []  # summary rows of this session (controller side under xdist)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = session.config.getoption("--parity-report")
    if not out or hasattr(session.config, "workerinput"):
        return
    write_summary(Path(out), _ROWS, exitstatus)


def write_summary(out: Path, rows: list[dict], exitstatus: int) -> None:
    """A markdown table per check (worst first) and the same rows as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = ["# lora-parity summary", "", _versions_line(), ""]
    failed = [r for r in rows if r["outcome"] != "passed"]
    lines.append(f"**{len(rows) - len(failed)} passed, {len(failed)} failed** (exit status {exitstatus})")
    for check in sorted({r["check"] for r in rows}):
        mine = sorted((r for r in rows if r["check"] == check), key=lambda r: -r["max_bound_ratio"])
        lines += ["", f"## {check}", "", "| case | dtype | max error (ULP) | bound used | outcome | detail |",
                  "|---|---|---:|---:|---|---|"]
        for r in mine:
            lines.append(
                f"| {r['case']} | {r['dtype']} | {r['max_ulps']:.2f} | {r['max_bound_ratio']:.2f} | "
                f"{r['outcome']} | {r['detail']} |"
            )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _versions_line() -> str:
    from parity.versions import library_versions

    return ", ".join(f"{name} {version}" for name, version in library_versions().items())


@pytest.fixture(scope="session")
def golden_config(request: pytest.FixtureRequest, device: str):
    """Where golden images live for this run, whether to rewrite them, and where mismatches go."""
    from parity.golden import DEFAULT_GOLDEN_DIR, DEFAULT_REPORT_DIR, GoldenStore, device_class

    root = request.config.getoption("--golden-dir") or os.path.join(str(request.config.rootpath), DEFAULT_GOLDEN_DIR)
    cls = request.config.getoption("--golden-class") or device_class(device)
    return GoldenConfig(
        store=GoldenStore(Path(root), cls),
        update=request.config.getoption("--update-golden"),
        report_dir=Path(request.config.getoption("--golden-report") or Path(request.config.rootpath) / DEFAULT_REPORT_DIR),
        device=device,
    )


class GoldenConfig:
    def __init__(self, store, update: bool, report_dir: Path, device: str) -> None:
        self.store, self.update, self.report_dir, self.device = store, update, report_dir, device
