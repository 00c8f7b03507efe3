"""What is off in a fused weight that misses the reference: measured, not guessed.

Each adapter's reference delta δᵢ is one column; least squares fits δ_fused ≈ Σ cᵢ·δᵢ. When the fit
is exact, the cᵢ say what happened to each adapter: 0 its contribution dropped, −1 a sign error,
r/α an alpha not applied, α/r an alpha applied twice, anything else a scale off by that much. A
δ_fused that is no such combination but matches another module's reference (or this one's with its
halves swapped) is a wrong split of a fused file module; one within a rounding of a half-precision
dtype is an extra rounding there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from parity.reference.merge import MergeReference, MergeStep

# Relative residual below which δ_fused *is* the fitted combination (float32 rounding is ~1e-7).
EXACT = 1e-3
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def fit(fused: torch.Tensor, columns: Sequence[torch.Tensor]) -> tuple[list[float], float]:
    """(coefficients, residual norm / |fused|) of fused ≈ Σ cᵢ·columnᵢ, by least squares in float64."""
    a = torch.stack([c.reshape(-1) for c in columns], dim=1)
    b = fused.reshape(-1, 1)
    solution = torch.linalg.lstsq(a, b).solution
    residual = float((a @ solution - b).norm()) / max(float(b.norm()), 1e-300)
    return [float(x) for x in solution.reshape(-1)], residual


def _near(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-3 * max(1.0, abs(y))


def _what(c: float, step: MergeStep) -> str | None:
    """How coefficient ``c`` departs from 1 for ``step``; None when it does not."""
    if _near(c, 1.0):
        return None
    if _near(c, 0.0):
        return "dropped"
    if _near(c, -1.0):
        return "sign error: −1× the reference delta"
    ratio = step.alpha_over_rank
    if ratio and not _near(ratio, 1.0) and _near(c * ratio, 1.0):
        return f"{c:.4g}× the reference delta: alpha not applied?"
    if ratio and not _near(ratio, 1.0) and _near(c, ratio):
        return f"{c:.4g}× the reference delta: alpha applied twice?"
    return f"{c:.4g}× the reference delta"


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    half = t.shape[0] // 2
    return torch.cat([t[half:], t[:half]])


def diagnose(actual: torch.Tensor, ref: MergeReference, siblings: Mapping[str, MergeReference] | None = None,
             sources: tuple[str, ...] = ()) -> str:
    """One phrase on how ``actual`` (the fused tensor) departs from ``ref``."""
    fused = actual.detach().double().cpu() - ref.base
    want = ref.merged - ref.base
    keys = f" (keys {', '.join(sources)})" if sources else ""
    if float(want.abs().max()) == 0.0:
        return "the reference adds nothing here, but the fused weight changed"
    if float(fused.abs().max()) == 0.0:
        return f"dropped: diffusers merged nothing into it{keys}"
    coefficients, residual = fit(fused, [s.delta for s in ref.steps])
    if residual < EXACT:
        parts = [(i, _what(c, s)) for i, (c, s) in enumerate(zip(coefficients, ref.steps))]
        off = [(i, w) for i, w in parts if w is not None]
        if len(ref.steps) == 1 and off:
            return off[0][1] + (keys if off[0][1] == "dropped" else "")
        if off:
            return "; ".join(f"adapter {i}: {w}" for i, w in off)
    for name, other in (siblings or {}).items():
        if other is not ref and other.merged.shape == ref.merged.shape:
            (c,), res = fit(fused, [other.merged - other.base])
            if _near(c, 1.0) and res < EXACT:
                return f"wrong split: it holds the reference delta of {name}"
    if want.ndim == 2 and want.shape[0] % 2 == 0:
        (c,), res = fit(fused, [_swap_halves(want)])
        if _near(c, 1.0) and res < EXACT:
            return "wrong split: its output halves are swapped (shift|scale order)"
    for dtype, u in UNIT_ROUNDOFF.items():
        if float((fused - want.to(dtype).double()).abs().max()) <= u * float(want.abs().max()):
            return f"an extra rounding of the delta in {str(dtype).removeprefix('torch.')}"
    return (f"not a multiple of the reference delta (best fit {', '.join(f'{c:.4g}' for c in coefficients)}×, "
            f"residual {residual:.2g} of its norm)")
