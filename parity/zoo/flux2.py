"""FLUX.2: Flux2Pipeline ([dev]) and Flux2KleinPipeline ([klein]), each with Flux2Transformer2DModel and
AutoencoderKLFlux2, tiny and by path.

The two share the transformer class, the VAE, the latent packing and the LoRA loader
(``Flux2LoraLoaderMixin``, the transformer alone); they differ in the text encoder and the guidance:

- ``flux2`` (FLUX.2 [dev]): a Mistral3ForConditionalGeneration encoder (Mistral-Small-3.1, tiny text and
  pixtral vision configs) and guidance embedded in the transformer (``guidance_embeds``; the pipeline
  passes ``guidance_scale`` as the transformer's guidance, one pass per step). The published tokenizer is a
  PixtralProcessor, which transformers 5 builds only with torchvision, which does not load against this
  project's CPU torch (parity/zoo/qwen_vl.py): the tiny pipeline's tokenizer is a tiny Mistral-style fast
  tokenizer with a chat template (parity/zoo/tokenizer.py), which answers the pipeline's text-only
  ``apply_chat_template`` call as the processor would; a user's folder gets its ``tokenizer/`` read as a
  fast tokenizer the same way (``folder_tokenizer``). The pipeline always sends FLUX.2's system message
  (about 190 characters, one token each here) before the prompt: DEV_PROMPT_LEN leaves the prompt room,
  so the text encoder sees the system turn, the user turn and padding.
- ``flux2-klein`` (FLUX.2 [klein] 4B): a Qwen3ForCausalLM encoder with the Qwen chat tokenizer (the
  template's empty think block, as enable_thinking=False renders it), ``guidance_embeds=False`` and
  ``is_distilled=True`` as the published klein-4B has them (transformer/config.json, model_index.json):
  the pipeline passes no guidance and, distilled, runs no CFG pass.

Both pipelines stack the text encoder's hidden states at ``text_encoder_out_layers`` (published: three
intermediate layers of 40 or 36) along the channel axis, so ``joint_attention_dim`` = 3 × the encoder's
width. The tiny encoders have TEXT_LAYERS layers and the calls pass OUT_LAYERS, three of them.

The tiny transformer has two double-stream blocks (``transformer_blocks``) and two single-stream blocks
(``single_transformer_blocks``) so block numbering is exercised, 2 heads of 16; the single blocks' fused
``attn.to_qkv_mlp_proj`` is 32 → 3·32 + 2·96 wide, the double blocks' SwiGLU ``ff.linear_in`` 32 → 2·96.
FLUX.2's VAE has a BatchNorm over the 2×2-patchified latents whose running statistics the pipeline reads to
un-normalise them; its running variance is drawn positive here (``tiny_vae``).
"""

from __future__ import annotations

import inspect
import json
import os
from functools import partial
from typing import Any

import torch

from parity.errors import ParityInputError
from parity.zoo.fit import Fit, config
from parity.zoo.family import Family, InputShape, from_pretrained, generator
from parity.zoo.tokenizer import tiny_mistral_tokenizer, tiny_qwen_tokenizer
from parity.zoo.weights import deterministic_tensor, fill_deterministic

DEV, KLEIN = "flux2", "flux2-klein"
# Flux2Pipeline came in diffusers 0.36.0, Flux2KleinPipeline in 0.37.0; the gate's old env (0.35) has neither.
SINCE = {DEV: (0, 36), KLEIN: (0, 37)}
PIPELINES = {DEV: "Flux2Pipeline", KLEIN: "Flux2KleinPipeline"}

