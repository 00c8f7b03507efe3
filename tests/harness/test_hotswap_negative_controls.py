"""The hotswap checks must fail when a swap recompiles, keeps old weights, or changes the scale."""

from __future__ import annotations

import pytest
import torch

from parity.checks import hotswap as hs
from parity.checks.dynamo import compile_in_place, reset, watch_compiles
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family

FAMILY = get_family("flux")  # the cheapest denoiser to compile: every control is the same code on any family
pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("hotswap-negative-controls")]


@pytest.fixture
def lora_files(tmp_path):
    components = FAMILY.components(build_pipeline(FAMILY))
    targets = {FAMILY.denoiser: FAMILY.default_targets[FAMILY.denoiser]}

    def write(seed: int, rank: int) -> str:
        return write_lora(components, targets, tmp_path / f"{seed}-r{rank}.safetensors", seed=seed, rank=rank,
                          alpha=2.0 * rank)

    yield write
    reset()


class Scale(torch.nn.Module):
    # Defined here, not taken from torch.nn: dynamo skips frames in torch's own files.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_the_guard_reports_a_forced_recompile_with_its_reason():
    reset()
    model = compile_in_place(Scale(), "eager")
    model(torch.ones(2, 4))

    with watch_compiles() as watch:
        model(torch.ones(3, 4, 5, 4))  # a new rank of input fails the shape guard

    assert watch.recompiled
    assert watch.reasons and "Recompiling" in watch.reasons[0]
    reset()


def test_hotswapping_another_rank_without_enable_lora_hotswap_is_caught(lora_files):
    reset()
    pipe = build_pipeline(FAMILY)
    pipe.load_lora_weights(lora_files(1, 4), adapter_name=hs.ADAPTER)
    compile_in_place(getattr(pipe, FAMILY.denoiser), "eager")
    hs.run(FAMILY, pipe, "model")

    with watch_compiles() as watch:
        pipe.load_lora_weights(lora_files(2, 8), adapter_name=hs.ADAPTER, hotswap=True)
        hs.run(FAMILY, pipe, "model")

    assert watch.recompiled, "a rank change without enable_lora_hotswap went unnoticed"
    assert "guard failure" in watch.reasons[0]


def test_a_hotswap_that_keeps_the_old_weights_fails_the_output_check(lora_files, monkeypatch):
    session = hs.start(FAMILY, lora_files(1, 4), target_rank=8, level="model")
    import peft.utils.hotswap

    monkeypatch.setattr(peft.utils.hotswap, "hotswap_adapter_from_state_dict", lambda **kwargs: None)
    new = lora_files(3, 4)

    result = hs.swap(session, new)

    assert result.error is None and not result.watch.recompiled  # silent: only the output can tell
    report = hs.check_swap_output(session, new, result.output)
    assert not report.ok
    assert report.vs_fresh > 100 * report.fresh_budget


def test_a_hotswap_that_writes_a_base_weight_fails_the_output_check(lora_files, monkeypatch):
    # The fresh loads share the session's base weights, so their digests must catch what the outputs cannot.
    session = hs.start(FAMILY, lora_files(1, 4), target_rank=8, level="model")
    import peft.utils.hotswap

    swap_factors = peft.utils.hotswap.hotswap_adapter_from_state_dict
    name, weight = next((n, p) for n, p in session.denoiser.named_parameters() if n.endswith("to_q.base_layer.weight"))

    def and_write_a_base_weight(**kwargs):
        swap_factors(**kwargs)
        with torch.no_grad():
            weight.view(-1)[0] += 1e-2

    monkeypatch.setattr(peft.utils.hotswap, "hotswap_adapter_from_state_dict", and_write_a_base_weight)
    new = lora_files(6, 4)

    result = hs.swap(session, new)

    assert result.error is None and not result.watch.recompiled
    report = hs.check_swap_output(session, new, result.output)
    assert not report.ok
    assert report.base_changed == [f"{FAMILY.denoiser}." + name.replace(".base_layer", "")]
    assert f"changed base tensor {FAMILY.denoiser}." in report.failures()[0]


# the pipeline level is `make slow` (5 s): the same output check on a whole tiny image
@pytest.mark.parametrize("level", [pytest.param(level, marks=[pytest.mark.slow] if level == "pipeline" else [])
                                   for level in hs.LEVELS])
def test_a_swapped_output_one_percent_off_in_scale_fails_the_output_check(lora_files, level):
    new = lora_files(4, 4)
    session = hs.start(FAMILY, lora_files(1, 4), target_rank=8, level=level)
    result = hs.swap(session, new)
    assert hs.check_swap_output(session, new, result.output).ok

    for module in session.denoiser.modules():
        if hasattr(module, "scaling") and hs.ADAPTER in module.scaling:
            module.scaling[hs.ADAPTER].mul_(1.01)  # the prepared scaling is a tensor
    off = hs.run(FAMILY, session.pipe, level)

    report = hs.check_swap_output(session, new, off)
    assert not report.ok
    assert report.vs_fresh > report.fresh_budget


def test_a_lora_forward_that_loses_its_alpha_fails_the_reference_check(lora_files, monkeypatch):
    new = lora_files(5, 4)  # alpha 8 on rank 4: scaling 2
    session = hs.start(FAMILY, lora_files(1, 4), target_rank=8, level="model")
    result = hs.swap(session, new)
    original = hs._load

    def load_without_header(pipe, family, level, path, hotswap, expert=None, reading=None):
        # diffusers' own model-level default: the header (and its alpha) is dropped
        getattr(pipe, family.denoiser).load_lora_adapter(path, prefix=family.denoiser, adapter_name=hs.ADAPTER)

    monkeypatch.setattr(hs, "_load", load_without_header)
    report = hs.check_swap_output(session, new, result.output)
    monkeypatch.setattr(hs, "_load", original)

    assert not report.ok
    assert report.vs_reference > 1e6 * report.reference_budget
