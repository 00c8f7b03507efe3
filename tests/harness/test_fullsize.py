"""Full-size denoiser configs are the published ones: parameter counts as the model cards state them."""

from __future__ import annotations

import pytest
import torch

from parity.zoo.fullsize import FULL, SMALL
from tests.support.families import needs

# Counts from the released checkpoints (exact for the UNets; the model cards round the transformers).
PUBLISHED = {
    "sd15": (859_520_964, 0),
    "sd2": (865_910_724, 0),  # 2.0 / 2.1, base and 768-v alike
    "sdxl": (2_567_463_684, 0),
    "flux": (11.9e9, 0.05e9),
    "qwenimage": (20.4e9, 0.05e9),
    "qwenimage-edit": (20.4e9, 0.05e9),  # Qwen-Image's transformer
    # Wan2.2-T2V-A14B-Diffusers transformer (and transformer_2): its safetensors index's total_size is
    # 57,153,966,336 bytes of float32, 4 bytes a parameter; Wan2.1-T2V-14B's transformer is the same config
    "wan": (14_288_491_584, 0),
    # Tongyi-MAI/Z-Image transformer's safetensors index: total_size 12,309,817,472 bytes of bfloat16, 2 bytes a
    # parameter (Comfy-Org's z_image_turbo_bf16.safetensors holds the same tensor bytes)
    "zimage": (6_154_908_736, 0),
    # FLUX.2, counted by hand from the architecture (the model cards say 32B, 4B, 9B); D = heads x 128, W the
    # text encoder's width: a double-stream block 26·D² (image and text q, k, v, o 8·D²; two SwiGLU
    # feed-forwards D -> 6·D, 3·D -> D, 18·D²) and four 128-wide q/k norms; a single-stream block 13·D²
    # (to_qkv_mlp_proj D -> 9·D, to_out 4·D -> D) and two norms; outside: x_embedder 128·D, context_embedder
    # 3·W·D, timestep (and dev's guidance) embedder 256·D + D² each, modulations 15·D², norm_out 2·D², proj_out
    # 128·D; no biases. dev (D 6144, W 5120): 8 x 981,467,648 + 48 x 490,733,824 + 816,316,416
    "flux2": (32_223_281_152, 0),
    # klein 4B (D 3072, W 2560, no guidance): 5 x 245,367,296 + 20 x 122,683,648 + 195,035,136
    "flux2-klein": (3_875_544_576, 0),
}


@pytest.mark.parametrize("family", [pytest.param(f, marks=needs(f)) for f in sorted(FULL)])
def test_full_size_denoiser_has_the_published_parameter_count(family: str) -> None:
    with torch.device("meta"):
        model = FULL[family].build(None)
    count, slack = PUBLISHED[family]
    assert abs(sum(p.numel() for p in model.parameters()) - count) <= slack


def test_fewer_blocks_shrink_a_transformer_but_keep_its_block_shapes() -> None:
    with torch.device("meta"):
        full, small = FULL["flux"].build(None), FULL["flux"].build(2)
    assert len(small.transformer_blocks) == 2 and len(small.single_transformer_blocks) == 4
    shapes = lambda m: {n: p.shape for n, p in m.transformer_blocks[0].named_parameters()}  # noqa: E731
    assert shapes(small) == shapes(full)


