"""Full-size denoisers from their published configs, with deterministic weights: real shapes, no download.

Benchmarks time these on a GPU so latencies reflect the layer sizes users run. Only the denoiser is
full size (the text encoders and VAE are not in a denoiser forward); the transformers may be built
with fewer blocks than published, since every block has the same shapes and latency is linear in
the block count, while 12–20 B parameters would not fit beside a snapshot on one GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from parity.zoo.family import InputShape
from parity.zoo.weights import fill_deterministic


@dataclass(frozen=True)
class FullSize:
    build: Callable[[int | None], nn.Module]  # blocks (None: as published) → module, default init
    shape: InputShape  # one denoiser call at the family's native resolution
    published_blocks: int | None  # transformer blocks as released; None for UNets
    bench_blocks: int | None  # blocks benchmarks build by default
    note: str


def sd15_unet(blocks: int | None = None, layers_per_block: int = 2) -> nn.Module:
    from diffusers import UNet2DConditionModel

    # runwayml/stable-diffusion-v1-5 unet/config.json
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=layers_per_block,
        cross_attention_dim=768,
        attention_head_dim=8,
    )


def sd2_unet(blocks: int | None = None, layers_per_block: int = 2) -> nn.Module:
    from diffusers import UNet2DConditionModel

    # stabilityai/stable-diffusion-2-1 unet/config.json (768-v; 2-1-base differs only in sample_size 64
    # and upcast_attention false, neither of which changes a shape)
    return UNet2DConditionModel(
        sample_size=96,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=layers_per_block,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
        upcast_attention=True,
    )


def sdxl_unet(blocks: int | None = None, layers_per_block: int = 2,
              transformer_layers: tuple[int, ...] = (1, 2, 10)) -> nn.Module:
    from diffusers import UNet2DConditionModel

    # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=layers_per_block,
        transformer_layers_per_block=transformer_layers,
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


FLUX_DOUBLE, FLUX_SINGLE = 19, 38


def flux_transformer(blocks: int | None = None, single: int | None = None) -> nn.Module:
    """FLUX.1-dev; ``blocks`` double-stream blocks and twice as many single-stream ones (19 + 38
    published), or ``single`` of those."""
    from diffusers import FluxTransformer2DModel

    double = FLUX_DOUBLE if blocks is None else blocks
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=double,
        num_single_layers=single if single is not None else FLUX_SINGLE if blocks is None else 2 * blocks,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )


QWEN_LAYERS = 60


def qwenimage_transformer(blocks: int | None = None) -> nn.Module:
    from diffusers import QwenImageTransformer2DModel

    # Qwen/Qwen-Image-Edit transformer/config.json
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=QWEN_LAYERS if blocks is None else blocks,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=3584,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )


WAN_LAYERS = 40  # Wan 2.1 T2V 14B, and each expert of Wan 2.2 T2V A14B
WAN_1_3B_LAYERS = 30  # Wan 2.1 T2V 1.3B


def _wan_transformer(blocks: int | None, heads: int, ffn: int, layers: int) -> nn.Module:
    from diffusers import WanTransformer3DModel

    # diffusers' scripts/convert_wan_to_diffusers.py get_transformer_config: every T2V model shares the
    # patch, head width, text and frequency widths and norms; rope_max_seq_len is left at its default
    # (1024), as the converted config.json files leave it
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=ffn,
        num_layers=layers if blocks is None else blocks,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )


def wan_14b_transformer(blocks: int | None = None) -> nn.Module:
    """Wan-AI/Wan2.1-T2V-14B-Diffusers transformer/config.json; Wan2.2-T2V-A14B-Diffusers' transformer
    and transformer_2 (the high- and low-noise experts) have the same config."""
    return _wan_transformer(blocks, heads=40, ffn=13824, layers=WAN_LAYERS)


def wan_1_3b_transformer(blocks: int | None = None) -> nn.Module:
    """Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json."""
    return _wan_transformer(blocks, heads=12, ffn=8960, layers=WAN_1_3B_LAYERS)


ZIMAGE_LAYERS = 30  # Z-Image-Turbo and Z-Image: the main (joint) layers; 2 noise and 2 context refiners beside them
ZIMAGE_REFINERS = 2


def zimage_transformer(blocks: int | None = None, refiners: int = ZIMAGE_REFINERS) -> nn.Module:
    """Tongyi-MAI/Z-Image-Turbo transformer/config.json (Tongyi-MAI/Z-Image's is the same but for a
    ``siglip_feat_dim`` of null, the default). ``blocks`` main layers; the refiners stay as published
    unless ``refiners`` says otherwise (the small size keeps one of each)."""
    from diffusers import ZImageTransformer2DModel

    # axes_lens are the published [1536, 512, 512], not diffusers' default [1024, 512, 512]: no weight
    # depends on them (RoPE tables are computed, not stored), but the saved config is the published one
    return ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=3840,
        n_layers=ZIMAGE_LAYERS if blocks is None else blocks,
        n_refiner_layers=refiners,
        n_heads=30,
        n_kv_heads=30,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=2560,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[32, 48, 48],
        axes_lens=[1536, 512, 512],
    )


# FLUX.2: (double-stream blocks, single-stream blocks) as published; --blocks N builds N double-stream blocks
# and the published ratio of single-stream ones (dev 6N, klein-4B 4N, klein-9B 3N), so memory stays linear in N
FLUX2_DEV_DEPTH = (8, 48)
FLUX2_KLEIN_4B_DEPTH = (5, 20)
FLUX2_KLEIN_9B_DEPTH = (8, 24)


def _flux2_transformer(blocks: int | None, single: int | None, depth: tuple[int, int], heads: int, text: int,
                       guidance: bool) -> nn.Module:
    from diffusers import Flux2Transformer2DModel

    # Every FLUX.2 transformer shares the 128-wide heads, the 128 in_channels (32 latent channels in 2x2
    # patches), SwiGLU mlp_ratio 3, the (32, 32, 32, 32) RoPE axes at theta 2000 and 256 timestep channels;
    # joint_attention_dim is 3x the encoder's width (three hidden-state layers stacked)
    double = depth[0] if blocks is None else blocks
    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=double,
        num_single_layers=single if single is not None else depth[1] * double // depth[0],
        attention_head_dim=128,
        num_attention_heads=heads,
        joint_attention_dim=3 * text,
        timestep_guidance_channels=256,
        mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32),
        rope_theta=2000,
        eps=1e-6,
        guidance_embeds=guidance,
    )


def flux2_dev_transformer(blocks: int | None = None, single: int | None = None) -> nn.Module:
    """black-forest-labs/FLUX.2-dev transformer/config.json (diffusers' Flux2Transformer2DModel defaults):
    8 + 48 blocks, 48 heads (6144 wide), 15360 = 3 x Mistral-Small-3.1's 5120, guidance embedded."""
    return _flux2_transformer(blocks, single, FLUX2_DEV_DEPTH, heads=48, text=5120, guidance=True)


def flux2_klein_4b_transformer(blocks: int | None = None, single: int | None = None) -> nn.Module:
    """black-forest-labs/FLUX.2-klein-4B transformer/config.json: 5 + 20 blocks, 24 heads (3072 wide),
    7680 = 3 x Qwen3-4B's 2560, no guidance embedding (klein-base-4B has the same config)."""
    return _flux2_transformer(blocks, single, FLUX2_KLEIN_4B_DEPTH, heads=24, text=2560, guidance=False)


def flux2_klein_9b_transformer(blocks: int | None = None, single: int | None = None) -> nn.Module:
    """black-forest-labs/FLUX.2-klein-9B transformer/config.json: 8 + 24 blocks, 32 heads (4096 wide),
    12288 = 3 x Qwen3-8B's 4096, no guidance embedding (klein-base-9B has the same config)."""
    return _flux2_transformer(blocks, single, FLUX2_KLEIN_9B_DEPTH, heads=32, text=4096, guidance=False)


FULL: dict[str, FullSize] = {
    "sd15": FullSize(sd15_unet, InputShape(grid=64, seq=77), None, None, "512x512, 77 CLIP tokens, batch 1"),
    "sd2": FullSize(sd2_unet, InputShape(grid=96, seq=77), None, None, "768x768 (768-v), 77 OpenCLIP tokens, batch 1"),
    "sdxl": FullSize(sdxl_unet, InputShape(grid=128, seq=77), None, None, "1024x1024, 77 tokens, batch 1"),
    # 1024x1024 → 128x128 latents → 64x64 packed tokens; 512 T5 tokens
    "flux": FullSize(flux_transformer, InputShape(grid=64, seq=512), FLUX_DOUBLE, 4, "1024x1024, 512 T5 tokens"),
    "qwenimage": FullSize(qwenimage_transformer, InputShape(grid=64, seq=256), QWEN_LAYERS, 8, "1024x1024, 256 text tokens"),
    # Qwen-Image-Edit-2509's transformer is Qwen-Image's; each call also carries the input image's
    # 64x64 latent tokens beside the noise (parity/zoo/qwenimage_edit.py: denoiser_inputs)
    "qwenimage-edit": FullSize(qwenimage_transformer, InputShape(grid=64, seq=256), QWEN_LAYERS, 8,
                               "1024x1024, one 1024x1024 input image, 256 text tokens"),
    # 1280x720, 81 frames → 21 latent frames of 90x160 (the VAE's 4x temporal, 8x spatial compression) →
    # 21 x 45 x 80 = 75600 video tokens after the 1x2x2 patch; the square grid 120 gives the same tokens
    # (120² = 90·160), and no FLOP of a forward depends on the aspect; 512 UMT5 tokens (the pipeline's
    # max_sequence_length). One expert per call: the other is the same shapes at other steps.
    "wan": FullSize(wan_14b_transformer, InputShape(grid=120, seq=512, frames=21), WAN_LAYERS, 4,
                    "1280x720, 81 frames (75600 video tokens), 512 UMT5 tokens; one 14B expert per call"),
    # 1024x1024 → a 128x128 latent grid (zimage.denoiser_inputs takes the latent grid) → 64x64 = 4096 image
    # tokens after the 2x2 patch; 512 caption tokens (the pipeline's max_sequence_length: Qwen3's chat-rendered
    # prompt, up to 512). Both are multiples of 32, so the model pads neither. 8 of 30 layers: the group's four
    # subjects of the whole 6 B model in float32 would need 98 GB
    "zimage": FullSize(zimage_transformer, InputShape(grid=128, seq=512), ZIMAGE_LAYERS, 8,
                       "1024x1024 (4096 image tokens), 512 Qwen3 caption tokens"),
    # 1024x1024 → 128x128 latents of 32 channels → 64x64 packed 2x2 patches (flux2.denoiser_inputs takes that
    # packed grid) = 4096 image tokens of 128 channels; 512 text tokens (the pipelines' max_sequence_length).
    # N blocks here are N double- and N single-stream ones: the benchmarks' 2 are 3.8 B of dev (a group's four
    # subjects of 32 B would need 515 GB in float32) and 0.93 B of klein 4B
    "flux2": FullSize(lambda blocks: flux2_dev_transformer(blocks, single=blocks), InputShape(grid=64, seq=512),
                      FLUX2_DEV_DEPTH[0], 2, "FLUX.2 [dev]; 1024x1024 (4096 image tokens), 512 Mistral tokens; "
                      "as many single-stream blocks as double"),
    "flux2-klein": FullSize(lambda blocks: flux2_klein_4b_transformer(blocks, single=blocks),
                            InputShape(grid=64, seq=512), FLUX2_KLEIN_4B_DEPTH[0], 2,
                            "FLUX.2 [klein] 4B; 1024x1024 (4096 image tokens), 512 Qwen3 tokens; as many "
                            "single-stream blocks as double"),
}


# The compute-bound CPU size (`--bench-size small`, issue 17): the published layer widths, so every
# targeted matmul reads and multiplies a full-size weight, but one block or one layer per level and a
# small call, so one forward takes 0.2-0.8 s on one core. The tiny zoo's forward is mostly Python
# (thousands of module calls around 32-wide matmuls), so its ratios measure dispatch: a fused model,
# which runs base's arithmetic, read 1.03-1.11x base there because PEFT's wrappers stay in place
# after fusing. Here the same dispatch is well under 1% of a call.
SMALL: dict[str, FullSize] = {
    "sd15": FullSize(lambda blocks: sd15_unet(layers_per_block=1), InputShape(grid=16, seq=77), None, None,
                     "SD1.5 widths, one layer per level; 128x128, 77 tokens"),
    "sd2": FullSize(lambda blocks: sd2_unet(layers_per_block=1), InputShape(grid=16, seq=77), None, None,
                    "SD 2.x widths, one layer per level; 128x128, 77 tokens"),
    "sdxl": FullSize(lambda blocks: sdxl_unet(layers_per_block=1, transformer_layers=(1, 1, 1)),
                     InputShape(grid=16, seq=77), None, None,
                     "SDXL widths, one layer and one transformer block per level; 128x128, 77 tokens"),
    "flux": FullSize(lambda blocks: flux_transformer(blocks or 1, single=blocks or 1), InputShape(grid=4, seq=32),
                     FLUX_DOUBLE, 1, "FLUX.1 widths; 64x64 (16 image tokens), 32 T5 tokens"),
    "qwenimage": FullSize(lambda blocks: qwenimage_transformer(blocks or 1), InputShape(grid=4, seq=32),
                          QWEN_LAYERS, 1,
                          "Qwen-Image widths; 64x64 (16 image tokens), 32 text tokens"),
    "qwenimage-edit": FullSize(lambda blocks: qwenimage_transformer(blocks or 1), InputShape(grid=4, seq=32),
                               QWEN_LAYERS, 1, "Qwen-Image widths; 64x64, one 64x64 input image, 32 text tokens"),
    "wan": FullSize(lambda blocks: wan_14b_transformer(blocks or 1), InputShape(grid=4, seq=32, frames=4),
                    WAN_LAYERS, 1, "Wan 14B widths; 4 latent frames of 32x32 (16 video tokens), 32 UMT5 tokens"),
    # 64x64 → an 8x8 latent grid → 16 image tokens (padded to 32 by the model)
    "zimage": FullSize(lambda blocks: zimage_transformer(blocks or 1, refiners=1), InputShape(grid=8, seq=32),
                       ZIMAGE_LAYERS, 1, "Z-Image widths, one layer and one refiner of each kind; 64x64 "
                       "(16 image tokens), 32 caption tokens"),
    "flux2": FullSize(lambda blocks: flux2_dev_transformer(blocks or 1, single=blocks or 1),
                      InputShape(grid=4, seq=32), FLUX2_DEV_DEPTH[0], 1,
                      "FLUX.2 [dev] widths, one block of each kind; 64x64 (16 image tokens), 32 text tokens"),
    "flux2-klein": FullSize(lambda blocks: flux2_klein_4b_transformer(blocks or 1, single=blocks or 1),
                            InputShape(grid=4, seq=32), FLUX2_KLEIN_4B_DEPTH[0], 1,
                            "FLUX.2 [klein] 4B widths, one block of each kind; 64x64 (16 image tokens), "
                            "32 text tokens"),
}
SIZES = {"full": FULL, "small": SMALL}


def full_denoiser(family: str, device: str | torch.device, seed: int = 0, blocks: int | None = None,
                  size: str = "full") -> nn.Module:
    """The family's denoiser at ``size`` ("full" or "small") on ``device`` with deterministic weights (float32)."""
    spec = SIZES[size][family]
    # Built on the target device: default init of billions of parameters is slow on a CPU.
    with torch.device(device):
        model = spec.build(blocks if blocks is not None else spec.bench_blocks)
    return fill_deterministic(model, seed, f"{family}/{size}/denoiser")
