"""FLUX.2 LoRA files the way each FLUX.2 trainer's own source writes them, for the tiny flux2 / flux2-klein
transformer; see trainer_files.py for the rule these writers follow (their own naming code, never
parity.lora's, never diffusers' converters).

Every trainer here but diffusers names modules the way Black Forest Labs' model does (black-forest-labs/
flux2 ``src/flux2/model.py``; ai-toolkit's ``extensions_built_in/diffusion_models/flux2/src/model.py`` and
musubi-tuner's ``flux_2/flux2_models.py`` are copies of it), so the writers first name every Linear of the
tiny diffusers Flux2Transformer2DModel by its BFL name (``bfl_linears``, the two model files side by side):
BFL's ``img_attn.qkv`` is one Linear whose output is diffusers' to_q, to_k and to_v stacked; a single
block's ``linear1`` is diffusers' ``attn.to_qkv_mlp_proj`` itself.

* musubi-tuner (kohya-ss/musubi-tuner ``src/musubi_tuner/networks/lora_flux_2.py`` + ``networks/lora.py``):
  ``FLUX_2_TARGET_REPLACE_MODULES = ["DoubleStreamBlock", "SingleStreamBlock"]``, every Linear inside one
  (the default excludes, ``img_mod.lin|txt_mod.lin|modulation.lin`` and ``norm``, match none of FLUX.2's);
  ``lora_unet_`` + BFL name with '.' -> '_', ``lora_down`` / ``lora_up`` / ``alpha``, bfloat16.
* ai-toolkit (ostris/ai-toolkit ``extensions_built_in/diffusion_models/flux2/flux2_model.py``): LoRA on its
  BFL Flux2 (``target_lora_modules = ["Flux2"]``), with ``transformer_only`` the modules under
  ``get_transformer_block_names()`` = ``["double_blocks", "single_blocks"]``, else every Linear of the model;
  PEFT ``lora_A`` / ``lora_B`` without alpha, ``convert_lora_weights_before_save``: ``transformer.`` ->
  ``diffusion_model.``; float16.
* ComfyUI LoraSave (``comfy_extras/nodes_lora_extract.py``, standard) on a FLUX.2 model difference: an SVD pair
  ``lora_up`` / ``lora_down`` for every 2-d ``diffusion_model.*.weight`` (FLUX.2's Linears have no bias; its
  RMSNorms hold ``.scale``, not ``.weight``, so LoraSave saves nothing else), float16, no alpha.
* fal's FLUX.2 [klein] trainer (its published files: diffusers #13169 "FAL trained loras use the default peft key
  naming", tested on fal/flux-2-klein-4b-spritesheet-lora; flux-2-swift-mlx #15 lists that file as "BFL format"):
  PEFT's ``save_pretrained`` keys of a LoRA on BFL's Flux2, ``base_model.model.`` + BFL name + ``lora_A`` /
  ``lora_B``, the file alone (no ``adapter_config.json``), no alpha. Which Linears it trains is not public: the
  blocks' (the names the issue shows), bfloat16.
* DiffSynth-Studio (modelscope/DiffSynth-Studio ``diffsynth/diffusion/training_module.py`` add_lora_to_model:
  ``inject_adapter_in_model(LoraConfig(r, lora_alpha=r, target_modules))`` on ``diffsynth/models/flux2_dit.py``
  Flux2DiT, a copy of diffusers' Flux2Transformer2DModel with its module names, loaded from the diffusers
  ``transformer/`` folder unconverted; ``export_trainable_state_dict`` keeps the trainable parameters and strips
  ``--remove_prefix_in_ckpt "pipe.dit."``): ``transformer_blocks.0.attn.to_q.lora_A.default.weight``, the
  targets of ``examples/flux2/model_training/lora/FLUX.2-klein-4B.sh``, in the pipeline's dtype (bfloat16).
* diffusers (``Flux2KleinPipeline.save_lora_weights``): ``transformer.`` + diffusers names, LoraConfig in the
  ``lora_adapter_metadata`` header.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import ALPHA, RANK, Factors, kohya_entry, save, saved_by_diffusers

# diffusers Flux2Transformer2DModel (transformer_flux2.py) -> BFL flux2/model.py, per double block. A list is
# one BFL Linear made of those diffusers Linears, output rows stacked in that order.
DOUBLE = {
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"], "img_attn.proj": ["attn.to_out.0"],
    "img_mlp.0": ["ff.linear_in"], "img_mlp.2": ["ff.linear_out"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], "txt_attn.proj": ["attn.to_add_out"],
    "txt_mlp.0": ["ff_context.linear_in"], "txt_mlp.2": ["ff_context.linear_out"],
}
SINGLE = {"linear1": ["attn.to_qkv_mlp_proj"], "linear2": ["attn.to_out"]}
# Flux2's top level: MLPEmbedder in_layer/out_layer, the three Modulation.lin, LastLayer.
TOP = {
    "img_in": "x_embedder", "txt_in": "context_embedder",
    "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
    "guidance_in.in_layer": "time_guidance_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_guidance_embed.guidance_embedder.linear_2",
    "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
    "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
    "single_stream_modulation.lin": "single_stream_modulation.linear",
    "final_layer.adaLN_modulation.1": "norm_out.linear",  # BFL LastLayer: shift|scale; diffusers: scale|shift
    "final_layer.linear": "proj_out",
}


@cache
def transformer(family: str = "flux2-klein") -> nn.Module:
    """The tiny family's transformer (parity/zoo/flux2.py), alone, with its pipeline's weights."""
    from parity.zoo.flux2 import tiny_transformer
    from parity.zoo.weights import fill_deterministic

    return fill_deterministic(tiny_transformer(guidance_embeds=family == "flux2"), 0, f"{family}/transformer")


def bfl_linears(model: nn.Module) -> list[tuple[str, int, int]]:
    """(BFL name, out features, in features) of every Linear of the BFL model the tiny transformer is,
    blocks first (BFL's module order: double_blocks, single_blocks), then the top level."""
    modules = dict(model.named_modules())
    out = []
    for attribute, original, table in (("transformer_blocks", "double_blocks", DOUBLE),
                                       ("single_transformer_blocks", "single_blocks", SINGLE)):
        for n in range(len(getattr(model, attribute))):
            for name, parts in table.items():
                linears = [modules[f"{attribute}.{n}.{p}"] for p in parts]
                out.append((f"{original}.{n}.{name}", sum(m.out_features for m in linears), linears[0].in_features))
    for name, diffusers_name in TOP.items():
        if diffusers_name in modules:  # klein has no guidance embedder
            m = modules[diffusers_name]
            out.append((name, m.out_features, m.in_features))
    return out


def block_linears(model: nn.Module) -> list[tuple[str, int, int]]:
    return [t for t in bfl_linears(model) if t[0].startswith(("double_blocks.", "single_blocks."))]


# ---------------------------------------------------------------- musubi-tuner


def musubi_flux2(path: Path, *, family: str = "flux2-klein", seed: int = 51,
                 dtype: torch.dtype = torch.bfloat16) -> Path:
    """networks/lora_flux_2.py: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` + alpha."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in block_linears(transformer(family)):
        down, up = factors.for_shape(out_f, in_f, RANK)
        kohya_entry(sd, "lora_unet_" + name.replace(".", "_"), down, up, ALPHA)
    metadata = {"ss_network_module": "networks.lora_flux_2", "ss_network_dim": str(RANK),
                "ss_network_alpha": str(ALPHA), "ss_base_model_version": "flux2",
                "modelspec.architecture": "Flux.2/lora"}
    return save(sd, path, metadata)


# ---------------------------------------------------------------- ai-toolkit


def aitoolkit_flux2(path: Path, *, family: str = "flux2-klein", seed: int = 52, transformer_only: bool = True,
                    dtype: torch.dtype = torch.float16) -> Path:
    """flux2_model.py: ``diffusion_model.`` + BFL names, lora_A / lora_B, no alpha; ``transformer_only=False``
    (the network config's ``transformer_only: false``) adds every top-level Linear, the final modulation too."""
    model = transformer(family)
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in block_linears(model) if transformer_only else bfl_linears(model):
        down, up = factors.for_shape(out_f, in_f, RANK)
        sd[f"diffusion_model.{name}.lora_A.weight"], sd[f"diffusion_model.{name}.lora_B.weight"] = down, up
    metadata = {"name": path.stem, "version": "1.0", "ss_base_model_version": "flux2", "format": "pt",
                "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit"})}
    return save(sd, path, metadata)


