"""The arithmetic floor: our per-layer LoRA FLOP formula against torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parity.bench.flops import adapter_ranks, counted_flops, lora_extra_flops, lora_layer_flops
from parity.lora.synth import synth_lora


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.proj = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).permute(0, 2, 3, 1))


def _peft_counted_extra(rank: int) -> tuple[int, int, Net]:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base, x = Net(), torch.randn(2, 3, 7, 5)
    base_flops = counted_flops(lambda: base(x))
    lora = inject_adapter_in_model(LoraConfig(r=rank, target_modules=["conv", "proj"]), Net())
    return counted_flops(lambda: lora(x)) - base_flops, base_flops, base


@pytest.mark.parametrize("rank", [1, 3, 8])
def test_lora_extra_flops_matches_torch_flop_counter_on_peft_layers(rank: int) -> None:
    counted, _, base = _peft_counted_extra(rank)
    x = torch.randn(2, 3, 7, 5)
    ours = lora_extra_flops(base, {"conv": [rank], "proj": [rank]}, lambda: base(x))
    assert ours == counted


def test_lora_extra_flops_detects_a_wrong_rank() -> None:
    # negative control: the formula at rank 4 must not pass for a rank-3 PEFT adapter
    counted, _, base = _peft_counted_extra(3)
    x = torch.randn(2, 3, 7, 5)
    assert lora_extra_flops(base, {"conv": [4], "proj": [4]}, lambda: base(x)) != counted


def test_each_adapter_adds_its_own_flops() -> None:
    layer = nn.Linear(10, 20)
    assert lora_layer_flops(layer, 4, rows=3) == 2 * 3 * 4 * (10 + 20)
    net = nn.Sequential(layer)
    x = torch.randn(3, 10)
    one = lora_extra_flops(net, {"0": [4]}, lambda: net(x))
    two = lora_extra_flops(net, {"0": [4, 4]}, lambda: net(x))
    assert two == 2 * one


def test_unknown_module_is_named() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="nope"):
        lora_extra_flops(net, {"nope": [1]}, lambda: net(torch.randn(1, 2)))


def test_adapter_ranks_pads_every_adapter_to_the_target_rank() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    a = synth_lora({"m": net}, {"m": ("0", "1")}, seed=0, rank=2)
    b = synth_lora({"m": net}, {"m": ("0",)}, seed=1, rank=3)
    modules = [*a.modules.values(), *b.modules.values()]
    assert adapter_ranks(modules) == {"0": [2, 3], "1": [2]}
    assert adapter_ranks(modules, rank=8) == {"0": [8, 8], "1": [8]}


# ---------------------------------------------------------------- the edit call: true CFG's two passes


def _edit_call_floors(true_cfg_scale: float) -> tuple[int, int, int]:
    """(transformer calls, LoRA extra FLOPs, base FLOPs) of the benchmarked edit call."""
    from parity.zoo import build_pipeline, get_family

    family = get_family("qwenimage-edit")
    pipe = build_pipeline(family)
    args = {**family.call_args(pipe, 0), "true_cfg_scale": true_cfg_scale}
    calls = [0]
    handle = pipe.transformer.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    # as the benchmark counts it (parity/bench/modes.py: flop_fields): the denoiser's targeted layers
    ranks = adapter_ranks(synth_lora(family.components(pipe), family.default_targets, seed=1, rank=4).modules.values())
    try:
        with torch.no_grad():
            extra = lora_extra_flops(pipe.transformer, ranks, lambda: family.call(pipe, args))
            base = counted_flops(lambda: family.call(pipe, args))
    finally:
        handle.remove()
    return calls[0] // 2, extra, base  # each floor ran the call once


def test_the_edit_call_floor_counts_two_transformer_passes_a_step() -> None:
    steps = 2  # the family's num_inference_steps
    calls, extra, base = _edit_call_floors(4.0)
    assert calls == 2 * steps
    # the control: without true CFG the same call makes one pass a step, and both floors shrink
    calls_1, extra_1, base_1 = _edit_call_floors(1.0)
    assert calls_1 == steps and extra_1 < extra and base_1 < base


# ---------------------------------------------------------------- a video transformer's Conv3d


class Video(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv3d(4, 6, (1, 2, 2), stride=(1, 2, 2))  # Wan's patch embedding, narrow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch(x)


@pytest.mark.parametrize("rank", [2, 5])
def test_a_conv3d_lora_adds_what_peft_computes(rank: int) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base, x = Video(), torch.randn(1, 4, 3, 8, 6)
    lora = inject_adapter_in_model(LoraConfig(r=rank, target_modules=["patch"]), Video())
    counted = counted_flops(lambda: lora(x)) - counted_flops(lambda: base(x))
    rows = 3 * 4 * 3  # frames x (8/2) x (6/2) output positions
    assert lora_layer_flops(base.patch, rank, rows) == counted
    assert lora_layer_flops(base.patch, rank + 1, rows) != counted  # negative control: a wrong rank
