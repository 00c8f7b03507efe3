"""Stable Diffusion 1.5: UNet2DConditionModel + CLIPTextModel + AutoencoderKL, tiny and by path."""

from __future__ import annotations

from typing import Any

import torch

from parity.versions import major_version
from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.tokenizer import tiny_clip_tokenizer, tiny_vocab
from parity.zoo.weights import deterministic_tensor, fill_deterministic

TEXT_DIM = 16
SEQ_LEN = 8


def tiny_unet(cross_attention_dim: int = TEXT_DIM, **overrides: Any):
    from diffusers import UNet2DConditionModel

    config = dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=4,
        attention_head_dim=4,
    )
    config.update(overrides)
    return UNet2DConditionModel(**config)


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


def tiny_clip_text(hidden: int = TEXT_DIM, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = tiny_vocab()
    config = CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=len(vocab) + 8,
        projection_dim=hidden,
        max_position_embeddings=77,
    )
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return float64_safe(model)


def float64_safe(model: torch.nn.Module) -> torch.nn.Module:
    """transformers 4's CLIP builds its causal mask with ``torch.full(..., finfo(float64).min)`` in
    the default dtype, which torch now refuses ("cannot be converted to type float without
    overflow"): during a float64 forward the default dtype follows the model's. transformers 5 needs
    nothing; float64 runs are the suite's ground truth, so both versions must run them."""
    if major_version("transformers") >= 5:
        return model
    saved: list[torch.dtype] = []

    def before(module: torch.nn.Module, args: Any) -> None:
        saved.append(torch.get_default_dtype())
        if next(module.parameters()).dtype == torch.float64:
            torch.set_default_dtype(torch.float64)

    def after(module: torch.nn.Module, args: Any, output: Any) -> None:
        torch.set_default_dtype(saved.pop())

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)
    return model


def build_tiny(seed: int = 0):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    unet = fill_deterministic(tiny_unet(), seed, "sd15/unet")
    vae = fill_deterministic(tiny_vae(), seed, "sd15/vae")
    text_encoder = fill_deterministic(tiny_clip_text(), seed, "sd15/text_encoder")
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


CHECK_GRID = 8  # the latent side of a check's forwards: SD1.5's UNet halves it three times, SDXL's twice


def unet_grid(config: Any, shape: InputShape | None) -> int:
    """The latent side: the given shape's, else the config's sample size capped at CHECK_GRID. A check's
    forward (the unfused pipeline against the loaded one, a hotswap against a fresh load) runs every
    layer at any size; at full size its cost is the size (SD1.5's UNet: 0.47 s at 8x8, 0.98 s at 16x16).

    ``sample_size`` is optional in diffusers (UNet2DConditionModel's default is None, so a config.json
    that leaves it out loads as None; a tuple is (height, width)): without one, CHECK_GRID, which any
    UNet takes (its side only has to survive the down blocks' halvings)."""
    if shape is not None:
        return shape.grid
    size = getattr(config, "sample_size", None)
    if isinstance(size, (tuple, list)):
        size = min(size) if size else None
    return CHECK_GRID if size is None else min(int(size), CHECK_GRID)


def denoiser_inputs(
    pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None
) -> dict[str, torch.Tensor]:
    unet = pipe.unet
    size = unet_grid(unet.config, shape)
    seq = shape.seq if shape is not None else SEQ_LEN
    return {
        "sample": deterministic_tensor(seed, "input/sample", (1, unet.config.in_channels, size, size)).to(dtype),
        "timestep": torch.tensor([10]),
        "encoder_hidden_states": deterministic_tensor(
            seed, "input/text", (1, seq, unet.config.cross_attention_dim)
        ).to(dtype),
    }


def pipeline_call_args(seed: int) -> dict[str, Any]:
    return {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "guidance_scale": 5.0,
        "height": 32,
        "width": 32,
        "output_type": "np",
        "generator": generator(seed),
    }


UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
CONV_TARGETS = ("conv1", "conv2", "conv_shortcut")

FAMILY = Family(
    name="sd15",
    pipeline_class="StableDiffusionPipeline",
    lora_components=("unet", "text_encoder"),
    denoiser="unet",
    default_targets={"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS},
    conv_targets={"unet": CONV_TARGETS},
    layouts=("diffusers", "kohya"),
    build_tiny=build_tiny,
    pretrained_kwargs={"safety_checker": None},
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    fits=(
        Fit(config("text_encoder", "hidden_size"), config("unet", "cross_attention_dim")),
        Fit(config("vae", "latent_channels"), config("unet", "in_channels")),
    ),
)
