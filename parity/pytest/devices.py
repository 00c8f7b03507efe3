"""--device, resolved once (parity.devices) and shared out: under xdist each worker gets its own GPU
and its share of the CPU cores; cases marked ``gpu`` skip with a reason where there is no GPU."""

from __future__ import annotations

import os

import pytest
import torch

from parity.devices import NoDevice, cuda_available, resolve
from parity.errors import ParityInputError
from parity.options import DEVICE


def pytest_addoption(parser: pytest.Parser) -> None:
    DEVICE.add_to(parser.getgroup("lora-parity"))


def worker_cuda_index(worker: str | None, device_count: int) -> int | None:
    """The GPU an xdist worker ``gwN`` is pinned to: N mod the device count; None outside xdist
    or with one GPU (nothing to choose)."""
    if worker is None or device_count < 2 or not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    return int(worker[2:]) % device_count


def worker_threads(cpu_count: int, workers: int) -> int:
    """Intra-op threads per xdist worker: the cores divided among the workers. torch's default (every
    core in every worker) oversubscribes the machine: measured 61 s against 40 s for the merge and
    unfuse checks with two workers on two cores."""
    return max(1, cpu_count // max(1, workers))


def pytest_configure(config: pytest.Config) -> None:
    try:
        resolve(config.getoption("--device"))
    except NoDevice:
        pass  # a valid device this machine lacks: the cases that need it skip
    except ParityInputError as exc:
        raise pytest.UsageError(f"--device: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    torch.set_num_threads(worker_threads(os.cpu_count() or 1, int(workerinput.get("workercount", 1))))
    if cuda_available():
        index = worker_cuda_index(workerinput.get("workerid"), torch.cuda.device_count())
        if index is not None:
            # "cuda" everywhere in the suite means the current device: each worker gets its own GPU.
            torch.cuda.set_device(index)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def resolve_for_pytest(option: str) -> str:
    """The device a check runs on; an explicit cuda without a GPU skips the test."""
    try:
        return resolve(option)
    except NoDevice:
        pytest.skip(f"--device {option}: no GPU on this machine")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    return resolve_for_pytest(request.config.getoption("--device"))
