"""The reference's ΔW for LyCORIS's algorithms and its DoRA merge (parity/reference/variants.py), each
checked against a property that does not use the formula it checks: a tucker kernel is the three convs
run one after another, a LoKr ΔW holds w1[i, p]·w2[j, q] at row i·b + j and column p·d + q, a LoHa ΔW
is the element-wise product of two pair deltas, and a DoRA weight has the magnitude as its norms and
W + ΔW's directions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity.lora.neutral import DoraModule, LohaModule, LokrModule, LoraModule, Magnitude, RowsOf, TuckerModule
from parity.reference.variants import dora_merged, factored_delta, lokr_scale, lycoris_scale, raw_delta


def _t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed + sum(shape)), dtype=torch.float64)


def test_a_tucker_kernel_is_down_then_mid_then_up_run_as_convs():
    out, fan_in, rank, k = 6, 5, 3, 3
    m = TuckerModule("unet", "c", _t(rank, fan_in, 1, 1), _t(rank, rank, k, k, seed=1), _t(out, rank, 1, 1, seed=2),
                     alpha=1.5)
    x = _t(1, fan_in, 7, 7, seed=3)
    chained = F.conv2d(F.conv2d(F.conv2d(x, m.down), m.mid, padding=1), m.up) * (1.5 / rank)
    assert torch.allclose(F.conv2d(x, factored_delta(m, (out, fan_in, k, k)), padding=1), chained, atol=1e-12)


def test_a_lokr_delta_holds_each_product_of_its_factors_where_kron_puts_it():
    a, c, b, d = 2, 3, 4, 5
    m = LokrModule("unet", "l", w1=_t(a, c), w2a=_t(b, 2, seed=1), w2b=_t(2, d, seed=2), alpha=1.0)
    w2 = m.w2a @ m.w2b
    delta = factored_delta(m, (a * b, c * d))
    for i, p, j, q in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 1), (0, 2, 3, 0)]:
        assert delta[i * b + j, p * d + q] == pytest.approx(float(m.w1[i, p] * w2[j, q]) * 0.5)


def test_a_lokr_with_both_factors_full_ignores_its_alpha_as_lycoris_does():
    assert lokr_scale(LokrModule("unet", "l", w1=_t(2, 2), w2=_t(3, 3), alpha=7.0)) == 1.0
    assert lokr_scale(LokrModule("unet", "l", w1=_t(2, 2), w2a=_t(3, 4), w2b=_t(4, 3), alpha=2.0)) == 0.5


def test_alpha_zero_or_missing_means_alpha_equals_rank_in_lycoris():
    assert lycoris_scale(None, 4) == lycoris_scale(0.0, 4) == 1.0 and lycoris_scale(2.0, 4) == 0.5


def test_a_loha_delta_is_the_product_of_two_pair_deltas():
    out, fan_in, rank = 4, 6, 2
    m = LohaModule("unet", "h", _t(out, rank), _t(rank, fan_in, seed=1), _t(out, rank, seed=2),
                   _t(rank, fan_in, seed=3), alpha=1.0)
    first = (m.w1a @ m.w1b)
    second = (m.w2a @ m.w2b)
    assert torch.allclose(raw_delta(m), first * second * 0.5)


def test_a_tucker_loha_factor_is_its_core_run_between_its_two_projections():
    out, fan_in, rank, k = 4, 3, 2, 3
    t1, t2 = _t(rank, rank, k, k, seed=4), _t(rank, rank, k, k, seed=5)
    m = LohaModule("unet", "h", _t(rank, out), _t(rank, fan_in, seed=1), _t(rank, out, seed=2),
                   _t(rank, fan_in, seed=3), t1, t2, alpha=None)
    x = _t(1, fan_in, 5, 5, seed=6)

    def factor_conv(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        # wb projects in → r, the core convolves r → r, wa (r, out) projects back
        return torch.einsum("ij...,ip,jr->pr...", t, wa, wb)

    first = factor_conv(t1, m.w1a, m.w1b)
    chained = F.conv2d(F.conv2d(x, m.w1b[:, :, None, None]), t1, padding=1)
    chained = F.conv2d(chained, m.w1a.T[:, :, None, None])
    assert torch.allclose(F.conv2d(x, first, padding=1), chained, atol=1e-12)
    assert torch.allclose(raw_delta(m), first * factor_conv(t2, m.w2a, m.w2b))


@pytest.mark.parametrize("axis", ["out", "in"])
def test_a_dora_weight_has_the_magnitude_as_its_norms_and_w_plus_delta_as_its_directions(axis):
    base = _t(5, 4, seed=7)
    pair = LoraModule("unet", "x", _t(2, 4, seed=8), _t(5, 2, seed=9), alpha=2.0)
    size = 5 if axis == "out" else 4
    mag = _t(size, seed=10).abs() + 0.5
    merged = dora_merged(base, DoraModule(pair, Magnitude(mag, axis, 0.0, "k")), scale=0.7)
    dim = 1 if axis == "out" else 0
    assert torch.allclose(merged.norm(dim=dim), mag)
    v = base + 0.7 * (pair.up.double() @ pair.down.double())
    assert torch.allclose(merged / merged.norm(dim=dim, keepdim=True), v / v.norm(dim=dim, keepdim=True))


def test_the_rows_of_a_fused_lokr_are_the_whole_modules_delta_cut_at_the_parts():
    """A LoKr on a fused q|k|v: each part's ΔW is its rows of the whole ΔW, however the rows are ordered."""
    whole = LokrModule("transformer", "qkv", w1=_t(3, 2), w2a=_t(4, 2, seed=1), w2b=_t(2, 3, seed=2), alpha=2.0)
    full = raw_delta(whole)  # (12, 6)
    parts = [RowsOf("transformer", name, whole, ((4 * i, 4, 0),), 4) for i, name in enumerate("qkv")]
    assert torch.equal(torch.cat([raw_delta(p) for p in parts]), full)
    split = RowsOf("transformer", "mixed", whole, ((0, 2, 2), (10, 2, 0)), 4)  # rows 10-11 first, then 0-1
    assert torch.equal(raw_delta(split), torch.cat([full[10:12], full[0:2]]))
