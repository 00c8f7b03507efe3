"""A golden video (Wan: 5 frames, two experts) must fail when one frame changes, and its mismatch image must
show that frame; a LoRA in the wrong expert, or in none, must not match the low expert's golden; a
video's baseline reads back frame by frame. On tmp_path copies of the committed baselines (they are
themselves verified by tests/test_golden.py), so no baseline is rendered here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.checks.cases import golden_case, variant
from parity.golden.mismatch import GAP, TILE
from parity.golden.pixels import png_bytes, quantise, read_png, strip, unstrip
from parity.golden.render import render, render_cached
from parity.golden.store import GoldenError, GoldenStore, atomic_write
from parity.golden.verify import check_relation, run_case, verify_image

BASE = golden_case("wan-base")
HIGH = golden_case("wan-lora-1.0")  # the file loaded as load_lora_weights does by default: the high expert
LOW = golden_case("wan-low-lora-1.0")  # the same file, load_into_transformer_2=True
COMMITTED = Path(__file__).resolve().parents[2] / "golden" / "cpu"
FRAMES, SIDE = 5, 32


@pytest.fixture
def store(tmp_path) -> GoldenStore:
    """A golden root holding the committed wan-base and wan-low-lora-1.0 baselines."""
    root = tmp_path / "golden"
    (root / "cpu").mkdir(parents=True)
    entries = json.loads((COMMITTED / "manifest.json").read_text())["entries"]
    for case in (BASE, LOW):
        shutil.copy(COMMITTED / f"{case.id}.png", root / "cpu" / f"{case.id}.png")
    manifest = {"device_class": "cpu", "entries": {c.id: entries[c.id] for c in (BASE, LOW)}}
    (root / "cpu" / "manifest.json").write_text(json.dumps(manifest))
    return GoldenStore(root, "cpu")


def red_rows(artifact: Path) -> set[int]:
    """The frames (rows of the mismatch image) whose difference panel has red: pixels over the budget."""
    side = read_png(artifact)
    row, panel = SIDE * TILE, SIDE * TILE + GAP
    assert side.shape == (FRAMES * row + (FRAMES - 1) * GAP, 3 * SIDE * TILE + 2 * GAP, 3)
    diff_panel = side[:, 2 * panel:]
    red = (diff_panel[..., 0] > 0) & (diff_panel[..., 1] == 0) & (diff_panel[..., 2] == 0)
    return {int(y) // (row + GAP) for y in np.argwhere(red)[:, 0]}


def test_a_video_with_one_frame_changed_fails_and_the_mismatch_image_shows_that_frame(store, tmp_path):
    video = np.array(render_cached(BASE))
    video[3] = video[2]  # a duplicated frame: the other four are the render's own
    reports = tmp_path / "reports"

    result = verify_image(store, BASE, video, reports)

    assert not result.ok
    assert result.failures and all(f.startswith("frame 3: ") for f in result.failures), result.message()
    assert [f["max_abs"] > result.thresholds.max_abs for f in result.frames] == [False, False, False, True, False]
    artifact = reports / "artifacts" / f"{BASE.id}.png"
    assert result.artifact == str(artifact) and red_rows(artifact) == {3}
    index = json.loads((reports / "index.json").read_text())
    assert index[BASE.id]["frames"] == FRAMES
    assert "5 frames: one row each" in (reports / "index.html").read_text()


def test_a_patch_changed_in_one_frame_of_the_stored_strip_fails_in_that_frame_only(store, tmp_path):
    """The stored PNG is the frames left to right: a 4x4 patch 2/255 off in frame 1's columns fails frame 1,
    and its red is where the patch is (the strip reads back into the right frame, the right place)."""
    png = store.png_path(BASE.id)
    pixels = read_png(png).copy()
    assert pixels.shape == (SIDE, FRAMES * SIDE, 3)
    patch = pixels[10:14, SIDE + 12:SIDE + 16].astype(int)
    pixels[10:14, SIDE + 12:SIDE + 16] = np.where(patch <= 253, patch + 2, patch - 2)
    atomic_write(png, png_bytes(pixels))
    reports = tmp_path / "reports"

    outcome = run_case(store, BASE, reports)

    assert not outcome.ok
    assert all(f.startswith("frame 1: ") for f in outcome.result.failures), outcome.lines
    artifact = reports / "artifacts" / f"{BASE.id}.png"
    assert red_rows(artifact) == {1}
    side = read_png(artifact)[:, 2 * (SIDE * TILE + GAP):]
    red = np.argwhere((side[..., 0] > 0) & (side[..., 1] == 0) & (side[..., 2] == 0))
    top = 1 * (SIDE * TILE + GAP)  # row 1
    assert red[:, 0].min() == top + 10 * TILE and red[:, 0].max() == top + 14 * TILE - 1
    assert red[:, 1].min() == 12 * TILE and red[:, 1].max() == 16 * TILE - 1
    # and the unchanged strip passes (quantisation only: the same versions rerun bit-identical)
    shutil.copy(COMMITTED / f"{BASE.id}.png", png)
    again = run_case(store, BASE, reports)
    assert again.ok and again.result.metrics["max_abs"] <= 0.5 / 255, again.lines


@pytest.mark.parametrize("wrong", ["high", "none"])
def test_a_lora_in_the_wrong_expert_or_in_none_does_not_match_the_low_expert_golden(store, wrong):
    """The low expert's file loaded without load_into_transformer_2 (into the high expert), or not loaded at
    all, fails the low expert's baseline on its pixels, every frame, by more than ten budgets (not only
    on its case definition, which names the expert)."""
    video = render_cached(HIGH if wrong == "high" else BASE)
    result = verify_image(store, LOW, video, None)
    assert not result.ok
    over = [f["max_abs"] / result.thresholds.max_abs for f in result.frames]
    assert min(over) > 10, (over, result.message())
    assert sum(f.startswith("frame ") and "max-abs" in f for f in result.failures) == FRAMES


def test_a_video_baseline_reads_back_frame_by_frame_and_refuses_a_wrong_frame_count(tmp_path):
    rng = np.random.default_rng(0)
    video = rng.random((FRAMES, SIDE, SIDE, 3)).astype(np.float32)
    assert np.array_equal(unstrip(strip(video), FRAMES), video)
    store = GoldenStore(tmp_path / "golden", "cpu")
    store.write(BASE, video, {"case": BASE.id, "frames": FRAMES})
    assert read_png(store.png_path(BASE.id)).shape == (SIDE, FRAMES * SIDE, 3)
    stored, _ = store.load(BASE)
    assert np.array_equal(stored, quantise(video))
    with pytest.raises(GoldenError, match="video of 5 frames"):
        store.write(BASE, video, {"case": BASE.id, "frames": 4})


@pytest.mark.slow
def test_the_low_expert_fused_relation_passes_a_fused_render_and_fails_a_fuse_at_1_05(store):
    fused = golden_case("wan-low-fused-1.0")
    unfused = render_cached(LOW)
    assert check_relation(fused, render(fused), unfused, store).ok
    wrong = check_relation(fused, render(variant(fused, scale=1.05)), unfused, store)
    assert not wrong.ok and wrong.max_abs > 10 * wrong.budget


@pytest.mark.slow
def test_a_schedule_in_the_high_expert_changes_nothing_and_fails_its_check(store, tmp_path):
    """Why the schedule case is the low expert's: at 3 steps the high expert runs step 0 only, so a weight
    change after it reaches no step of its own; the schedule check says so."""
    shutil.copy(COMMITTED / "wan-low-schedule.png", store.dir / "wan-high-schedule.png")
    entries = json.loads((COMMITTED / "manifest.json").read_text())["entries"]
    high = variant(golden_case("wan-low-schedule"), name="high-schedule", expert="high")
    manifest = store.manifest()
    manifest["entries"][high.id] = {**entries["wan-low-schedule"], "case": high.id, "expert": "high"}
    store.manifest_path.write_text(json.dumps(manifest))
    outcome = run_case(store, high, None)
    assert not outcome.ok
    assert any("schedule vs constant weight 1.0: max |diff| 0 <=" in line and "had no effect" in line
               for line in outcome.lines), outcome.lines
