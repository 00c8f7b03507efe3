"""Whether a model folder's components fit each other, checked before anything runs on them.

diffusers loads each component of a folder on its own, so a text encoder whose hidden size is not
the UNet's ``cross_attention_dim`` loads fine and fails later, inside a forward, as a torch
traceback. Each family declares the sizes that must agree (``Family.fits``) as pairs of config
reads; a folder where one pair differs is bad input naming the folder and both sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parity.errors import ParityInputError

Read = Callable[[Any], int | None]  # pipeline → a size, or None where the component is absent


def config(component: str, *fields: str, times: int = 1) -> Read:
    """``component.config.<field>`` (the first field it has; dotted for a nested config, as Qwen2.5-VL's
    ``text_config.hidden_size``), times ``times``; None without the component."""
    def read(pipe: Any) -> int | None:
        part = getattr(pipe, component, None)
        cfg = getattr(part, "config", None)
        for f in fields:
            value = cfg
            for step in f.split("."):  # a nested config may be an object or, serialised, a dict
                value = value.get(step) if isinstance(value, dict) else getattr(value, step, None)
            if isinstance(value, int):
                return value * times
        return None

    read.__doc__ = f"{component} {' / '.join(fields)}" + (f" x {times}" if times != 1 else "")
    return read


def total(*reads: Read) -> Read:
    """The sum of several sizes (SDXL's UNet attends to both text encoders' states, concatenated)."""
    def read(pipe: Any) -> int | None:
        values = [r(pipe) for r in reads]
        return None if any(v is None for v in values) else sum(values)

    read.__doc__ = " + ".join(r.__doc__ or "?" for r in reads)
    return read


@dataclass(frozen=True)
class Fit:
    """Two sizes that must be equal for the parts to work together."""

    left: Read
    right: Read

    def mismatch(self, pipe: Any) -> str | None:
        a, b = self.left(pipe), self.right(pipe)
        if a is None or b is None or a == b:
            return None
        return f"{self.left.__doc__} is {a} but {self.right.__doc__} is {b}"


def check_parts_fit(fits: tuple[Fit, ...], pipe: Any, path: str) -> None:
    """ParityInputError naming ``path`` and the first two sizes that differ."""
    for fit in fits:
        problem = fit.mismatch(pipe)
        if problem is not None:
            raise ParityInputError(f"the folder's components do not fit each other: {problem}", path=path)