# ---------------------------------------------------------------- ComfyUI LoraSave, diffusers


def comfy_loraextract_flux2(path: Path, *, family: str = "flux2-klein", seed: int = 53) -> Path:
    """LoraSave standard on every 2-d weight of ComfyUI's FLUX.2 (BFL names), float16, no alpha."""
    factors = Factors(seed, torch.float16)
    sd: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in bfl_linears(transformer(family)):
        down, up = factors.for_shape(out_f, in_f, RANK)
        sd[f"diffusion_model.{name}.lora_up.weight"], sd[f"diffusion_model.{name}.lora_down.weight"] = up, down
    return save(sd, path)


def fal_flux2(path: Path, *, family: str = "flux2-klein", seed: int = 57, dtype: torch.dtype = torch.bfloat16) -> Path:
    """fal's FLUX.2 trainer: ``base_model.model.double_blocks.0.img_attn.qkv.lora_A.weight``, no alpha, no config."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, out_f, in_f in block_linears(transformer(family)):
        down, up = factors.for_shape(out_f, in_f, RANK)
        sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"] = down, up
    return save(sd, path)


# DiffSynth-Studio's FLUX.2 [klein] 4B script (--lora_target_modules): PEFT matches each as a name suffix
DIFFSYNTH_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                     "linear_in", "linear_out", "to_qkv_mlp_proj")


def diffsynth_flux2(path: Path, *, family: str = "flux2-klein", seed: int = 58,
                    dtype: torch.dtype = torch.bfloat16) -> Path:
    """DiffSynth-Studio on Flux2DiT (diffusers' names): ``transformer_blocks.0.attn.to_q.lora_A.default.weight``;
    the script names each single block's ``attn.to_out`` by its full name (``to_out`` alone would take the double
    blocks' ``to_out`` ModuleList, not a Linear)."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in transformer(family).named_modules():
        single_out = name.startswith("single_transformer_blocks.") and name.endswith(".attn.to_out")
        if isinstance(module, nn.Linear) and (single_out or any(name.endswith("." + t) for t in DIFFSYNTH_TARGETS)):
            sd[f"{name}.lora_A.default.weight"], sd[f"{name}.lora_B.default.weight"] = factors.for_module(module, RANK)
    return save(sd, path)


DIFFUSERS_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                     "linear_in", "linear_out", "to_qkv_mlp_proj", "attn.to_out")


