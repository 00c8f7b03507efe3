"""--parity-report DIR and --overwrite-reports: every check's summary row (``parity_record``), kept in
the controller under xdist and written at the end as the readable summary (parity/runs/summary.py),
in a folder claimed at the start so a previous run's output is never clobbered (parity/runs/folders.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_DIR = pytest.StashKey[str | None]()
_WORKER_KEY = "lora_parity_parity_report"
_ROWS: list[dict] = []  # summary rows of this session (controller side under xdist)
_COUNTS = pytest.StashKey["_Counts"]()


class _Counts:
    """Every test's outcome as pytest's terminal summary counts it (the category pytest_report_teststatus
    gives: passed, failed, error, skipped, xfailed, xpassed; and deselected), so the summary's headline
    agrees with pytest's own line. One per config (a plugin object, not module state): an in-process
    pytester run inside another keeps its own counts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.counts: dict[str, int] = {}

    def _add(self, report) -> None:
        if not getattr(report, "count_towards_summary", True):
            return
        category = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        if category:
            self.counts[category] = self.counts.get(category, 0) + 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._add(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # a collection error: pytest's "error"
            self._add(report)

    def pytest_deselected(self, items) -> None:
        self.counts["deselected"] = self.counts.get("deselected", 0) + len(items)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption("--parity-report", default=None,
                    help="write a readable summary (markdown + JSON) in this folder (new, or without a summary)")
    group.addoption(
        "--overwrite-reports",
        action="store_true",
        default=False,
        help="replace a previous run's output in --parity-report / --golden-report instead of refusing",
    )


def command_line(config: pytest.Config) -> list[str]:
    """What a run folder's marker records as the command that made it."""
    return ["pytest", *config.invocation_params.args]


def claimed_folder(config: pytest.Config, option: str, writer: str, default_root: str | None = None,
                   create: bool = True) -> str | None:
    """The folder ``option`` names, claimed for ``writer``, or a new run folder under ``default_root``
    (parity.runs.folders.output_folder); a folder holding a previous run's output is a usage error."""
    from parity.errors import ParityInputError
    from parity.runs.folders import output_folder

    try:
        folder = output_folder(config.getoption(option), writer, config.getoption("--overwrite-reports"),
                               command_line(config), default_root, "--overwrite-reports", create)
    except ParityInputError as exc:
        raise pytest.UsageError(str(exc)) from None
    # Absolute: xdist workers need not share the controller's working folder.
    return None if folder is None else os.path.abspath(folder)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    # xdist: the controller decides (and refuses) once; its workers write where it decided.
    if workerinput is not None and _WORKER_KEY in workerinput:
        config.stash[_DIR] = workerinput[_WORKER_KEY]
    else:
        config.stash[_DIR] = claimed_folder(config, "--parity-report", "parity-report")
        if config.stash[_DIR] is not None:
            config.stash[_COUNTS] = counter = _Counts(config)
            config.pluginmanager.register(counter, "lora-parity-counts")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller, once per worker
    node.workerinput[_WORKER_KEY] = node.config.stash[_DIR]


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
            if hasattr(report, "wasxfail"):  # a strict xfail: a known finding that still shows
                row["outcome"] = "xfailed" if report.skipped else "xpassed"
                row["finding"] = report.wasxfail
            _ROWS.append(row)




def pytest_sessionstart(session: pytest.Session) -> None:
    _ROWS.clear()  # an in-process run (pytester) after another must not inherit its rows


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or _DIR not in config.stash or config.stash[_DIR] is None:
        return
    from parity.runs.summary import write_summary

    counts = config.stash[_COUNTS].counts if _COUNTS in config.stash else None
    write_summary(Path(config.stash[_DIR]), _ROWS, exitstatus, counts)
