"""The merge check of LyCORIS and DoRA modules (parity/checks/variant_merge.py) passes a fused weight
computed as the loaders compute it, in the model's dtype, and fails each way a loader could get the
formula wrong: the DoRA magnitude dropped, the norm on the wrong axis, a LoKr's factors swapped, a
LoHa's halves crossed, a tucker core transposed, one element a few ULPs beyond its bound."""

from __future__ import annotations

import pytest
import torch

from parity.checks.variant_merge import bound_of, formula_report
from parity.lora.neutral import DoraModule, LoraFile, LohaModule, LokrModule, LoraModule, Magnitude, TuckerModule
from parity.reference.merge import reference_merge
from parity.reference.variants import factored_delta, norm_of
from parity.tolerances import tolerance, ulp

DTYPE = torch.float32


def _t(*shape: int, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1000 + sum(shape))
    return (torch.randn(*shape, generator=g) * scale).to(DTYPE)


def _ref(module, base: torch.Tensor):
    refs = reference_merge({"unet": {"m.weight": base}}, [(LoraFile({("unet", "m"): module}, "test"), 1.0)])
    return refs[("unet", "m")]


def _check(module, base: torch.Tensor, actual: torch.Tensor):
    return formula_report("unet.m.weight", actual, _ref(module, base), DTYPE, tolerance("merge", "cpu", DTYPE))


def _fused_in_dtype(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """What a loader computes: ΔW rounded to the model dtype, added in it."""
    return base + delta.to(DTYPE)


BASE = _t(8, 6, seed=1, scale=1.0)
PAIR = LoraModule("unet", "m", _t(2, 6, seed=2), _t(8, 2, seed=3), alpha=1.0)


def _dora(axis: str = "out") -> DoraModule:
    size = 8 if axis == "out" else 6
    return DoraModule(PAIR, Magnitude(_t(size, seed=4).abs() + 1.0, axis, 0.0, "m.lora_magnitude_vector"))


def _dora_fused(m: DoraModule, axis: str) -> torch.Tensor:
    """PEFT's order: V = fl(W + δ), f = fl(m / fl(‖V‖)), W' = fl(f·V), in the model dtype."""
    v = _fused_in_dtype(BASE, factored_delta(m.inner, tuple(BASE.shape)))
    view = (-1, 1) if axis == "out" else (1, -1)
    return m.magnitude.value.reshape(view) / norm_of(v, axis) * v


def test_a_dora_weight_fused_as_peft_does_passes():
    report = _check(_dora(), BASE, _dora_fused(_dora(), "out"))
    assert report.ok, report


def test_a_dropped_magnitude_fails_and_is_named():
    m = _dora()
    report = _check(m, BASE, _fused_in_dtype(BASE, factored_delta(PAIR, tuple(BASE.shape))))
    assert not report.ok and "magnitude was dropped" in report.diagnosis


def test_the_norm_on_the_wrong_axis_fails_and_is_named():
    square = _t(6, 6, seed=5, scale=1.0)
    pair = LoraModule("unet", "m", _t(2, 6, seed=2), _t(6, 2, seed=3), alpha=1.0)
    m = DoraModule(pair, Magnitude(_t(6, seed=4).abs() + 1.0, "out", 0.0, "m.lora_magnitude_vector"))
    v = _fused_in_dtype(square, factored_delta(pair, (6, 6)))
    wrong = m.magnitude.value.reshape(1, -1) / norm_of(v, "in") * v
    right = m.magnitude.value.reshape(-1, 1) / norm_of(v, "out") * v
    assert _check(m, square, right).ok
    report = _check(m, square, wrong)
    assert not report.ok and "wrong axis" in report.diagnosis


def test_a_lokr_with_its_factors_swapped_fails():
    m = LokrModule("unet", "m", w1=_t(2, 3, seed=6), w2a=_t(4, 2, seed=7), w2b=_t(2, 2, seed=8), alpha=2.0)
    base = _t(8, 6, seed=9, scale=1.0)
    w2 = (m.w2a.double() @ m.w2b.double())
    right = _fused_in_dtype(base, factored_delta(m, (8, 6)))
    assert _check(m, base, right).ok
    swapped = torch.kron(w2, m.w1.double()).reshape(8, 6)  # (4·2, 2·3): the same shape, other places
    assert not _check(m, base, _fused_in_dtype(base, swapped)).ok


def test_a_loha_with_its_halves_crossed_fails():
    m = LohaModule("unet", "m", _t(8, 2, seed=10), _t(2, 6, seed=11), _t(8, 2, seed=12), _t(2, 6, seed=13), alpha=2.0)
    assert _check(m, BASE, _fused_in_dtype(BASE, factored_delta(m, (8, 6)))).ok
    crossed = (m.w1a.double() @ m.w2b.double()) * (m.w2a.double() @ m.w1b.double())
    assert not _check(m, BASE, _fused_in_dtype(BASE, crossed)).ok


def test_a_tucker_core_transposed_fails():
    m = TuckerModule("unet", "m", _t(2, 3, 1, 1, seed=14), _t(2, 2, 3, 3, seed=15), _t(4, 2, 1, 1, seed=16), alpha=2.0)
    base = _t(4, 3, 3, 3, seed=17, scale=1.0)
    assert _check(m, base, _fused_in_dtype(base, factored_delta(m, (4, 3, 3, 3)))).ok
    transposed = TuckerModule("unet", "m", m.down, m.mid.transpose(0, 1).contiguous(), m.up, m.alpha)
    assert not _check(m, base, _fused_in_dtype(base, factored_delta(transposed, (4, 3, 3, 3)))).ok


@pytest.mark.parametrize("module", ["dora", "loha"])
def test_one_element_a_few_ulps_beyond_its_bound_fails(module):
    m = _dora() if module == "dora" else LohaModule("unet", "m", _t(8, 2, seed=10), _t(2, 6, seed=11),
                                                     _t(8, 2, seed=12), _t(2, 6, seed=13), alpha=2.0)
    actual = _dora_fused(m, "out") if module == "dora" else _fused_in_dtype(BASE, factored_delta(m, (8, 6)))
    ref = _ref(m, BASE)
    bound = bound_of(ref, DTYPE, tolerance("merge", "cpu", DTYPE))
    off = actual.clone()
    steps = int(torch.ceil(bound[3, 2] / ulp(ref.merged[3, 2:3], DTYPE)[0]).item()) + 2
    off[3, 2] = float(ref.merged[3, 2]) + steps * float(ulp(ref.merged[3, 2:3], DTYPE)[0])
    report = _check(m, BASE, off)
    assert report.n_over == 1 and report.worst_index == (3, 2)
