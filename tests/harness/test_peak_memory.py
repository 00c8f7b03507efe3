"""The memory-bound test's peak is the measured command's own: a subprocess started by a parent that
once held far more memory reports its own peak, not the parent's. The control: ru_maxrss in the same
child reports the parent's (Linux keeps the replaced image's maximum across execve), which is how a
check that peaks under 3 GiB once read 5.45 GiB inside a busy pytest worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

MIB = 2**20
PARENT_HOLDS = 512 * MIB

# The parent touches PARENT_HOLDS bytes, frees them, then starts the child the way subprocess.run does.
PARENT = f"""
import subprocess, sys
block = bytearray({PARENT_HOLDS})
for i in range(0, len(block), 4096):
    block[i] = 1
del block
child = ("import resource; from tests.support.peak_memory import peak_bytes; "
         "print(peak_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""


@pytest.fixture(scope="module")
def child_peaks() -> tuple[int, int]:
    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM is Linux's /proc/self/status")
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, check=True).stdout
    own, maxrss = (int(v) for v in out.split())
    return own, maxrss


def test_a_child_reports_its_own_peak_not_its_parents(child_peaks):
    own, _ = child_peaks
    assert own < PARENT_HOLDS / 2, f"{own / MIB:.0f} MiB"


def test_ru_maxrss_in_the_same_child_carries_the_parents_peak(child_peaks):
    _, maxrss = child_peaks
    assert maxrss >= PARENT_HOLDS, f"{maxrss / MIB:.0f} MiB"
