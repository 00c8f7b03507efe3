"""Qwen-Image: QwenImageTransformer2DModel + AutoencoderKLQwenImage, tiny and by path; no text encoder.

The Qwen2.5-VL text encoder (7B, vision tower and chat template included) has no practical tiny form
and takes no LoRA in diffusers, so the pipeline is built without it and driven by prompt embeddings.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.weights import deterministic_tensor, fill_deterministic

TEXT_DIM = 16  # joint_attention_dim: the width of the (absent) text encoder's hidden states
Z_DIM = 4
SEQ_LEN = 8
N_PADDING = 2  # trailing padded text tokens, so the mask path of the attention runs
LATENT_GRID = 4  # denoiser_inputs use a 4x4 grid of packed latent tokens
QWEN_LOADER = "QwenImageLoraLoaderMixin"
TIMESTEP = 0.5  # flow-matching sigma; the time projection scales it by 1000 itself


def tiny_transformer():
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * Z_DIM,  # the pipeline packs 2x2 latent patches into channels
        out_channels=Z_DIM,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=TEXT_DIM,
        guidance_embeds=False,
        axes_dims_rope=(2, 2, 4),
    )


def tiny_vae():
    from diffusers import AutoencoderKLQwenImage

    # Identity latent normalisation: the tiny VAE's latents have no statistics worth matching.
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * Z_DIM,
        latents_std=[1.0] * Z_DIM,
    )


def build_tiny(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    pipe = QwenImagePipeline(
        transformer=fill_deterministic(tiny_transformer(), seed, "qwenimage/transformer"),
        vae=fill_deterministic(tiny_vae(), seed, "qwenimage/vae"),
        text_encoder=None,
        tokenizer=None,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_mask(seq: int = SEQ_LEN) -> torch.Tensor:
    """1 for real tokens, 0 for the trailing padding, as the Qwen tokenizer's attention mask."""
    mask = torch.ones(1, seq, dtype=torch.long)
    mask[:, seq - N_PADDING :] = 0
    return mask


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None) -> dict[str, Any]:
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else LATENT_GRID
    seq = shape.seq if shape is not None else SEQ_LEN
    inputs = {
        "hidden_states": deterministic_tensor(seed, "input/latents", (1, grid * grid, config.in_channels)).to(dtype),
        "encoder_hidden_states": deterministic_tensor(
            seed, "input/text", (1, seq, config.joint_attention_dim)
        ).to(dtype),
        "encoder_hidden_states_mask": text_mask(seq),
        "timestep": torch.tensor([TIMESTEP], dtype=dtype),
        # (frames, rows, cols) of the packed latent grid, per image of the batch
        "img_shapes": [[(1, grid, grid)]],
    }
    if "txt_seq_lens" in inspect.signature(pipe.transformer.forward).parameters:
        # diffusers <= 0.36's transformer sizes its text rotary embedding by max(txt_seq_lens), which must be the
        # text's length (its pipeline trims the padding to the longest prompt); later releases read the mask
        inputs["txt_seq_lens"] = [seq]
    return inputs


def pipeline_call_args(seed: int) -> dict[str, Any]:
    # The pipeline takes its latents' dtype from prompt_embeds: cast them to the pipeline's dtype.
    return {
        "prompt_embeds": deterministic_tensor(seed, "input/prompt_embeds", (1, SEQ_LEN, TEXT_DIM)),
        "prompt_embeds_mask": text_mask(),
        "true_cfg_scale": 1.0,  # no negative prompt, no CFG
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "output_type": "np",
        "generator": generator(seed),
    }


TRANSFORMER_TARGETS = (
    # image-stream attention and its text-stream (added) projections
    "to_q", "to_k", "to_v", "to_out.0",
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
    # both feed-forwards and both modulations
    "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
    "img_mod.1", "txt_mod.1",
    # input/output projections and the final modulation
    "img_in", "txt_in", "proj_out", "norm_out.linear",
)  # fmt: skip

FAMILY = Family(
    name="qwenimage",
    pipeline_class="QwenImagePipeline",
    lora_loader=QWEN_LOADER,
    default_targets={"transformer": TRANSFORMER_TARGETS},
    layouts=("diffusers", "diffusion_model", "kohya", "lightning", "diffsynth"),
    build_tiny=build_tiny,
    # The checks drive the pipeline with prompt embeddings, so the 7B text encoder is never loaded.
    pretrained_kwargs={"text_encoder": None, "tokenizer": None},
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    fits=(Fit(config("vae", "z_dim", times=4), config("transformer", "in_channels")),),  # 2x2 patches
    notes=(
        "Built and loaded without text_encoder/tokenizer (Qwen2.5-VL takes no LoRA here and has no tiny form): "
        "pipeline_call_args passes prompt_embeds + prompt_embeds_mask in float32, sized for the tiny model "
        f"(joint_attention_dim={TEXT_DIM}); cast prompt_embeds to the pipeline dtype for float16/bfloat16."
    ),
)