TEXT_DIM = 16  # the tiny encoders' hidden size
TEXT_LAYERS = 3
OUT_LAYERS = (1, 2, 3)  # hidden_states[0] is the embedding output: the three decoder layers' outputs
STACKED = 3  # hidden-state layers the pipelines stack (published: (10, 20, 30) for dev, (9, 18, 27) for klein)
LATENT_CHANNELS = 4  # published: 32
LATENT_GRID = 4  # denoiser_inputs: a 4x4 grid of packed (2x2-patchified) latent tokens
SEQ_LEN = 8  # text tokens in the denoiser inputs
# Pipeline padding lengths: dev renders FLUX.2's system message (189 tokens with "a photo of a cat", one per
# character) before the prompt; klein renders the prompt in Qwen's chat turn (about 60 tokens).
DEV_PROMPT_LEN = 208
KLEIN_PROMPT_LEN = 64
TIMESTEP = 0.5  # the pipelines pass timestep / 1000; the transformer scales it by 1000 itself
GUIDANCE = 4.0  # Flux2Pipeline's default guidance_scale, the dev transformer's embedded guidance


def tiny_vae(seed: int, namespace: str):
    from diffusers import AutoencoderKLFlux2

    # Quant convs and a mid-block attention as the published VAE has them, at tiny widths.
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=LATENT_CHANNELS,
        norm_num_groups=4, sample_size=32,
    )
    fill_deterministic(vae, seed, namespace)
    # fill_deterministic draws 1-D buffers around 0; the pipeline takes sqrt(running_var + eps), so the
    # variance is drawn positive (near 1), from its own name.
    with torch.no_grad():
        var = vae.bn.running_var
        var.copy_(deterministic_tensor(seed, f"{namespace}/bn.running_var/positive", tuple(var.shape), 0.1).exp())
    return vae


def tiny_transformer(guidance_embeds: bool):
    from diffusers import Flux2Transformer2DModel

    # diffusers 0.36 (FLUX.2 [dev] only) has no guidance_embeds option: its transformer always embeds the guidance,
    # as dev's does; [klein] (no guidance) came with the option in 0.37 (SINCE)
    guidance = {"guidance_embeds": guidance_embeds} \
        if "guidance_embeds" in inspect.signature(Flux2Transformer2DModel.__init__).parameters else {}
    # axes_dims_rope (t, h, w, l) sum to the head dim; the 256 timestep channels are the original code's.
    return Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=STACKED * TEXT_DIM, timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4), **guidance,
    )


def tiny_mistral3(tokenizer: Any):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    # Grouped-query attention (2 heads over 1 KV head) as Mistral-Small-3.1 has it (32 over 8); a one-layer
    # pixtral vision tower, which a text-only prompt never runs but the class builds.
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in ("<s>", "</s>", "<pad>", "[IMG]")}
    config = Mistral3Config(
        text_config={
            "model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": TEXT_DIM, "intermediate_size": 32,
            "head_dim": 8, "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": TEXT_LAYERS,
            "max_position_embeddings": 512, "rope_theta": 1e9, "sliding_window": None, "rms_norm_eps": 1e-5,
            "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"],
        },
        vision_config={
            "model_type": "pixtral", "hidden_size": TEXT_DIM, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "head_dim": 8, "image_size": 32, "patch_size": 4, "num_channels": 3,
        },
        image_token_index=ids["[IMG]"], spatial_merge_size=2, vision_feature_layer=-1,
    )
    return Mistral3ForConditionalGeneration(config).eval()


def tiny_qwen3_causal(vocab_size: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    # Grouped-query attention (2 heads over 1 KV head) as Qwen3-4B has it (32 over 8).
    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM, num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
    )).eval()


def _scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # The published FLUX.2 scheduler_config.json: the pipelines pass an empirical mu, shifted dynamically.
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)


