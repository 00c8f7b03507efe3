"""Finding LoRA-capable layers and base weights in a model, whether PEFT has wrapped it or not.

PEFT replaces ``x.to_q`` by a LoraLayer whose original module lives at ``x.to_q.base_layer``;
everything here speaks in the canonical (unwrapped) names so that snapshots taken before and
after loading a LoRA line up key for key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

LORA_CAPABLE = (nn.Linear, nn.Conv2d)


def pipeline_models(pipe: Any) -> dict[str, nn.Module]:
    """Every model of a pipeline (LoRA-capable or not: the VAE and FLUX.1's T5 count too), by component."""
    return {name: m for name, m in pipe.components.items() if isinstance(m, nn.Module)}


def canonical_name(name: str) -> str:
    return name.replace(".base_layer", "")


# Where a PEFT tuner layer keeps its adapters by name: LoRA's lora_A (a ModuleDict), LoKr's lokr_w1 or
# lokr_w1_a and LoHa's hada_w1_a (ParameterDicts), which diffusers builds for LyCORIS files it converts.
ADAPTER_HOLDERS = ("lora_A", "lokr_w1", "lokr_w1_a", "hada_w1_a")


def held_adapters(layer: nn.Module) -> set[str]:
    """The adapter names a PEFT tuner layer (LoRA, LoKr, LoHa) holds; empty for any other module."""
    names: set[str] = set()
    for attribute in ADAPTER_HOLDERS:
        held = getattr(layer, attribute, None)
        if isinstance(held, (nn.ModuleDict, nn.ParameterDict)):
            names.update(held.keys())
    return names


def _is_peft_internal(name: str) -> bool:
    return any(part in name for part in (".lora_A", ".lora_B", ".lora_dropout", ".lora_magnitude_vector", ".lora_embedding"))


def lora_capable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Canonical name → the base Linear/Conv2d module (the one holding the weight)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LORA_CAPABLE) or _is_peft_internal(name):
            continue
        found[canonical_name(name)] = module
    return found


class ParameterSite:
    """A bare parameter of a module (Wan's modulation table ``blocks.N.scale_shift_table``), standing in
    for a module whose ``weight`` it is: what a full difference (``.diff_m``) addresses."""

    bias = None

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight


def difference_sites(model: nn.Module) -> dict[str, Any]:
    """Canonical name → every place a full difference (``.diff``, ``.diff_m``) can land that takes no
    LoRA pair: modules holding a weight that are not Linear/Conv2d (norms, Conv3d), and bare
    parameters, named by their parameter name (ParameterSite)."""
    found: dict[str, Any] = {}
    for name, module in model.named_modules():
        if _is_peft_internal(name) or isinstance(module, LORA_CAPABLE) or ".base_layer" in name + ".":
            continue
        for pname, param in module.named_parameters(recurse=False):
            if not param.is_floating_point():
                continue
            if pname == "weight":
                found[canonical_name(name)] = module
            elif pname != "bias":
                found[canonical_name(f"{name}.{pname}" if name else pname)] = ParameterSite(param)
    return found


def base_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Canonical parameter name → a detached copy of every base (non-LoRA) tensor in the model."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        if _is_peft_internal(name):
            continue
        out[canonical_name(name)] = tensor.detach().clone()
    return out



def live_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Canonical parameter name → every base tensor of ``model`` as it is now (no copy)."""
    return {canonical_name(name): t.detach() for name, t in model.state_dict(keep_vars=False).items()
            if not _is_peft_internal(name)}


def dtype_of(components: Mapping[str, nn.Module]) -> torch.dtype:
    """The dtype most of the parameters are in: from_pretrained(torch_dtype=...) keeps a model's
    ``_keep_in_fp32_modules`` in float32 (Wan's norms, time embedder and modulation tables)."""
    counts: dict[torch.dtype, int] = {}
    for model in components.values():
        for p in model.parameters():
            counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return max(counts, key=counts.__getitem__)
