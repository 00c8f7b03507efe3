"""FLUX.1 under Black Forest Labs' original names, as kohya's ``lora_flux.py`` and ComfyUI write them,
and XLabs' attention-processor names.

BFL fuses what diffusers splits: a double block's ``img_attn.qkv`` is diffusers' to_q|to_k|to_v (and
``txt_attn.qkv`` add_q|add_k|add_v_proj), a single block's ``linear1`` is to_q|to_k|to_v|proj_mlp,
each at the width the model's own modules have. ``final_layer.adaLN_modulation.1`` outputs
shift|scale (BFL ``LastLayer``: ``shift, scale = …chunk(2)``) where diffusers' AdaLayerNormContinuous
takes scale|shift, so its halves swap; the double and single block modulations share diffusers' order
(shift, scale, gate per stream) and map whole.

XLabs (x-flux ``SingleStreamBlockLoraProcessor``/``DoubleStreamBlockLoraProcessor``) names
``processor.qkv_lora1``/``proj_lora1`` for the image stream, ``…2`` for text, and in single blocks
``qkv_lora`` (q|k|v, no mlp) and ``proj_lora`` (linear2).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, children, fused, halves_swapped, whole

EMBEDDERS = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
DOUBLE = {  # BFL part → diffusers part(s) of transformer_blocks.N
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "img_attn.proj": ["attn.to_out.0"],
    "img_mlp.0": ["ff.net.0.proj"],
    "img_mlp.2": ["ff.net.2"],
    "img_mod.lin": ["norm1.linear"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "txt_attn.proj": ["attn.to_add_out"],
    "txt_mlp.0": ["ff_context.net.0.proj"],
    "txt_mlp.2": ["ff_context.net.2"],
    "txt_mod.lin": ["norm1_context.linear"],
}
SINGLE = {
    "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
    "linear2": ["proj_out"],
    "modulation.lin": ["norm.linear"],
}
XLABS_DOUBLE = {"processor.qkv_lora1": "img_attn.qkv", "processor.proj_lora1": "img_attn.proj",
                "processor.qkv_lora2": "txt_attn.qkv", "processor.proj_lora2": "txt_attn.proj"}
XLABS_SINGLE = {"processor.qkv_lora": ["attn.to_q", "attn.to_k", "attn.to_v"], "processor.proj_lora": ["proj_out"]}


def _is_flux(model: nn.Module) -> bool:
    # FLUX.2's transformer has the same three attributes; its names are parity/lora/names/flux2.py's
    return hasattr(model, "transformer_blocks") and hasattr(model, "single_transformer_blocks") and hasattr(
        model, "x_embedder") and not hasattr(model, "double_stream_modulation_img")


def target_of(modules: Mapping[str, nn.Module], names: list[str]) -> Target | None:
    if not all(n in modules for n in names):
        return None
    return whole(modules, names[0]) if len(names) == 1 else fused(modules, names)


def block_names(model: nn.Module, modules: Mapping[str, nn.Module], attribute: str, original: str,
            parts: Mapping[str, list[str]]) -> dict[str, Target]:
    """``original.N.<name>`` → its target, for every block N of ``model.attribute`` and every
    name → diffusers parts in ``parts`` the model has."""
    out = {}
    for n, _ in children(model, attribute):
        for name, diffusers_parts in parts.items():
            target = target_of(modules, [f"{attribute}.{n}.{p}" for p in diffusers_parts])
            if target is not None:
                out[f"{original}.{n}.{name}"] = target
    return out


def bfl_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not _is_flux(model):
        return {}
    out: dict[str, Target] = {}
    for original, name in EMBEDDERS.items():
        if name in modules:
            out[original] = whole(modules, name)
    if "norm_out.linear" in modules:
        out["final_layer.adaLN_modulation.1"] = halves_swapped(modules, "norm_out.linear")
    out.update(block_names(model, modules, "transformer_blocks", "double_blocks", DOUBLE))
    out.update(block_names(model, modules, "single_transformer_blocks", "single_blocks", SINGLE))
    return out


def xlabs_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not _is_flux(model):
        return {}
    double = {xlabs: DOUBLE[original] for xlabs, original in XLABS_DOUBLE.items()}
    return {**block_names(model, modules, "transformer_blocks", "double_blocks", double),
            **block_names(model, modules, "single_transformer_blocks", "single_blocks", XLABS_SINGLE)}
