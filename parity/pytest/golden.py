"""``--update-golden`` as one transaction: every new baseline of a run is staged, then committed at
the end of the session, so a run that is killed or interrupted leaves the old baselines intact.

Under xdist the controller names the staging folder and hands it to every worker; only the
controller commits, after the last worker has finished.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parity.devices import device_class
from parity.golden.store import DEFAULT_GOLDEN_DIR, GoldenStore, new_update_token

_TOKEN = pytest.StashKey[str]()
_OUTCOME = pytest.StashKey[str]()
WORKER_KEY = "lora_parity_golden_token"


def golden_location(config: pytest.Config) -> tuple[Path, str]:
    """The golden root and device class folder this run reads and writes."""
    from parity.pytest.plugin import resolve_device

    root = config.getoption("--golden-dir") or os.path.join(str(config.rootpath), DEFAULT_GOLDEN_DIR)
    cls = config.getoption("--golden-class") or device_class(resolve_device(config.getoption("--device")))
    return Path(root), cls


def update_token(config: pytest.Config) -> str | None:
    return config.stash.get(_TOKEN, None)


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--update-golden"):
        return
    worker = getattr(config, "workerinput", None)
    config.stash[_TOKEN] = worker[WORKER_KEY] if worker and WORKER_KEY in worker else new_update_token()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist: runs in the controller once per worker
    token = update_token(node.config)
    if token is not None:
        node.workerinput[WORKER_KEY] = token


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    token = update_token(config)
    if token is None or hasattr(config, "workerinput"):
        return
    root, cls = golden_location(config)
    store = GoldenStore(root, cls, staging=token)
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        store.discard_update()
        config.stash[_OUTCOME] = f"golden update interrupted: the baselines in {store.dir} are unchanged"
        return
    committed = store.commit_update()
    config.stash[_OUTCOME] = f"golden: {len(committed)} baseline(s) written to {store.dir}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _OUTCOME in config.stash:
        terminalreporter.write_line(config.stash[_OUTCOME])