def build_dev(seed: int = 0):
    from diffusers import Flux2Pipeline

    tokenizer = tiny_mistral_tokenizer()
    pipe = Flux2Pipeline(
        scheduler=_scheduler(),
        vae=tiny_vae(seed, "flux2/vae"),
        text_encoder=fill_deterministic(tiny_mistral3(tokenizer), seed, "flux2/text_encoder"),
        tokenizer=tokenizer,
        transformer=fill_deterministic(tiny_transformer(guidance_embeds=True), seed, "flux2/transformer"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_klein(seed: int = 0):
    from diffusers import Flux2KleinPipeline

    tokenizer = tiny_qwen_tokenizer()
    pipe = Flux2KleinPipeline(
        scheduler=_scheduler(),
        vae=tiny_vae(seed, "flux2-klein/vae"),
        text_encoder=fill_deterministic(tiny_qwen3_causal(len(tokenizer)), seed, "flux2-klein/text_encoder"),
        tokenizer=tokenizer,
        transformer=fill_deterministic(tiny_transformer(guidance_embeds=False), seed, "flux2-klein/transformer"),
        is_distilled=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def folder_tokenizer(path: str) -> Any | None:
    """A FLUX.2 [dev] folder's ``tokenizer/`` as a fast tokenizer with the folder's chat template, where the
    folder's tokenizer is a processor (model_index.json): the processor needs torchvision (module docstring).
    None where the folder names a tokenizer, which diffusers loads itself (a saved tiny pipeline)."""
    from transformers import AutoTokenizer

    try:
        with open(os.path.join(path, "model_index.json"), encoding="utf-8") as f:
            entry = json.load(f).get("tokenizer") or [None, None]
    except (OSError, ValueError):
        return None  # from_pretrained reports the folder
    if not str(entry[1]).endswith("Processor"):
        return None
    folder = os.path.join(path, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"cannot read the FLUX.2 tokenizer ({type(exc).__name__}: {exc})", path=folder) from None
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = _processor_chat_template(folder)
    return tokenizer


def _processor_chat_template(folder: str) -> str:
    """The chat template a processor folder keeps beside the tokenizer (chat_template.jinja, or .json)."""
    jinja, json_file = os.path.join(folder, "chat_template.jinja"), os.path.join(folder, "chat_template.json")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    if os.path.isfile(json_file):
        with open(json_file, encoding="utf-8") as f:
            return json.load(f)["chat_template"]
    raise ParityInputError("the FLUX.2 tokenizer has no chat template (chat_template.jinja/.json)", path=folder)


def load_dev(path: str, dtype: torch.dtype):
    from diffusers import Flux2Pipeline

    tokenizer = folder_tokenizer(path)
    if tokenizer is None:
        return from_pretrained(Flux2Pipeline, path, dtype)
    # A tokenizer passed for an index entry of another class must subclass it (diffusers'
    # maybe_raise_or_warn), and PixtralProcessor cannot be imported here: the pipeline is loaded without
    # its tokenizer, which is then set.
    pipe = from_pretrained(Flux2Pipeline, path, dtype, tokenizer=None)
    pipe.tokenizer = tokenizer
    return pipe


def load_klein(path: str, dtype: torch.dtype):
    from diffusers import Flux2KleinPipeline

    return from_pretrained(Flux2KleinPipeline, path, dtype)


def denoiser_inputs(pipe: Any, seed: int, dtype: torch.dtype, shape: InputShape | None = None) -> dict[str, Any]:
    """One transformer forward as the pipelines make it: packed latent tokens with (t, h, w, l) ids
    (0, row, col, 0), text tokens with ids (0, 0, 0, index); guidance where the transformer embeds it."""
    config = pipe.transformer.config
    grid = shape.grid if shape is not None else LATENT_GRID
    seq = shape.seq if shape is not None else SEQ_LEN
    img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(grid), torch.arange(grid), torch.arange(1))
    txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(seq))
    inputs = {
        "hidden_states": deterministic_tensor(seed, "input/latents", (1, grid * grid, config.in_channels)).to(dtype),
        "encoder_hidden_states": deterministic_tensor(
            seed, "input/text", (1, seq, config.joint_attention_dim)).to(dtype),
        "timestep": torch.tensor([TIMESTEP], dtype=dtype),
        "img_ids": img_ids[None],
        "txt_ids": txt_ids[None],
    }
    if config.get("guidance_embeds", True):  # diffusers 0.36's config has no such key: it always embeds guidance
        inputs["guidance"] = torch.tensor([GUIDANCE], dtype=dtype)
    return inputs


def _call_args(seed: int) -> dict[str, Any]:
    # text_encoder_out_layers: the tiny encoders' three layers (the published defaults index 30+ layers);
    # fit_call_args drops it for an encoder deep enough for the pipeline's own default.
    return {"prompt": "a photo of a cat", "num_inference_steps": 2, "height": 32, "width": 32,
            "text_encoder_out_layers": OUT_LAYERS, "output_type": "np", "generator": generator(seed)}


# The pipelines' default text_encoder_out_layers (Flux2Pipeline: Mistral-Small-3.1's 40 layers; klein: Qwen3's 36)
PUBLISHED_OUT_LAYERS = {DEV: (10, 20, 30), KLEIN: (9, 18, 27)}


def _encoder_layers(pipe: Any) -> int:
    config = pipe.text_encoder.config
    return int(getattr(config, "text_config", config).num_hidden_layers)


def fit_call_args(family: str, pipe: Any, args: dict[str, Any]) -> dict[str, Any]:
    """A user's FLUX.2 folder is called as its users call it, with the pipeline's default layers, where its
    encoder has them; the tiny encoder, and the published architecture's three-layer encoder, keep OUT_LAYERS."""
    if _encoder_layers(pipe) < max(PUBLISHED_OUT_LAYERS[family]):  # hidden_states[k] needs k layers
        return args
    return {k: v for k, v in args.items() if k != "text_encoder_out_layers"}


def dev_call_args(seed: int) -> dict[str, Any]:
    return {**_call_args(seed), "guidance_scale": GUIDANCE, "max_sequence_length": DEV_PROMPT_LEN}


def klein_call_args(seed: int) -> dict[str, Any]:
    # klein-4B's setting: distilled, guidance 1.0 (the pipeline warns on more and ignores it), no CFG pass
    return {**_call_args(seed), "guidance_scale": 1.0, "max_sequence_length": KLEIN_PROMPT_LEN}


# What FLUX.2 trainers target: the double-stream blocks' image and text attention (to_q/k/v, to_out.0;
# add_q/k/v_proj, to_add_out) and both SwiGLU feed-forwards, and the single-stream blocks' fused
# q|k|v|mlp-in projection and their out projection. "attn.to_out" selects the single blocks' Linear; in the
# double blocks it names the ModuleList around to_out.0, which takes no LoRA.
TRANSFORMER_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
    "ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out",
    "attn.to_qkv_mlp_proj", "attn.to_out",
)  # fmt: skip

