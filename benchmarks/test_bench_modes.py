"""Latency of one denoiser forward and one pipeline call in each mode: base, unfused with 1/2/4
adapters, fused, fused+unloaded, compiled base and fused, compiled and hotswap-ready padded to a rank.
"""

from __future__ import annotations

import pytest

from parity.bench import record as rec
from parity.bench.modes import (
    DENOISER_ONLY,
    DENOISER_ONLY_SKIP,
    MODES,
    MODES_BY_NAME,
    PADDINGS_BELOW_LARGEST,
    Mode,
    Subject,
    call_of,
    enter,
    flop_fields,
    mode_info,
)
from parity.bench.run import rounds_for, time_target
from parity.checks.cases import BenchCase, bench_cases
from parity.pytest.cases import params

CASES = params(bench_cases({m.name: m.compiled for m in MODES}, padded=PADDINGS_BELOW_LARGEST))


def _time_mode(benchmark, subject: Subject, mode: Mode, kind: str, rounds: int | None) -> None:
    info = mode_info(subject, mode, kind)
    if not benchmark.disabled:  # counting runs the call under FlopCounterMode: not for smoke runs
        for key, value in flop_fields(subject, mode, kind).items():
            setattr(info, key, value)
    call = call_of(subject, kind)
    enter(subject, mode, warmup=call)
    time_target(benchmark, info, call, subject.device, rounds_for(subject.size, kind, rounds))


@pytest.mark.benchmark
@pytest.mark.parametrize("case", CASES)
def test_denoiser_forward_latency(benchmark, case: BenchCase, subject: Subject, bench_rounds: int | None) -> None:
    _time_mode(benchmark, subject, MODES_BY_NAME[case.name], rec.FORWARD, bench_rounds)


@pytest.mark.benchmark
@pytest.mark.parametrize("case", CASES)
def test_pipeline_call_latency(benchmark, case: BenchCase, subject: Subject, bench_rounds: int | None) -> None:
    if subject.size in DENOISER_ONLY:
        pytest.skip(DENOISER_ONLY_SKIP.format(size=subject.size))
    _time_mode(benchmark, subject, MODES_BY_NAME[case.name], rec.PIPELINE, bench_rounds)
