"""The golden-image options and their session: --update-golden (one transaction), --golden-dir,
--golden-class, --golden-report, and the ``golden_config`` fixture tests/test_golden.py runs with.

An update stages every new baseline of a run and commits them at the end of the session, so a run
that is killed or interrupted leaves the old baselines intact. Under xdist the controller names the
staging folder and the mismatch report folder and hands both to every worker; only the controller
commits, after the last worker has finished, and marks the report folder if a mismatch was written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from parity.devices import NoDevice, device_class, resolve
from parity.golden.mismatch import DEFAULT_REPORT_DIR
from parity.golden.store import DEFAULT_GOLDEN_DIR, GoldenStore, new_update_token
from parity.options import GOLDEN_CLASS
from parity.pytest.models import option_model_path
from parity.pytest.reports import claimed_folder, command_line

_TOKEN = pytest.StashKey[str]()
_REPORT = pytest.StashKey[str]()
_SUMMARY = pytest.StashKey[list[str]]()  # lines for the end of the terminal report
_TOKEN_KEY, _REPORT_KEY = "lora_parity_golden_token", "lora_parity_golden_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden baselines of the selected cases (others are left untouched)",
    )
    group.addoption("--golden-dir", default=None, help="golden image root (default: <rootdir>/golden)")
    group.addoption(
        "--golden-missing",
        default="fail",
        choices=("fail", "skip"),
        help="a case without a baseline image: fail (default), or skip it, as the upgrade gate does where the "
        "old versions rendered no image for it (a family they cannot build)",
    )
    GOLDEN_CLASS.add_to(group)
    group.addoption(
        "--golden-report",
        default=None,
        help="where golden mismatches write side-by-side PNGs and index.html (default: a new run folder "
        "<rootdir>/reports/golden/<time>-<id>/, made on the first mismatch; reports/golden/latest points at it)",
    )


def golden_location(config: pytest.Config) -> tuple[Path, str]:
    """The golden root and device class folder this run reads and writes."""
    root = config.getoption("--golden-dir") or os.path.join(str(config.rootpath), DEFAULT_GOLDEN_DIR)
    cls = config.getoption("--golden-class") or device_class(resolve(config.getoption("--device")))
    return Path(root), cls


def update_token(config: pytest.Config) -> str | None:
    return config.stash.get(_TOKEN, None)


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    if worker is not None and _REPORT_KEY in worker:
        config.stash[_REPORT] = worker[_REPORT_KEY]
    else:
        # Only named: a run with no mismatch leaves no empty folder (adopted at the end if written to).
        config.stash[_REPORT] = claimed_folder(config, "--golden-report", "golden-report",
                                               config.rootpath / DEFAULT_REPORT_DIR, create=False)
    if config.getoption("--update-golden"):
        config.stash[_TOKEN] = worker[_TOKEN_KEY] if worker and _TOKEN_KEY in worker else new_update_token()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist: runs in the controller once per worker
    node.workerinput[_REPORT_KEY] = node.config.stash[_REPORT]
    token = update_token(node.config)
    if token is not None:
        node.workerinput[_TOKEN_KEY] = token


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    lines = config.stash[_SUMMARY] = []
    if config.getoption("--golden-report") is None and _REPORT in config.stash:
        from parity.runs.folders import adopt

        # The default folder's name is new: say where the mismatches went.
        if adopt(config.stash[_REPORT], command_line(config)):
            lines.append(f"golden mismatches: {Path(config.stash[_REPORT]) / 'index.html'}")
    token = update_token(config)
    if token is None:
        return
    try:
        root, cls = golden_location(config)
    except NoDevice:
        return  # no golden case could run, so none was staged
    store = GoldenStore(root, cls, staging=token)
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        store.discard_update()
        lines.append(f"golden update interrupted: the baselines in {store.dir} are unchanged")
        return
    committed = store.commit_update()
    lines.append(f"golden: {len(committed)} baseline(s) written to {store.dir}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(line)


@dataclass
class GoldenConfig:
    store: GoldenStore
    update: bool
    report_dir: Path
    device: str
    model_path: str | None = None  # --model-path: the cases render on that folder
    skip_missing: bool = False  # --golden-missing skip


@pytest.fixture(scope="session")
def golden_config(request: pytest.FixtureRequest, device: str) -> GoldenConfig:
    """Where golden images live for this run, whether to rewrite them, and where mismatches go."""
    root, cls = golden_location(request.config)
    return GoldenConfig(
        store=GoldenStore(root, cls, staging=update_token(request.config)),
        update=request.config.getoption("--update-golden"),
        report_dir=Path(request.config.stash[_REPORT]),
        device=device,
        model_path=option_model_path(request.config),
        skip_missing=request.config.getoption("--golden-missing") == "skip",
    )
