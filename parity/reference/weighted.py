"""Our own float64 implementation of PEFT's ``add_weighted_adapter`` for linear, ties and dare_linear.

Written from the formulas, not from PEFT's code paths. For adapters i with set weight wᵢ and scaling
sᵢ = αᵢ/rᵢ, PEFT builds a *new* rank-r adapter (α = r, so its scaling is 1) whose factors combine the
old factors separately — not the deltas:

    cᵢ = sqrt(|wᵢ·sᵢ|)         σᵢ = sign(wᵢ·sᵢ) (+1 at 0)
    A' = combine({Aᵢ}, {σᵢ·cᵢ})      B' = combine({Bᵢ}, {cᵢ})      δ' = B' @ A'

(so for ``linear`` δ' = Σᵢ Σⱼ cᵢcⱼσⱼ BᵢAⱼ, cross terms included — not Σ wᵢsᵢ BᵢAᵢ). ``combine`` is

  linear       Σ kᵢ·Tᵢ
  ties         trim each Tᵢ to its top ``density`` fraction by |·| (k = ⌊density·numel⌋), elect per
               element the sign of Σ trimmed Tᵢ (unweighted; ≥ 0 elects +), then average kᵢ·Tᵢ over the
               tensors whose sign agrees with the elected one (count clamped to ≥ 1)
  dare_linear  Σ kᵢ·(mᵢ ⊙ Tᵢ)/density with mᵢ ~ Bernoulli(density) elementwise

The DARE masks are drawn by :func:`dare_masks` with torch's default CPU generator, one
``torch.bernoulli`` per factor over a float32 tensor filled with ``density`` — for each layer the
A factors of every adapter in order, then the B factors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

COMBINATIONS = ("linear", "ties", "dare_linear")


def factor_weights(weights: Sequence[float], scalings: Sequence[float]) -> tuple[list[float], list[float]]:
    """(weights for the A factors, weights for the B factors): the sign goes on A only."""
    ka, kb = [], []
    for w, s in zip(weights, scalings):
        ws = w * s
        c = math.sqrt(abs(ws))
        ka.append(c if ws >= 0 else -c)
        kb.append(c)
    return ka, kb


def trim_top(t: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ⌊density·numel⌋ largest |t| (density ≥ 1 keeps everything)."""
    if density >= 1:
        return t
    k = int(density * t.numel())
    flat = t.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        keep[flat.abs().argsort(descending=True, stable=True)[:k]] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(t.shape)


def elect_sign(trimmed: Sequence[torch.Tensor]) -> torch.Tensor:
    total = torch.stack([t.double() for t in trimmed]).sum(0)
    return torch.where(total >= 0, 1.0, -1.0).double()


def combine_linear(tensors: Sequence[torch.Tensor], k: Sequence[float]) -> torch.Tensor:
    return sum(ki * t.double() for ki, t in zip(k, tensors))


def combine_ties(
    tensors: Sequence[torch.Tensor],
    k: Sequence[float],
    density: float,
    elect: Callable[[Sequence[torch.Tensor]], torch.Tensor] = elect_sign,
) -> torch.Tensor:
    trimmed = [trim_top(t.double(), density) for t in tensors]
    elected = elect(trimmed)
    agree = [torch.sign(t) == elected for t in trimmed]
    total = sum(ki * torch.where(a, t, 0.0) for ki, a, t in zip(k, agree, trimmed))
    count = sum(a.double() for a in agree).clamp_min(1.0)
    return total / count


def combine_dare_linear(
    tensors: Sequence[torch.Tensor], k: Sequence[float], density: float, masks: Sequence[torch.Tensor]
) -> torch.Tensor:
    if density >= 1:
        return combine_linear(tensors, k)
    return sum(ki * (m.double() * t.double()) / density for ki, m, t in zip(k, masks, tensors))


def dare_masks(shapes: Sequence[torch.Size], density: float) -> list[torch.Tensor]:
    """One Bernoulli(density) mask per shape, in order, from torch's default generator."""
    if density >= 1:
        return [torch.ones(s) for s in shapes]
    return [torch.bernoulli(torch.full(tuple(s), density, dtype=torch.float32)) for s in shapes]


