"""The merge check of the weights that the pair and difference kernels (parity/fused_comparison.py)
do not cover: LyCORIS's LoHa, LoKr and tucker modules, and DoRA. Each is compared with its float64
reference (parity/reference/variants.py) as a whole weight, within its own bound from the table
(parity/tolerances.py: ``merge_bound`` for an addition of ΔW, ``dora_bound`` for DoRA's norm and
division), and a DoRA weight that misses says which of DoRA's parts is off.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from parity.fused_comparison import UnfuseDrift
from parity.reference.merge import MergeReference
from parity.reference.variants import magnitude_of, renormalised
from parity.tolerances import (
    Tolerance,
    TensorReport,
    dora_bound,
    dora_unfuse_bound,
    merge_bound,
    operand_magnitude,
    report_against_bound,
    ulp,
    unfuse_bound,
)


def bound_of(ref: MergeReference, dtype: torch.dtype, tol: Tolerance) -> torch.Tensor:
    """The element-wise bound of ``ref``'s merge in ``dtype``."""
    if ref.dora is None:
        return merge_bound(ref.steps, ref.base, dtype, tol)
    mag = ref.dora.magnitude
    return dora_bound(ref.steps[0], ref.base, magnitude_of(mag, tuple(ref.base.shape)), mag.axis, mag.eps,
                      mag.value.dtype, dtype, tol)


def formula_report(name: str, actual: torch.Tensor, ref: MergeReference, dtype: torch.dtype,
                   tol: Tolerance) -> TensorReport:
    """``actual`` (the fused weight) against ``ref`` within its bound; a DoRA weight that misses is diagnosed."""
    report = report_against_bound(name, actual, ref.merged, bound_of(ref, dtype, tol), dtype,
                                  operand_magnitude(ref.steps, ref.base))
    if not report.ok and ref.dora is not None:
        report.diagnosis = diagnose_dora(actual, ref, dtype, tol)
    return report


def _within(actual: torch.Tensor, candidate: torch.Tensor, bound: torch.Tensor) -> bool:
    return bool(((actual.double() - candidate).abs() <= bound).all())


def diagnose_dora(actual: torch.Tensor, ref: MergeReference, dtype: torch.dtype, tol: Tolerance) -> str:
    """Which reading of the file the fused weight is: W + ΔW (the magnitude dropped), the DoRA merge
    normalised over the other axis, or none of them (named as such)."""
    assert ref.dora is not None
    mag = ref.dora.magnitude
    key = mag.key
    v = ref.base + ref.steps[0].delta
    # Readings other than the reference are held to the reference's bound: each differs from it by
    # far more than a rounding wherever the magnitude is not the norm (the check's files make sure).
    bound = bound_of(ref, dtype, tol) + merge_bound(ref.steps, ref.base, dtype, tol)
    if _within(actual, v, bound):
        return (f"the DoRA magnitude was dropped: the fused weight is W + ΔW, not m ⊙ (W + ΔW) / ‖W + ΔW‖ "
                f"({key} not applied)")
    if ref.base.ndim > 1 and ref.base.shape[0] * ref.base.shape[1] > 1:
        other = "in" if mag.axis == "out" else "out"
        if mag.value.numel() == ref.base.shape[0 if other == "out" else 1]:
            if _within(actual, renormalised(v, replace(mag, axis=other)), bound):
                per = {"out": "output row", "in": "input channel"}
                return f"DoRA normalised over the wrong axis: per {per[other]}, where {key} is per {per[mag.axis]}"
    ratio = actual.double() / v.where(v.abs() > 0, torch.ones_like(v))
    return (f"the fused weight is no DoRA reading of {key}: fused/(W + ΔW) spans "
            f"{float(ratio.min()):.4g}..{float(ratio.max()):.4g}")


def formula_drift(name: str, now: torch.Tensor, ref: MergeReference, dtype: torch.dtype, tol: Tolerance,
                  cycles: int) -> UnfuseDrift:
    """|now − base| after ``cycles`` fuse/unfuse cycles against the unfuse bound of ``ref``'s merge (the
    subtraction of ΔW computed again, or DoRA's division by its cached factor): what ``unfuse_drift``
    gives for a pair."""
    base = ref.base
    if not base.numel():
        return UnfuseDrift(0.0, 0.0, 0.0, 0, 0)
    scale = operand_magnitude(ref.steps, base)
    bound = dora_unfuse_bound(ref.steps[0], base, dtype, tol, cycles) if ref.dora is not None \
        else unfuse_bound(ref.steps, base, dtype, tol, cycles, scale)
    err = (now.detach().cpu().double() - base).abs_()
    err.masked_fill_(~torch.isfinite(err), float("inf"))
    ratio = torch.where(bound > 0, err / bound, torch.where(err > 0, float("inf"), 0.0))
    return UnfuseDrift(float((err / ulp(scale, dtype)).max()), float((err / ulp(base, dtype)).max()),
                       float(ratio.max()), int((err > 0).sum()), base.numel())
