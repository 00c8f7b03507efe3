"""Negative controls of the quantized check (parity/quant/check.py): each of its measurements fails on
the fault it exists to catch. On the tiny Z-Image transformer with torchao int8 weight-only, which passes
every check unbroken (tests/test_quantized_bases.py)."""

from __future__ import annotations

import pytest
import torch

from parity.checks.cases import targets_for
from parity.checks.fuse import load_files, targeted_parameters
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.quant import check as qcheck
from parity.quant import dequant
from parity.quant.apply import quantize_denoisers
from parity.quant.registry import get_quantizer
from parity.zoo import build_pipeline, get_family
from tests.support.families import needs
from tests.support.quantizers import needs_quantizers

pytestmark = [needs("zimage"), pytest.mark.xdist_group("quant-controls"), needs_quantizers()]
QUANTIZER = get_quantizer("torchao-int8wo")


def _loaded(tmp_path):
    """A tiny Z-Image pipeline with an int8 denoiser and a LoRA loaded, its base before loading, the file."""
    family = get_family("zimage")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    path = str(tmp_path / "lora.safetensors")
    write_lora({"transformer": components["transformer"]}, {"transformer": targets_for(family, "default")["transformer"]},
               path, "diffusers", seed=1, rank=4)
    lora = read_lora(path, components)
    quantize_denoisers(pipe, family, QUANTIZER, torch.float32, "cpu")
    components = family.components(pipe)
    base = qcheck.base_weights(components, targeted_parameters([lora]))
    load_files(pipe, family, [lora], [1.0], snapshot_base=False)
    return pipe, components, base, lora


def test_unbroken_pipeline_passes_every_control_measurement(tmp_path):
    pipe, components, base, lora = _loaded(tmp_path)
    forward, contribution, raised, _ = qcheck.unfused_layers(components, base, [lora], [1.0], QUANTIZER,
                                                             torch.float32, "cpu")
    pipe.fuse_lora(components=["transformer"])
    fused, failures, merged = qcheck.fused_weights(components, base, [lora], [1.0], 1.0, torch.float32, "cpu")
    assert forward.ok and contribution.ok and not raised and fused.ok and merged and not failures


def test_a_lora_the_quantized_layer_ignores_fails_the_contribution(tmp_path):
    pipe, components, base, lora = _loaded(tmp_path)
    layer = components["transformer"].get_submodule("layers.0.attention.to_q")
    layer.forward = layer.get_base_layer().forward  # the LoRA layer runs its quantized base only

    _, contribution, _, _ = qcheck.unfused_layers(components, base, [lora], [1.0], QUANTIZER, torch.float32, "cpu")

    assert not contribution.ok and contribution.where == "transformer.layers.0.attention.to_q.weight", contribution


def test_a_dequantization_done_twice_fails_the_base_forward(tmp_path, monkeypatch):
    pipe, components, _, lora = _loaded(tmp_path)
    scaled = dequant._scaled

    def twice(data, scale, kind):  # the scale applied once more: what a double dequantization computes
        once = scaled(data, scale, kind)
        return dequant.Dequantized(once.weight * dequant._broadcast(scale, data.shape), once.step, once.kind)

    monkeypatch.setattr(dequant, "_scaled", twice)
    base = qcheck.base_weights(components, targeted_parameters([lora]))

    forward, _, _, _ = qcheck.unfused_layers(components, base, [lora], [1.0], QUANTIZER, torch.float32, "cpu")

    assert not forward.ok and forward.ratio > 100, forward


def test_a_requantized_weight_one_step_beyond_its_bound_fails_the_fuse(tmp_path):
    pipe, components, base, lora = _loaded(tmp_path)
    pipe.fuse_lora(components=["transformer"])
    weight = components["transformer"].get_submodule("layers.0.attention.to_k").get_base_layer().weight
    error = dequant.dequantize(weight).weight - qcheck.reference_merge(
        base.weights, [(lora, 1.0)], 1.0)[("transformer", "layers.0.attention.to_k")].merged
    # one int8 step further from the reference at the element farthest from it (of those an int8 step
    # cannot wrap around)
    inner = weight.qdata.int().abs() < 100  # int8 -128 has no int8 absolute value
    row, col = divmod(int((error.abs() * inner).argmax()), error.shape[1])
    weight.qdata[row, col] += 1 if error[row, col] >= 0 else -1

    fused, failures, _ = qcheck.fused_weights(components, base, [lora], [1.0], 1.0, torch.float32, "cpu")

    assert not fused.ok and fused.where == "transformer.layers.0.attention.to_k.weight", fused
    assert 1.0 <= fused.steps < 2.0, fused  # half a step was allowed; it is off by one more


def test_a_fuse_that_merges_nothing_is_named(tmp_path):
    pipe, components, base, lora = _loaded(tmp_path)
    # no fuse_lora: every targeted weight is its base, as quanto's fuse leaves it
    fused, failures, merged = qcheck.fused_weights(components, base, [lora], [1.0], 1.0, torch.float32, "cpu")
    assert not merged and failures and "merged nothing" in failures[0]


@pytest.mark.parametrize("name", ["torchao-int8wo", "torchao-float8wo", "quanto-int8", "quanto-float8"])
def test_our_dequantization_is_the_quantizers_own(name):
    """Our dequantization from the stored fields against the library's own dequantize(): the reference is
    independent of PEFT, not of the stored format."""
    family = get_family("zimage")
    pipe = build_pipeline(family)
    quantize_denoisers(pipe, family, get_quantizer(name), torch.float32, "cpu")
    weight = pipe.transformer.get_submodule("layers.0.attention.to_q").weight
    ours = dequant.dequantize(weight).weight
    theirs = weight.dequantize().double()
    # theirs is formed in float32: one rounding of q·scale
    assert (ours - theirs).abs().max() <= torch.finfo(torch.float32).eps * ours.abs().max()


def test_gguf_dequantization_recovers_each_weight_within_its_block_step(tmp_path):
    """gguf-py's Q8_0 bytes read back by our dequantization: within half a block step of what was written
    (d is stored in float16, whose rounding of d moves an element by at most 127·u_fp16·d more)."""
    from parity.quant.gguf_file import block_steps, dequantize_bytes, write_gguf
    import gguf

    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    path = write_gguf({"x.weight": w}, str(tmp_path / "w.gguf"), "Q8_0")
    [tensor] = gguf.GGUFReader(path).tensors
    raw = torch.from_numpy(tensor.data.copy())
    back, step = dequantize_bytes(raw, "Q8_0"), block_steps(raw, "Q8_0")
    assert back.shape == w.shape and ((back - w.double()).abs() <= step * (0.5 + 127 * 2.0**-11)).all()
