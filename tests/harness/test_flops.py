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


# One forward of Z-Image (Turbo or base: one architecture) at 1024x1024 with 512 caption tokens, by hand.
# N = (1024/8/2)² = 4096 image tokens, L = 512 caption tokens, U = N + L = 4608 in the main layers (both
# multiples of 32: no padding); D = 3840 (30 heads of 128), F = int(D/3·8) = 10240 (SwiGLU w1, w3: D -> F,
# w2: F -> D); a Linear (in -> out) on r rows is 2·r·in·out, attention over T rows 4·T²·D:
#   a block on T rows: to_q, to_k, to_v, to_out 8·T·D², feed-forward 6·T·D·F, attention 4·T²·D, and where
#   modulated, adaLN_modulation 256 -> 4·D on one row, 2·256·4·D = 7,864,320
#   noise_refiner (2, modulated) on N:   2 x (483,183,820,800 + 966,367,641,600 + 257,698,037,760 + 7,864,320)
#                                      = 3,414,514,728,960
#   context_refiner (2, unmodulated) on L: 2 x 185,220,464,640 = 370,440,929,280
#   layers (30, modulated) on U:        30 x (543,581,798,400 + 1,087,163,596,800 + 326,149,079,040 + 7,864,320)
#                                      = 58,707,070,156,800
#   outside: x_embedder 64 -> D on N rows 2,013,265,920; cap_embedder 2560 -> D on L rows 10,066,329,600;
#   t_embedder 256 -> 1024 -> 256 on one row 1,048,576; the final layer's adaLN 256 -> D on one row
#   1,966,080 and its linear D -> 64 on U rows 2,264,924,160 = 14,347,534,336
# total 62,506,373,349,376 (62.5 TFLOP).
ZIMAGE_FORWARD_FLOPS = 62_506_373_349_376
# the rank-8 LoRA of the default targets (to_q, to_k, to_v, to_out.0, feed_forward.w1/w2/w3) in all 34 blocks,
# unfused, 2·r·(in + out) a row: 2·8·(4·2D + 3·(D + F)) = 1,167,360 a row, on 2·N + 2·L + 30·U = 147,456 rows
ZIMAGE_LORA_FLOPS = 172_134_236_160


def _zimage_counts(layers: int, grid_less: int = 0) -> tuple[int, int]:
    """(forward FLOPs, rank-8 default-target LoRA FLOPs) of Z-Image with ``layers`` main layers at FULL's
    shape, counted by torch on the meta device."""
    from parity.modules import lora_capable_modules
    from parity.zoo import get_family
    from parity.zoo.family import select_modules
    from parity.zoo.fullsize import FULL

    spec = FULL["zimage"]
    grid = spec.shape.grid - grid_less
    with torch.device("meta"), torch.no_grad():
        model = spec.build(layers)
        inputs = {"x": [torch.empty(16, 1, grid, grid)], "t": torch.tensor([0.5]),
                  "cap_feats": [torch.empty(spec.shape.seq, 2560)]}
        targets = select_modules(list(lora_capable_modules(model)), get_family("zimage").default_targets["transformer"])
        return (counted_flops(lambda: model(**inputs)),
                lora_extra_flops(model, {n: [8] for n in targets}, lambda: model(**inputs)))


def test_zimage_forward_flops_at_1024_are_the_hand_count() -> None:
    """The FLOP floor's base of a Z-Image forward (bench --bench-size full) and what a rank-8 LoRA adds (a
    floor of 1.0028), counted by torch on the meta device against the hand count above; the 30-layer count is
    the 1-layer one plus 29 times what a second layer adds (exact: every main layer has the same shapes)."""
    (one, one_lora), (two, two_lora) = _zimage_counts(1), _zimage_counts(2)
    assert one + 29 * (two - one) == ZIMAGE_FORWARD_FLOPS
    assert one_lora + 29 * (two_lora - one_lora) == ZIMAGE_LORA_FLOPS
    # negative control: 1008x1008 (a 126x126 latent grid, 3969 image tokens) is another count
    assert _zimage_counts(1, grid_less=2)[0] != one
