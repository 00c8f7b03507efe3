"""What the reference merge relies on in a file's tensors, checked before it relies on it: float
dtypes, ranks that agree, shapes that fit the module, finite values. Each failure is bad input
naming the file and the key."""

from __future__ import annotations

import math

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.neutral import DiffModule, LoraModule

# What a LoRA weight may be stored as: the dtypes diffusers/PEFT train and save in, and that the
# float64 reference merge can upcast exactly. float8/float4, integers, bool and complex are refused.
LORA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# kohya trainers sometimes store alpha as an integer; any exact real scalar will do.
ALPHA_DTYPES = (*LORA_DTYPES, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def alpha_value(t: torch.Tensor, path: str | None, key: str) -> float:
    if t.dtype not in ALPHA_DTYPES:
        raise ParityInputError(f"alpha has dtype {str(t.dtype).removeprefix('torch.')}; expected a real number",
                               path=path, key=key)
    if t.numel() != 1:
        raise ParityInputError(f"alpha must hold one number, holds {t.numel()} (shape {tuple(t.shape)})",
                               path=path, key=key)
    value = float(t.reshape(-1)[0].item())
    if not math.isfinite(value):
        raise ParityInputError(f"alpha is {value}, not a finite number", path=path, key=key)
    return value


def check_tensor(t: torch.Tensor, part: str, module: str, path: str | None, key: str,
                 ndims: tuple[int, ...] = (2, 4)) -> None:
    if t.dtype not in LORA_DTYPES:
        raise ParityInputError(
            f"{part} weight of {module} has dtype {str(t.dtype).removeprefix('torch.')}; "
            "LoRA weights must be float16, bfloat16, float32 or float64",
            path=path,
            key=key,
        )
    if t.ndim not in ndims:
        expected = "2-d (Linear) or 4-d (Conv2d)" if ndims == (2, 4) else f"{ndims[0]}-d"
        raise ParityInputError(f"{part} weight of {module} is {t.ndim}-d {tuple(t.shape)}; expected {expected}",
                               path=path, key=key)


def check_finite(t: torch.Tensor, part: str, label: str, path: str | None, key: str) -> None:
    if not torch.isfinite(t).all():
        raise ParityInputError(f"{part} weight of {label} holds NaN or Inf", path=path, key=key)


def check_factors(down: torch.Tensor, up: torch.Tensor, label: str, path: str | None, down_key: str,
                  up_key: str) -> None:
    """The pair on its own, before it is split over modules: dtypes, dimensions, rank."""
    check_tensor(down, "down", label, path, down_key)
    check_tensor(up, "up", label, path, up_key)
    rank = down.shape[0]
    if rank == 0:
        raise ParityInputError(f"rank 0 LoRA on {label} (alpha/rank is undefined)", path=path, key=down_key)
    if up.ndim < 2 or up.shape[1] != rank:
        raise ParityInputError(f"rank mismatch on {label}: down has rank {rank}, up has rank "
                               f"{up.shape[1] if up.ndim > 1 else '?'}", path=path, key=up_key)


def check_pair(m: LoraModule, target: nn.Module, path: str | None, down_key: str, up_key: str) -> None:
    """A neutral pair against its module: dimensions and shapes fit, values finite."""
    label = f"{m.component}.{m.module}"
    w = target.weight
    rank = m.rank
    if m.down.ndim != w.ndim or m.up.ndim != w.ndim:
        raise ParityInputError(
            f"{label} has a {w.ndim}-d weight and needs {w.ndim}-d down/up tensors, "
            f"got {m.down.ndim}-d/{m.up.ndim}-d",
            path=path,
            key=down_key,
        )
    want_down = (rank, w.shape[1], *w.shape[2:])  # conv down carries the module's kernel
    want_up = (w.shape[0], rank, *(1,) * (w.ndim - 2))  # conv up is 1x1
    if tuple(m.down.shape) != want_down or tuple(m.up.shape) != want_up:
        raise ParityInputError(
            f"shape mismatch with module {label} (weight {tuple(w.shape)}): "
            f"down {tuple(m.down.shape)}, up {tuple(m.up.shape)}; expected {want_down} and {want_up}",
            path=path,
            key=down_key,
        )
    check_finite(m.down, "down", label, path, down_key)
    check_finite(m.up, "up", label, path, up_key)


def check_diff(m: DiffModule, target: nn.Module, path: str | None, diff_key: str | None, bias_key: str | None) -> None:
    label = f"{m.component}.{m.module}"
    if m.diff is not None:
        check_tensor(m.diff, "diff", label, path, diff_key, ndims=(target.weight.ndim,))
        if tuple(m.diff.shape) != tuple(target.weight.shape):
            raise ParityInputError(f"shape mismatch with module {label}: diff {tuple(m.diff.shape)}, weight "
                                   f"{tuple(target.weight.shape)}", path=path, key=diff_key)
        check_finite(m.diff, "diff", label, path, diff_key)
    if m.bias is not None:
        bias = getattr(target, "bias", None)
        if bias is None:
            raise ParityInputError(f"{label} has no bias, but the file sets a bias difference", path=path,
                                   key=bias_key)
        check_tensor(m.bias, "diff_b", label, path, bias_key, ndims=(1,))
        if tuple(m.bias.shape) != tuple(bias.shape):
            raise ParityInputError(f"shape mismatch with module {label}: diff_b {tuple(m.bias.shape)}, bias "
                                   f"{tuple(bias.shape)}", path=path, key=bias_key)
        check_finite(m.bias, "diff_b", label, path, bias_key)
