"""PEFT adapter folders written by PEFT itself, on the tiny models: ``get_peft_model(<component>,
LoraConfig(...))`` then ``save_pretrained(folder)``, as PEFT's examples/lora_dreambooth and the trainers
built on it save a UNet's or a text encoder's adapter. That writes ``adapter_model.safetensors`` (keys
``base_model.model.<module>.lora_A.weight``) and ``adapter_config.json`` beside it; nothing here comes
from parity.lora, the code those folders test.

The factors are set after injection from a seeded generator (LoRA B starts at zero, and PEFT's random
init follows torch's global generator), so a folder is the same on every run. ``peft_scales`` is what the
trainer's own model applies per module: the truth a reader's α/r is compared with.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import Factors, tiny_components

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CLIP_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(getattr(m, "lora_A", None), nn.ModuleDict)]


def peft_adapter(folder: Path, *, family: str = "sd15", component: str = "unet", targets: list[str] | None = None,
                 r: int = 4, lora_alpha: float = 2.0, rank_pattern: dict | None = None,
                 alpha_pattern: dict | None = None, use_rslora: bool = False, use_dora: bool = False, seed: int = 31,
                 dtype: torch.dtype = torch.float32) -> Path:
    """``folder`` as PEFT's save_pretrained leaves it for a LoRA on the tiny ``family``'s ``component``."""
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(tiny_components(family)[component])
    config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=targets or (
        CLIP_TARGETS if component.startswith("text_encoder") else UNET_TARGETS),
        rank_pattern=rank_pattern or {}, alpha_pattern=alpha_pattern or {}, use_rslora=use_rslora, use_dora=use_dora)
    peft_model = get_peft_model(model, config)
    factors = Factors(seed, dtype)
    with torch.no_grad():
        for _, layer in _lora_layers(peft_model):
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            down, up = factors.draw(tuple(a.shape), tuple(b.shape))
            a.copy_(down)
            b.copy_(up)
    peft_model.save_pretrained(str(folder))
    return Path(folder)


def peft_scales(folder: Path, family: str = "sd15", component: str = "unet") -> dict[str, float]:
    """module → the scale PEFT's own loader gives it: PeftModel.from_pretrained on the tiny component,
    each LoRA layer's ``scaling`` (α/r, or α/√r with rsLoRA)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(tiny_components(family)[component]), str(folder))
    return {name.removeprefix("base_model.model."): float(layer.scaling["default"])
            for name, layer in _lora_layers(model)}


def scales_of(lora) -> dict[str, float]:  # noqa: ANN001 - a parity LoraFile
    """module → the scale (α/r) a reader's LoraFile gives it."""
    pairs = [getattr(m, "inner", m) for m in lora.modules.values()]  # a DoRA module's scale is its pair's
    return {m.module: m.effective_alpha / m.rank for m in pairs}


def scale_mismatches(ours: dict[str, float], truth: dict[str, float]) -> list[str]:
    """Where a reader's α/r per module is not PEFT's (a module missing or extra counts), as lines."""
    out = [f"{m}: missing" for m in sorted(set(truth) - set(ours))]
    out += [f"{m}: PEFT has no such layer" for m in sorted(set(ours) - set(truth))]
    out += [f"{m}: {ours[m]} vs PEFT's {truth[m]}" for m in sorted(set(ours) & set(truth))
            if not math.isclose(ours[m], truth[m], rel_tol=1e-12)]
    return out
