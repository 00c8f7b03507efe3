"""Wan 2.1/2.2 under its original module names (Wan-Video/Wan2.1 ``wan/modules/model.py``), as
musubi-tuner, ai-toolkit, ComfyUI/kijai, LightX2V and DiffSynth-Studio write them.

Wan's original names map one to one onto diffusers' ``WanTransformer3DModel`` (nothing is fused), but
the names differ: ``self_attn.q`` is ``attn1.to_q``, ``cross_attn.k_img`` ``attn2.add_k_proj``,
``ffn.0``/``ffn.2`` ``ffn.net.0.proj``/``ffn.net.2``. The norms swap numbers: the original block's
``norm3`` is the cross-attention norm with weights, which diffusers calls ``norm2`` (its ``norm1`` and
``norm2`` have no weights, diffusers' ``norm1``/``norm3``). ``modulation`` is a bare parameter,
diffusers' ``scale_shift_table``, in the same (shift, scale, gate…) order (both ``chunk`` it alike), so
it maps whole; extraction tools store a full difference of it (``.diff_m``).

The norms, the patch embedding (Conv3d) and the modulations take no LoRA pair in any trainer; they
appear in files as full differences, and are named here so that such a key is merged by the reference
or failed by name, never left unread.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, children, whole

EMBEDDERS = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",  # image-to-video models
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "head": "scale_shift_table",  # LightX2V's extractor spells the modulation's difference head.diff_m
}
BLOCK = {  # original part → diffusers part of blocks.N
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}


def _is_wan(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "condition_embedder") and hasattr(model, "patch_embedding")


def wan_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not _is_wan(model):
        return {}
    out = {original: whole(modules, name) for original, name in EMBEDDERS.items() if name in modules}
    for n, _ in children(model, "blocks"):
        if f"blocks.{n}.scale_shift_table" in modules:  # LightX2V: blocks.N.diff_m (".modulation" left out)
            out[f"blocks.{n}"] = whole(modules, f"blocks.{n}.scale_shift_table")
        for original, part in BLOCK.items():
            name = f"blocks.{n}.{part}"
            if name in modules:
                out[f"blocks.{n}.{original}"] = whole(modules, name)
    return out
