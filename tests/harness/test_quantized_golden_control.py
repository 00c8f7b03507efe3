"""Negative controls of the quantized golden images (parity/golden/quantized.py): the committed
torchao-int8wo baseline of Z-Image's LoRA render must fail a render on another base (the float
denoiser, a Q8_0 GGUF) and pass its own; a float and a quantized baseline of one case are separate
keys with their own entries; a fused case whose fuse_lora raises (GGUF) is a skip carrying diffusers'
error where no baseline exists and a failure where one does; the CLI takes --quantization."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from parity.checks.cases import golden_case
from parity.golden.quantized import FuseRefused, QuantizedGoldenCase, quantized, sibling
from parity.golden.render import render_cached
from parity.golden.store import GoldenStore
from parity.golden.verify import run_case, verify_image
from parity.zoo import FAMILIES
from tests.support.quantizers import needs_quantizers
from tests.support.families import needs

pytestmark = [pytest.mark.golden, needs_quantizers(), needs("zimage")]

ROOT = Path(__file__).resolve().parents[2]
# the gate's old env has no Z-Image: its cases do not exist there (the module skips by its needs() mark)
LORA = golden_case("zimage-lora-1.0") if "zimage" in FAMILIES else None
TORCHAO = quantized(LORA, "torchao-int8wo") if LORA is not None else None


@pytest.fixture(scope="module")
def committed() -> GoldenStore:
    return GoldenStore(ROOT / "golden", "cpu")


def test_keys_and_entries_are_separate(committed):
    assert TORCHAO.id == "zimage-torchao-int8wo-lora-1.0" and LORA.id == "zimage-lora-1.0"
    assert committed.has(TORCHAO.id) and committed.has(LORA.id)
    entry, float_entry = committed.entry(TORCHAO.id), committed.entry(LORA.id)
    assert entry["quantization"] == "torchao-int8wo" and "quantization" not in float_entry
    assert "torchao" in entry["versions"] and "gguf" in entry["versions"]
    # a fused case on a quantized base relates to nothing (the fuse requantizes); kohya = diffusers stays
    fused = quantized(golden_case("zimage-fused-1.0"), "gguf-q8_0")
    assert fused.same_as is None and fused.relation is None
    kohya = quantized(golden_case("zimage-kohya-1.0"), "torchao-int8wo")
    assert sibling(kohya, kohya.same_as).id == TORCHAO.id


@pytest.mark.parametrize("other", [None, "gguf-q8_0"], ids=["float", "gguf-q8_0"])
def test_another_base_fails_the_torchao_baseline(committed, other):
    image = render_cached(quantized(LORA, other))
    result = verify_image(committed, TORCHAO, image, None)
    assert not result.ok, result.message()
    # not by a hair: measured 0.0225 (float) and 0.0239 (GGUF) against a budget of 0.00196
    assert result.metrics["max_abs"] > 4 * result.thresholds.max_abs, result.message()


def test_its_own_render_passes(committed):
    result = verify_image(committed, TORCHAO, render_cached(TORCHAO), None)
    assert result.ok, result.message()


def test_a_float_baseline_is_no_quantized_one(committed, tmp_path):
    """The torchao PNG stored under the float case's key: its entry names no quantization, so the case
    definition check fails before the pixels (a quantized image read as a float one)."""
    root = tmp_path / "golden"
    (root / "cpu").mkdir(parents=True)
    store = GoldenStore(root, "cpu")
    image, entry = committed.load(TORCHAO)
    shutil.copy(committed.png_path(TORCHAO.id), store.dir / f"{LORA.id}.png")
    store._write_manifest({LORA.id: {**entry, "case": LORA.id}})
    result = verify_image(store, LORA, render_cached(LORA), None)
    assert not result.ok and any("quantization 'torchao-int8wo' -> None" in f for f in result.failures), result.failures


def test_a_fuse_that_raises_is_a_skip_without_a_baseline_and_a_failure_with_one(tmp_path):
    case = quantized(golden_case("zimage-fused-1.0"), "gguf-q8_0")
    assert isinstance(case, QuantizedGoldenCase)
    store = GoldenStore(tmp_path / "golden", "cpu")
    outcome = run_case(store, case, None, update=True)
    assert outcome.ok and outcome.skipped and "fuse_lora raised" in outcome.skipped, outcome.lines
    assert not store.has(case.id)
    # a baseline that exists (made when the fuse worked): raising now fails
    (store.dir).mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "golden" / "cpu" / "zimage-gguf-q8_0-lora-1.0.png", store.dir / f"{case.id}.png")
    store._write_manifest({case.id: {"case": case.id, "float64_error": 0.0}})
    outcome = run_case(store, case, None)
    assert not outcome.ok and outcome.skipped is None and "fuse_lora raised" in outcome.lines[0], outcome.lines
    assert issubclass(FuseRefused, Exception)


def test_the_cli_verifies_a_quantization(capsys):
    from parity.cli import main

    code = main(["golden", "verify", "--family", "zimage", "--quantization", "torchao-int8wo", "-q",
                 "--golden-dir", str(ROOT / "golden")])
    out = capsys.readouterr().out
    # the committed base and LoRA pass; the cases without a quantized baseline fail with the command
    assert "ok    zimage-torchao-int8wo-lora-1.0" in out and "ok    zimage-torchao-int8wo-base" in out, out
    assert "no golden image for case 'zimage-torchao-int8wo-fused-1.0'" in out and code == 1, out
