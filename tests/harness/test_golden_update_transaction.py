"""An interrupted --update-golden leaves the old baselines intact; a cut-short commit is finished.

The kill tests run the real ``pytest --update-golden`` in a subprocess (renders faked to flat grey
by tests/support/golden_kill_plugin.py), SIGKILL it at a chosen point, then look at the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from parity.checks.cases import GoldenCase, golden_case
from parity.golden.pixels import quantise, read_png
from parity.golden.store import COMMIT_MARKER, STAGING_PREFIX, GoldenStore, new_update_token
from tests.support.filesnap import snapshot

REPO = Path(__file__).resolve().parents[2]
CASES = ("sd15-base", "sd15-lora-0.5", "sd15-lora-1.0")
GREY = np.full((32, 32, 3), 0.25, np.float32)


def tree_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (staging folders included) → sha256; folders' own mtimes change
    when a staging folder comes and goes, so only file contents are compared."""
    return {path: sha for path, (kind, sha, _, _) in snapshot(folder).items() if kind == "file"}


@pytest.fixture
def golden_copy(tmp_path) -> Path:
    root = tmp_path / "golden"
    shutil.copytree(REPO / "golden" / "cpu", root / "cpu")
    return root


def _case(case_id: str) -> GoldenCase:
    return golden_case(case_id)


def test_staged_baselines_are_invisible_until_committed(golden_copy):
    before = tree_hashes(golden_copy)
    store = GoldenStore(golden_copy, "cpu", staging=new_update_token())
    store.write(_case("sd15-base"), GREY, {"float64_error": 0.0})

    assert tree_hashes(golden_copy).keys() - before.keys() == {
        f"cpu/{store.staging_dir.name}/sd15-base.png", f"cpu/{store.staging_dir.name}/sd15-base.json"}
    assert {k: v for k, v in tree_hashes(golden_copy).items() if STAGING_PREFIX not in k} == before
    assert store.entry("sd15-base") == {"float64_error": 0.0}  # the run itself reads what it staged
    assert GoldenStore(golden_copy, "cpu").entry("sd15-base")["float64_error"] != 0.0  # others do not

    assert store.commit_update() == ["sd15-base"]

    after = GoldenStore(golden_copy, "cpu")
    assert np.array_equal(read_png(after.png_path("sd15-base")), quantise(GREY))
    assert after.entry("sd15-base") == {"float64_error": 0.0}
    assert not any(STAGING_PREFIX in k for k in tree_hashes(golden_copy))


def test_a_discarded_update_leaves_every_file_as_it_was(golden_copy):
    before = tree_hashes(golden_copy)
    store = GoldenStore(golden_copy, "cpu", staging=new_update_token())
    store.write(_case("sd15-base"), GREY, {"float64_error": 0.0})
    store.discard_update()
    assert tree_hashes(golden_copy) == before


def test_a_live_runs_staging_folder_is_left_alone_by_other_readers(golden_copy):
    store = GoldenStore(golden_copy, "cpu", staging=new_update_token())  # this process: alive
    store.write(_case("sd15-base"), GREY, {"float64_error": 0.0})
    GoldenStore(golden_copy, "cpu")
    assert store.staging_dir.exists()


def _run_update_until_paused(golden_root: Path, where: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "GOLDEN_KILL_AT": where, "GOLDEN_KILL_READY": str(ready), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "tests/test_golden.py", "-q", "-n", "0", "-p", "no:cacheprovider",
           "-p", "tests.support.golden_kill_plugin", "--update-golden", "--golden-dir", str(golden_root),
           "--golden-report", str(tmp_path / "report"), "--timeout", "120",
           "-k", " or ".join(CASES)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                pytest.fail(f"the update run never reached its pause point ({where}):\n{out[-3000:]}")
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no finally, no atexit: the worst case
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


# make slow (7 s: a pytest subprocess killed mid-update); the harder kill, mid-commit, runs by default
@pytest.mark.slow
def test_update_killed_mid_run_leaves_the_old_baselines_intact(golden_copy, tmp_path):
    before = tree_hashes(golden_copy)

    _run_update_until_paused(golden_copy, "staged", tmp_path)

    leftover = {k for k in tree_hashes(golden_copy) if STAGING_PREFIX in k}
    assert leftover, "the run was killed before staging anything: this shows nothing"
    assert {k: v for k, v in tree_hashes(golden_copy).items() if STAGING_PREFIX not in k} == before
    GoldenStore(golden_copy, "cpu")  # the next run's store: the dead run's staging folder goes
    assert tree_hashes(golden_copy) == before


def test_update_killed_mid_commit_is_completed_by_the_next_run(golden_copy, tmp_path):
    _run_update_until_paused(golden_copy, "commit", tmp_path)

    staging = [p for p in (golden_copy / "cpu").iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert staging and (staging[0] / COMMIT_MARKER).exists(), "not killed inside the commit"
    store = GoldenStore(golden_copy, "cpu")  # rolls the commit forward

    assert not any(p.name.startswith(STAGING_PREFIX) for p in (golden_copy / "cpu").iterdir())
    for case_id in CASES:
        assert np.array_equal(read_png(store.png_path(case_id)), quantise(GREY)), case_id
        assert store.entry(case_id)["float64_error"] == 0.0, case_id
    untouched = GoldenStore(REPO / "golden", "cpu")
    assert store.entry("sd15-fused-1.0") == untouched.entry("sd15-fused-1.0")


def test_negative_control_without_staging_a_write_lands_in_the_baseline_at_once(golden_copy):
    # What the mid-run kill test guards against: an unstaged write is already in the committed
    # folder when the run is killed after it.
    before = tree_hashes(golden_copy)
    GoldenStore(golden_copy, "cpu").write(_case("sd15-base"), GREY, {"float64_error": 0.0})
    changed = {k for k, v in tree_hashes(golden_copy).items() if before.get(k) != v}
    assert changed == {"cpu/sd15-base.png", "cpu/manifest.json"}
