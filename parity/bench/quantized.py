"""Benchmarks on a quantized base (issue 33): the subject's denoiser quantized as users quantize it
(parity/quant/apply.py), then timed as the float subject is: base / unfused / fused together
(parity/bench/groups.py), and two operations of its own: the load+quantize (the denoiser's
``from_pretrained(quantization_config=…)``, ``from_single_file`` of its GGUF, or
``enable_layerwise_casting``) and ``fuse_lora`` on the quantized weights.

What diffusers does on a quantizer is measured, never assumed: a mode or operation whose call raises
(fuse_lora on GGUF and fp8 layerwise casting, on this CPU) is skipped with the error it raised.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from parity.bench.modes import Subject, build_subject
from parity.zoo.family import Family


def build_quantized_subject(family: Family, size: str, dtype: torch.dtype, device: str, directory: str,
                            quantization: str, model_path: str | None = None, blocks: int | None = None) -> Subject:
    """``build_subject``'s pipeline and LoRA files (written from the float denoiser: a GGUF weight's shape
    is its packed bytes), then the denoiser quantized by ``quantization``. No snapshot: a quantized weight
    is not written back by ``leave``, so a quantized subject serves one case."""
    from parity.quant.apply import quantize_denoisers
    from parity.quant.registry import require

    quantizer = require(quantization, device)
    subject = build_subject(family, size, dtype, device, directory, model_path=model_path, blocks=blocks,
                            snapshot=False)
    quantize_denoisers(subject.pipe, family, quantizer, dtype, device)
    subject.quantization = quantization
    subject.notes = "; ".join(n for n in (subject.notes, f"denoiser quantized: {quantizer.how}") if n)
    return subject


def first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


@dataclass
class LoadQuantize:
    """The denoiser's load+quantize as a user's script does it, from a folder (and GGUF) written once."""

    load: Callable[[], nn.Module]
    setup: Callable[[], None] | None = None


def load_quantize(subject: Subject, float_denoiser: nn.Module, directory: str) -> LoadQuantize:
    """What ``target`` times: from_pretrained with the quantizer's config (from_single_file of a GGUF of
    the denoiser's weights; enable_layerwise_casting on a fresh copy made before each round), onto the
    device. Writing the folder and the GGUF is setup, done once."""
    from parity.quant.apply import loaded_quantized  # the same load the suite quantizes with
    from parity.quant.registry import get_quantizer

    quantizer = get_quantizer(subject.quantization)
    if quantizer.apply == "layerwise":
        held: dict[str, nn.Module] = {}

        def fresh() -> None:
            held["model"] = copy.deepcopy(float_denoiser)

        def cast() -> nn.Module:
            model = held.pop("model")
            model.enable_layerwise_casting(storage_dtype=quantizer.storage, compute_dtype=subject.dtype)
            return model

        return LoadQuantize(cast, fresh)
    folder = os.path.join(directory, f"float-{subject.family.name}")
    float_denoiser.save_pretrained(folder, safe_serialization=True)
    gguf_path = None
    if quantizer.apply == "gguf":
        from parity.quant.gguf_file import write_gguf

        gguf_path = write_gguf(float_denoiser.state_dict(), os.path.join(folder, "model.gguf"), quantizer.gguf_type)
    cls = type(float_denoiser)

    def load() -> nn.Module:
        model = loaded_quantized(cls, folder, quantizer, subject.dtype, gguf_path)
        return model if quantizer.backend == "bitsandbytes" else model.to(subject.device)

    return LoadQuantize(load)


def fused(subject: Subject) -> bool:
    return any(getattr(m, "merged", False) for m in subject.denoiser.modules())


def fuse(subject: Subject) -> None:
    subject.pipe.fuse_lora(components=[subject.family.denoiser])


def unfuse_if_fused(subject: Subject) -> None:
    if fused(subject):
        subject.pipe.unfuse_lora(components=[subject.family.denoiser])


def fuse_refusal(subject: Subject) -> str | None:
    """Fuse once (then unfuse): None where it fused, else what it raised. The subject is left unfused."""
    try:
        fuse(subject)
    except Exception as exc:  # noqa: BLE001 - diffusers' refusal on this quantizer is the measurement
        return first_line(exc)
    unfuse_if_fused(subject)
    return None


__all__ = ["build_quantized_subject", "load_quantize", "fuse_refusal", "fuse", "unfuse_if_fused"]
