"""Finding LoRA-capable layers and base weights in a model, whether PEFT has wrapped it or not.

PEFT replaces ``x.to_q`` by a LoraLayer whose original module lives at ``x.to_q.base_layer``;
everything here speaks in the canonical (unwrapped) names so that snapshots taken before and
after loading a LoRA line up key for key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LORA_CAPABLE = (nn.Linear, nn.Conv2d)


def pipeline_models(pipe: Any) -> dict[str, nn.Module]:
    """Every model of a pipeline (LoRA-capable or not: the VAE and FLUX.1's T5 count too), by component."""
    return {name: m for name, m in pipe.components.items() if isinstance(m, nn.Module)}


def canonical_name(name: str) -> str:
    return name.replace(".base_layer", "")


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
