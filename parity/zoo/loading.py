"""How diffusers is told to load a user's model, shared by the folder loader (parity/zoo/family.py), the
single-file loader and the read-back of base weights: the variant ``--model-path`` carries, the keyword
arguments ``from_pretrained`` gets, and diffusers' error log silenced around a load whose failure is
reported as one line, and what a resolved source is (``Source``, parity/zoo/source.py decides it). It
imports nothing of the zoo, so each of those can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    kind: str  # "folder" or "single-file"
    path: str
    variant: str | None = None
    config: str | None = None  # single-file: the diffusers folder whose configs describe it
    configs: str = ""  # single-file: where those configs come from, in words
    parts: str = "tiny"  # a transformer-only file: the rest of the pipeline, "tiny" or "published" (resized)

    def describe(self) -> str:
        if self.kind == "single-file":
            return f"{self.path} (single-file checkpoint, configs: {self.configs})"
        return self.path + (f" (variant {self.variant})" if self.variant else "")


def variant_of(path: str) -> str | None:
    """The ``--variant`` a ``ModelPath`` (parity/zoo/source.py) carries; None for a plain path."""
    return getattr(path, "variant", None)


@contextlib.contextmanager
def quiet_loader() -> Iterator[None]:
    """diffusers logs a failed load at error level before raising it: the raise is reported as one line,
    so its log line would be a second one."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    bars = diffusers_logging.is_progress_bar_enabled()  # from_single_file's "Loading pipeline components"
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        if bars:
            diffusers_logging.enable_progress_bar()


def pretrained_kwargs(path: str) -> dict[str, Any]:
    """What ``from_pretrained`` is told for ``path`` besides the family's own arguments."""
    variant = variant_of(path)
    return {"use_safetensors": True, **({"variant": variant} if variant else {})}
