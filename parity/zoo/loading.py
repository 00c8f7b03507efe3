"""How diffusers is told to load a user's model, shared by the folder loader (parity/zoo/family.py), the
single-file loader and the read-back of base weights: the variant ``--model-path`` carries, the keyword
arguments ``from_pretrained`` gets, and diffusers' error log silenced around a load whose failure is
reported as one line, and what a resolved source is (``Source``, parity/zoo/source.py decides it). It
imports nothing of the zoo, so each of those can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
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


class _Reports(logging.Handler):
    """transformers' load reports, kept rather than printed: a table of dozens of lines per component."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def transformers_load_reports() -> Iterator[list[str]]:
    """The warnings transformers logs while components load (its LOAD REPORT tables), caught and not
    printed: a text encoder whose config.json disagrees with its weights is reported there, row by row,
    before transformers raises a RuntimeError that says only "look at the above report"."""
    from transformers.utils import logging as transformers_logging

    handler = _Reports()
    root = transformers_logging.get_logger()  # the "transformers" logger every module's logger propagates to
    level = transformers_logging.get_verbosity()  # the CLI sets error (parity/quiet.py), which drops the report
    transformers_logging.disable_default_handler()
    transformers_logging.set_verbosity_warning()
    root.addHandler(handler)
    try:
        yield handler.messages
    finally:
        root.removeHandler(handler)
        transformers_logging.set_verbosity(level)
        transformers_logging.enable_default_handler()


def size_mismatch(exc: BaseException, reports: list[str]) -> str | None:
    """What a load that failed on weights of the wrong size says about it, in one line: the component's
    class and folder and the first mismatched key (from transformers' report or its error), or None when
    ``exc`` is some other failure."""
    text = str(exc)
    if "mismatched_sizes" not in text and "size mismatch" not in text:
        return None
    # transformers 5 lists the mismatched keys in its report, transformers 4 in its error
    lines = [line for report in reports for line in re.sub(r"\x1b\[[0-9;]*m", "", report).splitlines()]
    row = next((line for line in [*lines, *text.splitlines()] if "size mismatch" in line), "")
    first = " ".join(row.replace("|", " ").split())
    where = _loading(exc)
    component = f"{where[0]} in {where[1]}: " if where else ""
    return f"{component}weights do not fit its config.json ({first or text.splitlines()[0]})"


def _loading(exc: BaseException) -> tuple[str, str] | None:
    """(class, folder) of the innermost ``from_pretrained`` in ``exc``'s traceback (its ``cls`` and
    ``pretrained_model_name_or_path``): the component and its subfolder, which neither transformers' error
    names (transformers 4 names a submodule: "… state_dict for Embedding")."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        folder, cls = local.get("pretrained_model_name_or_path"), local.get("cls")
        if isinstance(folder, (str, os.PathLike)) and isinstance(cls, type):
            found = (cls.__name__, os.fspath(folder))
        tb = tb.tb_next
    return found
