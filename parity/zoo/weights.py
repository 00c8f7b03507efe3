"""Deterministic tiny weights: each tensor is a pure function of (seed, name, shape).

Not of construction order and not of a library's init code, so the same tiny model comes out of
every diffusers/transformers/torch version — what makes golden images usable as an upgrade gate.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn


def tensor_seed(seed: int, name: str, shape: tuple[int, ...]) -> int:
    digest = hashlib.sha256(f"{seed}/{name}/{tuple(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def deterministic_tensor(seed: int, name: str, shape: tuple[int, ...], std: float = 1.0) -> torch.Tensor:
    """Standard-normal values times ``std`` in float32, from a generator seeded by (seed, name, shape)."""
    gen = torch.Generator().manual_seed(tensor_seed(seed, name, shape))
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std


def _value_for(seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 0:
        return deterministic_tensor(seed, name, (1,), 0.05).reshape(())
    if len(shape) == 1:
        # Norm scales near 1 and small biases keep activations of a random net in range.
        if name.endswith("weight") or name.endswith("scale"):
            return 1.0 + deterministic_tensor(seed, name, shape, 0.1)
        return deterministic_tensor(seed, name, shape, 0.05)
    fan_in = math.prod(shape[1:])
    return deterministic_tensor(seed, name, shape, 1.0 / math.sqrt(fan_in))


def stable_name(model: nn.Module, name: str) -> str:
    """The parameter name as the newest library spells it, so a tiny model's weights do not change
    with the library version that builds it: transformers 5 dropped CLIPTextModel's ``text_model.``
    level (CLIPTextModelWithProjection keeps it)."""
    return name.removeprefix("text_model.") if type(model).__name__ == "CLIPTextModel" else name


def fill_deterministic(model: nn.Module, seed: int, namespace: str) -> nn.Module:
    """Overwrite every floating tensor of ``model`` (parameters and persistent buffers) in place."""
    # In place, one tensor at a time: a full-size model is never held twice (state_dict tensors share
    # storage with the parameters and buffers).
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if torch.is_floating_point(tensor):
                value = _value_for(seed, f"{namespace}/{stable_name(model, name)}", tuple(tensor.shape))
                tensor.copy_(value.to(tensor.dtype))
    return model
