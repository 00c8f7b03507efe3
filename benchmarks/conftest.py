"""Benchmark fixtures: one built subject per (family, size, dtype), kept while consecutive cases use it.

Without ``--benchmark-enable``/``tox -e bench`` pytest-benchmark is disabled (pyproject addopts) and
every benchmark runs its target once: `make test` smoke-runs the suite so none rots, on a subset
that still reaches every mode and operation (compiled ones on the cheapest family).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest
import torch

from parity.bench import record as rec
from parity.bench.modes import MODES, Subject, build_subject
from parity.tolerances import dtype_from_name
from parity.checks.dynamo import default_backend
from parity.pytest.plugin import cuda_available
from parity.zoo import get_family

# dtypes timed per device: CPUs have no fast float16 kernels, so float16 is a CUDA-only number.
DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")}
ALL_DTYPES = ("float32", "float16", "bfloat16")
SMOKE_DTYPE = "float32"
SMOKE_COMPILED_FAMILY = "flux"  # the cheapest tiny model to compile: compiled modes smoke-run on it only
# hotswap-ready modes differ only in the padding rank: the smoke run takes the largest
SMOKE_HOTSWAP_READY = [m.name for m in MODES if m.name.startswith(rec.HOTSWAP_READY)][-1]


@dataclass(frozen=True)
class BenchCase:
    family: str
    dtype: str
    name: str  # mode or operation
    compiled: bool = False

    @property
    def id(self) -> str:
        return f"{self.family}-{self.dtype}-{self.name}"

    def in_smoke_run(self) -> bool:
        if self.dtype != SMOKE_DTYPE:
            return False
        if self.name.startswith(rec.HOTSWAP_READY) and self.name != SMOKE_HOTSWAP_READY:
            return False
        return not self.compiled or self.family == SMOKE_COMPILED_FAMILY


def benchmarks_disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


def _device_type(config: pytest.Config) -> str:
    option = config.getoption("--device")
    return "cuda" if option == "cuda" or (option == "auto" and cuda_available()) else "cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    smoke = benchmarks_disabled(config)
    dtypes = DTYPES[_device_type(config)]
    keep, drop = [], []
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if isinstance(case, BenchCase) and (case.dtype not in dtypes or (smoke and not case.in_smoke_run())):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
def bench_size(request: pytest.FixtureRequest, model_path: str | None) -> str:
    return "model-path" if model_path else request.config.getoption("--bench-size")


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
    from parity.bench.modes import leave

    size = request.config.getoption("--bench-size")
    blocks = request.config.getoption("--bench-blocks")
    backend, mode = compile_options
    backend = backend or default_backend(device)
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
