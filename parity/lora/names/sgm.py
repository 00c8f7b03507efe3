"""Stable Diffusion UNets under their original (SGM / CompVis) names, as kohya's SDXL trainer, A1111
and ComfyUI write them: ``input_blocks``, ``middle_block``, ``output_blocks``, ResBlock parts
``in_layers.2`` / ``emb_layers.1`` / ``out_layers.3`` / ``skip_connection``, ``time_embed``,
``label_emb``, ``out.2``.

The numbering follows the original UNet's construction (sgm ``openaimodel.UNetModel``, kohya
``library/sdxl_original_unet.py``): ``input_blocks.0`` is the input conv; then per down block, one
entry per layer (ResBlock at ``.0``, its transformer at ``.1``) and one for the downsampler
(``.0.op``); ``middle_block`` is ResBlock, transformer, ResBlock; ``output_blocks`` run per up block,
one per layer, the upsampler (``.conv``) sitting after the layer's ResBlock and transformer. The
layers and blocks are counted on the model itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, children, whole

# diffusers ResnetBlock2D part → the original ResBlock's
RESNET_PARTS = {"conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "conv2": "out_layers.3",
                "conv_shortcut": "skip_connection"}
# diffusers name → original, outside the blocks
TOP_LEVEL = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_out": "out.2"}


def _prefix_map(unet: nn.Module) -> dict[str, str]:
    """diffusers block prefix → original prefix, counted on ``unet``."""
    out: dict[str, str] = {}
    index = 1
    for i, block in children(unet, "down_blocks"):
        attentions = dict(children(block, "attentions"))
        for j, _ in children(block, "resnets"):
            out[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{index}.0"
            if j in attentions:
                out[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{index}.1"
            index += 1
        for k, _ in children(block, "downsamplers"):
            out[f"down_blocks.{i}.downsamplers.{k}.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        out["mid_block.resnets.0"] = "middle_block.0"
        for j, _ in children(mid, "attentions"):
            out[f"mid_block.attentions.{j}"] = f"middle_block.{2 * j + 1}"
            out[f"mid_block.resnets.{j + 1}"] = f"middle_block.{2 * j + 2}"
    index = 0
    for i, block in children(unet, "up_blocks"):
        attentions = dict(children(block, "attentions"))
        resnets = list(children(block, "resnets"))
        for j, _ in resnets:
            out[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{index}.0"
            if j in attentions:
                out[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{index}.1"
            if j == len(resnets) - 1:
                slot = 2 if j in attentions else 1
                for k, _ in children(block, "upsamplers"):
                    out[f"up_blocks.{i}.upsamplers.{k}.conv"] = f"output_blocks.{index}.{slot}.conv"
            index += 1
    return out


def original_name(name: str, prefixes: Mapping[str, str]) -> str | None:
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    for prefix, original in prefixes.items():
        if name == prefix:
            return original
        if name.startswith(prefix + "."):
            rest = name[len(prefix) + 1:]
            return f"{original}.{RESNET_PARTS.get(rest, rest) if '.resnets.' in prefix + '.' else rest}"
    return None


def sgm_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not hasattr(model, "down_blocks") or not hasattr(model, "up_blocks"):
        return {}
    prefixes = _prefix_map(model)
    out = {}
    for name in modules:
        original = original_name(name, prefixes)
        if original is not None:
            out[original] = whole(modules, name)
    return out
