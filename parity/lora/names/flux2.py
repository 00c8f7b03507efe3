"""FLUX.2 under Black Forest Labs' original names (black-forest-labs/flux2 ``src/flux2/model.py``), as
musubi-tuner, ai-toolkit and ComfyUI write them.

Like FLUX.1 (names/bfl.py), a double block's ``img_attn.qkv`` is diffusers' to_q|to_k|to_v fused and
``txt_attn.qkv`` add_q|add_k|add_v_proj, each at the width the model's own modules have. The rest is
FLUX.2's own: the feed-forward is a SwiGLU (``img_mlp.0`` is ``ff.linear_in``, gate|up, in diffusers'
order; ``img_mlp.2`` ``ff.linear_out``), a single block's ``linear1`` is q|k|v|mlp-in, which diffusers keeps
fused as ``attn.to_qkv_mlp_proj`` (so it maps whole), ``linear2`` is ``attn.to_out``; the modulations are
three shared ``Modulation.lin`` (``double_stream_modulation_img/txt``, ``single_stream_modulation``), whose
chunks diffusers' Flux2Modulation takes in the same order. ``final_layer.adaLN_modulation.1`` outputs
shift|scale (``LastLayer``: ``shift, scale = mod.chunk(2, dim=-1)``) where diffusers'
AdaLayerNormContinuous takes scale|shift: its halves swap. The q/k RMSNorms (``QKNorm.query_norm``/
``key_norm``, a ``scale`` parameter in BFL, ``norm_q``/``norm_k`` in diffusers) take no pair: named so a
full difference of one is merged by the reference or failed by name.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, halves_swapped, whole
from parity.lora.names.bfl import block_names

EMBEDDERS = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
    "guidance_in.in_layer": "time_guidance_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_guidance_embed.guidance_embedder.linear_2",
    "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
    "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
    "single_stream_modulation.lin": "single_stream_modulation.linear",
    "final_layer.linear": "proj_out",
}
FINAL_MODULATION = ("final_layer.adaLN_modulation.1", "norm_out.linear")
DOUBLE = {  # BFL part → diffusers part(s) of transformer_blocks.N
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "img_attn.proj": ["attn.to_out.0"],
    "img_attn.norm.query_norm": ["attn.norm_q"],
    "img_attn.norm.key_norm": ["attn.norm_k"],
    "img_mlp.0": ["ff.linear_in"],
    "img_mlp.2": ["ff.linear_out"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "txt_attn.proj": ["attn.to_add_out"],
    "txt_attn.norm.query_norm": ["attn.norm_added_q"],
    "txt_attn.norm.key_norm": ["attn.norm_added_k"],
    "txt_mlp.0": ["ff_context.linear_in"],
    "txt_mlp.2": ["ff_context.linear_out"],
}
SINGLE = {
    "linear1": ["attn.to_qkv_mlp_proj"],
    "linear2": ["attn.to_out"],
    "norm.query_norm": ["attn.norm_q"],
    "norm.key_norm": ["attn.norm_k"],
}


def _is_flux2(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("transformer_blocks", "single_transformer_blocks",
                                           "double_stream_modulation_img", "single_stream_modulation"))


def flux2_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not _is_flux2(model):
        return {}
    out = {original: whole(modules, name) for original, name in EMBEDDERS.items() if name in modules}
    original, name = FINAL_MODULATION
    if name in modules:
        out[original] = halves_swapped(modules, name)
    out.update(block_names(model, modules, "transformer_blocks", "double_blocks", DOUBLE))
    out.update(block_names(model, modules, "single_transformer_blocks", "single_blocks", SINGLE))
    return out
