"""The arithmetic floor: our per-layer LoRA FLOP formula against torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parity.bench.flops import adapter_ranks, counted_flops, lora_extra_flops, lora_layer_flops
from parity.lora.synth import synth_lora
from tests.support.families import needs


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


@needs("qwenimage-edit")
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


@needs("zimage")
def test_zimage_forward_flops_at_1024_are_the_hand_count() -> None:
    """The FLOP floor's base of a Z-Image forward (bench --bench-size full) and what a rank-8 LoRA adds (a
    floor of 1.0028), counted by torch on the meta device against the hand count above; the 30-layer count is
    the 1-layer one plus 29 times what a second layer adds (exact: every main layer has the same shapes)."""
    (one, one_lora), (two, two_lora) = _zimage_counts(1), _zimage_counts(2)
    assert one + 29 * (two - one) == ZIMAGE_FORWARD_FLOPS
    assert one_lora + 29 * (two_lora - one_lora) == ZIMAGE_LORA_FLOPS
    # negative control: 1008x1008 (a 126x126 latent grid, 3969 image tokens) is another count
    assert _zimage_counts(1, grid_less=2)[0] != one


# One forward of FLUX.2 at 1024x1024 with 512 text tokens, by hand. N = (1024/16)² = 4096 image tokens (32-channel
# latents in 2x2 patches: 128 channels a token), L = 512, T = N + L = 4608; D = heads x 128, the SwiGLU hidden
# M = 3·D. A double-stream block: image q, k, v, o on N rows and text add_q/k/v, to_add_out on L rows 8·T·D²;
# both feed-forwards D -> 2·M -> (SwiGLU) M -> D, 2·2·M·D + 2·M·D = 18·D² a row, 18·T·D²; joint attention
# 4·T²·D. A single-stream block on T rows: to_qkv_mlp_proj D -> 3·D + 2·M = 9·D, 18·T·D²; to_out D + M -> D,
# 8·T·D²; attention 4·T²·D. So both kinds cost 26·T·D² + 4·T²·D. Outside the blocks: the timestep (and, for
# dev, guidance) embedder 256 -> D -> D on one row, 2·(256·D + D²) each; the three modulations D -> 6·D, 6·D,
# 3·D on one row, 30·D²; x_embedder 128 -> D on N rows; context_embedder 3·W -> D on L rows (W the encoder's
# width); norm_out D -> 2·D on one row, 4·D²; proj_out D -> 128 on the N image rows.
#   dev (D = 6144, W = 5120, 8 + 48 blocks): a block 4,522,600,562,688 + 521,838,526,464 = 5,044,439,089,152,
#   x 56 = 282,488,588,992,512; outside: 157,286,400 + 1,132,462,080 + 6,442,450,944 + 96,636,764,160 +
#   150,994,944 + 6,442,450,944 = 110,962,409,472; total 282,599,551,401,984 (283 TFLOP)
#   klein 4B (D = 3072, W = 2560, 5 + 20 blocks, no guidance): a block 1,130,650,140,672 + 260,919,263,232 =
#   1,391,569,403,904, x 25 = 34,789,235,097,600; outside 20,447,232 + 283,115,520 + 3,221,225,472 +
#   24,159,191,040 + 37,748,736 + 3,221,225,472 = 30,942,953,472; total 34,820,178,051,072 (34.8 TFLOP)
FLUX2_FORWARD_FLOPS = {"flux2": 282_599_551_401_984, "flux2-klein": 34_820_178_051_072}
# the rank-8 LoRA of the default targets, unfused, 2·r·(in + out) a row: a double block's q, k, v, o (or add_q/k/v,
# to_add_out) 8·D, its feed-forward pair (D + 2·M) + (M + D) = 11·D, 19·D a row on T rows; a single block's
# to_qkv_mlp_proj 10·D and to_out 5·D, 15·D a row on T rows: 16·T·D·(19·double + 15·single)
#   dev: 16·4608·6144·872 = 395,002,773,504; klein 4B: 16·4608·3072·395 = 89,464,504,320
FLUX2_LORA_FLOPS = {"flux2": 395_002_773_504, "flux2-klein": 89_464_504_320}


def _flux2_counts(family: str, double: int, single: int, grid_less: int = 0) -> tuple[int, int]:
    """(forward FLOPs, rank-8 default-target LoRA FLOPs) of ``family``'s FULL transformer with ``double`` and
    ``single`` blocks at FULL's shape, counted by torch on the meta device in one forward."""
    from parity.modules import lora_capable_modules
    from parity.zoo import get_family
    from parity.zoo.family import select_modules
    from parity.zoo.fullsize import FULL, flux2_dev_transformer, flux2_klein_4b_transformer

    build = {"flux2": flux2_dev_transformer, "flux2-klein": flux2_klein_4b_transformer}[family]
    shape = FULL[family].shape
    grid = shape.grid - grid_less
    with torch.device("meta"), torch.no_grad():
        model = build(double, single=single)
        config = model.config
        inputs = {"hidden_states": torch.empty(1, grid * grid, 128),
                  "encoder_hidden_states": torch.empty(1, shape.seq, config.joint_attention_dim),
                  "timestep": torch.tensor([0.5]),
                  "img_ids": torch.cartesian_prod(*map(torch.arange, (1, grid, grid, 1)))[None],
                  "txt_ids": torch.cartesian_prod(*map(torch.arange, (1, 1, 1, shape.seq)))[None],
                  **({"guidance": torch.tensor([4.0])} if config.guidance_embeds else {})}
        targets = select_modules(list(lora_capable_modules(model)), get_family(family).default_targets["transformer"])
        lora = [0]
        # one forward for both: the LoRA hooks count inside torch's FLOP counter
        base = counted_flops(lambda: lora.__setitem__(0, lora_extra_flops(model, {n: [8] for n in targets},
                                                                          lambda: model(**inputs))))
        return base, lora[0]


@pytest.mark.parametrize("family", [
    pytest.param("flux2", marks=needs("flux2")),
    # klein: the same blocks at other widths, 1 s more on 2 cores
    pytest.param("flux2-klein", marks=[pytest.mark.slow, needs("flux2-klein")]),
])
def test_flux2_forward_flops_at_1024_are_the_hand_count(family: str) -> None:
    """The FLOP floor's base of a FLUX.2 forward (bench --bench-size full) and what a rank-8 LoRA adds, counted by
    torch on the meta device against the hand count above: one block of each kind, then one more of each, so
    the published count is the first plus (double - 1) and (single - 1) times what each kind adds."""
    from parity.zoo.fullsize import FLUX2_DEV_DEPTH, FLUX2_KLEIN_4B_DEPTH

    double, single = {"flux2": FLUX2_DEV_DEPTH, "flux2-klein": FLUX2_KLEIN_4B_DEPTH}[family]
    one, more_double, more_single = (_flux2_counts(family, *d) for d in ((1, 1), (2, 1), (1, 2)))
    total = [one[i] + (double - 1) * (more_double[i] - one[i]) + (single - 1) * (more_single[i] - one[i])
             for i in (0, 1)]
    assert total == [FLUX2_FORWARD_FLOPS[family], FLUX2_LORA_FLOPS[family]]
    # negative control: 1008x1008 (a 63x63 grid of packed tokens) is another count
    assert _flux2_counts(family, 1, 1, grid_less=1)[0] != one[0]
