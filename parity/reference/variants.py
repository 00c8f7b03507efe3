"""ΔW of each algorithm a LoRA file may hold, and the DoRA merge, each by its own formula, in float64, from the file's
tensors (parity/lora/neutral.py). Written from LyCORIS's and PEFT's definitions, not from their code
paths the suite tests: no PEFT layer, no LyCORIS module, no diffusers converter is called.

- a low-rank pair: (α/r)·B@A, or for a conv the k×k down followed by the 1×1 up;
- LoCon with a tucker core (lycoris/modules/locon.py): the 1×1 ``down``, the k×k ``mid``, the 1×1
  ``up`` compose to the k×k kernel ΔW[p, r] = Σ_ij mid[i, j] · up[p, i] · down[j, r].
- LoHa (lycoris/modules/loha.py): ΔW = (w1a @ w1b) ⊙ (w2a @ w2b); with tucker cores each factor is
  t ×₀ w_a ×₁ w_b, where w_a is (r, out).
- LoKr (lycoris/modules/lokr.py): ΔW = kron(w1, w2), w1 widened to w2's dimensions, viewed as W.
- DoRA (peft/tuners/lora/dora.py; lycoris/modules/locon.py apply_weight_decompose):
  W' = m ⊙ V / (‖V‖ + eps), V = W + s·ΔW, the norm per output row (or per input channel for
  LyCORIS's input-axis files). PEFT adds no eps, LyCORIS finfo(dora_scale.dtype).eps.

The scale s is what the merge gives the module (set_adapters weight × lora_scale) times the
algorithm's α/r: α/r with r the file's rank, α = r where the file has none (or 0, as LyCORIS
replaces it), and 1 for a LoKr whose two factors are both full (LyCORIS sets α = r there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from parity.lora.neutral import (
    DoraModule,
    Factored,
    LohaModule,
    LokrModule,
    LoraModule,
    Magnitude,
    RowsOf,
    TuckerModule,
)


def delta_from_factors(m: LoraModule, scale: float = 1.0) -> torch.Tensor:
    """scale · (α/r) · up ∘ down in float64, shaped like the target weight.

    Linear: B@A. Conv: a k×k ``down`` followed by a 1×1 ``up`` composes to the k×k kernel
    Σ_r B[:, r] · A[r] (kohya's conv2d(down.permute(1,0,2,3), up) is the same sum).
    """
    down = m.down.double()
    up = m.up.double()
    factor = scale * m.effective_alpha / m.rank
    if m.is_conv:
        if up.shape[2:] != (1, 1):
            raise ValueError(f"{m.component}.{m.module}: LoRA up must be 1x1 for conv, got {tuple(up.shape)}")
        delta = F.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
    else:
        delta = up @ down
    return delta.mul_(factor)  # in place: a full-size weight's float64 delta is hundreds of MB


def lycoris_scale(alpha: float | None, rank: int) -> float:
    """α/r as LyCORIS applies it: α = r where the file stores none or 0 (locon.py, loha.py, lokr.py)."""
    if rank == 0:
        return 1.0
    return (rank if alpha is None or alpha == 0 else alpha) / rank


def lokr_scale(m: LokrModule) -> float:
    both_full = m.w1 is not None and m.w2 is not None
    return 1.0 if both_full else lycoris_scale(m.alpha, m.rank)


def _tucker(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """core (r, r, k, k) with wa (r, out) on its first axis and wb (r, in) on its second: (out, in, k, k)."""
    # contiguous: torch.kron views its operands, which einsum's permuted result does not allow
    return torch.einsum("ij...,ip,jr->pr...", core.double(), wa.double(), wb.double()).contiguous()


def tucker_delta(m: TuckerModule) -> torch.Tensor:
    out, rank = m.up.shape[0], m.down.shape[0]
    up = m.up.double().reshape(out, rank).T
    down = m.down.double().reshape(rank, -1)
    return _tucker(m.mid, up, down) * lycoris_scale(m.alpha, rank)


def loha_delta(m: LohaModule) -> torch.Tensor:
    """(out, in·k·k), or (out, in, k, k) with tucker cores."""
    if m.t1 is not None and m.t2 is not None:
        first, second = _tucker(m.t1, m.w1a, m.w1b), _tucker(m.t2, m.w2a, m.w2b)
    else:
        first = m.w1a.double() @ m.w1b.double()
        second = m.w2a.double() @ m.w2b.double()
    return first * second * lycoris_scale(m.alpha, m.rank)


def lokr_factors(m: LokrModule) -> tuple[torch.Tensor, torch.Tensor]:
    """(w1, w2) in float64, each formed from its halves where the file decomposed it."""
    w1 = m.w1.double() if m.w1 is not None else m.w1a.double() @ m.w1b.double()
    if m.w2 is not None:
        w2 = m.w2.double()
    elif m.t2 is not None:
        w2 = _tucker(m.t2, m.w2a, m.w2b)
    else:
        w2 = m.w2a.double() @ m.w2b.double()
    while w1.ndim < w2.ndim:  # a conv's w2 carries the kernel; w1 scales whole kernels
        w1 = w1.unsqueeze(-1)
    return w1, w2


def lokr_delta(m: LokrModule) -> torch.Tensor:
    """(a·b, c·d·k·k), or (a·b, c·d, k, k) where w2 carries the kernel."""
    w1, w2 = lokr_factors(m)
    return torch.kron(w1, w2) * lokr_scale(m)


def raw_delta(m: Factored) -> torch.Tensor:
    """The module's (α/r)·ΔW by its algorithm's formula, float64, in the shape the formula gives: its
    first axis is the weight's output rows, its elements the weight's in order (LyCORIS views it as W)."""
    if isinstance(m, LoraModule):
        return delta_from_factors(m)
    if isinstance(m, TuckerModule):
        return tucker_delta(m)
    if isinstance(m, LohaModule):
        return loha_delta(m)
    if isinstance(m, LokrModule):
        return lokr_delta(m)
    if isinstance(m, RowsOf):
        whole = raw_delta(m.whole)
        whole = whole.reshape(whole.shape[0], -1)
        out = whole.new_zeros((m.rows, whole.shape[1]))
        for start, size, at in m.pieces:
            out[at:at + size] = whole[start:start + size]
        return out
    raise TypeError(f"no ΔW formula for {type(m).__name__}")


def factored_delta(m: Factored, shape: tuple[int, ...]) -> torch.Tensor:
    """``raw_delta`` shaped like the weight."""
    return raw_delta(m).reshape(shape)


def norm_of(v: torch.Tensor, axis: str) -> torch.Tensor:
    """‖v‖ per output row (``axis`` "out") or per input channel ("in"), over every other axis, shaped
    to broadcast against v."""
    dims = tuple(d for d in range(v.ndim) if d != (0 if axis == "out" else 1))
    return torch.linalg.vector_norm(v, dim=dims, keepdim=True)


def magnitude_of(mag: Magnitude, shape: tuple[int, ...]) -> torch.Tensor:
    """The magnitude as float64, shaped to broadcast against a weight of ``shape``."""
    view = [1] * len(shape)
    view[0 if mag.axis == "out" else 1] = -1
    return mag.value.double().reshape(view)


def renormalised(v: torch.Tensor, mag: Magnitude) -> torch.Tensor:
    """m ⊙ V / (‖V‖ + eps), over ``mag``'s axis."""
    return magnitude_of(mag, tuple(v.shape)) * v / (norm_of(v, mag.axis) + mag.eps)


def dora_merged(base: torch.Tensor, m: DoraModule, scale: float = 1.0) -> torch.Tensor:
    """W' = m ⊙ (W + s·ΔW) / (‖W + s·ΔW‖ + eps), float64."""
    return renormalised(base.double() + scale * factored_delta(m.inner, tuple(base.shape)), m.magnitude)
