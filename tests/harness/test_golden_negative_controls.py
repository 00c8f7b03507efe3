"""The golden check must fail on a changed patch, another seed or a LoRA at 1.05, must refuse to store
non-finite or unreproducible renders, must write atomically without touching other baselines, and a
missing baseline must fail with the command that creates it. All on tmp_path golden folders."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.checks.cases import golden_case, variant
from parity.devices import device_class
from parity.golden.mismatch import TILE
from parity.golden.pixels import png_bytes, quantise, read_png
from parity.golden.render import render, render_cached
from parity.golden.store import GoldenError, GoldenStore, atomic_write
from parity.golden.verify import run_case, update_case, verify_image

BASE = golden_case("sd15-base")
LORA = golden_case("sd15-lora-1.0")
ROOT = Path(__file__).resolve().parents[2]


# One worker runs every test here, so the module's baselines (two sd15 renders) are made once, not once on
# each xdist worker.
pytestmark = pytest.mark.xdist_group("golden-negative-controls")


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> Path:
    """A golden root holding sd15-base and sd15-lora-1.0 (made once; tests copy it before mutating)."""
    root = tmp_path_factory.mktemp("golden-src")
    store = GoldenStore(root, "cpu")
    for case in (BASE, LORA):
        update_case(store, case)
    return root


@pytest.fixture
def store(baselines, tmp_path) -> GoldenStore:
    root = tmp_path / "golden"
    shutil.copytree(baselines, root)
    return GoldenStore(root, "cpu")


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_unchanged_baseline_passes(store, tmp_path):
    outcome = run_case(store, BASE, tmp_path / "reports")
    assert outcome.ok, "\n".join(outcome.lines)
    assert outcome.result.metrics["max_abs"] <= 0.5 / 255  # identical float image: quantisation only


def test_a_changed_4x4_patch_fails_and_writes_the_side_by_side_and_the_index(store, tmp_path):
    png = store.png_path(BASE.id)
    pixels = read_png(png).copy()
    patch = pixels[10:14, 12:16].astype(int)
    pixels[10:14, 12:16] = np.where(patch <= 253, patch + 2, patch - 2)  # 2/255: ≥ 1.5/255 off after rounding
    atomic_write(png, png_bytes(pixels))
    reports = tmp_path / "reports"

    outcome = run_case(store, BASE, reports)

    assert not outcome.ok
    assert any("max-abs" in line for line in outcome.result.failures)
    artifact = reports / "artifacts" / f"{BASE.id}.png"
    assert artifact.exists() and outcome.result.artifact == str(artifact)
    side = read_png(artifact)
    assert side.shape == (32 * TILE, 3 * 32 * TILE + 8, 3)
    diff_panel = side[:, 2 * (32 * TILE + 4):]
    red = (diff_panel[..., 0] > 0) & (diff_panel[..., 1] == 0) & (diff_panel[..., 2] == 0)
    bright = np.argwhere(red)
    # Only the patch is red in the difference panel (rows 10..13, columns 12..15, upscaled).
    assert bright[:, 0].min() == 10 * TILE and bright[:, 0].max() == 14 * TILE - 1
    assert bright[:, 1].min() == 12 * TILE and bright[:, 1].max() == 16 * TILE - 1
    index = (reports / "index.html").read_text()
    assert BASE.id in index and f"artifacts/{BASE.id}.png" in index and "SSIM" in index


def test_a_passing_rerun_removes_the_case_from_the_index(store, tmp_path):
    reports = tmp_path / "reports"
    good = read_png(store.png_path(BASE.id))
    bad = good.copy()
    bad[0:4, 0:4] = 255 - bad[0:4, 0:4]
    atomic_write(store.png_path(BASE.id), png_bytes(bad))
    assert not run_case(store, BASE, reports).ok
    atomic_write(store.png_path(BASE.id), png_bytes(good))
    assert run_case(store, BASE, reports).ok
    assert BASE.id not in (reports / "index.html").read_text()
    assert not (reports / "artifacts" / f"{BASE.id}.png").exists()


def test_a_different_seed_fails(store, tmp_path):
    image = render(variant(BASE, seed=1))
    result = verify_image(store, BASE, image, tmp_path / "reports")
    assert not result.ok
    assert any("max-abs" in f for f in result.failures), result.message()
    assert (tmp_path / "reports" / "artifacts" / f"{BASE.id}.png").exists()


def test_a_lora_at_scale_1_05_instead_of_1_fails(store, tmp_path):
    image = render(variant(LORA, scale=1.05))
    result = verify_image(store, LORA, image, tmp_path / "reports")
    assert not result.ok, result.message()
    assert result.metrics["max_abs"] > result.thresholds.max_abs


def test_a_changed_case_definition_fails_even_with_equal_pixels(store):
    moved = variant(BASE, steps=3)  # the manifest says 2 steps
    result = verify_image(store, moved, render_cached(BASE), None)
    assert not result.ok
    assert any("steps 2 -> 3" in f for f in result.failures)


def test_a_missing_baseline_fails_with_the_command_that_creates_it(tmp_path):
    outcome = run_case(GoldenStore(tmp_path / "golden", "cpu"), BASE, tmp_path / "reports")
    assert not outcome.ok
    message = "\n".join(outcome.lines)
    assert "--update-golden" in message and f"-k '{BASE.id}'" in message
    assert f"lora-parity golden update --family sd15 --golden-dir {tmp_path / 'golden'}" in message


def test_pytest_without_the_flag_fails_on_a_missing_baseline_and_with_it_creates_it(tmp_path, pytester, monkeypatch):
    monkeypatch.setattr("parity.pytest.reports._ROWS", [])  # the inner runs' summary rows stay out of this run's
    golden = tmp_path / "golden"
    # In process: a fresh pytest with the plugin takes seconds to start.
    args = [str(ROOT / "tests" / "test_golden.py"), "-q", "-n", "0", "-p", "no:cacheprovider", "--golden-dir",
            str(golden), "--golden-report", str(tmp_path / "mismatches"), "-k", BASE.id]
    run = pytester.runpytest_inprocess(*args)
    assert run.ret == 1, run.outlines[-30:]
    assert f"--update-golden --golden-dir {golden} --golden-class cpu -k '{BASE.id}'" in run.stdout.str()
    assert not (golden / "cpu" / f"{BASE.id}.png").exists()

    run = pytester.runpytest_inprocess(*args, "--update-golden")
    assert run.ret == 0, run.outlines[-30:]
    assert (golden / "cpu" / f"{BASE.id}.png").exists()
    assert BASE.id in GoldenStore(golden, "cpu").manifest()["entries"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_an_update_refuses_non_finite_images(store, bad):
    before = hashes(store.dir)
    image = np.full((32, 32, 3), 0.5, dtype=np.float32)
    image[3, 4, 1] = bad
    with pytest.raises(GoldenError, match="non-finite"):
        update_case(store, LORA, renderer=lambda case: image, error_fn=lambda case, im: 0.0)
    with pytest.raises(GoldenError, match="non-finite"):
        store.write(LORA, image, {})
    assert hashes(store.dir) == before


def test_an_update_refuses_two_runs_that_differ(store):
    before = hashes(store.dir)
    runs = iter([np.full((32, 32, 3), 0.5, np.float32), np.full((32, 32, 3), 0.5 + 2**-20, np.float32)])
    with pytest.raises(GoldenError, match="two consecutive runs differ"):
        update_case(store, LORA, renderer=lambda case: next(runs), error_fn=lambda case, im: 0.0)
    assert hashes(store.dir) == before


def test_an_update_rewrites_only_its_case_and_merges_the_manifest(store):
    before = hashes(store.dir)
    entries_before = store.manifest()["entries"]
    half = golden_case("sd15-lora-0.5")

    update_case(store, half)
    update_case(store, LORA)  # regenerated: same pixels, same bytes

    after = hashes(store.dir)
    assert after[f"{BASE.id}.png"] == before[f"{BASE.id}.png"]
    assert after[f"{LORA.id}.png"] == before[f"{LORA.id}.png"]  # deterministic PNG bytes
    assert f"{half.id}.png" in after
    entries = store.manifest()["entries"]
    assert entries[BASE.id] == entries_before[BASE.id]
    assert set(entries) == {BASE.id, LORA.id, half.id}
    assert not [p for p in os.listdir(store.dir) if p.endswith(".tmp")]


def test_a_write_that_fails_midway_leaves_the_old_baseline_and_no_temp_file(store, monkeypatch):
    before = hashes(store.dir)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write(LORA, np.zeros((32, 32, 3), np.float32), {"case": LORA.id})
    assert hashes(store.dir) == before
    assert not [p for p in os.listdir(store.dir) if p.endswith(".tmp")]


def test_the_png_carries_no_varying_metadata(store):
    image = render_cached(BASE)
    assert png_bytes(quantise(image)) == store.png_path(BASE.id).read_bytes()


def test_the_device_class_is_computed_and_folders_never_mix(tmp_path, store):
    assert device_class("cpu") == "cpu"
    other = GoldenStore(store.root, "cuda-sm90")
    outcome = run_case(other, BASE, None)
    assert not outcome.ok and "cuda-sm90" in outcome.lines[0]


def test_a_baseline_made_on_a_model_folder_is_not_read_as_another_model_s(tmp_path):
    store = GoldenStore(tmp_path / "golden", "cpu")
    image = render_cached(BASE)
    update_case(store, BASE, renderer=lambda case: image, error_fn=lambda case, im: 0.0,
                model_path=str(tmp_path / "my-sd15"))
    assert verify_image(store, BASE, image, None, model_path=str(tmp_path / "my-sd15")).ok
    for other in (None, str(tmp_path / "another-sd15")):  # the tiny model, another folder
        result = verify_image(store, BASE, image, None, model_path=other)
        assert not result.ok
        assert any("case definition changed since the baseline: model" in f for f in result.failures)


def test_the_fused_relation_passes_a_fused_render_and_fails_a_fuse_at_1_05(store):
    """fused-1.0 against the unfused lora-1.0 render within OUTPUT_TOLERANCES["fused"] (3·e_fwd: the fuse
    rounds every merged weight once more); a fuse at 1.05 instead of 1 is far outside it."""
    from parity.golden.verify import check_relation

    fused = golden_case("sd15-fused-1.0")
    unfused = render_cached(LORA)
    assert check_relation(fused, render(fused), unfused, store).ok
    wrong = check_relation(fused, render(variant(fused, scale=1.05)), unfused, store)
    assert not wrong.ok and wrong.max_abs > 10 * wrong.budget
