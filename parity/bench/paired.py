"""Paired timing on a noisy shared machine: targets timed round-robin in a fresh random order every
round, and ratios taken per round with a bootstrap interval of their median.

A shared runner's speed comes and goes by tens of percent within seconds. Timed one after another,
each target gets whatever spell it ran in, and their ratio measures the spells (issue 17: a fused
model, which runs the base arithmetic, read 8.6x base). Timed in the same round, in an order drawn
again every round, a spell hits every target alike and drops out of each round's ratio; what is left
is spread, which the interval shows. Used by the interleaved mode groups (parity/bench/groups.py)
and by the check against its floor (parity/bench/checkcost.py).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed seed: the same rounds always give the same interval
INTERVAL = 0.95


def bootstrap_interval(values: Sequence[float], level: float = INTERVAL, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the median; one value is its own interval."""
    if len(values) < 2:
        return float(values[0]), float(values[0])
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1.0 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int((1.0 - tail) * (resamples - 1))]


@dataclass(frozen=True)
class RatioSummary:
    """Each round's ratio, their median and a bootstrap interval of the median."""

    ratios: tuple[float, ...]
    median: float
    low: float
    high: float
    bound: float | None = None  # what the median is held to, where something is

    @property
    def within(self) -> bool:
        return self.bound is None or self.median <= self.bound

    @property
    def spread(self) -> float:
        """How far the interval reaches from 1 on either side: an A/A pair's is the noise floor."""
        return max(1.0 - self.low, self.high - 1.0, 0.0)


def summarize(numerator: Sequence[float], denominator: Sequence[float], bound: float | None = None) -> RatioSummary:
    """The ratios of rounds timed together; ValueError on unpaired or empty timings."""
    if not numerator or len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} and {len(denominator)} timings: rounds must pair up")
    ratios = tuple(a / b for a, b in zip(numerator, denominator))
    low, high = bootstrap_interval(ratios)
    return RatioSummary(ratios, statistics.median(ratios), low, high, bound)


class RoundRobin:
    """pytest-benchmark's ``pedantic`` target for one round of every target, in a fresh random order.

    Each call is one round of ``repeats`` passes over the targets, each pass in an order drawn from a
    generator seeded once; each target is timed on its own (``perf_counter`` around the call, which
    ends in a device synchronize: see parity/bench/timing.py) and keeps its fastest call of the round:
    another process taking the core inflates a call, never shortens one, so the fastest of a few is
    the least disturbed (timeit's reasoning). Rounds past the first ``warmup`` keep their times.
    pytest-benchmark's own stats are then those of whole rounds; the per-target times are ``seconds``.
    """

    def __init__(self, targets: Mapping[str, Callable[[], Any]], warmup: int = 0, seed: int = 0,
                 repeats: int = 1) -> None:
        self.targets = dict(targets)
        self.warmup = warmup
        self.repeats = repeats
        self.rng = random.Random(seed)
        self.seconds: dict[str, list[float]] = {name: [] for name in self.targets}
        self.orders: list[list[str]] = []
        self.calls = 0

    def __call__(self) -> None:
        timed: dict[str, float] = {}
        order: list[str] = []
        for _ in range(self.repeats):  # each pass in its own order; a target keeps its fastest call
            passing = list(self.targets)
            self.rng.shuffle(passing)
            order += passing
            for name in passing:
                start = time.perf_counter()
                self.targets[name]()
                seconds = time.perf_counter() - start
                timed[name] = min(seconds, timed.get(name, seconds))
        self.calls += 1
        if self.calls > self.warmup:
            self.orders.append(order)
            for name, seconds in timed.items():
                self.seconds[name].append(seconds)
