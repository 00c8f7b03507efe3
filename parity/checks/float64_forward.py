"""A model's forward computed in float64 one module at a time: the float64 "truth" an output budget is
measured against, without a float64 copy of the model (8 bytes per parameter, twice a float32 model).

Each module with tensors of its own has them swapped for float64 copies just before its forward and
back just after (the originals, untouched, bit for bit), and its floating inputs upcast; a PEFT LoRA
layer swaps its whole subtree at once, because it reads its factors' dtype before calling them and
would round its input to it. At most one layer's float64 copy is alive at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


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
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


@contextmanager
def computed_in_float64(model: nn.Module) -> Iterator[None]:
    """Inside, ``model(...)`` computes in float64 and returns float64 outputs."""
    inside_lora = {id(m) for layer in model.modules() if _is_lora_layer(layer) for m in layer.modules()
                   if m is not layer}
    handles = []
    for module in model.modules():
        if id(module) in inside_lora:
            continue
        tensors = _own_tensors(module, subtree=_is_lora_layer(module))
        if not tensors:
            continue

        def before(mod: nn.Module, args: tuple, kwargs: dict, tensors: list[torch.Tensor] = tensors) -> Any:
            mod._parity_float64_saved = [(t, t.data) for t in tensors]
            for t in tensors:
                t.data = t.data.double()
            return _up(args), _up(kwargs)

        def after(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            for t, data in mod.__dict__.pop("_parity_float64_saved", []):
                t.data = data
            return output

        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
