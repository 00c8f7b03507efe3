"""Device-correct timing and peak memory: the synchronize is really waited for, peaks are seen."""

from __future__ import annotations

import time

import pytest
import torch

from parity.bench.timing import device_name, peak_memory, synced


def test_peak_memory_on_cpu_sees_a_large_temporary_allocation() -> None:
    size = 256 * 2**20
    with peak_memory("cpu") as memory:
        buffer = torch.ones(size // 4, dtype=torch.float32)  # touched, so resident
        time.sleep(0.01)
        del buffer
    assert memory.kind == "cpu-rss-peak"
    assert memory.bytes >= size * 0.9


def test_peak_memory_on_cpu_is_small_for_a_block_that_allocates_nothing() -> None:
    # negative control for the one above: the sampler does not report its own noise as a peak
    with peak_memory("cpu") as memory:
        time.sleep(0.01)
    assert memory.bytes < 32 * 2**20


def test_device_name_names_the_cpu() -> None:
    assert device_name("cpu")


@pytest.mark.gpu
def test_synced_call_waits_for_the_gpu_work_it_launched() -> None:
    x = torch.randn(4096, 4096, device="cuda")

    def work() -> torch.Tensor:
        y = x
        for _ in range(20):
            y = y @ x
        return y

    work()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    end.record()
    torch.cuda.synchronize()
    gpu_seconds = start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    work()
    launch_only = time.perf_counter() - t0  # the clock read before the kernels finished
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    synced(work, "cuda")()
    waited = time.perf_counter() - t0
    assert waited >= 0.9 * gpu_seconds
    assert launch_only < 0.5 * gpu_seconds  # what an unsynchronized timer would have reported


@pytest.mark.gpu
def test_peak_memory_on_cuda_counts_the_block_only() -> None:
    keep = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    with peak_memory("cuda") as memory:
        tmp = torch.empty(128 * 2**20, dtype=torch.uint8, device="cuda")
        del tmp
    assert memory.kind == "cuda-max-allocated"
    assert 128 * 2**20 <= memory.bytes < 160 * 2**20
    del keep
