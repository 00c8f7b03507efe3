"""A transformer LoRA as diffusers' training scripts save one (``save_lora_weights``, the LoraConfig in the
header), with random rank-4 pairs on the named modules of a (meta-device) transformer at published widths: the
files the reduced-route tests route. Written by diffusers, not by our layout writers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def diffusers_saved(folder: Path, pipeline_class: str, transformer: nn.Module, names: list[str],
                    seed: int = 8) -> Path:
    import diffusers
    from peft import LoraConfig

    gen, layers = torch.Generator().manual_seed(seed), {}
    for name in names:
        module = transformer.get_submodule(name)
        layers[f"{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=gen) / 64
        layers[f"{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=gen) / 64
    folder.mkdir(parents=True, exist_ok=True)
    getattr(diffusers, pipeline_class).save_lora_weights(
        str(folder), transformer_lora_layers=layers,
        transformer_lora_adapter_metadata=LoraConfig(r=4, lora_alpha=4, target_modules=names).to_dict())
    return folder / "pytorch_lora_weights.safetensors"
