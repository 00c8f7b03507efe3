"""LoRA file layouts, written and read through one format-neutral representation.

Layouts
  diffusers        ``unet.<module>.lora_A.weight`` / ``lora_B`` (also ``text_encoder.``, ``text_encoder_2.``,
                   ``transformer.``); alpha, when given, in the safetensors header under
                   ``lora_adapter_metadata`` as diffusers writes it (LoraConfig kwargs per component).
  kohya            ``lora_unet_<module_with_underscores>.lora_down.weight`` / ``lora_up`` / ``.alpha``;
                   text encoders ``lora_te_`` (``lora_te1_``/``lora_te2_`` with two). LoCon conv LoRAs are
                   the same layout on Conv2d modules (3x3 or 1x1 down, 1x1 up).
  diffusion_model  ``diffusion_model.<module>.lora_A.weight`` / ``lora_B`` / ``.alpha`` (ComfyUI, ai-toolkit)
                   for transformer families whose loader strips the prefix (Qwen-Image); not Flux.1, whose
                   loader converts ``diffusion_model.`` only in kohya files with BFL module names.

Each layout is one entry in ``LAYOUTS``: the writer that stores a neutral LoRA in it. Reading is
parity/lora/reader.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

import torch

from parity.errors import ParityInputError
from parity.lora.familyguess import describe_guess
from parity.lora.neutral import LoraFile

METADATA_KEY = "lora_adapter_metadata"


# transformers 5 flattened CLIPTextModel (no ``text_model.`` level); every published file still has it.
TEXT_MODEL_PREFIX = "text_model."


def kohya_prefixes(components: list[str]) -> dict[str, str]:
    """Component → kohya key prefix; SDXL's two text encoders become te1/te2."""
    two_te = "text_encoder_2" in components
    out = {"unet": "lora_unet", "transformer": "lora_transformer"}
    out["text_encoder"] = "lora_te1" if two_te else "lora_te"
    out["text_encoder_2"] = "lora_te2"
    return {c: out[c] for c in components if c in out}


def _kohya_module_name(component: str, module: str) -> str:
    if component.startswith("text_encoder") and not module.startswith(TEXT_MODEL_PREFIX):
        module = TEXT_MODEL_PREFIX + module
    return module.replace(".", "_")


def _diffusers_metadata(lora: LoraFile) -> dict[str, str] | None:
    if all(m.alpha is None for m in lora.modules.values()):
        return None
    packed: dict[str, object] = {}
    for component in lora.components():
        mods = [m for (c, _), m in sorted(lora.modules.items()) if c == component]
        ranks = [m.rank for m in mods]
        alphas = [m.effective_alpha for m in mods]
        r = max(set(ranks), key=ranks.count)
        a = max(set(alphas), key=alphas.count)
        packed[f"{component}.r"] = r
        packed[f"{component}.lora_alpha"] = a
        packed[f"{component}.target_modules"] = [m.module for m in mods]
        packed[f"{component}.rank_pattern"] = {re.escape(m.module): m.rank for m in mods if m.rank != r}
        packed[f"{component}.alpha_pattern"] = {
            re.escape(m.module): m.effective_alpha for m in mods if m.effective_alpha != a
        }
    return {METADATA_KEY: json.dumps(packed), "format": "pt"}


Writer = Callable[[LoraFile], tuple[dict[str, torch.Tensor], dict[str, str] | None]]


def _write_diffusers(lora: LoraFile) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    sd = {}
    for (component, module), m in lora.modules.items():
        sd[f"{component}.{module}.lora_A.weight"] = m.down
        sd[f"{component}.{module}.lora_B.weight"] = m.up
    return sd, _diffusers_metadata(lora)


def _write_kohya(lora: LoraFile) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    sd = {}
    prefixes = kohya_prefixes(lora.components())
    for (component, module), m in lora.modules.items():
        if component not in prefixes:
            raise ValueError(f"kohya layout has no prefix for component {component!r}")
        stem = f"{prefixes[component]}_{_kohya_module_name(component, module)}"
        sd[f"{stem}.lora_down.weight"] = m.down
        sd[f"{stem}.lora_up.weight"] = m.up
        if m.alpha is not None:
            sd[f"{stem}.alpha"] = torch.tensor(float(m.alpha), dtype=m.down.dtype)
    return sd, None


def _write_diffusion_model(lora: LoraFile) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    sd = {}
    for (component, module), m in lora.modules.items():
        if component != "transformer":
            raise ValueError("the diffusion_model layout holds transformer LoRAs only")
        sd[f"diffusion_model.{module}.lora_A.weight"] = m.down
        sd[f"diffusion_model.{module}.lora_B.weight"] = m.up
        if m.alpha is not None:
            sd[f"diffusion_model.{module}.alpha"] = torch.tensor(float(m.alpha), dtype=m.down.dtype)
    return sd, None


# The layout registry: a name → the writer that stores a neutral LoRA in that layout. The families
# that publish a layout name it in their ``layouts`` (parity/zoo), and the case table takes it from there.
LAYOUTS: dict[str, Writer] = {
    "diffusers": _write_diffusers,
    "kohya": _write_kohya,
    "diffusion_model": _write_diffusion_model,
}


def to_state_dict(lora: LoraFile, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The tensors (and safetensors header metadata) ``layout`` stores for ``lora``."""
    try:
        write = LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}") from None
    sd, metadata = write(lora)
    return {k: v.contiguous() for k, v in sd.items()}, metadata


def save_lora(lora: LoraFile, path: str | os.PathLike, layout: str) -> str:
    from safetensors.torch import save_file

    sd, metadata = to_state_dict(lora, layout)
    save_file(sd, str(path), metadata=metadata)
    return str(path)


def detect_layout(keys: list[str], path: str | None = None) -> str:
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")) for k in keys):
        return "kohya"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "diffusion_model"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    raise ParityInputError("unrecognised LoRA layout (no lora_A/lora_B or lora_down/lora_up keys)"
                           + describe_guess(keys), path=path, key=sorted(keys)[0] if keys else None)
