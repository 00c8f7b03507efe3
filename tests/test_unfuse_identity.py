"""unfuse_lora after fuse_lora restores the base weights within two roundings per cycle, over many cycles."""

from __future__ import annotations

import pytest

from parity.checks.prepare import prepare
from parity.checks.cases import ADAPTER_SPECS, DTYPES, layout_cases
from parity.checks.fuse import fuse_unfuse_cycles, load_adapters

LAYOUTS = layout_cases()
CYCLES = 20


def _params(dtypes=DTYPES):
    return [pytest.param(lc, dt, id=f"{lc.id}-{dt}") for lc in LAYOUTS for dt in dtypes]


@pytest.mark.parametrize("layout_case, dtype", _params())
def test_unfuse_restores_base_within_bound(layout_case, dtype, tmp_path, model_path, parity_record):
    prep = prepare(layout_case, ADAPTER_SPECS, dtype, "cpu", str(tmp_path), model_path)
    weights = (0.7, 0.8)
    load_adapters(prep.pipe, prep.paths, weights)

    result = fuse_unfuse_cycles(prep.pipe, prep.components, prep.before, prep.loras, weights, cycles=1)

    parity_record(
        "unfuse", dtype, result.max_ulps[0], result.bound_ratio[0],
        f"{100 * result.frac_changed[0]:.1f}% of targeted elements not bit-exact; "
        f"max {result.max_base_ulps[0]:.0f} ULP of W itself (where W is near 0)",
    )
    assert not result.changed_untargeted, f"untargeted weights changed: {result.changed_untargeted[:5]}"
    assert result.ok, f"drift {result.max_ulps[0]:.2f} ULP is {result.bound_ratio[0]:.2f}x the bound"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", sorted({lc.family for lc in LAYOUTS}))
def test_drift_over_many_cycles_stays_within_linear_bound(family, dtype, tmp_path, model_path, parity_record):
    layout_case = next(lc for lc in LAYOUTS if lc.family == family and lc.layout == "diffusers")
    prep = prepare(layout_case, ADAPTER_SPECS[:1], dtype, "cpu", str(tmp_path), model_path)
    load_adapters(prep.pipe, prep.paths)

    result = fuse_unfuse_cycles(prep.pipe, prep.components, prep.before, prep.loras, (1.0,), cycles=CYCLES)

    growth = " ".join(f"{u:.1f}" for u in result.max_ulps[:: max(1, CYCLES // 5)])
    parity_record(
        "unfuse-cycles", dtype, result.max_ulps[-1], max(result.bound_ratio),
        f"max ULP drift every {CYCLES // 5} cycles: {growth}",
    )
    assert not result.changed_untargeted
    assert result.ok, f"drift per cycle {result.max_ulps} exceeds n x (one-cycle bound): {result.bound_ratio}"
