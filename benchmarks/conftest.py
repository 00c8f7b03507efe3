"""Benchmark fixtures: one built subject per (family, size, dtype), kept while consecutive cases use it.

Without ``--benchmark-enable``/``tox -e bench`` pytest-benchmark is disabled (pyproject addopts) and
every benchmark runs its target once: `make test` smoke-runs the suite so none rots, on a subset
that still reaches every mode and operation (compiled ones, whole-pipeline calls and the check against
its floor on the cheapest family: parity.checks.cases.BenchCase.in_smoke_run).
"""

from __future__ import annotations

import gc
import sys
import time

import pytest
import torch

from parity.bench.modes import Subject, build_subject, leave
from parity.checks.cases import BENCH_DTYPES, BenchCase
from parity.devices import requested
from parity.tolerances import dtype_from_name
from parity.zoo import get_family

# Benchmarks whose smoke run takes the cheapest family only: a whole pipeline call, a check against
# its floor (seconds per family even on the tiny zoo), and a group (one subject per mode).
CHEAPEST_FAMILY_ONLY = ("test_pipeline_call_latency", "test_check_against_its_floor", "test_modes_timed_together",
                        "test_quantized_modes_timed_together")
# benchmarks/test_bench_quantized.py: with --quantization its timed cases run instead of the float benchmarks;
# without it, its smoke test runs in the untimed run (`make test`) only
QUANTIZED_MODULE = "test_bench_quantized"
QUANTIZED_SMOKE = "test_quantized_group_smoke"


def _quantized_selection(item: pytest.Item, quantization: str | None, smoke: bool) -> bool:
    """Whether ``item`` runs given --quantization: a run with it times the quantized subject only."""
    quantized = item.module.__name__.rsplit(".", 1)[-1] == QUANTIZED_MODULE
    if quantization is not None:
        return quantized and getattr(item, "originalname", "") != QUANTIZED_SMOKE
    return not quantized or (smoke and getattr(item, "originalname", "") == QUANTIZED_SMOKE)


def benchmarks_disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    smoke = benchmarks_disabled(config)
    dtypes = BENCH_DTYPES["cuda" if requested(config.getoption("--device")).startswith("cuda") else "cpu"]
    quantization = config.getoption("--quantization", default=None)
    keep, drop = [], []
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        cheapest_only = getattr(item, "originalname", "") in CHEAPEST_FAMILY_ONLY
        in_benchmarks = getattr(item, "module", None) is not None and item.module.__name__.startswith("benchmarks.")
        if in_benchmarks and not _quantized_selection(item, quantization, smoke):
            drop.append(item)
        elif isinstance(case, BenchCase) and (case.dtype not in dtypes
                                              or (smoke and not case.in_smoke_run(cheapest_only))):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class Progress:
    """A timed run's progress on stderr: benchmark N of M, its group, elapsed and an estimate of the
    time left (elapsed per benchmark so far times those left: groups differ, so it firms up as it goes)."""

    def __init__(self, items: list[pytest.Item]) -> None:
        self.total = len(items)
        self.groups = {item.nodeid: _group_of(item) for item in items}
        self.order = list(dict.fromkeys(self.groups.values()))
        self.done = 0
        self.start = time.monotonic()

    def line(self, nodeid: str) -> str:
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        group = self.groups.get(nodeid, "?")
        estimate = f", about {_minutes(left)} left" if left is not None else ""
        return (f"bench: {self.done + 1}/{self.total}, group {self.order.index(group) + 1} of {len(self.order)} "
                f"({group}), {_minutes(elapsed)} elapsed{estimate}")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _group_of(item: pytest.Item) -> str:
    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    return f"{case.family}/{case.dtype}" if isinstance(case, BenchCase) else item.module.__name__.rsplit(".", 1)[-1]


# The run's Progress, set once collection is done: the report hooks get a node id, not the config.
_progress: Progress | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _progress
    timed = not benchmarks_disabled(session.config)
    _progress = Progress([i for i in session.items if i.get_closest_marker("benchmark")]) if timed else None


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    if _progress is not None and nodeid in _progress.groups:
        print(_progress.line(nodeid), file=sys.stderr, flush=True)


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    if _progress is not None and nodeid in _progress.groups:
        _progress.done += 1


class SubjectCache:
    """Holds one subject: full-size denoisers are gigabytes, two at once may not fit on the device."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.key: tuple | None = None
        self.subject: Subject | None = None

    def get(self, key: tuple, **kwargs) -> Subject:
        if key != self.key:
            self.subject = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.subject = build_subject(**kwargs, directory=self.directory)
            self.key = key
        return self.subject


@pytest.fixture(scope="session")
def subject_cache(tmp_path_factory: pytest.TempPathFactory) -> SubjectCache:
    return SubjectCache(str(tmp_path_factory.mktemp("bench-loras")))


@pytest.fixture
def bench_rounds(request: pytest.FixtureRequest) -> int | None:
    return request.config.getoption("--bench-rounds")


@pytest.fixture
def subject(
    request: pytest.FixtureRequest,
    case: BenchCase,
    subject_cache: SubjectCache,
    device: str,
    model_path: str | None,
    compile_options,
) -> Subject:
    """The case's subject in its base state; whatever a case does to it is undone by ``leave``."""
    size = request.config.getoption("--bench-size")
    blocks = request.config.getoption("--bench-blocks")
    backend, mode = compile_options
    key = (case.family, size, case.dtype, device, model_path, blocks, backend, mode)
    subj = subject_cache.get(
        key,
        family=get_family(case.family),
        size=size,
        dtype=dtype_from_name(case.dtype),
        device=device,
        model_path=model_path,
        backend=backend,
        compile_mode=mode,
        blocks=blocks,
    )
    yield subj
    leave(subj)
