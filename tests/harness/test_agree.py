"""`lora-parity agree` says two runs are identical only when they are, and tools/repeat.sh's
file-order and shuffled runs of a slice of the suite agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.cli import main
from tests.support.junit import junit_xml

REPO = Path(__file__).resolve().parents[2]
CASES = {"tests.test_a::test_x[sd15]": "passed", "tests.test_a::test_y": "skipped", "tests.test_b::test_z": "xfailed"}
ROW = {"check": "merge", "case": "sd15-a", "dtype": "float32", "max_ulps": 1.25, "max_bound_ratio": 0.5,
       "detail": "", "outcome": "passed"}


def _run(path: Path, cases: dict[str, str] = CASES, rows: list[dict] = (ROW,)) -> Path:
    (path / "parity").mkdir(parents=True)
    (path / "junit.xml").write_text(junit_xml(cases))
    (path / "parity" / "summary.json").write_text(json.dumps(list(rows)))
    return path


def test_identical_runs_agree(tmp_path, capsys):
    assert main(["agree", str(_run(tmp_path / "a")), str(_run(tmp_path / "b"))]) == 0
    assert capsys.readouterr().out.startswith("identical: 3 tests")


@pytest.mark.parametrize(
    ("cases", "rows", "needle"),
    [
        ({**CASES, "tests.test_a::test_x[sd15]": "failed"}, (ROW,), "outcome changed"),
        ({k: v for k, v in CASES.items() if k != "tests.test_b::test_z"}, (ROW,), "only in the first run"),
        (CASES, ({**ROW, "max_ulps": 1.2500001},), "max_ulps 1.25 → 1.2500001"),
        (CASES, ({**ROW, "detail": "SSIM 0.99999"},), "measured value changed"),
    ],
    ids=["outcome", "missing-test", "one-ulp-scale-step", "detail"],
)
def test_one_difference_makes_runs_disagree(tmp_path, capsys, cases, rows, needle):
    assert main(["agree", str(_run(tmp_path / "a")), str(_run(tmp_path / "b", cases, rows))]) == 1
    assert needle in capsys.readouterr().out


def test_wall_clock_timings_are_not_compared(tmp_path, capsys):
    b = _run(tmp_path / "b", rows=({**ROW, "timing": "swap 9 ms vs compile 3.5 s"},))
    assert main(["agree", str(_run(tmp_path / "a", rows=({**ROW, "timing": "swap 18 ms vs compile 2.7 s"},))),
                 str(b)]) == 0


def test_a_folder_without_runs_is_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["agree", str(_run(tmp_path / "a")), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junit.xml" in err[0]


@pytest.mark.slow  # two pytest processes (27 s on 2 cores); `make repeat` runs the same plumbing on the suite
def test_a_slice_run_in_file_order_and_shuffled_agrees(tmp_path):
    # The same plumbing as the full check (tox -e repeat), on a slice.
    out = tmp_path / "repeat"
    env = {**os.environ, "PYTHON": sys.executable, "JOBS": "0", "REPEAT_SEED": "1234", "REPEAT_OUT": str(out)}
    done = subprocess.run(
        ["bash", "tools/repeat.sh", "tests/test_merge_parity.py", "tests/harness/test_globalstate.py",
         "-k", "sd15-diffusers-float32-cpu-s1-x1 or globalstate", "-p", "no:cacheprovider"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "identical:" in done.stdout and "seed 1234" in done.stdout
    first = (out / "run1" / "junit.xml").read_text()
    assert "test_fuse_matches_reference_merge" in first  # the slice held parity checks, not just nothing
