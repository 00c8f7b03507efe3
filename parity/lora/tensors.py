"""The tensors in a LoRA file, read safely: safetensors containers checked as they are read, and pickles
refused unless asked for, then loaded weights-only (never unpickled as code)."""

from __future__ import annotations

import os

import torch

from parity.errors import ParityInputError
from parity.lora.neutral import LoraFile
from parity.lora.peftadapter import adapter_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container, a bare pickle protocol 2+


def is_pickle_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(PICKLE_SUFFIXES)


def _load_pickle(path: str) -> dict[str, torch.Tensor]:
    """A torch.save'd state dict through torch's weights-only unpickler: it rebuilds tensors and
    containers and refuses every other global, so a malicious __reduce__ never runs."""
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...: all say "not loadable"
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ParityInputError(
            f"torch.load(weights_only=True) refused it ({type(exc).__name__}: {first_line})", path=path
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ParityInputError("is not a state dict of named tensors", path=path)
    return obj


def _read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ParityInputError(f"not a readable safetensors file ({exc}){_pickle_hint(path)}", path=path) from None
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, which derives from BaseException and is
        # not importable by name; anything else (KeyboardInterrupt, SystemExit) goes on up.
        if type(exc).__name__ != "PanicException":
            raise
        raise ParityInputError(f"not a readable safetensors file (reader panicked: {exc})", path=path) from None
    return tensors, metadata


def _pickle_hint(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:  # unreadable: the error being raised already says so
        return ""
    if head.startswith(PICKLE_MAGIC):
        return "; it looks like a torch pickle: give it a .pt suffix and pass --allow-pickle, or convert it"
    return ""


def load_tensors(
    path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file (or, with ``allow_pickle``, of a
    .bin/.pt/.pth/.ckpt/.pkl loaded weights-only); every failure is a ParityInputError naming the file."""
    path = str(path)
    if os.path.isdir(path):
        raise ParityInputError("is a directory, expected a .safetensors file", path=path)
    if not os.path.exists(path):
        raise ParityInputError("no such file", path=path)
    if os.path.getsize(path) == 0:
        raise ParityInputError("file is empty", path=path)
    if is_pickle_path(path):
        if not allow_pickle:
            raise ParityInputError(
                "pickle checkpoints are refused (unpickling runs arbitrary code); convert it to .safetensors, "
                "or pass --allow-pickle to load it with torch.load(weights_only=True)",
                path=path,
            )
        tensors, metadata = _load_pickle(path), {}
    else:
        tensors, metadata = _read_safetensors(path)
    if not tensors:
        raise ParityInputError("holds no tensors", path=path)
    return tensors, metadata


def diffusers_source(lora: LoraFile) -> str | dict[str, torch.Tensor]:
    """What to hand diffusers' loader for ``lora``: the path of a safetensors file, or a copy of the
    weights-only-loaded tensors of a pickle (a copy: diffusers' kohya conversion pops keys)."""
    if lora.raw is not None:
        return dict(lora.raw)
    if lora.path is None:
        raise ValueError("a LoraFile read from a state dict has no source to hand diffusers")
    return lora.path


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]] | None:
    """Each tensor's shape, from a safetensors header alone; None for a pickle (it has no header: it is
    loaded once, by the reader) and where the header cannot be read (``load_tensors`` names the problem)."""
    try:
        path = adapter_file(str(path))  # a PEFT adapter folder: its adapter_model file
    except ParityInputError:  # a folder without one: the reader names it
        return None
    if is_pickle_path(path):
        return None
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception:  # noqa: BLE001 - any unreadable header: the reader reports it with the file's name
        return None
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        return None
