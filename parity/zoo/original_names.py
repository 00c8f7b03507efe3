"""Where a diffusers parameter sits in a single-file checkpoint in its model's ORIGINAL names: the map the
read-back of base weights (parity/zoo/checkpoint.py) and the choice of configs (parity/zoo/single_file.py)
read a file through. Written from the original repositories' module trees (CompVis/stable-diffusion and
Stability-AI/generative-models ``openaimodel.py`` and ``model.py``, open_clip, black-forest-labs/flux), not
from diffusers' converters, which are what a check tests.

A parameter is a ``View`` of one stored tensor: the tensor itself, a block of its rows (FLUX's fused qkv,
OpenCLIP's ``in_proj_weight``), its transpose (OpenCLIP's ``text_projection``) or a reshape (the VAE's 1x1
attention convs, stored 4-d). A parameter that is no view of one tensor (FLUX's final modulation, whose
halves are swapped) has none: its read-back falls back (parity/checks/fuse.py keeps a copy).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class View:
    key: str
    rows: tuple[int, int] | None = None  # [start, stop) along dim 0
    transpose: bool = False
    squeeze: bool = False  # a [C, C, 1, 1] conv read as a [C, C] linear

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...] | None:
        """The parameter's shape this view makes of a stored tensor of shape ``stored``; None where it cannot."""
        shape = list(stored)
        if self.rows is not None:
            if not shape or self.rows[1] > shape[0]:
                return None
            shape[0] = self.rows[1] - self.rows[0]
        if self.transpose:
            shape = shape[::-1]
        if self.squeeze:
            if shape[2:] != [1, 1]:
                return None
            shape = shape[:2]
        return tuple(shape)

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if self.rows is not None:
            t = t[self.rows[0]:self.rows[1]]
        if self.transpose:
            t = t.T
        if self.squeeze:
            t = t[:, :, 0, 0]
        return t


Config = Mapping[str, Any]


def _sub(name: str, table: Mapping[str, str]) -> str | None:
    """``name`` with its longest module prefix in ``table`` replaced; None when none applies."""
    for src in sorted(table, key=len, reverse=True):
        if name == src or name.startswith(src + "."):
            return table[src] + name[len(src):]
    return None


