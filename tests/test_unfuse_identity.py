"""unfuse_lora after fuse_lora restores the base weights within two roundings per cycle, over many cycles."""

from __future__ import annotations

import pytest

from parity.checks.cases import unfuse_cases
from parity.checks.fuse import fuse_unfuse_cycles
from parity.pytest.cases import params

ONE_CYCLE = [c for c in unfuse_cases() if c.cycles == 1]
MANY_CYCLES = [c for c in unfuse_cases() if c.cycles > 1]


@pytest.mark.parametrize("case", params(ONE_CYCLE))
def test_unfuse_restores_base_within_bound(case, prepared, parity_record):
    prep = prepared.get(case)

    result = fuse_unfuse_cycles(prep.pipe, prep.components, prep.before, prep.loras, case.weights, cycles=1)

    parity_record(
        "unfuse", case.dtype, result.max_ulps[0], result.bound_ratio[0],
        f"{100 * result.frac_changed[0]:.1f}% of targeted elements not bit-exact; "
        f"max {result.max_base_ulps[0]:.0f} ULP of W itself (where W is near 0)",
    )
    assert not result.changed_untargeted, f"untargeted weights changed: {result.changed_untargeted[:5]}"
    assert result.ok, f"drift {result.max_ulps[0]:.2f} ULP is {result.bound_ratio[0]:.2f}x the bound"


@pytest.mark.parametrize("case", params(MANY_CYCLES))
def test_drift_over_many_cycles_stays_within_linear_bound(case, prepared, parity_record):
    prep = prepared.get(case)

    result = fuse_unfuse_cycles(prep.pipe, prep.components, prep.before, prep.loras, case.weights,
                                cycles=case.cycles)

    growth = " ".join(f"{u:.1f}" for u in result.max_ulps[:: max(1, case.cycles // 5)])
    parity_record(
        "unfuse-cycles", case.dtype, result.max_ulps[-1], max(result.bound_ratio),
        f"max ULP drift every {case.cycles // 5} cycles: {growth}",
    )
    assert not result.changed_untargeted
    assert result.ok, f"drift per cycle {result.max_ulps} exceeds n x (one-cycle bound): {result.bound_ratio}"