def diffusers_flux2(folder: Path, *, family: str = "flux2-klein", seed: int = 54,
                    name: str = "diffusers_flux2.safetensors") -> Path:
    return saved_by_diffusers(folder, "Flux2KleinPipeline", transformer(family), DIFFUSERS_TARGETS, seed, name)


# ---------------------------------------------------------------- LoKr: ai-toolkit, LyCORIS

# ai-toolkit toolkit/config_modules.py NetworkConfig: ``lokr_full_rank`` (default True, and the UI's jobConfig.ts
# default) sets linear = linear_alpha = 9999999999, so toolkit/models/lokr.py LokrModule makes both factors full
# (decompose_both False; lora_dim >= max(b, d)/2) and registers alpha = lora_dim: the file's alpha is that number,
# which LyCORIS's rule ignores (both factors full: scale 1).
AITOOLKIT_FULL_RANK = 9999999999.0


def aitoolkit_flux2_lokr(path: Path, *, family: str = "flux2-klein", seed: int = 55, old_format: bool = False,
                         factor: int = -1, dtype: torch.dtype = torch.bfloat16) -> Path:
    """ai-toolkit ``network: type: lokr`` on its BFL Flux2 (blocks only, transformer_only), toolkit/models/lokr.py
    tensors ``lokr_w1`` (a, c) / ``lokr_w2`` (b, d) by lycoris' ``factorization(dim, lokr_factor)``, and ``alpha``.
    toolkit/network_mixins.py get_state_dict: the peft format keeps lokr's alpha and turns ``$$`` into dots, then
    flux2_model.py ``transformer.`` -> ``diffusion_model.``: ``diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1``
    (the keys of diffusers issues #13137 / #13261). ``old_format`` (``old_lokr_format: true``): kohya-style
    ``lora_transformer_`` names with '.' -> '_', renamed ``lycoris_``: ``lycoris_double_blocks_0_img_attn_qkv.lokr_w1``.
    Saved in the UI's default save dtype, bf16."""
    from tests.support.trainer_lycoris import lycoris_state_dict

    shapes = {(name.replace(".", "_") if old_format else name): (out_f, in_f)
              for name, out_f, in_f in block_linears(transformer(family))}
    sd = lycoris_state_dict(shapes, "lokr", prefix="lycoris_" if old_format else "diffusion_model.", rank=4,
                            seed=seed, dtype=dtype, lokr_factor=factor, lokr_full_w1=True, lokr_full_w2=True)
    for key in sd:
        if key.endswith(".alpha"):
            sd[key] = torch.tensor(AITOOLKIT_FULL_RANK).to(dtype)
    metadata = {"name": path.stem, "version": "1.0", "ss_base_model_version": "flux2", "format": "pt",
                "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit"})}
    return save(sd, path, metadata)


