"""Cost of the LoRA API calls themselves (parity/bench/operations.py): load, fuse, unfuse,
set_adapters, hotswap, and the first call after a hotswap against the first call after unloading,
reloading and recompiling.
"""

from __future__ import annotations

import pytest

from parity.bench import record as rec
from parity.bench.modes import BENCH_RANK, MODES_BY_NAME, Subject, enter, info
from parity.bench.operations import OPERATIONS
from parity.bench.run import rounds_for, time_target
from parity.checks.cases import BenchCase, bench_cases
from parity.pytest.cases import params

CASES = bench_cases({name: MODES_BY_NAME[op.start_mode].compiled for name, op in OPERATIONS.items()})


@pytest.mark.benchmark
@pytest.mark.parametrize("case", params(CASES))
def test_operation_latency(benchmark, case: BenchCase, subject: Subject, bench_rounds: int | None) -> None:
    op = OPERATIONS[case.name]
    mode = MODES_BY_NAME[op.start_mode]
    record = info(
        subject,
        rec.OPERATION,
        case.name,
        rank=BENCH_RANK if mode.adapters or case.name == "load_lora_weights" else 0,
        adapters=max(mode.adapters, 1),
        target_rank=mode.target_rank,
        compiled=mode.compiled,
        backend=subject.backend if mode.compiled else None,
    )
    enter(subject, mode)
    setup = (lambda: op.each_round(subject)) if op.each_round else None
    rounds = rounds_for(subject.size, rec.OPERATION, bench_rounds, compiling=op.compiles)
    time_target(benchmark, record, lambda: op.target(subject), subject.device, rounds, setup, op.compiles)
