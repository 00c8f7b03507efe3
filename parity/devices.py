"""Which device a run uses: one resolution for the CLI, the pytest plugin, benchmarks and gate bundles.

A device is named ``cpu``, ``cuda`` (or ``cuda:N``), or ``auto`` (CUDA where there is a GPU). Only cpu
and cuda have rows in the tolerance table, so other torch devices are refused. A CUDA device on a
machine without one is :class:`NoDevice`: the CLI reports it as bad input, pytest skips the cases
that need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from parity.errors import ParityInputError

DEVICE_TYPES = ("cpu", "cuda")  # the device kinds the tolerance table has rows for


class NoDevice(ParityInputError):
    """A device this machine does not have."""


def cuda_available() -> bool:
    return torch.cuda.is_available()


def requested(option: str) -> str:
    """The device ``option`` names, ``auto`` resolved, nothing checked."""
    if option == "auto":
        return "cuda" if cuda_available() else "cpu"
    return option


def resolve(option: str) -> str:
    """The device to run on, or ParityInputError (NoDevice when it is valid but absent here)."""
    name = requested(option)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParityInputError(f"unknown device {name!r}; use cpu or cuda") from None
    if device.type not in DEVICE_TYPES:
        raise ParityInputError(f"device {name!r} has no tolerance entries; use cpu or cuda")
    if device.type == "cuda" and not cuda_available():
        raise NoDevice(f"device {name!r} requested but CUDA is not available")
    return name


def strict_float32(device: str | torch.device) -> None:
    """The merge bounds and output budgets assume true float32 products: no TF32 on CUDA."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False


def device_class(device: str | torch.device = "cpu") -> str:
    """``cpu``, or ``cuda-sm<major><minor>`` from the device's compute capability: what golden image
    folders and benchmark comparisons are grouped by."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return f"cuda-sm{major}{minor}"
    raise ValueError(f"no device class for {dev}")


def device_kind(cls: str) -> str:
    """The tolerance-table kind of a device class: ``cpu`` or ``cuda``."""
    return cls.split("-", 1)[0]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside, and put back as it was after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
