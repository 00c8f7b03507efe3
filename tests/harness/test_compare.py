"""ULPs and bounds are right by IEEE-754 arithmetic, and the tolerance table is complete."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.checks.cases import DEVICES, DTYPES
from parity.reference.merge import MergeStep
from parity.tolerances import FLOAT_DTYPES, TOLERANCES, detectable_ulps, merge_bound, ulp

# Spacing above 1.0 is 2^-(mantissa bits): 23 for float32, 10 for float16, 7 for bfloat16.
KNOWN_ULPS = [
    (1.0, torch.float32, 2.0**-23),
    (1.0, torch.float16, 2.0**-10),
    (1.0, torch.bfloat16, 2.0**-7),
    (3.0, torch.float32, 2.0**-22),
    (-0.75, torch.bfloat16, 2.0**-8),
    (0.0, torch.float32, 2.0**-149),
]


@pytest.mark.parametrize("x, dtype, expected", KNOWN_ULPS)
def test_ulp_matches_ieee_spacing(x, dtype, expected):
    assert ulp(torch.tensor(x), dtype).item() == expected


def test_ulp_a_float64_step_below_a_power_of_two_is_the_lower_binades():
    # log2 rounds 2^20·(1 − 2^-53) up to exactly 20: a spacing read from it would be twice the grid's
    below = torch.tensor(2.0**20 * (1 - 2.0**-53), dtype=torch.float64)
    assert ulp(below, torch.float32).item() == 2.0**(19 - 23)


def test_ulp_of_nan_is_nan_and_of_inf_is_inf():
    out = ulp(torch.tensor([math.nan, math.inf, 1.0], dtype=torch.float64), torch.float32)
    assert math.isnan(out[0]) and out[1] == math.inf and out[2] == 2.0**-23


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=2.0**-100, max_value=2.0**100, allow_nan=False, allow_infinity=False, width=32))
def test_ulp_is_the_gap_to_the_next_float32(x):
    t = torch.tensor(x, dtype=torch.float32)
    gap = (torch.nextafter(t, torch.tensor(math.inf)).double() - t.double()).item()
    assert ulp(t, torch.float32).item() == gap


@pytest.mark.parametrize("check", ["merge", "unfuse"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_tolerance_entry_exists_and_is_explained(check, device, dtype):
    entry = TOLERANCES[(check, device, dtype)]
    assert len(entry.why) > 40


@pytest.mark.parametrize("dtype", list(FLOAT_DTYPES.values()))
def test_a_correctly_rounded_merge_is_within_bound_and_a_few_ulps_are_not(dtype):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, generator=gen, dtype=torch.float64).to(dtype)
    a = torch.randn(4, 32, generator=gen, dtype=torch.float64) * 0.2
    b = torch.randn(64, 4, generator=gen, dtype=torch.float64) * 0.2
    exact = w.double() + b @ a
    steps = [MergeStep(b @ a, b.abs() @ a.abs(), 4, torch.float64)]
    from parity.tolerances import tolerance

    bound = merge_bound(steps, w, dtype, tolerance("merge", "cpu", dtype))
    rounded = exact.to(dtype).double()  # the best any implementation can do
    assert ((rounded - exact).abs() <= bound).all()
    mag = w.double().abs() + steps[0].abs_product
    few = detectable_ulps(dtype, rank=4)
    assert ((few * ulp(mag, dtype)) > bound).all(), f"bound too loose to catch a {few}-ULP error"
