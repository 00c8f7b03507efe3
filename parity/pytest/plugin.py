"""pytest plugin: options, markers' behaviour, fixtures, and the readable parity summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from parity.quiet import quiet_libraries

# --update-golden as one transaction (staged, committed at session end); a backstop for hung tests
pytest_plugins = ["parity.pytest.golden", "parity.pytest.watchdog"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption("--family", action="append", default=None, help="run only these zoo families (repeatable)")
    group.addoption("--model-path", default=None, help="a local diffusers pipeline folder instead of the tiny model")
    group.addoption("--lora", action="append", default=[], help="a user LoRA file to check (repeatable)")
    group.addoption("--allow-pickle", action="store_true", default=False,
                    help="read .bin/.pt/.pth/.ckpt --lora files with torch.load(weights_only=True) (default: refuse)")
    group.addoption(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "auto"),
        help="cpu (default), cuda, or auto (cuda where available); CUDA cases skip without a GPU",
    )
    group.addoption("--parity-report", default=None,
                    help="write a readable summary (markdown + JSON) in this folder (new, or without a summary)")
    group.addoption(
        "--overwrite-reports",
        action="store_true",
        default=False,
        help="replace a previous run's output in --parity-report / --golden-report instead of refusing",
    )
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
        help="where golden mismatches write side-by-side PNGs and index.html (default: a new run folder "
        "<rootdir>/reports/golden/<time>-<id>/, made on the first mismatch; reports/golden/latest points at it)",
    )
    group.addoption(
        "--golden-class",
        default=None,
        help="compare against this device class's folder (default: this device's, e.g. cpu or cuda-sm90)",
    )


def pytest_configure(config: pytest.Config) -> None:
    quiet_libraries()
    workerinput = getattr(config, "workerinput", None)
    # xdist: the controller decides (and refuses) once; its workers write where it decided.
    if workerinput is not None and _REPORT_DIRS_KEY in workerinput:
        config.stash[_REPORT_DIRS] = workerinput[_REPORT_DIRS_KEY]
    else:
        config.stash[_REPORT_DIRS] = report_dirs(config)
    worker = getattr(config, "workerinput", {}).get("workerid")
    if cuda_available():
        index = worker_cuda_index(worker, torch.cuda.device_count())
        if index is not None:
            # "cuda" everywhere in the suite means the current device: each worker gets its own GPU.
            torch.cuda.set_device(index)


_REPORT_DIRS_KEY = "lora_parity_report_dirs"
_REPORT_DIRS = pytest.StashKey[dict]()


def report_dirs(config: pytest.Config) -> dict[str, str | None]:
    """Where this run's reports go (parity/runs/folders.py): a named folder holding a previous run's output
    is a usage error unless --overwrite-reports; golden mismatches default to a new run folder."""
    from parity.errors import ParityInputError
    from parity.golden.mismatch import DEFAULT_REPORT_DIR
    from parity.runs.folders import OUTPUTS, claim_dir, fresh_run_dir

    overwrite = config.getoption("--overwrite-reports")
    command = ["pytest", *config.invocation_params.args]
    parity, golden = config.getoption("--parity-report"), config.getoption("--golden-report")
    try:
        if golden:
            claim_dir(golden, OUTPUTS["golden-report"], overwrite, "--overwrite-reports", command)
        else:
            golden = str(fresh_run_dir(config.rootpath / DEFAULT_REPORT_DIR, command, create=False))
        if parity:
            claim_dir(parity, OUTPUTS["parity-report"], overwrite, "--overwrite-reports", command)
    except ParityInputError as exc:
        raise pytest.UsageError(str(exc)) from None
    # Absolute: xdist workers need not share the controller's working folder.
    return {"parity": parity and os.path.abspath(parity), "golden": os.path.abspath(golden),
            "golden_is_default": not config.getoption("--golden-report"), "command": command}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller, once per worker
    node.workerinput[_REPORT_DIRS_KEY] = node.config.stash[_REPORT_DIRS]


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
    """Every check starts from the same seeds and torch settings, and leaves them as it found them
    (parity/globalstate.py lists them: default dtype, dynamo config, deterministic algorithms, …)."""
    from parity.globalstate import isolated

    with isolated(seed=0):
        yield


@pytest.fixture
def parity_record(request: pytest.FixtureRequest, record_property):
    """Record one summary row: shows in JUnit properties and in the --parity-report summary."""

    def record(check: str, dtype: str, max_ulps: float, max_bound_ratio: float, detail: str = "",
               timing: str = "") -> None:
        # ``timing``: wall-clock figures, kept apart from ``detail`` because they are not results: two
        # runs of the same code agree on everything but them (parity/runs/agree.py ignores this field).
        row = {
            "check": check,
            "case": request.node.callspec.id if hasattr(request.node, "callspec") else request.node.name,
            "dtype": dtype,
            "max_ulps": float(max_ulps),  # unrounded: two runs are compared bit for bit (parity/runs/agree.py)
            "max_bound_ratio": float(max_bound_ratio),
            "detail": detail,
            "timing": timing,
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


def pytest_sessionstart(session: pytest.Session) -> None:
    _ROWS.clear()  # an in-process run (pytester) after another must not inherit its rows


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or _REPORT_DIRS not in session.config.stash:
        return
    from parity.runs.folders import adopt

    dirs = session.config.stash[_REPORT_DIRS]
    if dirs["parity"]:
        write_summary(Path(dirs["parity"]), _ROWS, exitstatus)
    if dirs["golden_is_default"] and adopt(dirs["golden"], dirs["command"]):
        session.config.stash[_GOLDEN_WRITTEN] = dirs["golden"]


_GOLDEN_WRITTEN = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    # Runs after sessionfinish: name the run folder a mismatch was written to, since its name is new.
    if _GOLDEN_WRITTEN in config.stash:
        terminalreporter.write_line(f"golden mismatches: {Path(config.stash[_GOLDEN_WRITTEN]) / 'index.html'}")


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
                f"{r['outcome']} | {'; '.join(x for x in (r['detail'], r.get('timing', '')) if x)} |"
            )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _versions_line() -> str:
    from parity.versions import library_versions

    return ", ".join(f"{name} {version}" for name, version in library_versions().items())


@pytest.fixture(scope="session")
def golden_config(request: pytest.FixtureRequest, device: str):
    """Where golden images live for this run, whether to rewrite them, and where mismatches go."""
    from parity.golden.store import GoldenStore
    from parity.pytest.golden import golden_location, update_token

    root, cls = golden_location(request.config)
    return GoldenConfig(
        store=GoldenStore(root, cls, staging=update_token(request.config)),
        update=request.config.getoption("--update-golden"),
        report_dir=Path(request.config.stash[_REPORT_DIRS]["golden"]),
        device=device,
    )


class GoldenConfig:
    def __init__(self, store, update: bool, report_dir: Path, device: str) -> None:
        self.store, self.update, self.report_dir, self.device = store, update, report_dir, device


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Bad input (a user's file, path or option) fails with its one line naming file and key, not a
    traceback through the harness."""
    outcome = yield
    report = outcome.get_result()
    from parity.errors import ParityInputError

    if call.excinfo is not None and report.failed and call.excinfo.errisinstance(ParityInputError):
        report.longrepr = f"bad input: {call.excinfo.value}"
