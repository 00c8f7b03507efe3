"""Single-file checkpoints as A1111, ComfyUI and Civitai distribute them, written from a tiny zoo pipeline.

The names follow the ORIGINAL model repositories, not diffusers' converters (which are what these
files test):
- UNet: CompVis/stable-diffusion and Stability-AI/generative-models ``openaimodel.py`` ``UNetModel``:
  ``input_blocks`` built level by level (a ``TimestepEmbedSequential`` of ResBlock [+ SpatialTransformer]
  per res block, then a Downsample ``op`` between levels), ``middle_block`` (ResBlock, SpatialTransformer,
  ResBlock), ``output_blocks`` in reverse with ``layers_per_block + 1`` blocks per level and an Upsample
  ``conv`` last; a ResBlock's ``in_layers.0/2``, ``emb_layers.1``, ``out_layers.0/3``, ``skip_connection``;
  ``time_embed.0/2``, ``label_emb.0.0/0.2`` (SDXL), ``out.0/2``; under ``model.diffusion_model.``.
- VAE: ``ldm/modules/diffusionmodules/model.py`` ``Encoder``/``Decoder``: ``down.N.block.M``,
  ``down.N.downsample.conv``, ``mid.block_1``, ``mid.attn_1`` (1x1 convs ``q k v proj_out``),
  ``mid.block_2``, ``norm_out``, the decoder's ``up`` indexed from the lowest resolution; ResnetBlock's
  ``nin_shortcut``; under ``first_stage_model.``.
- CLIP-L: ``FrozenCLIPEmbedder`` holds a transformers ``CLIPTextModel`` as ``transformer``
  (``cond_stage_model.transformer.text_model.…``; SDXL: ``conditioner.embedders.0.transformer.…``).
- OpenCLIP bigG (SDXL): ``FrozenOpenCLIPEmbedder2`` holds the open_clip model as ``model``:
  ``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.{ln_1, attn.in_proj_weight,
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_final``, ``text_projection`` (width x embed, used as
  ``x @ text_projection``).
- FLUX.1: black-forest-labs/flux ``model.py``/``modules/layers.py``: ``img_in``, ``txt_in``,
  ``time_in``/``vector_in``/``guidance_in`` (MLPEmbedder ``in_layer``/``out_layer``), ``double_blocks.N``
  (``img_mod.lin``, ``img_attn.qkv`` fused, ``img_attn.norm.query_norm.scale``, ``img_attn.proj``,
  ``img_mlp.0/2``, the same for ``txt_``), ``single_blocks.N`` (``linear1`` = q, k, v, mlp fused;
  ``linear2``; ``norm.query_norm.scale``; ``modulation.lin``), ``final_layer.linear`` and
  ``final_layer.adaLN_modulation.1`` (shift first, then scale).
- Qwen-Image: its original release is already in the names diffusers uses.
Real files also carry keys that are no weights: they are added here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# Keys real checkpoints carry beside the weights (DDPM schedule buffers, EMA bookkeeping, CLIP ids).
NOT_WEIGHTS = {"betas": (4,), "alphas_cumprod": (4,), "alphas_cumprod_prev": (4,), "model_ema.decay": (),
               "model_ema.num_updates": ()}


def _resblock(src: str) -> dict[str, str]:
    """openaimodel.ResBlock's names for a diffusers ResnetBlock2D's."""
    return {f"{src}.norm1": "in_layers.0", f"{src}.conv1": "in_layers.2", f"{src}.time_emb_proj": "emb_layers.1",
            f"{src}.norm2": "out_layers.0", f"{src}.conv2": "out_layers.3", f"{src}.conv_shortcut": "skip_connection"}


def unet_modules(config: Any) -> dict[str, str]:
    """diffusers module → openaimodel module, built as UNetModel.__init__ builds its lists."""
    out = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
           "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    attn_down = ["CrossAttn" in t for t in config.down_block_types]
    attn_up = ["CrossAttn" in t for t in config.up_block_types]
    index = 1
    for level in range(levels):
        for nr in range(per):
            for src, dst in _resblock(f"down_blocks.{level}.resnets.{nr}").items():
                out[src] = f"input_blocks.{index}.0.{dst}"
            if attn_down[level]:
                out[f"down_blocks.{level}.attentions.{nr}"] = f"input_blocks.{index}.1"
            index += 1
        if level != levels - 1:
            out[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    for i, src in enumerate(("mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1")):
        if src.startswith("mid_block.resnets"):
            out.update({s: f"middle_block.{i}.{d}" for s, d in _resblock(src).items()})
        else:
            out[src] = f"middle_block.{i}"
    index = 0
    for up in range(levels):  # output_blocks run from the lowest resolution up, as diffusers' up_blocks
        for i in range(per + 1):
            layers = 1
            out.update({s: f"output_blocks.{index}.0.{d}"
                        for s, d in _resblock(f"up_blocks.{up}.resnets.{i}").items()})
            if attn_up[up]:
                out[f"up_blocks.{up}.attentions.{i}"] = f"output_blocks.{index}.1"
                layers += 1
            if up != levels - 1 and i == per:
                out[f"up_blocks.{up}.upsamplers.0.conv"] = f"output_blocks.{index}.{layers}.conv"
            index += 1
    return out


def _vae_resblock(src: str, dst: str) -> dict[str, str]:
    return {f"{src}.{n}": f"{dst}.{m}" for n, m in
            (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
             ("conv_shortcut", "nin_shortcut"))}


def vae_modules(config: Any) -> dict[str, str]:
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    out = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        out.update({f"{part}.conv_in": f"{part}.conv_in", f"{part}.conv_norm_out": f"{part}.norm_out",
                    f"{part}.conv_out": f"{part}.conv_out"})
        out.update(_vae_resblock(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1"))
        out.update(_vae_resblock(f"{part}.mid_block.resnets.1", f"{part}.mid.block_2"))
        attn = f"{part}.mid_block.attentions.0"
        out.update({f"{attn}.group_norm": f"{part}.mid.attn_1.norm", f"{attn}.to_q": f"{part}.mid.attn_1.q",
                    f"{attn}.to_k": f"{part}.mid.attn_1.k", f"{attn}.to_v": f"{part}.mid.attn_1.v",
                    f"{attn}.to_out.0": f"{part}.mid.attn_1.proj_out"})
    for level in range(levels):
        for j in range(per):
            out.update(_vae_resblock(f"encoder.down_blocks.{level}.resnets.{j}", f"encoder.down.{level}.block.{j}"))
        if level != levels - 1:
            out[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = f"encoder.down.{level}.downsample.conv"
    for k in range(levels):  # Decoder.up is inserted at 0: up[i_level], i_level counting from the top
        level = levels - 1 - k
        for j in range(per + 1):
            out.update(_vae_resblock(f"decoder.up_blocks.{k}.resnets.{j}", f"decoder.up.{level}.block.{j}"))
        if level != 0:
            out[f"decoder.up_blocks.{k}.upsamplers.0.conv"] = f"decoder.up.{level}.upsample.conv"
    return out


def _renamed(state: dict[str, torch.Tensor], modules: dict[str, str], prefix: str) -> dict[str, torch.Tensor]:
    """Each tensor under the longest module prefix that names it; a name no entry covers keeps its
    name (the SpatialTransformer internals are named alike in both)."""
    out = {}
    by_length = sorted(modules, key=len, reverse=True)
    for name, t in state.items():
        src = next((m for m in by_length if name.startswith(m + ".")), None)
        new = name if src is None else modules[src] + name[len(src):]
        out[prefix + new] = t
    return out


def _vae(vae: Any) -> dict[str, torch.Tensor]:
    state = _renamed(vae.state_dict(), vae_modules(vae.config), "first_stage_model.")
    for key, t in state.items():  # ldm's AttnBlock projections are 1x1 convs
        if ".mid.attn_1." in key and key.endswith(".weight") and not key.endswith("norm.weight"):
            state[key] = t.reshape(*t.shape, 1, 1)
    return state


def _clip_l(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    # transformers >= 5.6 flattened CLIPTextModel (no text_model.); the checkpoints name it as 4.x did
    return {prefix + "text_model." + n.removeprefix("text_model."): t for n, t in model.state_dict().items()}


def _open_clip(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    state = {n.removeprefix("text_model."): t for n, t in model.state_dict().items()}
    width = state["final_layer_norm.weight"].shape[0]
    # SD 2.x's text encoder has no projection in diffusers, but its file holds open_clip's, unused
    projection = state["text_projection.weight"].T if "text_projection.weight" in state else torch.eye(width)
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"],
           prefix + "text_projection": projection.contiguous(),
           prefix + "logit_scale": torch.tensor(4.6052)}
    for i in range(model.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}", f"{prefix}transformer.resblocks.{i}"
        for kind in ("weight", "bias"):
            out[f"{dst}.attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}.{b}.{kind}"] = state[f"{src}.{a}.{kind}"]
    return out


def _extras(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state.update({k: torch.linspace(0.1, 0.9, s[0]) if s else torch.tensor(0.5) for k, s in NOT_WEIGHTS.items()})
    # ldm's LitEma keeps a shadow of each UNet weight, its name without dots (an "ema-only" file holds these
    # instead of the trained ones); diffusers reads them only with extract_ema=True
    conv_in = state.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None:
        state["model_ema.diffusion_modelinput_blocks00weight"] = conv_in + 1.0
    return state


def sd_checkpoint(pipe: Any, family: str) -> dict[str, torch.Tensor]:
    """A whole SD1.5, SD 2.x or SDXL pipeline in LDM/SGM names."""
    state = _renamed(pipe.unet.state_dict(), unet_modules(pipe.unet.config), "model.diffusion_model.")
    state.update(_vae(pipe.vae))
    if family == "sd15":
        state.update(_clip_l(pipe.text_encoder, "cond_stage_model.transformer."))
        state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    elif family == "sd2":  # FrozenOpenCLIPEmbedder holds the open_clip model as ``model``
        state.update(_open_clip(pipe.text_encoder, "cond_stage_model.model."))
    else:
        state.update(_clip_l(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        state.update(_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    return _extras(state)


def flux_checkpoint(transformer: Any) -> dict[str, torch.Tensor]:
    """A FLUX.1 transformer in BFL's names (no prefix, as the published flux1-dev.safetensors)."""
    s = transformer.state_dict()
    out: dict[str, torch.Tensor] = {}

    def put(dst: str, *src: str) -> None:
        for kind in ("weight", "bias"):
            if f"{src[0]}.{kind}" in s:
                out[f"{dst}.{kind}"] = torch.cat([s[f"{x}.{kind}"] for x in src])

    put("img_in", "x_embedder")
    put("txt_in", "context_embedder")
    for dst, src in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                     ("guidance_in", "guidance_embedder")):
        put(f"{dst}.in_layer", f"time_text_embed.{src}.linear_1")
        put(f"{dst}.out_layer", f"time_text_embed.{src}.linear_2")
    for i in range(transformer.config.num_layers):
        d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
        put(f"{d}.img_mod.lin", f"{b}.norm1.linear")
        put(f"{d}.txt_mod.lin", f"{b}.norm1_context.linear")
        put(f"{d}.img_attn.qkv", f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v")
        put(f"{d}.txt_attn.qkv", f"{b}.attn.add_q_proj", f"{b}.attn.add_k_proj", f"{b}.attn.add_v_proj")
        put(f"{d}.img_attn.proj", f"{b}.attn.to_out.0")
        put(f"{d}.txt_attn.proj", f"{b}.attn.to_add_out")
        put(f"{d}.img_mlp.0", f"{b}.ff.net.0.proj")
        put(f"{d}.img_mlp.2", f"{b}.ff.net.2")
        put(f"{d}.txt_mlp.0", f"{b}.ff_context.net.0.proj")
        put(f"{d}.txt_mlp.2", f"{b}.ff_context.net.2")
        for side, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
            out[f"{d}.{side}_attn.norm.query_norm.scale"] = s[f"{b}.attn.{q}.weight"]
            out[f"{d}.{side}_attn.norm.key_norm.scale"] = s[f"{b}.attn.{k}.weight"]
    for i in range(transformer.config.num_single_layers):
        d, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        put(f"{d}.linear1", f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v", f"{b}.proj_mlp")
        put(f"{d}.linear2", f"{b}.proj_out")
        put(f"{d}.modulation.lin", f"{b}.norm.linear")
        out[f"{d}.norm.query_norm.scale"] = s[f"{b}.attn.norm_q.weight"]
        out[f"{d}.norm.key_norm.scale"] = s[f"{b}.attn.norm_k.weight"]
    put("final_layer.linear", "proj_out")
    # diffusers' AdaLayerNormContinuous takes (scale, shift); BFL's LastLayer chunks (shift, scale)
    for kind in ("weight", "bias"):
        scale, shift = s[f"norm_out.linear.{kind}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    return out


def write(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> Path:
    """Save ``state`` (its floating tensors cast to ``dtype``) as one safetensors file."""
    cast = {k: (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
            for k, t in state.items()}
    save_file(cast, str(path))
    return path


def single_file(family: str, path: Path, dtype: torch.dtype | None = None, seed: int = 0) -> Path:
    """The tiny ``family`` pipeline as the one file its users download: whole pipelines for SD1.5/SDXL,
    the transformer alone for FLUX.1 and Qwen-Image."""
    from parity.zoo import FAMILIES

    pipe = FAMILIES[family].build_tiny(seed)
    if family in ("sd15", "sd2", "sdxl"):
        state = sd_checkpoint(pipe, family)
    elif family == "flux":
        state = flux_checkpoint(pipe.transformer)
    else:
        state = dict(pipe.transformer.state_dict())
    return write(state, path, dtype)
