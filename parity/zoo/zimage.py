"""Z-Image: ZImagePipeline with ZImageTransformer2DModel, FLUX.1's AutoencoderKL and a Qwen3 encoder,
tiny and by path.

The text encoder is a tiny Qwen3Model (Z-Image ships Qwen3-4B's base model) with a tiny offline chat
tokenizer (parity/zoo/tokenizer.py): the pipeline renders the prompt through the chat template and takes
the second-to-last hidden state, so the encoder needs at least two layers. It takes no LoRA in diffusers
(``ZImageLoraLoaderMixin._lora_loadable_modules`` is the transformer alone).

The transformer takes lists (one latent (C, F, H, W) and one caption (L, D) per sample) and returns a
list of per-sample tensors: ``denoiser_tensor`` stacks them for the checks.

Compiled, the transformer recompiles once at its second call with no LoRA at all: RopeEmbedder fills
its ``freqs_cis`` cache on the first call, guarded ``self.freqs_cis is None`` (transformer_z_image.py).
The hotswap check settles the model with a second call before it watches the swaps, and says so.
"""

from __future__ import annotations

from typing import Any

import torch

from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, generator
from parity.zoo.flux import LATENT_CHANNELS, tiny_flux_vae
from parity.zoo.tokenizer import tiny_qwen_tokenizer
from parity.zoo.weights import deterministic_tensor, fill_deterministic

NAME = "zimage"
# ZImagePipeline came in diffusers 0.36.0; the gate's old env (0.35) leaves the family out with this reason.
SINCE = (0, 36)
TEXT_DIM = 16  # Qwen3 hidden_size = the transformer's cap_feat_dim
LATENT_GRID = 4  # denoiser_inputs: a 4x4 latent grid (2x2 patches → 4 image tokens, padded to 32 by the model)
SEQ_LEN = 8  # caption tokens in the denoiser inputs
PROMPT_LEN = 32  # tokenizer padding length in the pipeline call: the chat-rendered prompt is ~30 characters
TIMESTEP = 0.5  # the transformer's t is (1000 - scheduler timestep) / 1000; it scales by t_scale=1000 itself


def tiny_qwen3(vocab_size: int):
    from transformers import Qwen3Config, Qwen3Model

    # Grouped-query attention (2 heads over 1 KV head) as Qwen3-4B has it (32 over 8).
    return Qwen3Model(Qwen3Config(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
    ))


def tiny_transformer():
    from diffusers import ZImageTransformer2DModel

    # Two main layers and one refiner layer of each kind (noise_refiner: modulated; context_refiner: not),
    # so block numbering and both refiners are exercised. axes_dims sum to the head dim (32 / 2 heads).
    return ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=LATENT_CHANNELS, dim=32, n_layers=2,
        n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=TEXT_DIM, axes_dims=[4, 6, 6],
        axes_lens=[128, 32, 32],
    )


def build_tiny(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

    tokenizer = tiny_qwen_tokenizer()
    pipe = ZImagePipeline(
        # Z-Image-Turbo's scheduler_config.json: a fixed shift of 3, no dynamic shifting
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False),
        vae=fill_deterministic(tiny_flux_vae(), seed, "zimage/vae"),
        text_encoder=fill_deterministic(tiny_qwen3(len(tokenizer)), seed, "zimage/text_encoder"),
        tokenizer=tokenizer,
        transformer=fill_deterministic(tiny_transformer(), seed, "zimage/transformer"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None) -> dict[str, Any]:
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else LATENT_GRID
    seq = shape.seq if shape is not None else SEQ_LEN
    # One sample, as the pipeline passes it: a list of (C, F=1, H, W) latents and a list of (L, D) captions.
    return {
        "x": [deterministic_tensor(seed, "input/latents", (config.in_channels, 1, grid, grid)).to(dtype)],
        "t": torch.tensor([TIMESTEP], dtype=dtype),
        "cap_feats": [deterministic_tensor(seed, "input/text", (seq, config.cap_feat_dim)).to(dtype)],
    }


def pipeline_call_args(seed: int) -> dict[str, Any]:
    return {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        # Z-Image-Turbo's setting: no CFG, one transformer pass per step; the LoRA is what is measured
        "guidance_scale": 0.0,
        "height": 32,
        "width": 32,
        "max_sequence_length": PROMPT_LEN,
        "output_type": "np",
        "generator": generator(seed),
    }


# What Z-Image trainers target: the attention and feed-forward Linears of every block (main layers and
# both refiners). diffusers splits the original model's fused attention.qkv into to_q/to_k/to_v.
TRANSFORMER_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")

FAMILY = Family(
    name=NAME,
    pipeline_class="ZImagePipeline",
    default_targets={"transformer": TRANSFORMER_TARGETS},
    lora_loader="ZImageLoraLoaderMixin",
    # the layouts diffusers loads; diffusers-alpha, comfyui-zimage(-diff) are findings (parity/checks/cases.py)
    layouts=("diffusers", "kohya", "diffusion_model", "diffsynth", "kohya-zimage"),
    build_tiny=build_tiny,
    denoiser_inputs=denoiser_inputs,
    pipeline_call_args=pipeline_call_args,
    since=SINCE,
    fits=(
        Fit(config("text_encoder", "hidden_size"), config("transformer", "cap_feat_dim")),
        Fit(config("vae", "latent_channels"), config("transformer", "in_channels")),
    ),
    denoiser_tensor=torch.stack,
    notes="The Qwen3 text encoder takes no LoRA in diffusers: the transformer alone.",
)
