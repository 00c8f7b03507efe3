"""A group's modes timed together: base, its A/A twin, unfused and fused, each on its own copy of the
subject, round-robin in a fresh random order every round (parity/bench/paired.py), with each mode's
ratio to base taken per round and the A/A pair's interval as the run's noise floor.

The per-mode benchmarks (benchmarks/test_bench_modes.py) time one mode after another: right for a
latency table, wrong for a ratio on a shared machine, where a slow spell lands on whichever mode is
running (issue 17: a fused model, which runs base's arithmetic, read 8.6x base). Here every mode runs
in every round, so a spell slows the round's base as much as its fused, and the ratio keeps only the
spread, which its interval shows. The A/A twin is base timed as a mode of its own: its ratio must come
out 1, and how far its interval reaches from 1 is the smallest difference this run can tell apart
(``noise_floor``); compare and gate judge nothing finer (parity/bench/compare.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from parity.bench import record as rec
from parity.bench.modes import BENCH_RANK, MODES_BY_NAME, Subject, build_subject, call_of, enter, flop_fields, info
from parity.bench.paired import RoundRobin, summarize
from parity.bench.run import Rounds
from parity.bench.timing import synced
from parity.devices import torch_threads
from parity.zoo.family import Family

# The modes of a group: base first (what every ratio divides by), its A/A twin, one adapter unfused
# (the flop floor above 1) and fused (the flop floor 1: base's arithmetic).
GROUP_MODES = (rec.BASE, rec.BASE_AGAIN, rec.unfused_mode(1), rec.FUSED)
GROUP = "group"  # the mode name a group's one record carries
SEED = 0  # the round orders' generator: the same run draws the same orders
CPU_THREADS = 1  # torch threads while a CPU group is timed (_cpu_threads)
# Passes per round; each mode keeps its fastest (parity/bench/paired.py: RoundRobin). A pass of the
# tiny zoo takes milliseconds, so one preempted call would be a round's whole difference; a small-size
# call takes 0.2-0.8 s on one core, which a preemption of a few milliseconds barely moves, and three
# passes would triple a group's minutes.
REPEATS = {"tiny": 3, "small": 1}
DEFAULT_REPEATS = 3
# Sizes whose weights move to fresh memory before every round (fresh_storage). Measured on the small
# flux forward, one thread: the same weights, cloned six times, ran 0.409-0.430 s by copy and kept
# their copy's speed call after call, so two copies of one model differ by up to 5% for where their
# pages landed. Left in place, that difference is fixed for the run: the A/A pair read
# 0.991 [0.986, 0.996], an interval without 1. Moved every round, it becomes one more draw in every
# round's ratio, which the interval then covers. The tiny zoo's weights are a few small allocations
# that a clone puts back into the chunks it just freed; its throwaway build (build_group) answers that.
FRESH_STORAGE = ("small", "full", "model-path")


def _mode(name: str) -> Any:
    return MODES_BY_NAME[rec.BASE if name == rec.BASE_AGAIN else name]


def build_group(family: Family, size: str, dtype: torch.dtype, device: str, directory: str, kind: str,
                model_path: str | None = None, blocks: int | None = None,
                modes: Sequence[str] = GROUP_MODES, quantization: str | None = None) -> dict[str, Subject]:
    """One subject per mode, each put into its mode, and the FLOPs of each counted in its base state.

    On CPU a throwaway subject is built first and kept until the group is built: the first model a
    process builds lands in other memory than the ones after it (fresh pages from the kernel), and ran
    2.6% slower than an identical second one on the tiny sd15 forward, whichever mode it held (the A/A
    pair read 0.975 [0.963, 0.985] built base first, 1.027 [1.020, 1.044] built base-again first, and
    0.998 [0.980, 1.004] behind a throwaway). Larger models are left without one: each of their
    weights is an allocation of its own, fresh from the kernel whichever subject holds it, and a
    throwaway would be one more copy of the model in memory.

    No subject keeps a snapshot of its weights: a group's subjects stay in their modes until dropped.

    With ``quantization`` every subject's denoiser is quantized by it (parity/bench/quantized.py), and a
    mode it cannot enter (fused, where fuse_lora raises: GGUF, fp8 layerwise casting) is left out of the
    group, the error kept in base's ``scratch["skipped_modes"]`` (the record's ``skipped_modes``)."""
    if quantization is None:
        build = functools.partial(build_subject, family, size, dtype, device, directory, snapshot=False)
    else:
        from parity.bench.quantized import build_quantized_subject

        build = functools.partial(build_quantized_subject, family, size, dtype, device, directory, quantization)
    settle = build() if torch.device(device).type == "cpu" and size == "tiny" and model_path is None else None
    subjects, skipped = {}, {}
    for name in modes:
        subject = build(model_path=model_path, blocks=blocks)
        subject.flops[("floors", kind)] = flop_fields(subject, _mode(name), kind)  # before entering: base state
        try:
            enter(subject, _mode(name), warmup=call_of(subject, kind))
        except Exception as exc:  # noqa: BLE001 - on a quantized base, what diffusers refuses is the measurement
            if quantization is None or name == rec.BASE:
                raise
            skipped[name] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
            continue
        subjects[name] = subject
    if skipped:
        subjects[rec.BASE].scratch["skipped_modes"] = skipped
    del settle
    return subjects


def fresh_storage(subjects: dict[str, Subject]) -> None:
    """Every parameter of every subject's denoiser copied into new memory, the old freed: where a
    weight's pages land changes its read speed (FRESH_STORAGE), and this draws it again."""
    with torch.no_grad():
        for subject in subjects.values():
            for p in subject.denoiser.parameters():
                p.data = p.data.clone()