@dataclass
class Combined:
    down: torch.Tensor  # A', float64
    up: torch.Tensor  # B', float64
    abs_down: torch.Tensor  # Σ |kᵢ|·|Tᵢ| (masked and /density for DARE): scale of A''s roundings
    abs_up: torch.Tensor

    @property
    def delta(self) -> torch.Tensor:
        return compose(self.up, self.down)


def compose(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """up ∘ down as a weight-shaped tensor (Linear: B@A; conv with a 1x1 up: Σ_r B[:, r]·A[r])."""
    if down.ndim == 4:
        return torch.einsum("or,rikl->oikl", up.reshape(up.shape[0], up.shape[1]), down)
    return up @ down


def combine_layer(
    downs: Sequence[torch.Tensor],
    ups: Sequence[torch.Tensor],
    weights: Sequence[float],
    scalings: Sequence[float],
    combination: str,
    density: float | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    elect: Callable[[Sequence[torch.Tensor]], torch.Tensor] = elect_sign,
) -> Combined:
    """The new adapter's factors on one layer. ``masks``: A masks of each adapter, then B masks."""
    ka, kb = factor_weights(weights, scalings)
    n = len(downs)
    if combination == "linear":
        a, b = combine_linear(downs, ka), combine_linear(ups, kb)
        abs_a, abs_b = combine_linear([d.abs() for d in downs], map(abs, ka)), combine_linear(
            [u.abs() for u in ups], kb
        )
    elif combination == "ties":
        assert density is not None
        a, b = combine_ties(downs, ka, density, elect), combine_ties(ups, kb, density, elect)
        abs_a = combine_linear([d.abs() for d in downs], [abs(x) for x in ka])
        abs_b = combine_linear([u.abs() for u in ups], kb)
    elif combination == "dare_linear":
        assert density is not None and masks is not None and len(masks) == 2 * n
        ma, mb = masks[:n], masks[n:]
        a, b = combine_dare_linear(downs, ka, density, ma), combine_dare_linear(ups, kb, density, mb)
        d = min(density, 1.0)
        abs_a = combine_linear([m * t.abs() / d for m, t in zip(ma, downs)], [abs(x) for x in ka])
        abs_b = combine_linear([m * t.abs() / d for m, t in zip(mb, ups)], kb)
    else:
        raise ValueError(f"unsupported combination {combination!r}; choose from {COMBINATIONS}")
    return Combined(a, b, abs_a, abs_b)


def roundings(combination: str, n: int) -> int:
    """float32 roundings PEFT's combination of one factor element makes, counted from merge_utils.

    Every kind: kᵢ computed in float64 then rounded to float32 by ``torch.tensor`` (1), the product
    kᵢ·Tᵢ (1), the sum over n tensors (n−1). ties adds the division by the agreeing count, dare_linear
    the division by density (1 each). One more covers the float64 sqrt/multiply of wᵢ·sᵢ (≤ 2·u_64,
    far below one u_32).
    """
    base = 1 + 1 + (n - 1) + 1
    return base + (1 if combination in ("ties", "dare_linear") else 0)


def delta_bound(ours: Combined, peft_down: torch.Tensor, peft_up: torch.Tensor, combination: str, n: int) -> torch.Tensor:
    """Element-wise bound on |B̂@Â − B'@A'| in float64 (B̂, Â: PEFT's float32 factors).

    Each PEFT factor element is within e = γ_k·(Σ|kᵢ||Tᵢ|) of ours (γ_k = k·u/(1−k·u), u = 2^-24, k
    from :func:`roundings`). Then |B̂Â − B'A'| ≤ |B̂−B'|·|Â| + |B'|·|Â−A'| ≤ e_B@|Â| + |B'|@e_A, plus the
    two float64 products' own rounding, r·u_64 each at |B̂|@|Â| and |B'|@|A'|.
    """
    u = 2.0**-24
    k = roundings(combination, n)
    gamma = k * u / (1 - k * u)
    e_a, e_b = gamma * ours.abs_down, gamma * ours.abs_up
    pa, pb = peft_down.double(), peft_up.double()
    r = pa.shape[0]
    u64 = 2.0**-53
    bound = compose(e_b, pa.abs()) + compose(ours.up.abs(), e_a)
    bound += r * u64 * (compose(pb.abs(), pa.abs()) + compose(ours.up.abs(), ours.down.abs())) * 1.01
    return bound
