"""LoRA files for the Qwen-Image-Edit workflow tests: one synthesised adapter on the family's default
targets, and the same with a NaN planted in one module's factor (which our reader would refuse, so
only diffusers reads it)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family

SEED, RANK, ALPHA = 21, 4, 2.0


def edit_lora(folder: Path, family: str = "qwenimage-edit", layout: str = "diffusers") -> str:
    fam = get_family(family)
    return write_lora(fam.components(build_pipeline(fam)), fam.default_targets, folder / f"edit-{layout}.safetensors",
                      layout, seed=SEED, rank=RANK, alpha=ALPHA)


def with_nan(path: str, module: str) -> str:
    """A copy of a diffusers-layout file whose ``transformer.<module>`` lora_B holds one NaN."""
    tensors = load_file(path)
    key = f"transformer.{module}.lora_B.weight"
    assert key in tensors, f"{key} not in {path}"
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    out = str(Path(path).with_name(f"nan-{module}.safetensors"))
    save_file(tensors, out)
    return out


def with_zero_effect(path: str) -> str:
    """A copy whose every lora_B is zero: an adapter that changes nothing."""
    tensors = {k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in load_file(path).items()}
    out = str(Path(path).with_name("zero-effect.safetensors"))
    save_file(tensors, out)
    return out
