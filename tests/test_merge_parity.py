"""fuse_lora writes W + Σ wᵢ·s·(α/r)·B@A into every targeted weight and touches nothing else."""

from __future__ import annotations

import pytest

from parity.checks.cases import DTYPES, merge_cases
from parity.checks.check import CheckRequest, run_check
from parity.checks.fuse import fuse_and_measure, fuse_components
from parity.pytest.cases import params

CASES = merge_cases()


@pytest.mark.parametrize("case", params(CASES))
def test_fuse_matches_reference_merge(case, prepared, parity_record):
    prep = prepared.get(case)
    if case.prior_fuse:
        first = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, case.weights, case.lora_scale)
        if not first.ok:  # pytest.fail is no AssertionError: a broken first fuse must not pass as a finding
            pytest.fail(f"the first fuse already differs: {first.failures()}")
        prep.pipe.unfuse_lora(components=fuse_components(prep.pipe, prep.components))

    result = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, case.weights, case.lora_scale)

    parity_record("merge", case.dtype, result.max_ulps, result.max_bound_ratio, f"{len(result.reports)} weights")
    assert result.reports, "the case targeted no weight"
    assert result.ok, "fused weights differ from the reference merge:\n  " + "\n  ".join(result.failures())


@pytest.mark.parametrize("case", params(c for c in CASES if c.lora_scale == 0.0 and c.device == "cpu"))
def test_fuse_at_scale_zero_leaves_every_weight_bit_identical(case, prepared):
    prep = prepared.get(case)

    result = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, case.weights, 0.0)

    assert all(r.max_abs == 0.0 for r in result.reports), [r.name for r in result.reports if r.max_abs]
    assert not result.changed_untargeted


def pytest_generate_tests(metafunc):
    # User files given with --lora; one family (the first --family, default sd15) and its model.
    if "user_lora" in metafunc.fixturenames:
        files = metafunc.config.getoption("--lora")
        params = [pytest.param(f, id=f.rsplit("/", 1)[-1]) for f in files] or [
            pytest.param(None, marks=pytest.mark.skip(reason="no --lora FILE given"), id="no-user-lora")
        ]
        metafunc.parametrize("user_lora", params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_user_lora_fuse_matches_reference_merge(user_lora, dtype, request, device, model_path, parity_record):
    # The check `lora-parity check` runs: merge parity on the first fuse, whose unfuse ends one fuse/unfuse cycle.
    family = (request.config.getoption("--family") or ["sd15"])[0]
    check = CheckRequest(family, (user_lora,), dtypes=(dtype,), device=device, model_path=model_path,
                         allow_pickle=request.config.getoption("--allow-pickle"),
                         expert=request.config.getoption("--expert"))

    report = run_check(check)

    [result] = report.results
    parity_record("merge-user", dtype, result.max_ulps, result.max_bound_ratio,
                  f"{len(report.files[0].unmatched)} keys unmatched")
    assert result.ok, "fused weights differ from the reference merge:\n  " + "\n  ".join(result.failures)
