"""Timing one benchmark target under pytest-benchmark: synchronized, warmed up, guarded, with memory.

``benchmark.pedantic`` runs explicit rounds (pytest-benchmark's calibration would call a
multi-second compiled first call many times). Every round is set up, synchronized, then timed to a
synchronize after the target. Timed rounds run under the recompile guard: a compile inside the
numbers would make them measure dynamo, not the model, so it fails the case unless compiling is
what is being timed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parity.bench.record import BenchInfo, group_name
from parity.bench.timing import peak_memory, synced, synchronize
from parity.checks.dynamo import watch_compiles


@dataclass(frozen=True)
class Rounds:
    rounds: int
    warmup: int


# Per size and kind of target; --bench-rounds replaces ``rounds``. Compiling rounds are few by nature.
ROUNDS = {
    ("tiny", "forward"): Rounds(30, 3),
    ("tiny", "pipeline"): Rounds(10, 2),
    ("tiny", "operation"): Rounds(10, 1),
    # a round of kind check is one check and one floor: seconds each even on the tiny zoo
    ("tiny", "check"): Rounds(5, 1),
    # a small-size forward is 0.2-0.8 s on one core; a group's round times each of its modes once
    ("small", "forward"): Rounds(15, 1),
    ("full", "forward"): Rounds(20, 5),
    ("full", "pipeline"): Rounds(5, 1),
    ("full", "operation"): Rounds(5, 1),
    ("full", "check"): Rounds(3, 1),
}
COMPILING = Rounds(3, 0)


def rounds_for(size: str, kind: str, override: int | None = None, compiling: bool = False) -> Rounds:
    row = (size, kind) if (size, kind) in ROUNDS else ("tiny" if size == "tiny" else "full", kind)
    base = COMPILING if compiling else ROUNDS[row]
    return Rounds(override, base.warmup) if override else base


def time_target(
    benchmark: Any,
    info: BenchInfo,
    target: Callable[[], Any],
    device: str,
    rounds: Rounds,
    setup: Callable[[], Any] | None = None,
    expect_compile: bool = False,
) -> None:
    """Time ``target`` (after ``setup`` each round), then record its peak memory and ``info``."""
    benchmark.group = group_name(info)
    timed = synced(target, device)

    def prepare() -> None:
        if setup is not None:
            setup()
        synchronize(device)

    kwargs = dict(rounds=rounds.rounds, warmup_rounds=rounds.warmup, iterations=1)
    if expect_compile:
        benchmark.pedantic(timed, setup=prepare, **kwargs)
    else:
        with watch_compiles() as watch:
            benchmark.pedantic(timed, setup=prepare, **kwargs)
        if watch.recompiled:
            raise AssertionError(f"{info.mode}: torch.compile ran inside the timed rounds: {watch.summary()}")
    if getattr(benchmark, "disabled", False):
        return  # a smoke run: the target ran once; there is nothing to record
    prepare()
    with peak_memory(device) as memory:
        timed()
    info.peak_memory_bytes, info.memory_kind = memory.bytes, memory.kind
    benchmark.extra_info.update(info.to_extra_info())
