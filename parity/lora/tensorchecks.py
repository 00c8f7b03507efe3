"""What the reference merge relies on in a file's tensors, checked before it relies on it: float
dtypes, ranks that agree, shapes that fit the module, finite values. Each failure is bad input
naming the file and the key."""

from __future__ import annotations

import math

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.neutral import (
    DiffModule,
    LohaModule,
    LokrModule,
    LoraModule,
    Magnitude,
    TuckerModule,
    with_tensors,
)

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


def check_tucker(m: TuckerModule, target: nn.Module, path: str | None, down_key: str, mid_key: str,
                 up_key: str) -> None:
    """LoCon's tucker form: a 1×1 down, an (r, r, k, k) core with the module's kernel, a 1×1 up."""
    label = f"{m.component}.{m.module}"
    w = target.weight
    check_tensor(m.mid, "mid", label, path, mid_key, ndims=(4,))
    r = m.rank
    want = {"down": (r, w.shape[1], 1, 1), "mid": (r, r, *w.shape[2:]), "up": (w.shape[0], r, 1, 1)}
    got = {"down": tuple(m.down.shape), "mid": tuple(m.mid.shape), "up": tuple(m.up.shape)}
    if w.ndim != 4 or got != want:
        raise ParityInputError(f"shape mismatch with module {label} (weight {tuple(w.shape)}): tucker down/mid/up "
                               f"{got['down']}/{got['mid']}/{got['up']}; expected "
                               f"{want['down']}/{want['mid']}/{want['up']}", path=path, key=mid_key)
    for part, t, key in (("down", m.down, down_key), ("mid", m.mid, mid_key), ("up", m.up, up_key)):
        check_finite(t, part, label, path, key)


# Which tensors each LyCORIS form needs: any one of the alternatives of each entry, all of its keys.
NEEDS = {
    "LoHa": ((("hada_w1_a", "hada_w1_b"),), (("hada_w2_a", "hada_w2_b"),)),
    "LoKr": ((("lokr_w1",), ("lokr_w1_a", "lokr_w1_b")), (("lokr_w2",), ("lokr_w2_a", "lokr_w2_b"))),
}


def check_lycoris(m: LohaModule | LokrModule, weight_shape: tuple[int, ...], label: str, path: str | None,
                  keys: dict[str, str]) -> None:
    """A LoHa or LoKr module: the tensors its formula needs, float and finite, and a ΔW whose shape,
    by the formula (taken on tensors without storage), is ``weight_shape`` (a fused module's: its
    parts' rows stacked)."""
    from parity.reference.variants import raw_delta

    algo = "LoHa" if isinstance(m, LohaModule) else "LoKr"
    first = next(iter(keys.values()))
    for alternatives in NEEDS[algo]:
        if not any(all(k in keys for k in option) for option in alternatives):
            wanted = " or ".join("+".join(option) for option in alternatives)
            raise ParityInputError(f"{algo} module {label} lacks {wanted}", path=path, key=first)
    if isinstance(m, LohaModule) and (m.t1 is None) != (m.t2 is None):
        raise ParityInputError(f"LoHa module {label} has one tucker core of two (hada_t1 and hada_t2 go together)",
                               path=path, key=keys.get("hada_t1", keys.get("hada_t2")))
    for role, key in keys.items():
        if role in ("alpha", "dora_scale", "magnitude"):
            continue
        check_tensor(t := getattr(m, _FIELD[role]), role, label, path, key, ndims=(2, 4))
        check_finite(t, role, label, path, key)
    try:
        shape = tuple(raw_delta(with_tensors(m, lambda t: torch.empty(t.shape, dtype=torch.float64,
                                                                      device="meta"))).shape)
    except RuntimeError as exc:
        raise ParityInputError(f"{algo} tensors of {label} do not compose: {' '.join(str(exc).split())[:200]}",
                               path=path, key=first) from None
    if not shape or shape[0] != weight_shape[0] or math.prod(shape) != math.prod(weight_shape):
        raise ParityInputError(f"shape mismatch with module {label}: {algo} ΔW is {shape}, weight "
                               f"{weight_shape}", path=path, key=first)


# LyCORIS's tensor names → the neutral modules' fields
_FIELD = {"hada_w1_a": "w1a", "hada_w1_b": "w1b", "hada_w2_a": "w2a", "hada_w2_b": "w2b", "hada_t1": "t1",
          "hada_t2": "t2", "lokr_w1": "w1", "lokr_w1_a": "w1a", "lokr_w1_b": "w1b", "lokr_w2": "w2",
          "lokr_w2_a": "w2a", "lokr_w2_b": "w2b", "lokr_t2": "t2"}


def magnitude(t: torch.Tensor, role: str, weight_shape: tuple[int, ...], label: str, path: str | None,
              key: str) -> Magnitude:
    """A DoRA magnitude read by its writer's conventions: PEFT's lora_magnitude_vector has one value
    per output row and no eps; LyCORIS's dora_scale is (out, 1…) per output row or, in files from
    before LyCORIS 3.2, (1, in, 1…) per input channel, with finfo(dtype).eps. The axis is told by which
    dimension holds the values (ComfyUI's shape[0] == out where both could)."""
    check_tensor(t, role, label, path, key, ndims=(1, 2, 4))
    out, fan_in = weight_shape[0], weight_shape[1]
    per_row = t.numel() == out and (t.ndim == 1 or t.shape[0] == out or (t.ndim == 4 and t.shape[1] == out
                                                                          and role == "magnitude"))
    per_input = role == "dora_scale" and t.numel() == fan_in and t.ndim > 1 and t.shape[0] == 1
    if not (per_row or per_input):
        raise ParityInputError(f"shape mismatch with module {label} (weight {weight_shape}): {role} "
                               f"{tuple(t.shape)} is neither one value per output row nor per input channel",
                               path=path, key=key)
    check_finite(t, role, label, path, key)
    eps = float(torch.finfo(t.dtype).eps) if role == "dora_scale" else 0.0
    return Magnitude(t.reshape(-1), "out" if per_row else "in", eps, key)
