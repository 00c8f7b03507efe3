"""Stable Diffusion XL: text_time UNet2DConditionModel + two CLIP text encoders + AutoencoderKL, tiny and by path."""

from __future__ import annotations

from typing import Any

import torch

from parity.zoo.fit import Fit, config, total
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.sd15 import CONV_TARGETS, TEXT_TARGETS, UNET_TARGETS, tiny_clip_text, tiny_unet, tiny_vae, unet_grid
from parity.zoo.tokenizer import tiny_clip_tokenizer
from parity.zoo.weights import deterministic_tensor, fill_deterministic

TEXT_DIM = 16  # both encoders; the UNet cross-attends to their concatenation
TIME_EMBED_DIM = 8
N_TIME_IDS = 6  # original size, crop top-left, target size
SEQ_LEN = 8
# Size conditioning of a 32x32 image with no crop: structured values, not noise, as the pipeline builds them.
TIME_IDS = (32.0, 32.0, 0.0, 0.0, 32.0, 32.0)


def tiny_sdxl_unet():
    # SDXL's distinguishing features at toy size: linear projections in the transformers, a deeper
    # transformer stack in the lower block, and text_time added conditioning from the pooled embeds.
    return tiny_unet(
        cross_attention_dim=2 * TEXT_DIM,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=N_TIME_IDS * TIME_EMBED_DIM + TEXT_DIM,
    )


def build_tiny(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        unet=fill_deterministic(tiny_sdxl_unet(), seed, "sdxl/unet"),
        vae=fill_deterministic(tiny_vae(), seed, "sdxl/vae"),
        text_encoder=fill_deterministic(tiny_clip_text(), seed, "sdxl/text_encoder"),
        text_encoder_2=fill_deterministic(tiny_clip_text(projection=True), seed, "sdxl/text_encoder_2"),
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
        ),
        force_zeros_for_empty_prompt=True,
        # The watermark would make images depend on an optional package being installed.
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None) -> dict[str, Any]:
    config = pipe.unet.config
    size = unet_grid(config, shape)
    seq = shape.seq if shape is not None else SEQ_LEN
    # Derived from the config so a real SDXL checkpoint gets correctly shaped inputs too.
    pooled_dim = config.projection_class_embeddings_input_dim - N_TIME_IDS * config.addition_time_embed_dim
    return {
        "sample": deterministic_tensor(seed, "input/sample", (1, config.in_channels, size, size)).to(dtype),
        "timestep": torch.tensor([10]),
        "encoder_hidden_states": deterministic_tensor(
            seed, "input/text", (1, seq, config.cross_attention_dim)
        ).to(dtype),
        "added_cond_kwargs": {
            "text_embeds": deterministic_tensor(seed, "input/pooled", (1, pooled_dim)).to(dtype),
            "time_ids": torch.tensor([TIME_IDS], dtype=dtype),
        },
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


FAMILY = Family(
    name="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    lora_components=("unet", "text_encoder", "text_encoder_2"),
    denoiser="unet",
    default_targets={"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS, "text_encoder_2": TEXT_TARGETS},
    conv_targets={"unet": CONV_TARGETS},
    layouts=("diffusers", "kohya", "kohya-sgm"),
    build_tiny=build_tiny,
    pretrained_kwargs={"add_watermarker": False},
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    fits=(
        Fit(total(config("text_encoder", "hidden_size"), config("text_encoder_2", "hidden_size")),
            config("unet", "cross_attention_dim")),
        Fit(config("vae", "latent_channels"), config("unet", "in_channels")),
    ),
)