_RESBLOCK = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
             "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _unet_table(config: Config) -> dict[str, str]:
    """openaimodel.UNetModel's module for each diffusers module, by its constructor's counting: one
    input block per res block (+ a downsampler between levels), output blocks from the lowest level up,
    layers_per_block + 1 of them per level."""
    table = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2",
             "mid_block.attentions.0": "middle_block.1"}
    per = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    attn_up = ["CrossAttn" in t for t in config["up_block_types"]]

    def res(src: str, dst: str) -> None:
        table.update({f"{src}.{a}": f"{dst}.{b}" for a, b in _RESBLOCK.items()})

    index = 1
    for level in range(levels):
        for j in range(per):
            res(f"down_blocks.{level}.resnets.{j}", f"input_blocks.{index}.0")
            table[f"down_blocks.{level}.attentions.{j}"] = f"input_blocks.{index}.1"
            index += 1
        if level != levels - 1:
            table[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    res("mid_block.resnets.0", "middle_block.0")
    res("mid_block.resnets.1", "middle_block.2")
    for up in range(levels):
        for j in range(per + 1):
            index = up * (per + 1) + j
            res(f"up_blocks.{up}.resnets.{j}", f"output_blocks.{index}.0")
            table[f"up_blocks.{up}.attentions.{j}"] = f"output_blocks.{index}.1"
        table[f"up_blocks.{up}.upsamplers.0.conv"] = \
            f"output_blocks.{up * (per + 1) + per}.{2 if attn_up[up] else 1}.conv"
    return table


def _vae_table(config: Config) -> dict[str, str]:
    """ldm Encoder/Decoder modules; the decoder's ``up`` is indexed from the highest resolution down."""
    levels = len(config["block_out_channels"])
    per = config["layers_per_block"]
    table = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        table.update({f"{part}.conv_in": f"{part}.conv_in", f"{part}.conv_out": f"{part}.conv_out",
                      f"{part}.conv_norm_out": f"{part}.norm_out", f"{part}.mid_block.resnets.0": f"{part}.mid.block_1",
                      f"{part}.mid_block.resnets.1": f"{part}.mid.block_2",
                      f"{part}.mid_block.attentions.0.group_norm": f"{part}.mid.attn_1.norm"})
        for a, b in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            table[f"{part}.mid_block.attentions.0.{a}"] = f"{part}.mid.attn_1.{b}"
    for level in range(levels):
        for j in range(per):
            table[f"encoder.down_blocks.{level}.resnets.{j}"] = f"encoder.down.{level}.block.{j}"
        table[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = f"encoder.down.{level}.downsample.conv"
        for j in range(per + 1):
            table[f"decoder.up_blocks.{level}.resnets.{j}"] = f"decoder.up.{levels - 1 - level}.block.{j}"
        table[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = f"decoder.up.{levels - 1 - level}.upsample.conv"
    return table


def _vae(name: str, config: Config) -> View | None:
    key = _sub(name, _vae_table(config))
    if key is None:
        return None
    key = key.replace(".conv_shortcut.", ".nin_shortcut.")
    squeeze = ".mid.attn_1." in key and key.endswith(".weight") and ".attn_1.norm." not in key
    return View("first_stage_model." + key, squeeze=squeeze)


def _clip_l(name: str, prefix: str) -> View:
    return View(prefix + "text_model." + name.removeprefix("text_model."))


_OPEN_CLIP = {"embeddings.token_embedding.weight": "token_embedding.weight",
              "embeddings.position_embedding.weight": "positional_embedding",
              "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
_OPEN_CLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _open_clip(name: str, config: Config, prefix: str) -> View | None:
    name = name.removeprefix("text_model.")
    if name == "text_projection.weight":
        return View(prefix + "text_projection", transpose=True)
    if name in _OPEN_CLIP:
        return View(prefix + _OPEN_CLIP[name])
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", name)
    if m is None:
        return None
    layer, rest = m.groups()
    qkv = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
    if qkv:  # open_clip's nn.MultiheadAttention stores q, k, v stacked in rows
        width = config["hidden_size"]
        start = "qkv".index(qkv.group(1)) * width
        return View(f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{qkv.group(2)}", rows=(start, start + width))
    key = _sub(rest, _OPEN_CLIP_LAYER)
    return None if key is None else View(f"{prefix}transformer.resblocks.{layer}.{key}")


def _flux(name: str, config: Config) -> View | None:
    """BFL's flux ``model.py``/``layers.py`` names; no ``model.diffusion_model.`` prefix (the published file)."""
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    table = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear"}
    for src, dst in (("timestep_embedder", "time_in"), ("text_embedder", "vector_in"),
                     ("guidance_embedder", "guidance_in")):
        table[f"time_text_embed.{src}.linear_1"] = f"{dst}.in_layer"
        table[f"time_text_embed.{src}.linear_2"] = f"{dst}.out_layer"
    m = re.fullmatch(r"(single_transformer_blocks|transformer_blocks)\.(\d+)\.(.+)\.(weight|bias)", name)
    if m is None:
        key = _sub(name, table)
        return None if key is None else View(key)
    kind, i, module, part = m.groups()
    if kind == "transformer_blocks":
        b = f"double_blocks.{i}"
        thirds = {"attn.to_q": ("img", 0), "attn.to_k": ("img", 1), "attn.to_v": ("img", 2),
                  "attn.add_q_proj": ("txt", 0), "attn.add_k_proj": ("txt", 1), "attn.add_v_proj": ("txt", 2)}
        if module in thirds:
            side, n = thirds[module]
            return View(f"{b}.{side}_attn.qkv.{part}", rows=(n * inner, (n + 1) * inner))
        renames = {"norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
                   "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
                   "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2", "ff_context.net.0.proj": "txt_mlp.0",
                   "ff_context.net.2": "txt_mlp.2"}
        norms = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
                 "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm"}
    else:
        b = f"single_blocks.{i}"
        rows = {"attn.to_q": 0, "attn.to_k": 1, "attn.to_v": 2}
        if module in rows:
            return View(f"{b}.linear1.{part}", rows=(rows[module] * inner, (rows[module] + 1) * inner))
        if module == "proj_mlp":
            mlp = int(inner * config.get("mlp_ratio", 4.0))
            return View(f"{b}.linear1.{part}", rows=(3 * inner, 3 * inner + mlp))
        renames = {"proj_out": "linear2", "norm.linear": "modulation.lin"}
        norms = {"attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}
    if module in norms:
        return View(f"{b}.{norms[module]}.scale")
    return View(f"{b}.{renames[module]}.{part}") if module in renames else None


def key_prefix(family: str, keys: Any) -> str:
    """ComfyUI saves a FLUX.1 transformer under ``model.diffusion_model.`` (diffusers strips it): the prefix
    every original name of the file carries."""
    if family == "flux" and any(k.startswith("model.diffusion_model.double_blocks.") for k in keys):
        return "model.diffusion_model."
    return ""


def original_view(family: str, component: str, name: str, config: Config) -> View | None:
    """Where ``component``'s parameter ``name`` is in a ``family`` single file; None where it is no view of
    one stored tensor (or the family has no original names for that component)."""
    if family in ("sd15", "sd2", "sdxl"):
        if component == "unet":
            key = _sub(name, _unet_table(config))
            # SpatialTransformer internals are named alike in both (norm, proj_in, transformer_blocks.N…)
            return None if key is None else View("model.diffusion_model." + key)
        if component == "vae":
            return _vae(name, config)
        if component == "text_encoder" and family == "sd2":  # OpenCLIP-H, held by FrozenOpenCLIPEmbedder
            return _open_clip(name, config, "cond_stage_model.model.")
        if component == "text_encoder":
            return _clip_l(name, "cond_stage_model.transformer." if family == "sd15"
                           else "conditioner.embedders.0.transformer.")
        if component == "text_encoder_2":
            return _open_clip(name, config, "conditioner.embedders.1.model.")
        return None
    if component != "transformer":
        return None
    if family == "flux":
        return _flux(name, config)
    if family == "qwenimage":
        return View(name)  # Qwen-Image was released in these names
    return None
