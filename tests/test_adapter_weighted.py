"""PEFT's add_weighted_adapter (linear, ties, dare_linear) builds the adapter our own formulas give
(parity/reference/weighted.py), within the bound derived there."""

from __future__ import annotations

import pytest

from parity.checks.cases import weighted_cases
from parity.pytest.cases import params
from tests.support.adapters import add_weighted, compare_weighted, ours_for


@pytest.mark.parametrize("case", params(weighted_cases()))
def test_add_weighted_adapter_matches_our_combination_formulas(case, tmp_path):
    snapshot_ab, new, rng_state = add_weighted(case, tmp_path)
    assert (rng_state is not None) == (case.combination == "dare_linear")

    reports = compare_weighted(new, ours_for(snapshot_ab, case, rng_state), case.combination)

    assert len(reports) == len(snapshot_ab) > 0
    bad = [f"{r.name}: {r.n_over} over, {r.max_bound_ratio:.2f}x bound" for r in reports if not r.ok]
    assert bad == [], bad[:5]