def group_info(subjects: dict[str, Subject], kind: str, robin: RoundRobin) -> rec.BenchInfo:
    """The group's record: each mode's seconds, its ratio to base with the interval, its FLOP floor,
    and the noise floor from the A/A pair."""
    base = robin.seconds[rec.BASE]
    ratios = {name: summarize(seconds, base) for name, seconds in robin.seconds.items() if name != rec.BASE}
    floors = {name: rec.flop_floor(**subject.flops[("floors", kind)]) for name, subject in subjects.items()}
    return _record(subjects[rec.BASE], kind,
                   skipped_modes=subjects[rec.BASE].scratch.get("skipped_modes"),
                   mode_seconds={name: list(s) for name, s in robin.seconds.items()},
                   mode_ratios={name: [r.median, r.low, r.high] for name, r in ratios.items()},
                   mode_flop_floors=floors,
                   noise_floor=ratios[rec.BASE_AGAIN].spread if rec.BASE_AGAIN in ratios else None)


def _record(base: Subject, kind: str, **fields: Any) -> rec.BenchInfo:
    """The group's BenchInfo, as the base mode's subject describes the run."""
    return info(base, rec.INTERLEAVED, GROUP, rank=BENCH_RANK, adapters=1, call=kind, **fields)


def time_group(benchmark: Any, subjects: dict[str, Subject], kind: str, rounds: Rounds,
               seed: int = SEED) -> RoundRobin:
    """Time the group's modes round-robin under pytest-benchmark's fixture (its stats: whole rounds)
    and put every mode's timings and ratios into its ``extra_info``. Disabled (the smoke run), one
    round runs and nothing is recorded."""
    device = subjects[rec.BASE].device
    robin = RoundRobin({name: synced(call_of(s, kind), device) for name, s in subjects.items()},
                       warmup=rounds.warmup, seed=seed,
                       repeats=REPEATS.get(subjects[rec.BASE].size, DEFAULT_REPEATS))
    benchmark.group = f"{rec.group_name(_record(subjects[rec.BASE], kind))}-{kind}"
    setup = functools.partial(fresh_storage, subjects) if subjects[rec.BASE].size in FRESH_STORAGE else None
    with _cpu_threads(device, CPU_THREADS):
        benchmark.pedantic(robin, setup=setup, rounds=rounds.rounds, warmup_rounds=rounds.warmup, iterations=1)
    if not getattr(benchmark, "disabled", False):
        record = group_info(subjects, kind, robin)
        if torch.device(device).type == "cpu":
            record.notes = "; ".join(n for n in (record.notes, f"{CPU_THREADS} torch thread(s)") if n)
        benchmark.extra_info.update(record.to_extra_info())
    return robin


@contextlib.contextmanager
def _cpu_threads(device: str, threads: int) -> Iterator[None]:
    """On CPU, torch's intra-op threads for the timed rounds. With two threads on two cores, another
    process taking one core stalls every parallel op at its barrier, and more so the modes with more
    ops: measured beside a busy process, unfused-1 read 2.9x base on the tiny flux forward against
    1.5x when quiet. One thread is slowed by the other process, not stalled by it."""
    if torch.device(device).type != "cpu":
        yield
        return
    with torch_threads(threads):
        yield
