"""FLUX.1: FluxTransformer2DModel + CLIPTextModel + T5EncoderModel + AutoencoderKL, tiny and by path."""

from __future__ import annotations

from typing import Any

import torch

from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.sd15 import TEXT_DIM, TEXT_TARGETS, tiny_clip_text
from parity.zoo.tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
from parity.zoo.weights import deterministic_tensor, fill_deterministic

T5_DIM = 16
LATENT_CHANNELS = 4
SEQ_LEN = 8  # T5 tokens in the denoiser inputs
# T5 padding length in the pipeline call: the prompt is tokenised per character, so it needs room.
PROMPT_LEN = 32
LATENT_GRID = 4  # denoiser_inputs use a 4x4 grid of packed latent tokens
TIMESTEP = 0.5  # flow-matching sigma; the transformer scales it by 1000 itself
GUIDANCE = 3.5


def tiny_t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=T5_DIM,
        d_kv=8,
        d_ff=2 * T5_DIM,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",  # T5 v1.1, as FLUX.1 ships it
        dropout_rate=0.0,
    )
    return T5EncoderModel(config)


def tiny_flux_vae():
    from diffusers import AutoencoderKL

    # FLUX's VAE has no quant convs and shifts latents; FluxPipeline reads shift_factor unconditionally.
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def tiny_transformer():
    from diffusers import FluxTransformer2DModel

    # guidance_embeds as in FLUX.1-dev, the base most LoRAs are trained on.
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,  # the pipeline packs 2x2 latent patches into channels
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        pooled_projection_dim=TEXT_DIM,
        guidance_embeds=True,
        axes_dims_rope=(2, 2, 4),
    )


def build_tiny(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    tokenizer_2 = tiny_t5_tokenizer()
    pipe = FluxPipeline(
        transformer=fill_deterministic(tiny_transformer(), seed, "flux/transformer"),
        vae=fill_deterministic(tiny_flux_vae(), seed, "flux/vae"),
        text_encoder=fill_deterministic(tiny_clip_text(), seed, "flux/text_encoder"),
        text_encoder_2=fill_deterministic(tiny_t5(len(tokenizer_2)), seed, "flux/text_encoder_2"),
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_ids(height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """RoPE position ids of a height x width token grid: (0, row, col) per token, as FluxPipeline builds them."""
    ids = torch.zeros(height, width, 3)
    ids[..., 1] = torch.arange(height)[:, None]
    ids[..., 2] = torch.arange(width)[None, :]
    return ids.reshape(height * width, 3).to(dtype)


def denoiser_inputs(
    pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None
) -> dict[str, torch.Tensor]:
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else LATENT_GRID
    seq = shape.seq if shape is not None else SEQ_LEN
    inputs = {
        "hidden_states": deterministic_tensor(seed, "input/latents", (1, grid * grid, config.in_channels)).to(dtype),
        "encoder_hidden_states": deterministic_tensor(
            seed, "input/text", (1, seq, config.joint_attention_dim)
        ).to(dtype),
        "pooled_projections": deterministic_tensor(seed, "input/pooled", (1, config.pooled_projection_dim)).to(dtype),
        "timestep": torch.tensor([TIMESTEP], dtype=dtype),
        "img_ids": image_ids(grid, grid, dtype),
        "txt_ids": torch.zeros(seq, 3, dtype=dtype),
    }
    if config.guidance_embeds:
        inputs["guidance"] = torch.tensor([GUIDANCE], dtype=dtype)
    return inputs


def pipeline_call_args(seed: int) -> dict[str, Any]:
    return {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "guidance_scale": GUIDANCE,
        "height": 32,
        "width": 32,
        "max_sequence_length": PROMPT_LEN,
        "output_type": "np",
        "generator": generator(seed),
    }


TRANSFORMER_TARGETS = (
    # joint (double-stream) blocks: image and text attention, both feed-forwards, both modulations
    "to_q", "to_k", "to_v", "to_out.0",
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
    "norm1.linear", "norm1_context.linear",
    # single-stream blocks (to_q/k/v above match there too); proj_out also matches the final projection
    "proj_mlp", "proj_out", "norm.linear",
    # input projections and the final modulation
    "x_embedder", "context_embedder", "norm_out.linear",
)  # fmt: skip

FAMILY = Family(
    name="flux",
    pipeline_class="FluxPipeline",
    lora_components=("transformer", "text_encoder"),
    default_targets={"transformer": TRANSFORMER_TARGETS, "text_encoder": TEXT_TARGETS},
    layouts=("diffusers", "xlabs"),
    build_tiny=build_tiny,
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    fits=(
        Fit(config("text_encoder_2", "d_model"), config("transformer", "joint_attention_dim")),
        Fit(config("text_encoder", "hidden_size"), config("transformer", "pooled_projection_dim")),
        Fit(config("vae", "latent_channels", times=4), config("transformer", "in_channels")),  # 2x2 patches
    ),
    notes=(
        "No diffusion_model layout: FluxLoraLoaderMixin.lora_state_dict converts `diffusion_model.` keys only in "
        "kohya files (lora_down/lora_up, BFL names such as double_blocks.0.img_attn.qkv); a file of "
        "`diffusion_model.<diffusers name>.lora_A/B` keys matches no `transformer.` key and loads nothing."
    ),
)
