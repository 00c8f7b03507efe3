"""Qwen-Image-Edit-2509: ``QwenImageEditPlusPipeline`` whole, tiny and by path: the Qwen2.5-VL prompt
encoder with its tokenizer and processor (parity/zoo/qwen_vl.py), the Qwen-Image VAE and transformer.

Its pipeline is called as its users call it: input images, a prompt, ``negative_prompt=" "`` and
``true_cfg_scale=4.0`` (two transformer passes a step, the second on the negative prompt, combined with
the norm rescale), ``guidance_scale=1.0``. The transformer's input is the noise latents with each input
image's latents packed beside them (``img_shapes`` lists the noise grid, then one grid per image).

Image areas on the tiny model. The pipeline resizes every input image to about 1024x1024 for the VAE
and 384x384 for the prompt encoder, whatever the output size: module constants, not arguments. On
the tiny model one such call took 15 s on 2 cores (the VAE's encoder at 1024x768, 7 s). So on the
tiny model, and only there, ``call_context`` sets both constants to 64x64 for the duration of a call:
the same code runs, on smaller images. A model is tiny when its VAE has the tiny VAE's width
(base_dim 8; the published VAE's is 96), which also covers a saved tiny folder given as a path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

import parity.zoo.qwenimage as qwenimage
from parity.zoo.family import Family, InputShape, from_pretrained, generator, pipeline_namespace
from parity.zoo.fit import Fit, config
from parity.zoo.qwen_vl import HIDDEN, folder_processor, tiny_processor, tiny_qwen2_tokenizer, tiny_text_encoder
from parity.zoo.weights import deterministic_tensor, fill_deterministic

NAME = "qwenimage-edit"
PIPELINE = "QwenImageEditPlusPipeline"
PIPELINE_SINCE = (0, 36)
TINY_IMAGE_AREA = 64 * 64  # the VAE's and the prompt encoder's image area on the tiny model
TINY_VAE_BASE_DIM = 8
IMAGE_SIZES = ((48, 64), (64, 48), (56, 56))  # (height, width) of input images 1, 2, 3: three aspect ratios
IMAGES = 1  # input images of the default call; the edit checks also run 2 and 3
PROMPT = "make the sky red"
NEGATIVE_PROMPT = " "
TRUE_CFG_SCALE = 4.0
assert HIDDEN == qwenimage.TEXT_DIM, "the tiny text encoder's width is the tiny transformer's joint_attention_dim"


def input_image(seed: int, index: int) -> Any:
    """Input image ``index`` (0-based) of a call: deterministic RGB pixels, a PIL image as users pass."""
    from PIL import Image

    height, width = IMAGE_SIZES[index % len(IMAGE_SIZES)]
    values = deterministic_tensor(seed, f"input/image{index}", (height, width, 3))
    pixels = (torch.sigmoid(values) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")


def build_tiny(seed: int = 0) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline

    tokenizer = tiny_qwen2_tokenizer()
    pipe = QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=fill_deterministic(qwenimage.tiny_vae(), seed, f"{NAME}/vae"),
        text_encoder=fill_deterministic(tiny_text_encoder(tokenizer), seed, f"{NAME}/text_encoder"),
        tokenizer=tokenizer,
        processor=tiny_processor(tokenizer),
        transformer=fill_deterministic(qwenimage.tiny_transformer(), seed, f"{NAME}/transformer"),
    )
    # A saved folder names the processor as a published one does; loading gives ours (load_pretrained).
    pipe.register_to_config(processor=("transformers", "Qwen2VLProcessor"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pretrained(path: str, dtype: torch.dtype) -> Any:
    from diffusers import QwenImageEditPlusPipeline

    # The whole pipeline, the VL encoder included, from local files; the processor without torchvision.
    return from_pretrained(QwenImageEditPlusPipeline, path, dtype, processor=folder_processor(path))


def is_tiny(pipe: Any) -> bool:
    vae = getattr(pipe, "vae", None)
    return vae is not None and getattr(vae.config, "base_dim", None) == TINY_VAE_BASE_DIM


@contextlib.contextmanager
def call_context(pipe: Any) -> Iterator[None]:
    """On the tiny model, the pipeline's image areas at TINY_IMAGE_AREA for the call (module docstring)."""
    if not is_tiny(pipe):
        yield
        return
    namespace = pipeline_namespace(pipe)
    saved = {name: namespace[name] for name in ("CONDITION_IMAGE_SIZE", "VAE_IMAGE_SIZE")}
    namespace.update(dict.fromkeys(saved, TINY_IMAGE_AREA))
    try:
        yield
    finally:
        namespace.update(saved)


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None,
                    images: int = IMAGES) -> dict[str, Any]:
    """One transformer call as the edit pipeline makes it: the noise tokens, then ``images`` input
    images' latent tokens beside them, each grid listed in ``img_shapes``."""
    inputs = qwenimage.denoiser_inputs(pipe, seed, dtype, shape)
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else qwenimage.LATENT_GRID
    beside = [deterministic_tensor(seed, f"input/image_latents{i}", (1, grid * grid, config.in_channels)).to(dtype)
              for i in range(images)]
    inputs["hidden_states"] = torch.cat([inputs["hidden_states"], *beside], dim=1)
    inputs["img_shapes"] = [[(1, grid, grid)] * (1 + images)]
    return inputs


def call_args(seed: int, images: int = IMAGES) -> dict[str, Any]:
    return {
        "image": [input_image(seed, i) for i in range(images)],
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE_PROMPT,
        "true_cfg_scale": TRUE_CFG_SCALE,
        "guidance_scale": 1.0,
        "num_images_per_prompt": 1,
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "output_type": "np",
        "generator": generator(seed),
    }


FAMILY = Family(
    name=NAME,
    pipeline_class=PIPELINE,
    lora_loader=qwenimage.QWEN_LOADER,
    default_targets={"transformer": qwenimage.TRANSFORMER_TARGETS},
    layouts=qwenimage.FAMILY.layouts,
    build_tiny=build_tiny,
    load_pretrained=load_pretrained,
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=call_args,
    since=PIPELINE_SINCE,  # diffusers 0.35 (the gate's old env) has no QwenImageEditPlusPipeline
    # the tiny processor's PIL image processor (no torchvision): in transformers 5.7, not in 5.3 (the matrix's envs)
    requires=(("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl", "Qwen2VLImageProcessorPil"),),
    call_context=call_context,
    fits=(
        *qwenimage.FAMILY.fits,
        Fit(config("text_encoder", "text_config.hidden_size", "hidden_size"),
            config("transformer", "joint_attention_dim")),
    ),
    notes=(
        "The whole edit pipeline: tiny Qwen2.5-VL prompt encoder (byte-level tokenizer, Qwen2-VL processor "
        "with the PIL image processor, no torchvision), called with input images, negative_prompt=' ' and "
        f"true_cfg_scale={TRUE_CFG_SCALE}. On the tiny model the pipeline's image areas are {TINY_IMAGE_AREA} "
        "pixels for the duration of a call (Family.call_context)."
    ),
)