@pytest.mark.slow
def test_full_size_sd15_subject_runs_one_forward_at_its_native_shape(tmp_path) -> None:
    from parity.bench.modes import build_subject
    from parity.zoo import get_family

    subject = build_subject(get_family("sd15"), "full", torch.float32, "cpu", str(tmp_path))
    out = subject.forward()
    assert out.shape == (1, 4, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("family", [pytest.param(f, marks=needs(f)) for f in sorted(SMALL)])
def test_small_size_keeps_the_published_layer_widths_in_few_layers(family: str) -> None:
    """--bench-size small: every Linear of the small denoiser has a published one's shape, with far
    fewer of them (the point of the size: full-width arithmetic, seconds per round on one core)."""
    with torch.device("meta"):
        full, small = FULL[family].build(None), SMALL[family].build(None)
    shapes = lambda m: {tuple(x.weight.shape) for x in m.modules() if isinstance(x, torch.nn.Linear)}  # noqa: E731
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert shapes(small) <= shapes(full)
    assert count(small) < 0.7 * count(full)


def test_wan_2_1_1_3b_has_its_published_parameter_count() -> None:
    from parity.zoo.fullsize import wan_1_3b_transformer

    # Wan2.1-T2V-1.3B-Diffusers transformer: total_size 5,675,987,200 bytes of float32
    with torch.device("meta"):
        model = wan_1_3b_transformer()
    assert sum(p.numel() for p in model.parameters()) == 1_418_996_800 and len(model.blocks) == 30


# One forward of Wan 14B (either Wan 2.2 A14B expert) at 1280x720, 81 frames, 512 UMT5 tokens, by hand.
# N = 21 latent frames x (90/2) x (160/2) = 75600 video tokens, L = 512, D = 5120 (40 heads of 128),
# F = 13824, 40 blocks; a Linear (in -> out) on r rows is 2·r·in·out, attention over q and kv rows
# 4·q·kv·D (QKᵀ and AV, all heads):
#   block: self-attention q, k, v, o on N rows        12·N·D²  = 23,781,703,680,000
#          cross-attention q, o on N; k, v on L rows   4·N·D²  +   4·L·D²   (4·N·D² counted above)
#                                                    = 4·L·D²  =     53,687,091,200
#          feed-forward D -> F -> D on N rows          4·N·D·F = 21,403,533,312,000
#          self-attention scores                       4·N²·D  = 117,050,572,800,000
#          cross-attention scores                      4·N·L·D =    792,723,456,000
#        = 163,082,220,339,200, x 40 blocks        = 6,523,288,813,568,000
#   outside the blocks: patch embedding Conv3d 16·1·2·2 -> D at N positions, 2·N·64·D = 49,545,216,000;
#   proj_out D -> 64 on N rows, 49,545,216,000; text embedder 4096 -> D -> D on L rows, 48,318,382,080;
#   time embedder 256 -> D -> D and time_proj D -> 6·D on 1 row, 55,050,240 + 314,572,800
#        = 147,778,437,120
# total 6,523,436,592,005,120 (6.52 PFLOP).
WAN_14B_FORWARD_FLOPS = 6_523_436_592_005_120
# the rank-8 LoRA of the default targets (to_q, to_k, to_v, to_out.0 of attn1 and attn2, ffn.net.0.proj,
# ffn.net.2), unfused, 2·r·(in + out) a row: attn1's four and attn2's q, o on N rows, 6·N·2D;
# attn2's k, v on L rows, 2·L·2D; the feed-forward pair on N rows, 2·N·(D + F)
#   = 2·8·(4,644,864,000 + 10,485,760 + 2,864,332,800) = 120,314,920,960 a block, x 40
WAN_14B_LORA_FLOPS = 4_812_596_838_400


def _wan_counts(blocks: int, frames_less: int = 0) -> tuple[int, int]:
    """(forward FLOPs, rank-8 default-target LoRA FLOPs) of Wan 14B with ``blocks`` blocks at FULL's shape,
    counted by torch on the meta device."""
    from parity.bench.flops import counted_flops, lora_extra_flops
    from parity.modules import lora_capable_modules
    from parity.zoo import get_family
    from parity.zoo.family import select_modules

    spec = FULL["wan"]
    with torch.device("meta"), torch.no_grad():
        model = spec.build(blocks)
        inputs = {"hidden_states": torch.empty(1, 16, spec.shape.frames - frames_less, spec.shape.grid, spec.shape.grid),
                  "encoder_hidden_states": torch.empty(1, spec.shape.seq, 4096), "timestep": torch.tensor([500.0])}
        targets = select_modules(list(lora_capable_modules(model)), get_family("wan").default_targets["transformer"])
        return (counted_flops(lambda: model(**inputs)),
                lora_extra_flops(model, {n: [8] for n in targets}, lambda: model(**inputs)))


def test_wan_14b_forward_flops_at_720p_are_the_hand_count() -> None:
    """The FLOP floor's base of a Wan 14B forward (bench --bench-size full) and what a rank-8 LoRA adds
    (a floor of 1.00074), counted by torch on the meta device against the hand count above. Every block has
    the same shapes, so the 40-block count is the 1-block one plus 39 times what a second block adds
    (exact: counted on 1 and 2 blocks, 0.3 s instead of 5 s for the whole)."""
    (one, one_lora), (two, two_lora) = _wan_counts(1), _wan_counts(2)
    assert one + 39 * (two - one) == WAN_14B_FORWARD_FLOPS
    assert one_lora + 39 * (two_lora - one_lora) == WAN_14B_LORA_FLOPS
    # negative control: one latent frame fewer (77 frames) is another count
    assert _wan_counts(1, frames_less=1)[0] != one


@needs("flux2-klein")
def test_flux2_klein_9b_has_its_hand_counted_parameter_count() -> None:
    from parity.zoo.fullsize import flux2_klein_9b_transformer

    # D 4096, W 4096 (Qwen3-8B), no guidance (the count above): 8 x 436,208,128 + 24 x 218,104,064 + 354,418,688
    with torch.device("meta"):
        model = flux2_klein_9b_transformer()
    assert sum(p.numel() for p in model.parameters()) == 9_078_581_248
    assert (len(model.transformer_blocks), len(model.single_transformer_blocks)) == (8, 24)
