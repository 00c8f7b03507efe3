"""FLUX.1 LoRA files the way kohya sd-scripts (networks/lora_flux.py on library/flux_models.py),
ComfyUI and XLabs x-flux write them, for the tiny flux model; see trainer_files.py for the rule these
writers follow (their own naming code, never parity.lora's)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import (
    ALPHA,
    CLIP_TARGETS,
    RANK,
    Factors,
    clip_name,
    ends_with,
    kohya_entry,
    lora_layers,
    save,
    tiny_components,
)


def bfl_modules(transformer: nn.Module) -> list[tuple[str, int, int]]:
    """(BFL module name, out, in) of every Linear library/flux_models.py's Flux has and lora_flux.py
    targets, with widths read off the diffusers transformer's modules: a fused qkv is 3 x inner rows,
    a single block's linear1 is 3 x inner + mlp rows and its linear2 takes inner + mlp columns."""

    def shape(m: nn.Module) -> tuple[int, int]:
        return m.out_features, m.in_features

    out: list[tuple[str, int, int]] = []
    for n, blk in enumerate(transformer.transformer_blocks):
        attn = blk.attn
        inner, dim = shape(attn.to_q)
        for stream, qkv, proj, ff, mod in (
            ("img", attn.to_q, attn.to_out[0], blk.ff.net, blk.norm1.linear),
            ("txt", attn.add_q_proj, attn.to_add_out, blk.ff_context.net, blk.norm1_context.linear),
        ):
            p = f"double_blocks.{n}.{stream}"
            out.append((f"{p}_attn.qkv", 3 * qkv.out_features, qkv.in_features))
            out.append((f"{p}_attn.proj", *shape(proj)))
            out.append((f"{p}_mlp.0", *shape(ff[0].proj)))
            out.append((f"{p}_mlp.2", *shape(ff[2])))
            out.append((f"{p}_mod.lin", *shape(mod)))
    for n, blk in enumerate(transformer.single_transformer_blocks):
        inner, dim = shape(blk.attn.to_q)
        mlp = blk.proj_mlp.out_features
        out.append((f"single_blocks.{n}.linear1", 3 * inner + mlp, dim))
        out.append((f"single_blocks.{n}.linear2", *shape(blk.proj_out)))
        out.append((f"single_blocks.{n}.modulation.lin", *shape(blk.norm.linear)))
    tte = transformer.time_text_embed
    out.append(("img_in", *shape(transformer.x_embedder)))
    out.append(("txt_in", *shape(transformer.context_embedder)))
    out.append(("time_in.in_layer", *shape(tte.timestep_embedder.linear_1)))
    out.append(("time_in.out_layer", *shape(tte.timestep_embedder.linear_2)))
    out.append(("vector_in.in_layer", *shape(tte.text_embedder.linear_1)))
    out.append(("vector_in.out_layer", *shape(tte.text_embedder.linear_2)))
    if getattr(tte, "guidance_embedder", None) is not None:
        out.append(("guidance_in.in_layer", *shape(tte.guidance_embedder.linear_1)))
        out.append(("guidance_in.out_layer", *shape(tte.guidance_embedder.linear_2)))
    out.append(("final_layer.linear", *shape(transformer.proj_out)))
    out.append(("final_layer.adaLN_modulation.1", *shape(transformer.norm_out.linear)))
    return out


def kohya_flux(path: Path, *, seed: int = 13, comfy: bool = False, dtype: torch.dtype = torch.float32) -> Path:
    """networks/lora_flux.py: ``lora_unet_`` + BFL name with '.' -> '_' (train_blocks=all, in_dims
    set so the input/embedder layers train too, and the final layer), CLIP under ``lora_te1_``. ``comfy``: the same BFL
    names dotted under ``diffusion_model.`` (ComfyUI's save), transformer only."""
    comps = tiny_components("flux")
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in bfl_modules(comps["transformer"]):
        down, up = factors.for_shape(out_f, in_f, RANK)
        stem = f"diffusion_model.{name}" if comfy else "lora_unet_" + name.replace(".", "_")
        kohya_entry(sd, stem, down, up, ALPHA)
    if not comfy:
        for name, module in lora_layers(comps["text_encoder"]):
            if ends_with(name, *CLIP_TARGETS):
                down, up = factors.for_module(module, RANK)
                kohya_entry(sd, "lora_te1_" + clip_name(name).replace(".", "_"), down, up, ALPHA)
    return save(sd, path, None if comfy else {"ss_network_module": "networks.lora_flux"})


FLUX_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")


