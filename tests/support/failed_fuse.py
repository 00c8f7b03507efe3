"""A tiny sd15 pipeline with one adapter loaded from a state dict, optionally with a NaN planted past
the first layers diffusers fuses: what the failed-fuse checks and their finding start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.lora import LoraLayer

from parity.checks.fuse import snapshot
from parity.lora.layouts import to_state_dict
from parity.lora.synth import synth_lora
from parity.zoo import build_pipeline, get_family


@dataclass
class Loaded:
    pipe: Any
    components: dict
    before: dict  # every base tensor after loading, before any fuse
    poisoned: str | None  # component.module whose LoRA B holds a NaN


def loaded_sd15(poison: bool) -> Loaded:
    family = get_family("sd15")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    lora = synth_lora(components, family.default_targets, seed=11, rank=4, alpha=4.0)
    sd, _ = to_state_dict(lora, "diffusers")
    poisoned = None
    if poison:
        # Past the first layers diffusers fuses, so a non-atomic fuse has fused some before refusing.
        keys = sorted(k for k in sd if k.startswith("unet.") and ".lora_B." in k)
        key = keys[len(keys) // 2]
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = float("nan")
        poisoned = key.removesuffix(".lora_B.weight")
    # A state dict, not our reader: the reader refuses NaN before diffusers ever sees it.
    pipe.load_lora_weights(sd, adapter_name="a0")
    return Loaded(pipe, components, snapshot(components), poisoned)


def changed_tensors(before: dict, after: dict) -> list[str]:
    return [f"{c}.{k}" for c in before for k, t in before[c].items() if not torch.equal(t, after[c][k])]


def merged_layers(components: dict) -> list[str]:
    return [name for m in components.values() for name, layer in m.named_modules()
            if isinstance(layer, LoraLayer) and layer.merged_adapters]
