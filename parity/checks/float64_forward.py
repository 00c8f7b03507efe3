"""A model's forward computed in float64 one module at a time: the float64 "truth" an output budget is
measured against, without a float64 copy of the model (8 bytes per parameter, twice a float32 model).

Each module with tensors of its own has them swapped for float64 copies just before its forward and
back just after (the originals, untouched, bit for bit), and its floating inputs upcast; a PEFT LoRA
layer swaps its whole subtree at once, because it reads its factors' dtype before calling them and
would round its input to it. At most one layer's float64 copy is alive at a time.

The copies are cut from one float64 arena, reused module after module: a fresh float64 tensor per
module was a fresh mapping of pages from the kernel per module (glibc maps every block over 32 MiB),
and faulting them in was two thirds of a full-size SD1.5 UNet's float64 forward (1.5 of 2.5 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from parity.modules import ADAPTER_HOLDERS


def _up(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.double()
    if isinstance(value, (tuple, list)):
        return type(value)(_up(v) for v in value)
    if isinstance(value, dict):
        return {k: _up(v) for k, v in value.items()}
    return value


def _own_tensors(module: nn.Module, subtree: bool) -> list[torch.Tensor]:
    tensors = [*module.parameters(recurse=subtree), *module.buffers(recurse=subtree)]
    return [t for t in tensors if t.is_floating_point()]


def _is_lora_layer(module: nn.Module) -> bool:
    """A PEFT tuner layer: LoRA, or the LoKr/LoHa layers diffusers builds for LyCORIS files."""
    return hasattr(module, "base_layer") and any(hasattr(module, a) for a in ADAPTER_HOLDERS)


class Float64Arena:
    """float64 storage handed out last in, first out (a module's forward runs inside its parent's),
    grown to the largest module's tensors; a request that does not fit gets a tensor of its own.
    Shared with the float64 copies of parity/checks/fresh_copies.py."""

    def __init__(self) -> None:
        self.storage = torch.empty(0, dtype=torch.float64)
        self.top = 0
        self.wanted = 0

    def take(self, values: list[torch.Tensor]) -> tuple[list[torch.Tensor], int]:
        """float64 copies of ``values`` (any dtype, converted exactly); and the mark to give them back with."""
        need = sum(t.numel() for t in values)
        mark = self.top
        self.wanted = max(self.wanted, mark + need)
        if mark + need > self.storage.numel() or self.storage.device != values[0].device:
            return [t.double() for t in values], mark
        out = []
        for t in values:
            out.append(self.storage[self.top:self.top + t.numel()].view(t.shape).copy_(t))
            self.top += t.numel()
        return out, mark

    def give_back(self, mark: int, device: torch.device) -> None:
        self.top = mark
        if mark == 0 and self.wanted > self.storage.numel():  # between top-level modules: grow now
            self.storage = torch.empty(0, dtype=torch.float64)  # the old storage freed before the new is made
            self.storage = torch.empty(self.wanted, dtype=torch.float64, device=device)


@contextmanager
def computed_in_float64(model: nn.Module) -> Iterator[None]:
    """Inside, ``model(...)`` computes in float64 and returns float64 outputs."""
    inside_lora = {id(m) for layer in model.modules() if _is_lora_layer(layer) for m in layer.modules()
                   if m is not layer}
    arena = Float64Arena()
    handles = []
    for module in model.modules():
        if id(module) in inside_lora:
            continue
        tensors = _own_tensors(module, subtree=_is_lora_layer(module))
        if not tensors:
            continue

        def before(mod: nn.Module, args: tuple, kwargs: dict, tensors: list[torch.Tensor] = tensors) -> Any:
            copies, mark = arena.take([t.data for t in tensors])
            mod._parity_float64_saved = ([(t, t.data) for t in tensors], mark)
            for t, copy in zip(tensors, copies):
                t.data = copy
            return _up(args), _up(kwargs)

        def after(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            saved, mark = mod.__dict__.pop("_parity_float64_saved", ([], None))
            for t, data in saved:
                t.data = data
            if mark is not None:
                arena.give_back(mark, saved[0][1].device)
            return output

        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
