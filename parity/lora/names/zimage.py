"""Z-Image under the names of its published single-file checkpoint (``z_image_turbo_bf16.safetensors``,
ComfyUI's NextDiT/Lumina2 module tree), as ComfyUI, its LoraSave extraction and musubi-tuner's
``convert_z_image_lora_to_comfy.py`` write them.

Only the attention and the embedder/final-layer names differ from diffusers' ZImageTransformer2DModel
(diffusers ``loaders/single_file_utils.py`` ``convert_z_image_transformer_checkpoint_to_diffusers``
renames exactly these): ``attention.qkv`` is diffusers' to_q|to_k|to_v fused (each at the width the
model gives it: q is n_heads·head_dim, k and v n_kv_heads·head_dim), ``attention.out`` is
``attention.to_out.0``, ``attention.q_norm``/``k_norm`` are ``norm_q``/``norm_k``; ``x_embedder`` and
``final_layer`` are the one entry of diffusers' ``all_x_embedder``/``all_final_layer`` ModuleDicts
(keyed ``"<patch>-<f_patch>"``: the checkpoint has one patch size). Every other name (feed_forward.w1,
adaLN_modulation.0, attention_norm1, t_embedder.mlp.0, cap_embedder.1, x_pad_token…) is diffusers'
own, so this naming is partial: a layout on it names the rest with diffusers' names (table.PARTIAL).

The original Tongyi-MAI/Z-Image ``src/zimage/transformer.py`` itself, DiffSynth-Studio's
``z_image_dit.py`` and musubi-tuner's model keep diffusers' names (to_q, to_out.0, norm_q).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, children, fused, whole

BLOCK_LISTS = ("layers", "noise_refiner", "context_refiner")
ATTENTION = {"attention.out": "attention.to_out.0", "attention.q_norm": "attention.norm_q",
             "attention.k_norm": "attention.norm_k"}
QKV = ("attention.to_q", "attention.to_k", "attention.to_v")
# the checkpoint's one embedder / final layer → diffusers' ModuleDict entry (its key appended)
SINGLE_ENTRY = {"x_embedder": "all_x_embedder", "final_layer": "all_final_layer"}


def _is_zimage(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in (*BLOCK_LISTS, "all_x_embedder", "all_final_layer"))


def zimage_names(component: str, model: nn.Module, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    if not _is_zimage(model):
        return {}
    out: dict[str, Target] = {}
    for attribute in BLOCK_LISTS:
        for n, _ in children(model, attribute):
            block = f"{attribute}.{n}"
            qkv = [f"{block}.{p}" for p in QKV]
            if all(q in modules for q in qkv):
                out[f"{block}.attention.qkv"] = fused(modules, qkv)
            for original, name in ATTENTION.items():
                if f"{block}.{name}" in modules:
                    out[f"{block}.{original}"] = whole(modules, f"{block}.{name}")
    for original, attribute in SINGLE_ENTRY.items():
        entries = list(getattr(model, attribute).keys())
        if len(entries) != 1:  # several patch sizes: the checkpoint's single name says not which
            continue
        prefix = f"{attribute}.{entries[0]}"
        for name in modules:
            if name == prefix or name.startswith(prefix + "."):
                out[original + name[len(prefix):]] = whole(modules, name)
    return out
