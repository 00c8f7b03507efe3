"""A backstop behind pytest-timeout, so that a hung compile or pipeline cannot hang CI.

pytest-timeout (``timeout`` in pyproject.toml) fails a test that overruns with SIGALRM; the failure
names the case and the session goes on. A signal handler only runs when the interpreter regains
control, so a hang inside C code (a deadlocked OpenMP pool, a compiler waiting on a lock with the
signal masked) outlives it. This watchdog waits ``--hang-grace`` seconds past the test's timeout,
then names the case, dumps every thread's stack and exits the process: the run fails loudly, and
under xdist the controller reports the crashed worker and the test it was running.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

import pytest

EXIT_HUNG = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("lora-parity").addoption(
        "--hang-grace",
        type=float,
        default=60.0,
        help="seconds past a test's timeout before the watchdog names it, dumps stacks and exits (default 60)",
    )


def timeout_of(item: pytest.Item) -> float | None:
    """The test's pytest-timeout limit: its ``timeout`` marker, else the configured one."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
        return float(value) if value else None
    from pytest_timeout import get_env_settings

    value = get_env_settings(item.config).timeout
    return float(value) if value else None


def _hung(item: pytest.Item, seconds: float) -> None:
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    message = (f"\nlora-parity watchdog: {item.nodeid} is still running {seconds:.0f} s after it started, past "
               "its pytest-timeout; the timeout could not interrupt it. Stacks of every thread follow; exiting.\n")
    sys.stderr.write(message)
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_HUNG)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    timeout = timeout_of(item)
    if not timeout:
        yield
        return
    limit = timeout + item.config.getoption("--hang-grace")
    timer = threading.Timer(limit, _hung, args=(item, limit))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
