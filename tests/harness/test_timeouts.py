"""A test that hangs fails with its case named, and one that the timeout cannot interrupt (signal
masked, as in a hang inside C code) is ended by the watchdog (parity/pytest/watchdog.py), still named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HANGING = '''
import signal, time, pytest

@pytest.mark.parametrize("case", ["sd15-pipeline"])
def test_sleeps(case):
    time.sleep(60)

@pytest.mark.parametrize("case", ["flux-compile"])
def test_uninterruptible(case):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
'''


@pytest.fixture
def hanging(tmp_path: Path) -> Path:
    (tmp_path / "test_hanging.py").write_text(HANGING)
    return tmp_path


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    # Only the watchdog plugin, not the whole suite's: the run starts in about a second.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "test_hanging.py", "-p", "parity.pytest.watchdog", "-p", "no:cacheprovider",
         "--rootdir", str(folder), "-c", os.devnull, "--timeout", "1", "--hang-grace", "1", "-q", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )


# make slow (7 s: an xdist worker left to crash); the watchdog's naming and exit run by default below
@pytest.mark.slow
def test_a_hung_test_fails_naming_its_case_and_an_uninterruptible_one_crashes_its_worker_named(hanging):
    done = _pytest(hanging, "-n", "1")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "FAILED test_hanging.py::test_sleeps[sd15-pipeline] - Failed: Timeout" in out
    assert "crashed while running 'test_hanging.py::test_uninterruptible[flux-compile]'" in out


def test_the_watchdog_names_the_case_and_exits_when_the_timeout_cannot(hanging):
    done = _pytest(hanging, "-n", "0", "-k", "uninterruptible")
    assert done.returncode == 3, (done.stdout + done.stderr)[-3000:]
    assert "lora-parity watchdog: test_hanging.py::test_uninterruptible[flux-compile]" in done.stderr


def test_negative_control_without_the_watchdog_the_masked_hang_outlives_its_timeout(hanging):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-m", "pytest", "test_hanging.py", "-p", "no:cacheprovider", "--rootdir", str(hanging),
             "-c", os.devnull, "--timeout", "1", "-q", "-n", "0", "-k", "uninterruptible"],
            cwd=hanging, env=env, capture_output=True, text=True, timeout=4,
        )
