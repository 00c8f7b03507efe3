"""Good files to break: the tiny sd15 model, a LoRA that fits it, LoRAs made for other families, and
pickles (one that would run code when unpickled). tests/test_bad_input.py breaks them one way per
case; tests/test_pickles.py checks the pickle opt-in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from parity.lora.layouts import to_state_dict
from parity.lora.neutral import LoraFile
from parity.lora.synth import synth_lora
from parity.zoo import build_pipeline, get_family

MODULE = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"  # a 16x16 Linear of the tiny sd15 unet
KOHYA_STEM = "lora_unet_" + MODULE.replace(".", "_")
DIFFUSERS_STEM = f"unet.{MODULE}"
TE_MODULE = "encoder.layers.0.self_attn.q_proj"
MARKER = "MARKER_created_by_unpickling"


@dataclass(frozen=True)
class Good:
    """The tiny sd15 model's LoRA-capable components and a LoRA that fits them, plus LoRAs made for
    other families (synthesised on those families' tiny models)."""

    components: dict
    lora: LoraFile
    sdxl: LoraFile
    flux: LoraFile
    sd2: LoraFile  # sd15's key names: told apart by its cross-attention and text widths

    def state_dict(self, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
        sd, metadata = to_state_dict(self.lora, layout)
        return {k: v.clone() for k, v in sd.items()}, metadata


Writer = Callable[[Good, Path], Path]  # writes a (bad) input into the folder, returns the path to give


def good_files() -> Good:
    """The tiny sd15 model's components, a LoRA that fits them, and LoRAs made for other families."""

    def components(name: str) -> dict:
        family = get_family(name)
        return family.components(build_pipeline(family))

    sd15 = components("sd15")
    sdxl = components("sdxl")
    flux = components("flux")
    sd2 = components("sd2")
    return Good(
        components=sd15,
        lora=synth_lora(sd15, {"unet": ("to_q", "conv1"), "text_encoder": ("q_proj",)}, seed=1, rank=4, alpha=2.0),
        sdxl=synth_lora(sdxl, {"unet": ("to_q",), "text_encoder": ("q_proj",), "text_encoder_2": ("q_proj",)}, seed=2),
        flux=synth_lora(flux, {"transformer": ("to_q",)}, seed=3),
        sd2=synth_lora(sd2, {"unet": ("to_k",), "text_encoder": ("q_proj",)}, seed=4),
    )


class _PlantsMarker:
    """Unpickling this runs open(marker, "w"): proof, if the marker appears, that a pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(name: str) -> Writer:
    def write(good: Good, d: Path) -> Path:
        torch.save({f"{DIFFUSERS_STEM}.lora_A.weight": _PlantsMarker(str(d / MARKER))}, d / name)
        return d / name

    return write


def plain_pickle(name: str) -> Writer:
    """The good LoRA's unet part, kohya layout (alpha as tensors: a pickle has no header metadata).
    Unet only: diffusers 0.42 cannot convert kohya text-encoder keys for a transformers-5 CLIP at all."""
    def write(good: Good, d: Path) -> Path:
        sd = good.state_dict("kohya")[0]
        torch.save({k: v for k, v in sd.items() if k.startswith("lora_unet_")}, d / name)
        return d / name

    return write
