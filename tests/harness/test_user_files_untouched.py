"""The harness never writes to a user's model folder or LoRA files.

A tiny sd15 pipeline saved with ``save_pretrained`` stands for the user's model folder, beside two
synthesised LoRA files; every file's sha256 and mtime and every folder's listing and mtime are taken
before and after `lora-parity check`, `lora-parity hotswap`, `lora-parity golden` and a pytest run with
--model-path/--lora,
and every write attempt under the user's folder is watched while they run (in this process: the watch
sees what root's disregard for file permissions would hide). One run goes against a read-only (chmod)
copy of the folders and still succeeds.

The negative controls of the snapshot and the watch are in tests/harness/test_filesnap.py.
"""

from __future__ import annotations

import io
import os
import stat
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.filesnap import differences, snapshot, watch_writes

FAMILY = get_family("sd15")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class UserFiles:
    root: Path  # holds everything the user owns: the model folder and the LoRA folder
    model: Path
    loras: tuple[Path, Path]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> UserFiles:
    root = tmp_path_factory.mktemp("user")
    pipe = build_pipeline(FAMILY)
    pipe.save_pretrained(root / "sd15-model")
    components = FAMILY.components(pipe)
    targets = FAMILY.default_targets["unet"]
    (root / "loras").mkdir()
    loras = tuple(
        Path(write_lora(components, {"unet": targets}, root / "loras" / f"rank{rank}.safetensors", seed=seed,
                        rank=rank, alpha=alpha))
        for seed, rank, alpha in ((1, 4, 8.0), (2, 8, 4.0))
    )
    return UserFiles(root, root / "sd15-model", loras)


def cli(*args: str | Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue() + err.getvalue()


def test_check_on_the_user_s_model_folder_writes_nothing_under_it(user, tmp_path):
    before = snapshot(user.root)
    with watch_writes(user.root) as attempts:
        code, output = cli("check", "--family", "sd15", "--model-path", user.model, "--lora", user.loras[0],
                           "--json", tmp_path / "report.json", "--quiet")
    assert code == 0, output
    assert attempts == []
    assert differences(before, snapshot(user.root)) == []


def test_the_proof_catches_a_run_that_writes_under_the_user_s_folder(user):
    # negative control, end to end: the same run, told to put its JSON beside the user's LoRA files
    stray = user.root / "loras" / "report.json"
    before = snapshot(user.root)
    with watch_writes(user.root) as attempts:
        code, output = cli("check", "--family", "sd15", "--model-path", user.model, "--lora", user.loras[0],
                           "--json", stray, "--quiet")
    try:
        assert code == 0, output
        assert attempts == [f"open {stray}"]
        assert differences(before, snapshot(user.root)) == ["added: loras/report.json", "content changed: loras"]
    finally:
        stray.unlink()


def test_a_pytest_run_with_model_path_and_lora_writes_nothing_under_them(user, pytester, monkeypatch):
    monkeypatch.setattr("parity.pytest.reports._ROWS", [])  # the inner run's summary rows stay out of this run's
    before = snapshot(user.root)
    with watch_writes(user.root) as attempts:
        result = pytester.runpytest_inprocess(
            f"{REPO / 'tests' / 'test_merge_parity.py'}::test_user_lora_fuse_matches_reference_merge",
            "-k", "float32", "--family", "sd15", "--model-path", str(user.model), "--lora", str(user.loras[0]),
            "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0", "-q",
        )
    result.assert_outcomes(passed=1)
    assert attempts == []
    assert differences(before, snapshot(user.root)) == []


@pytest.fixture
def read_only(user):
    """The user's folders and files without write permission, restored afterwards."""
    paths = [user.root, *user.root.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        os.chmod(p, modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield user
    for p in reversed(paths):
        os.chmod(p, modes[p])


@pytest.mark.compile
def test_hotswap_on_a_read_only_model_folder_and_lora_files_succeeds_and_writes_nothing(read_only, tmp_path):
    user = read_only
    before = snapshot(user.root)
    with watch_writes(user.root) as attempts:
        code, output = cli("hotswap", "--family", "sd15", "--model-path", user.model,
                           "--lora", user.loras[0], "--lora", user.loras[1], "--json", tmp_path / "swaps.json",
                           "--quiet")
    assert code == 0, output
    assert str(user.model) in output and "PASS" in output  # the report names the folder it swapped in
    assert attempts == []
    assert differences(before, snapshot(user.root)) == []


@pytest.mark.slow  # every sd15 case loaded from the folder three or four times over: a minute on 2 cores
def test_golden_update_and_verify_on_the_user_s_model_folder_write_nothing_under_it(user, tmp_path):
    before = snapshot(user.root)
    golden = ["--family", "sd15", "--model-path", user.model, "--golden-dir", tmp_path / "golden",
              "--report-dir", tmp_path / "report", "--quiet"]
    with watch_writes(user.root) as attempts:
        updated, output = cli("golden", "update", *golden[:-3], "--quiet")
        verified, verify_output = cli("golden", "verify", *golden, "--overwrite")
    assert updated == 0, output
    assert verified == 0, verify_output
    assert attempts == []
    assert differences(before, snapshot(user.root)) == []
    # the baselines name the folder they were made on: the tiny model's renders are not compared with them
    tiny, tiny_output = cli("golden", "verify", "--family", "sd15", "--golden-dir", tmp_path / "golden",
                            "--report-dir", tmp_path / "tiny-report", "--quiet")
    assert tiny == 1 and "case definition changed since the baseline: model" in tiny_output
