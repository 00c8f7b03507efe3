"""Each group's modes timed together, round-robin in a fresh random order every round, with an A/A
control (parity/bench/groups.py): the ratios compare and gate judge on a shared runner."""

from __future__ import annotations

import pytest

from parity.bench import record as rec
from parity.bench.groups import build_group, time_group
from parity.bench.modes import DENOISER_ONLY, DENOISER_ONLY_SKIP
from parity.bench.run import rounds_for
from parity.checks.cases import BenchCase, bench_cases
from parity.pytest.cases import params
from parity.tolerances import dtype_from_name
from parity.zoo import get_family

CASES = params(bench_cases({rec.INTERLEAVED: False}))


@pytest.mark.benchmark
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("call", [rec.FORWARD, rec.PIPELINE])
def test_modes_timed_together(benchmark, case: BenchCase, call: str, request: pytest.FixtureRequest, device: str,
                              model_path: str | None, bench_rounds: int | None,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    size = request.config.getoption("--bench-size")
    if call == rec.PIPELINE and size in DENOISER_ONLY and model_path is None:
        pytest.skip(DENOISER_ONLY_SKIP.format(size=size))
    subjects = build_group(get_family(case.family), size, dtype_from_name(case.dtype), device,
                           str(tmp_path_factory.mktemp(f"group-{case.family}")), call, model_path=model_path,
                           blocks=request.config.getoption("--bench-blocks"))
    robin = time_group(benchmark, subjects, call, rounds_for(subjects[rec.BASE].size, call, bench_rounds))
    assert robin.calls >= 1
