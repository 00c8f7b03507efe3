"""The model zoo: one registry entry per family; tiny built-in models or real ones by path."""

from __future__ import annotations

from typing import Any

import torch

from parity.errors import ParityInputError
from parity.zoo.fit import check_parts_fit
from parity.zoo import flux, qwenimage, qwenimage_edit, sd2, sd15, sdxl
from parity.zoo.family import Family
from parity.zoo.source import load, resolve

# A family whose pipeline this diffusers lacks is left out of the registry (and so out of every case
# table) with the reason, which get_family gives: the gate's old env runs diffusers 0.35.
UNAVAILABLE: dict[str, str] = {name: why for name, why in ((qwenimage_edit.NAME, qwenimage_edit.available()),)
                               if why is not None}
FAMILIES: dict[str, Family] = {f.name: f for f in (sd15.FAMILY, sdxl.FAMILY, flux.FAMILY, qwenimage.FAMILY,
                                                   qwenimage_edit.FAMILY, sd2.FAMILY) if f.name not in UNAVAILABLE}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        if name in UNAVAILABLE:
            raise ParityInputError(f"family {name!r} is not available here: {UNAVAILABLE[name]}") from None
        raise ParityInputError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def build_pipeline(
    family: Family | str,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    model_path: str | None = None,
    seed: int = 0,
) -> Any:
    """The family's tiny pipeline (deterministic weights) or the user's model from ``model_path``."""
    fam = get_family(family) if isinstance(family, str) else family
    if model_path is not None:
        resolve(model_path, fam)  # what it is (folder, Hub snapshot, single file), or its own clear message
        try:
            pipe = load(fam, model_path, dtype)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParityInputError(f"diffusers could not load the model ({type(exc).__name__}: {exc})",
                                   path=model_path) from None
        check_parts_fit(fam.fits, pipe, model_path)
    else:
        pipe = fam.build_tiny(seed)
        pipe.to(dtype=dtype)
    return pipe.to(device)
