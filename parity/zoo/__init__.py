"""The model zoo: one registry entry per family (parity/zoo/registry.py); tiny built-in models or real ones by path."""

from __future__ import annotations

from typing import Any

import torch

from parity.errors import ParityInputError
from parity.zoo.fit import check_parts_fit
from parity.zoo.loading import quiet_loader
from parity.zoo.family import Family
from parity.zoo.registry import FAMILIES, UNAVAILABLE, get_family
from parity.zoo.source import load

__all__ = ["FAMILIES", "UNAVAILABLE", "Family", "build_pipeline", "get_family"]

def build_pipeline(
    family: Family | str,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    model_path: str | None = None,
    seed: int = 0,
    quantization: str | None = None,
) -> Any:
    """The family's tiny pipeline (deterministic weights) or the user's model from ``model_path``; with
    ``quantization`` (a parity/quant/registry.py name), its denoiser(s) quantized as users quantize them."""
    fam = get_family(family) if isinstance(family, str) else family
    if model_path is not None:
        try:  # load resolves what it is (folder, Hub snapshot, single file); bad input passes as its own line
            pipe = load(fam, model_path, dtype)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParityInputError(f"diffusers could not load the model ({type(exc).__name__}: {exc})",
                                   path=model_path) from None
        check_parts_fit(fam.fits, pipe, model_path)
    else:
        pipe = fam.build_tiny(seed)
        with quiet_loader():  # Wan's "modules that should be kept in float32": the tiny model is cast whole
            pipe.to(dtype=dtype)
    if quantization is not None:
        from parity.quant.apply import quantize_denoisers
        from parity.quant.registry import require

        quantizer = require(quantization, device)
        pipe = pipe.to(device)
        quantize_denoisers(pipe, fam, quantizer, dtype, device, model_path=model_path)
        return pipe
    return pipe.to(device)