def lycoris_flux2_lokr(path: Path, *, family: str = "flux2-klein", seed: int = 56, rank: int = 2,
                       alpha: float = 1.0, dtype: torch.dtype = torch.bfloat16, kron_swapped: bool = False) -> Path:
    """LyCORIS's own wrapper (lycoris/wrapper.py ``create_lycoris(transformer, algo="lokr")``, as SimpleTuner trains
    diffusers' Flux2Transformer2DModel): ``lycoris_`` + the diffusers module name, '.' -> '_', for every Linear of
    the double and single blocks; lycoris/modules/lokr.py with its defaults (factor -1, decompose_both False): w1 full,
    w2 = lokr_w2_a @ lokr_w2_b where rank < max(b, d)/2, else full (and then alpha = rank); ``alpha`` a 0-d buffer,
    everything cast to the save dtype (wrapper.py save_weights). ``kron_swapped``: a negative control, each module's
    two full factors exchanged (kron(w2, w1) is another matrix of the same shape)."""
    from tests.support.trainer_lycoris import factorization, lycoris_state_dict

    sd: dict[str, torch.Tensor] = {}
    for name, module in transformer(family).named_modules():
        if isinstance(module, nn.Linear) and name.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            out_f, in_f = module.weight.shape
            (_, b), (_, d) = factorization(out_f), factorization(in_f)
            full_w2 = rank >= max(b, d) / 2 or kron_swapped
            part = lycoris_state_dict({name.replace(".", "_"): (out_f, in_f)}, "lokr", prefix="lycoris_", rank=rank,
                                      alpha=alpha, seed=seed, dtype=dtype, lokr_full_w1=True, lokr_full_w2=full_w2)
            if kron_swapped:
                stem = "lycoris_" + name.replace(".", "_")
                part[f"{stem}.lokr_w1"], part[f"{stem}.lokr_w2"] = part[f"{stem}.lokr_w2"], part[f"{stem}.lokr_w1"]
            sd.update(part)
    return save(sd, path, {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": "lokr"})})
