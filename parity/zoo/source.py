"""Where a user's model comes from, resolved in one place: every loader and every read-back of base weights
asks here what ``--model-path`` names and how diffusers loads it.

- A diffusers pipeline folder, as ``save_pretrained`` or ``huggingface-cli download`` leaves it: loaded with
  ``from_pretrained(local_files_only=True, use_safetensors=True)`` (a ``.bin`` beside the safetensors is
  never unpickled: a component that has only a pickle is refused by diffusers, named), with
  ``variant=`` when ``--variant`` is given (``*.fp16.safetensors``). Sharded weights follow their
  ``*.safetensors.index.json``; README.md, .gitattributes and other files at the root are not read.
  SD1.5's ``safety_checker`` is not loaded (``safety_checker=None``: the checks never run it, and its
  weights are a 1.2 GB CLIP vision model); its ``feature_extractor``, a preprocessing config with no weights,
  loads as diffusers loads it.
- A single ``.safetensors`` checkpoint in the original LDM/SGM (SD1.5, SD 2.x, SDXL) or BFL (FLUX.1) names, or
  a Qwen-Image transformer file: loaded with ``from_single_file`` and the configs of a local diffusers
  folder (parity/zoo/single_file.py says which), never guessed by diffusers (it would download them).

``--variant`` and ``--model-config`` travel with the path itself (``ModelPath``, a ``str``), so that the
requests, reports and caches between the front ends and the loader carry them unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from parity.errors import ParityInputError
from parity.zoo.loading import Source, variant_of


class ModelPath(str):
    """``--model-path`` with the options that say how to read it. Equal to, and printed as, the path."""

    variant: str | None
    config: str | None

    def __new__(cls, path: str, variant: str | None = None, config: str | None = None) -> "ModelPath":
        made = super().__new__(cls, path)
        made.variant, made.config = variant, config
        return made

    def __reduce__(self) -> Any:  # pickled into pytest-xdist workers and spawn'd processes whole
        return (ModelPath, (str(self), self.variant, self.config))


def model_path(path: str | None, variant: str | None = None, config: str | None = None) -> str | None:
    """What a front end passes on for ``--model-path``/``--variant``/``--model-config``."""
    if path is None:
        if variant is not None or config is not None:
            flag = "--variant" if variant is not None else "--model-config"
            raise ParityInputError(f"{flag} describes a --model-path: give one")
        return None
    if variant is None and config is None:
        return path
    return ModelPath(path, variant, config)


def _folder(path: str, variant: str | None) -> Source:
    from parity.zoo.stored import loaded_files

    if not os.path.exists(os.path.join(path, "model_index.json")):
        raise ParityInputError("not a diffusers pipeline folder (model_index.json missing)", path=path)
    if variant is not None and not any(loaded_files(os.path.join(path, c), variant, fallback=False)
                                       for c in sorted(os.listdir(path))
                                       if os.path.isdir(os.path.join(path, c))):
        raise ParityInputError(f"no component holds {variant!r} variant weights (*.{variant}.safetensors)",
                               path=path)
    return Source("folder", path, variant)


def resolve(path: str, family: Any = None) -> Source:
    """What ``path`` is; bad input naming it where it is nothing diffusers can load offline. A single
    file needs the ``family`` (its configs are the family's)."""
    variant, config = variant_of(path), getattr(path, "config", None)
    plain = str(path)
    if not os.path.exists(plain):
        raise ParityInputError("no such model file or folder", path=plain)
    if os.path.isdir(plain):
        if config is not None:
            raise ParityInputError("--model-config describes a single-file checkpoint; this is a folder", path=plain)
        return _folder(plain, variant)
    if variant is not None:
        raise ParityInputError("--variant picks a folder's *.VARIANT.safetensors; this is a single file", path=plain)
    if not plain.endswith(".safetensors"):
        raise ParityInputError("a single-file checkpoint must be .safetensors (a pickled .ckpt is never "
                               "unpickled; GGUF is not read)", path=plain)
    if family is None:
        raise ParityInputError("a single-file checkpoint is one family's model: give its family", path=plain)
    from parity.zoo.single_file import resolve_single_file

    return resolve_single_file(plain, family, config)


def describe(path: str | None, family: Any = None) -> str | None:
    """The model a report names: the path, and for a single file where its configs came from."""
    if path is None:
        return None
    try:
        return resolve(path, family).describe()
    except ParityInputError:
        return str(path)


def load(family: Any, path: str, dtype: torch.dtype) -> Any:
    """The pipeline ``path`` holds, loaded by diffusers as a user would (offline)."""
    source = resolve(path, family)
    if source.kind == "single-file":
        from parity.zoo.single_file import load_single_file

        return load_single_file(family, source, dtype)
    return family.load(path, dtype)
