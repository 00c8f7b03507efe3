"""The unfused-state comparison of ``lora-parity check`` (parity/checks/unfused_state.py) must be able
to fail: at scale 1, where diffusers' fuse/unfuse leaves the pipeline as loaded, a scaling changed by
hand after the unfuse, or one changed base weight, is reported; the untouched pipeline passes."""

from __future__ import annotations

import pytest
import torch

from parity.checks.fuse import fuse_unfuse_cycles, load_files
from parity.checks.unfused_state import adapter_state, compare_unfused, denoiser_output
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family

FAMILY = get_family("sd15")
LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"


@pytest.fixture
def cycled(tmp_path):
    """A tiny sd15 pipeline with one LoRA loaded, its state and forward, then one fuse/unfuse at scale 1;
    returns (pipe, components, loaded state, loaded output, the loaded pipeline's float64 output)."""
    pipes = {dtype: build_pipeline(FAMILY, dtype=dtype) for dtype in (torch.float32, torch.float64)}
    path = write_lora(FAMILY.components(pipes[torch.float32]), {"unet": ("to_q", "to_v")}, tmp_path / "a.safetensors",
                      seed=1, rank=4, alpha=2.0)

    def loaded(dtype: torch.dtype):
        lora = read_lora(path, FAMILY.components(pipes[dtype]), strict=False)
        return load_files(pipes[dtype], FAMILY, [lora], [1.0]), lora

    out64 = denoiser_output(FAMILY, loaded(torch.float64)[0].pipe)
    subject, lora = loaded(torch.float32)
    state, out = adapter_state(subject.components), denoiser_output(FAMILY, subject.pipe)
    result = fuse_unfuse_cycles(subject.pipe, subject.components, subject.before, [lora], [1.0], 1, 1.0)
    assert result.ok
    return subject.pipe, subject.components, state, out, out64


def compare(cycled):
    pipe, components, state, out, out64 = cycled
    return compare_unfused(state, adapter_state(components), out, denoiser_output(FAMILY, pipe), False, lambda: out64)


def test_the_untouched_unfused_pipeline_passes(cycled):
    result = compare(cycled)
    assert result.ok, result.failures(1.0, 1)


def test_a_scaling_left_changed_after_unfuse_is_reported(cycled):
    _, components, *_ = cycled
    layer = components["unet"].get_submodule(LAYER)
    layer.scaling["a0"] *= 1.01

    result = compare(cycled)

    assert not result.ok
    [change] = result.scaling_changed
    assert change.layer == f"unet.{LAYER}" and change.adapter == "a0" and change.now == pytest.approx(0.505)
    assert not result.left_by_fuse_scale(1.0, 1)  # not the fuse's scale: no finding is named for it
    assert result.failures(1.0, 1)[0].startswith(f"unfuse: PEFT scaling of unet.{LAYER} (adapter a0) is 0.505, "
                                                 "was 0.5 after loading")
    assert result.vs_loaded > result.budget  # the forward sees it too


def test_one_changed_base_weight_fails_the_forward(cycled):
    _, components, *_ = cycled
    with torch.no_grad():
        components["unet"].get_submodule(LAYER).get_base_layer().weight[0, 0] += 0.01

    result = compare(cycled)

    assert not result.ok and not result.scaling_changed
    [failure] = result.failures(1.0, 1)
    assert failure.startswith("unfuse: the denoiser output differs from the loaded, never fused pipeline by")
