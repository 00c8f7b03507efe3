"""`lora-parity check` against its floor (issue 15: check takes at most 1.5× the floor).

The floor is what diffusers itself does with the same model folder and LoRA files: ``from_pretrained``,
``load_lora_weights``, ``fuse_lora``, ``unfuse_lora``. No check of fuse and unfuse can do less, so the
ratio check/floor is the check's own overhead, and it means the same on a tiny model and a real one.

A check takes seconds, and on a shared runner the machine's speed drifts by tens of percent within
minutes, so the two are never timed in separate blocks: every round times one of each, back to back,
in an order that alternates (floor, check | check, floor | floor, check ...), so that a drift hits
both alike and neither always runs first on a cold cache. What is recorded is each round's ratio,
their median and a bootstrap interval of that median; the report holds the median to the bound.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from parity.bench import record as rec
from parity.bench.paired import RatioSummary, summarize
from parity.bench.timing import device_name, driver_versions, synchronize
from parity.checks.check import CheckReport, CheckRequest, run_check
from parity.checks.fuse import fuse_components, load_adapters
from parity.devices import device_class
from parity.lora.synth import write_lora
from parity.versions import library_versions
from parity.zoo import build_pipeline
from parity.zoo.family import Family

LORA_RANK = 8


@dataclass(frozen=True)
class CostSubject:
    """A model folder and the LoRA files both the check and the floor are given."""

    family: Family
    model_path: str
    loras: tuple[str, ...]
    dtype: torch.dtype
    device: str
    size: str  # "tiny" (the zoo model saved as a folder) or "model-path" (the user's)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def synth_lora(family: Family, pipe: Any, path: str) -> str:
    """A rank-8 LoRA on every default target of every component (denoiser and text encoders), the
    kind of file a user brings."""
    return write_lora(family.components(pipe), family.default_targets, path, seed=1, rank=LORA_RANK,
                      alpha=LORA_RANK)


def tiny_subject(family: Family, directory: str, dtype: torch.dtype, device: str) -> CostSubject:
    """The family's tiny pipeline written as a diffusers folder (``save_pretrained``), so the check
    and the floor both load it with ``from_pretrained`` as they would a real model."""
    folder = os.path.join(directory, f"{family.name}-model")
    pipe = build_pipeline(family)
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        pipe.save_pretrained(folder)
    lora = synth_lora(family, pipe, os.path.join(directory, f"{family.name}-lora.safetensors"))
    return CostSubject(family, folder, (lora,), dtype, device, "tiny")


def folder_subject(family: Family, model_path: str, loras: Sequence[str], directory: str, dtype: torch.dtype,
                   device: str) -> CostSubject:
    """The user's folder and files; without files, one LoRA synthesised on the folder's model."""
    if not loras:
        pipe = build_pipeline(family, model_path=model_path)
        loras = [synth_lora(family, pipe, os.path.join(directory, f"{family.name}-lora.safetensors"))]
        del pipe
    return CostSubject(family, model_path, tuple(loras), dtype, device, "model-path")


def floor(subject: CostSubject) -> None:
    """What diffusers does with the folder and the files: load, fuse, unfuse, as the check does them
    (every file an adapter, all active at weight 1, every LoRA-loadable component fused)."""
    pipe = build_pipeline(subject.family, dtype=subject.dtype, device=subject.device, model_path=subject.model_path)
    load_adapters(pipe, list(subject.loras), [1.0] * len(subject.loras))
    names = fuse_components(pipe, subject.family.components(pipe))
    pipe.fuse_lora(components=names)
    pipe.unfuse_lora(components=names)
    synchronize(subject.device)


def check(subject: CostSubject) -> CheckReport:
    """What `lora-parity check --family F --model-path DIR --lora FILE --dtype D` runs."""
    report = run_check(CheckRequest(subject.family.name, subject.loras, dtypes=(subject.dtype_name,),
                                    device=subject.device, model_path=subject.model_path))
    synchronize(subject.device)
    return report


def _settle(device: str) -> None:
    # The check builds and drops pipelines: collect them before a clock starts, not inside it.
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    synchronize(device)


@dataclass
class Interleaved:
    """pytest-benchmark's ``pedantic`` target, setup and teardown for rounds in alternating order.

    The target is always the check (so pytest-benchmark's stats are the check's); the floor of an
    even round runs in its setup, just before the check, that of an odd round in its teardown, just
    after it. Both are timed here too, so each round's pair is known. Calls are counted by the
    teardown, so a disabled benchmark (setup and target once, no teardown) runs floor then check.
    """

    subject: CostSubject
    check_fn: Callable[[CostSubject], Any] = check
    floor_fn: Callable[[CostSubject], Any] = floor
    check_seconds: list[float] = field(default_factory=list)
    floor_seconds: list[float] = field(default_factory=list)
    reports: list[Any] = field(default_factory=list)
    round: int = 0

    def _floor(self) -> None:
        _settle(self.subject.device)
        start = time.perf_counter()
        self.floor_fn(self.subject)
        self.floor_seconds.append(time.perf_counter() - start)

    def setup(self) -> None:
        if self.round % 2 == 0:
            self._floor()
        _settle(self.subject.device)

    def target(self) -> None:
        start = time.perf_counter()
        report = self.check_fn(self.subject)
        self.check_seconds.append(time.perf_counter() - start)
        self.reports.append(report)

    def teardown(self) -> None:
        if self.round % 2 == 1:
            self._floor()
        self.round += 1

    def warm_up(self) -> None:
        """One untimed floor and check: imports, first-call set-up and the folder's page cache are
        paid here, not by whichever runs first in round one."""
        self.floor_fn(self.subject)
        self.check_fn(self.subject)
        _settle(self.subject.device)


def bench_info(subject: CostSubject, rounds: Interleaved, summary: RatioSummary | None) -> rec.BenchInfo:
    """The benchmark's extra_info: the timed pairs, their ratio and the bound."""
    failed = [r for r in rounds.reports if not getattr(r, "ok", True)]
    # On a shared CPU the thread count decides how much another job's load slows a run (docs/benchmarks.md).
    notes = [f"{torch.get_num_threads()} torch threads"] if torch.device(subject.device).type == "cpu" else []
    notes += ["the check failed on these files (still timed: a failing check does all its work)"] if failed else []
    info = rec.BenchInfo(
        kind=rec.CHECK,
        family=subject.family.name,
        mode=rec.CHECK_VS_FLOOR,
        dtype=subject.dtype_name,
        device=torch.device(subject.device).type,
        device_name=device_name(subject.device),
        device_class=device_class(subject.device),
        size=subject.size,
        adapters=len(subject.loras),
        versions={**library_versions(), **driver_versions(subject.device)},
        notes="; ".join(notes),
        check_seconds=list(rounds.check_seconds),
        floor_seconds=list(rounds.floor_seconds),
    )
    if summary is not None:
        info.ratio, info.ratio_low, info.ratio_high, info.ratio_bound = (summary.median, summary.low, summary.high,
                                                                         summary.bound)
    return info


def time_check_against_floor(benchmark: Any, subject: CostSubject, rounds: int, warmup: int = 1,
                             check_fn: Callable[[CostSubject], Any] = check,
                             floor_fn: Callable[[CostSubject], Any] = floor) -> Interleaved:
    """Time check and floor in ``rounds`` interleaved rounds under pytest-benchmark's fixture and put
    the pairs, their ratio and the bound into its ``extra_info``. Disabled (the smoke run), it runs
    one floor and one check and records nothing."""
    interleaved = Interleaved(subject, check_fn, floor_fn)
    benchmark.group = rec.group_name(bench_info(subject, interleaved, None))
    disabled = getattr(benchmark, "disabled", False)
    if not disabled:
        for _ in range(warmup):
            interleaved.warm_up()
    benchmark.pedantic(interleaved.target, setup=interleaved.setup, teardown=interleaved.teardown,
                       rounds=rounds, warmup_rounds=0, iterations=1)
    if disabled:
        return interleaved
    summary = summarize(interleaved.check_seconds, interleaved.floor_seconds, rec.CHECK_RATIO_BOUND)
    benchmark.extra_info.update(bench_info(subject, interleaved, summary).to_extra_info())
    return interleaved
