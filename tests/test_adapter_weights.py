"""set_adapters weights scale each adapter's fused delta linearly, negative and zero weights included."""

from __future__ import annotations

import pytest

from parity.checks.cases import set_adapters_cases
from parity.checks.fuse import fuse_and_measure
from parity.pytest.cases import params
from tests.support.adapters import load


@pytest.mark.parametrize("case", params(set_adapters_cases()))
def test_set_adapters_weight_scales_the_fused_delta_linearly(case, tmp_path):
    names = ("a", "b")[: len(case.weights)]
    loaded = load(case.family, tmp_path, names=names)
    loaded.pipe.set_adapters(list(names), adapter_weights=list(case.weights))

    result = fuse_and_measure(
        loaded.pipe, loaded.components, loaded.before, [loaded.loras[n] for n in names], case.weights, 1.0
    )

    assert result.reports
    assert result.ok, result.failures()
