"""Stable Diffusion 2.x (2.0/2.1, base 512 and 768-v): StableDiffusionPipeline with an OpenCLIP-H text tower
loaded as transformers' CLIPTextModel, tiny and by path.

What sets it apart from SD1.5, at toy size: the UNet's transformers project with Linear layers
(``use_linear_projection``, where SD1.5 has 1x1 convs), the number of heads grows per level
(``attention_head_dim`` (5, 10, 20, 20) in the published config, which diffusers reads as heads: 64-wide
heads everywhere), the text encoder uses ``gelu`` (CLIP-L: ``quick_gelu``), and the 768-v checkpoints
predict velocity. The tiny model takes the 768-v scheduler (v_prediction): the path SD1.5 never runs.
Its text width (TEXT_DIM) differs from every other tiny family's, as 1024 differs from 768 and 2048 at
full size, so a file made for one is told from a file made for another by its shapes
(parity/lora/familyguess.py). Folders load through the same pipeline class with their own scheduler
config, so a base (epsilon) folder and a 768-v one both run as published.
"""

from __future__ import annotations

from typing import Any

import torch

import parity.zoo.sd15 as sd15
from parity.zoo.family import Family
from parity.zoo.tokenizer import tiny_clip_tokenizer
from parity.zoo.weights import fill_deterministic

NAME = "sd2"
TEXT_DIM = 24  # tiny sd15: 16, tiny sdxl: 32 (16 + 16)
# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (DDIMScheduler): the 768-v model
SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")


def tiny_sd2_unet():
    # SD1.5's tiny UNet with SD2's differences: linear projections and heads growing per level
    # (diffusers' attention_head_dim is the head count here, as in the published config).
    # upcast_attention as in 2.1's 768-v config: its attention scores are computed in float32.
    return sd15.tiny_unet(cross_attention_dim=TEXT_DIM, attention_head_dim=(2, 4), use_linear_projection=True,
                          upcast_attention=True)


def tiny_text_encoder():
    from transformers import CLIPTextModel

    config = sd15.tiny_clip_text(hidden=TEXT_DIM).config
    config.hidden_act = "gelu"  # OpenCLIP-H's activation (CLIP-L's is quick_gelu)
    return sd15.float64_safe(CLIPTextModel(config))


def build_tiny(seed: int = 0):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=fill_deterministic(tiny_sd2_unet(), seed, "sd2/unet"),
        vae=fill_deterministic(sd15.tiny_vae(), seed, "sd2/vae"),
        text_encoder=fill_deterministic(tiny_text_encoder(), seed, "sd2/text_encoder"),
        tokenizer=tiny_clip_tokenizer(),
        scheduler=DDIMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


FAMILY = Family(
    name=NAME,
    pipeline_class="StableDiffusionPipeline",
    lora_components=("unet", "text_encoder"),
    denoiser="unet",
    default_targets={"unet": sd15.UNET_TARGETS, "text_encoder": sd15.TEXT_TARGETS},
    conv_targets={"unet": sd15.CONV_TARGETS},
    layouts=("diffusers", "kohya"),
    build_tiny=build_tiny,
    pretrained_kwargs=sd15.FAMILY.pretrained_kwargs,  # the same pipeline class; the folder's own scheduler
    denoiser_inputs=sd15.denoiser_inputs,  # read from the UNet's config: width and grid follow the model
    pipeline_call_args=sd15.pipeline_call_args,
    fits=sd15.FAMILY.fits,
)