def lora_transformer_flux(path: Path, *, seed: int = 17, dtype: torch.dtype = torch.float32) -> Path:
    """kohya-style pairs on diffusers' own FLUX.1 names: ``lora_transformer_`` + the transformer's
    module name with '.' -> '_', CLIP under ``lora_te1_`` (the keys diffusers' loader tells apart by
    their ``lora_transformer_`` prefix)."""
    comps = tiny_components("flux")
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in lora_layers(comps["transformer"]):
        if ends_with(name, *FLUX_TARGETS):
            down, up = factors.for_module(module, RANK)
            kohya_entry(sd, "lora_transformer_" + name.replace(".", "_"), down, up, ALPHA)
    for name, module in lora_layers(comps["text_encoder"]):
        if ends_with(name, *CLIP_TARGETS):
            down, up = factors.for_module(module, RANK)
            kohya_entry(sd, "lora_te1_" + clip_name(name).replace(".", "_"), down, up, ALPHA)
    return save(sd, path)


def kohya_flux_with_diff(path: Path, *, seed: int = 18) -> Path:
    """A kohya FLUX.1 file whose single blocks' linear2 was trained in full: ``.diff`` (the weight's
    difference) and ``.diff_b`` (the bias'), as sd-scripts' and ComfyUI's full-layer saves write them,
    beside the other layers' pairs."""
    path = kohya_flux(path, seed=seed)
    from safetensors.torch import load_file

    sd = load_file(str(path))
    transformer = tiny_components("flux")["transformer"]
    gen = torch.Generator().manual_seed(seed)
    for n, blk in enumerate(transformer.single_transformer_blocks):
        stem = f"lora_unet_single_blocks_{n}_linear2"
        for part in (".lora_down.weight", ".lora_up.weight", ".alpha"):
            sd.pop(stem + part)
        w = blk.proj_out.weight
        sd[f"{stem}.diff"] = torch.randn(w.shape, generator=gen) * 0.1 * float(w.std())
        sd[f"{stem}.diff_b"] = torch.randn(blk.proj_out.bias.shape, generator=gen) * 0.01
    return save(sd, path, {"ss_network_module": "networks.lora_flux"})


def xlabs_flux(path: Path, *, seed: int = 14, dtype: torch.dtype = torch.float32) -> Path:
    """XLabs x-flux: DoubleStreamBlockLoraProcessor (qkv_lora1/proj_lora1 image stream,
    qkv_lora2/proj_lora2 text stream) and SingleStreamBlockLoraProcessor (qkv_lora on linear1's qkv
    rows, proj_lora on linear2, inner + mlp columns): LoRALinearLayer ``down`` / ``up``, no alpha."""
    transformer = tiny_components("flux")["transformer"]
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for n, blk in enumerate(transformer.transformer_blocks):
        dim = blk.attn.to_q.in_features
        for k in (1, 2):
            p = f"double_blocks.{n}.processor"
            for part, out_f in ((f"qkv_lora{k}", 3 * dim), (f"proj_lora{k}", dim)):
                down, up = factors.for_shape(out_f, dim, RANK)
                sd[f"{p}.{part}.down.weight"], sd[f"{p}.{part}.up.weight"] = down, up
    for n, blk in enumerate(transformer.single_transformer_blocks):
        dim = blk.attn.to_q.in_features
        p = f"single_blocks.{n}.processor"
        for part, out_f, in_f in (("qkv_lora", 3 * dim, dim), ("proj_lora", dim, blk.proj_out.in_features)):
            down, up = factors.for_shape(out_f, in_f, RANK)
            sd[f"{p}.{part}.down.weight"], sd[f"{p}.{part}.up.weight"] = down, up
    return save(sd, path)


def kohya_flux_modules(path: Path, transformer: nn.Module, names: list[str], *, seed: int = 19) -> Path:
    """networks/lora_flux.py's keys (as ``kohya_flux``) on only the BFL modules ``names`` of ``transformer``
    (any FLUX.1 transformer, a published one on the meta device too: only its shapes are read): a file
    that trains a few modules of a real-size model."""
    factors = Factors(seed)
    shapes = {name: (out_f, in_f) for name, out_f, in_f in bfl_modules(transformer)}
    sd: dict[str, torch.Tensor] = {}
    for name in names:
        down, up = factors.for_shape(*shapes[name], RANK)
        kohya_entry(sd, "lora_unet_" + name.replace(".", "_"), down, up, ALPHA)
    return save(sd, path, {"ss_network_module": "networks.lora_flux"})


def dreambooth_flux_modules(path: Path, transformer: nn.Module, names: list[str], *, seed: int = 20) -> Path:
    """diffusers' examples/dreambooth/train_dreambooth_lora_flux.py (PEFT's state dict saved by
    FluxPipeline.save_lora_weights): ``transformer.<name>.lora_A.weight`` / ``lora_B.weight``, no alpha,
    on only the diffusers modules ``names`` of ``transformer``. No fused module, so no split at
    FLUX.1-dev's hard-coded widths: a narrower FLUX.1 can take it."""
    factors = Factors(seed)
    modules = dict(transformer.named_modules())
    sd: dict[str, torch.Tensor] = {}
    for name in names:
        sd[f"transformer.{name}.lora_A.weight"], sd[f"transformer.{name}.lora_B.weight"] = \
            factors.for_module(modules[name], RANK)
    return save(sd, path)
