"""Wan 2.1 / 2.2: WanPipeline with WanTransformer3DModel, AutoencoderKLWan and a UMT5 encoder, tiny and by path.

The tiny model has Wan 2.2 A14B's shape: two experts, ``transformer`` (high noise, the steps at or above
``boundary_ratio`` · 1000) and ``transformer_2`` (low noise), so every check sees both. A Wan 2.1 folder
(one transformer, ``transformer_2`` None) loads through the same family: ``Family.components`` leaves
out what the pipeline lacks. Which expert a LoRA file goes into is the file's own (parity/zoo/experts.py).

The text encoder takes no LoRA in diffusers (``WanLoraLoaderMixin._lora_loadable_modules`` is the two
transformers), so it is built tiny for the pipeline call only.
"""

from __future__ import annotations

from typing import Any

import torch

from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.tokenizer import tiny_t5_tokenizer
from parity.zoo.weights import deterministic_tensor, fill_deterministic

NAME = "wan"
WAN_LOADER = "WanLoraLoaderMixin"
TEXT_DIM = 16  # UMT5 d_model = the transformer's text_dim
Z_DIM = 4
LATENT_GRID = 4  # denoiser_inputs: a 4x4 latent grid (2x2 patches of 1x2x2 → 4 tokens per frame)
LATENT_FRAMES = 2  # 5 video frames through the VAE's 4x temporal compression
SEQ_LEN = 8  # text tokens in the denoiser inputs
PROMPT_LEN = 16  # UMT5 padding length in the pipeline call
TIMESTEP = 500.0  # Wan's transformer takes the scheduler's timestep as is (0..1000)
# Wan 2.2 A14B's model_index.json: the high-noise expert runs the steps with t >= 0.875 · 1000
BOUNDARY_RATIO = 0.875
NUM_FRAMES = 5  # (frames - 1) must divide by the VAE's temporal factor 4


def tiny_umt5(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=2 * TEXT_DIM, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    ))


def tiny_transformer():
    from diffusers import WanTransformer3DModel

    # Two blocks, so block numbering (min/max block, per-block keys) is exercised; qk norms and the
    # cross-attention norm as Wan ships them.
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=Z_DIM,
        out_channels=Z_DIM,
        text_dim=TEXT_DIM,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def tiny_vae():
    from diffusers import AutoencoderKLWan

    # Identity latent normalisation: the tiny VAE's latents have no statistics worth matching.
    return AutoencoderKLWan(base_dim=4, z_dim=Z_DIM, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=[0.0] * Z_DIM,
                            latents_std=[1.0] * Z_DIM)


def build_tiny(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    tokenizer = tiny_t5_tokenizer()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=fill_deterministic(tiny_umt5(len(tokenizer)), seed, "wan/text_encoder"),
        vae=fill_deterministic(tiny_vae(), seed, "wan/vae"),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=fill_deterministic(tiny_transformer(), seed, "wan/transformer"),
        transformer_2=fill_deterministic(tiny_transformer(), seed, "wan/transformer_2"),
        boundary_ratio=BOUNDARY_RATIO,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None) -> dict[str, Any]:
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else LATENT_GRID
    seq = shape.seq if shape is not None else SEQ_LEN
    frames = shape.frames if shape is not None else LATENT_FRAMES
    return {
        "hidden_states": deterministic_tensor(seed, "input/latents",
                                              (1, config.in_channels, frames, grid, grid)).to(dtype),
        "encoder_hidden_states": deterministic_tensor(seed, "input/text", (1, seq, config.text_dim)).to(dtype),
        "timestep": torch.tensor([TIMESTEP], dtype=dtype),
    }


def pipeline_call_args(seed: int) -> dict[str, Any]:
    # Three steps on FlowMatchEuler(shift=3): t = 1000 on the high-noise expert, t = 751 and 8.9 on the
    # low-noise one. Two steps give t = 1000, 8.9: the low expert would only polish the last 0.9 % of the
    # trajectory, and a LoRA in it would hardly show (measured: 0.01 of the video, against 0.57 at three).
    return {
        "prompt": "a cat walking",
        "num_inference_steps": 3,
        "guidance_scale": 1.0,  # no negative prompt, no CFG: the experts' LoRAs are what is measured
        "height": 32,
        "width": 32,
        "num_frames": NUM_FRAMES,
        "max_sequence_length": PROMPT_LEN,
        "output_type": "np",
        "generator": generator(seed),
    }


# What Wan trainers target by default: the attention and feed-forward Linears of every block (musubi-tuner's
# WanAttentionBlock, ai-toolkit's and DiffSynth-Studio's q/k/v/o/ffn.0/ffn.2). The embedders and the head
# come in through the extraction layouts' full differences and the distill LoRAs (tests/support).
TRANSFORMER_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")

FAMILY = Family(
    name=NAME,
    pipeline_class="WanPipeline",
    lora_components=("transformer", "transformer_2"),
    default_targets={"transformer": TRANSFORMER_TARGETS},
    lora_loader=WAN_LOADER,
    # the layouts diffusers loads; comfyui-wan-diff and diffsynth-wan are findings (parity/checks/cases.py)
    layouts=("diffusers", "musubi-wan", "comfyui-wan", "aitoolkit-wan"),
    build_tiny=build_tiny,
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    # All three came with Wan 2.2 in diffusers 0.35.0 (read from the wheels: 0.34.0's pipeline_wan.py and
    # lora_pipeline.py name none of them, 0.35.0's and 0.35.2's name all three): the gate's old env has it.
    since=(0, 35),
    since_what="two-expert WanPipeline (transformer_2, boundary_ratio, load_into_transformer_2)",
    fits=(
        Fit(config("text_encoder", "d_model"), config("transformer", "text_dim")),
        Fit(config("vae", "z_dim"), config("transformer", "in_channels")),
        Fit(config("transformer", "in_channels"), config("transformer_2", "in_channels")),
        Fit(config("text_encoder", "d_model"), config("transformer_2", "text_dim")),
    ),
    experts={"high": "transformer", "low": "transformer_2"},
    images_of=lambda out: out.frames[0],  # the one video's frames, (frames, H, W, 3)
    notes=(
        "Two experts (Wan 2.2 A14B): transformer (high noise) and transformer_2 (low noise), boundary_ratio "
        f"{BOUNDARY_RATIO}. A file goes into the expert --expert names, else the one its name or metadata "
        "says, else transformer (diffusers' default)."
    ),
)