_VAE_FIT = Fit(config("vae", "latent_channels", times=4), config("transformer", "in_channels"))  # 2x2 patches


def _family(name: str, build_tiny: Any, load: Any, call_args: Any, text_width: str) -> Family:
    """[dev] and [klein] differ in pipeline, encoder, call and release; the rest is FLUX.2's."""
    return Family(
        name=name,
        pipeline_class=PIPELINES[name],
        default_targets={"transformer": TRANSFORMER_TARGETS},
        lora_loader="Flux2LoraLoaderMixin",
        # the layouts diffusers loads; comfyui-flux2, diffsynth and lycoris (LoCon pairs) are findings
        # (parity/checks/cases.py)
        layouts=("diffusers", "musubi-flux2", "aitoolkit-flux2", "fal-flux2"),
        build_tiny=build_tiny,
        load_pretrained=load,
        denoiser_inputs=denoiser_inputs,
        pipeline_call_args=call_args,
        since=SINCE[name],
        fit_call_args=partial(fit_call_args, name),
        fits=(Fit(config("text_encoder", text_width, times=STACKED), config("transformer", "joint_attention_dim")),
              _VAE_FIT),
        notes="The text encoder takes no LoRA in diffusers (Flux2LoraLoaderMixin): the transformer alone.",
    )


DEV_FAMILY = _family(DEV, build_dev, load_dev, dev_call_args, "text_config.hidden_size")  # Mistral3's text tower
KLEIN_FAMILY = _family(KLEIN, build_klein, load_klein, klein_call_args, "hidden_size")
