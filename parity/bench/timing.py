"""Device-correct timing and peak memory.

CUDA kernels run asynchronously: a clock read right after a launch measures the launch, not the
work. Every timed callable here ends with a device synchronize, and every set-up before it does
too, so pytest-benchmark's clock (perf_counter) brackets exactly the work of one call.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable[..., T], device: str | torch.device) -> Callable[..., T]:
    """``fn`` followed by a synchronize, so a clock read after it sees the finished work."""

    def call(*args: Any, **kwargs: Any) -> T:
        out = fn(*args, **kwargs)
        synchronize(device)
        return out

    return call


def device_name(device: str | torch.device) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return _cpu_name()


def _cpu_name() -> str:
    # platform.processor() is empty on many Linux systems; /proc/cpuinfo names the model.
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def driver_versions(device: str | torch.device) -> dict[str, str]:
    """CUDA runtime and driver, for naming a GPU run; empty on CPU."""
    if torch.device(device).type != "cuda":
        return {}
    out = {"cuda": str(torch.version.cuda)}
    try:
        import subprocess

        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if smi.returncode == 0 and smi.stdout.strip():
            out["driver"] = smi.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return out


@dataclass
class PeakMemory:
    """Memory a block needed above what was in use when it started."""

    kind: str  # "cuda-max-allocated" or "cpu-rss-peak"
    bytes: int = 0


@contextmanager
def peak_memory(device: str | torch.device, interval: float = 0.0005) -> Iterator[PeakMemory]:
    """CUDA: ``max_memory_allocated`` after a reset, minus what was allocated before.

    CPU: the process RSS sampled every ``interval`` seconds by a thread, peak minus the RSS before.
    A sampler misses peaks shorter than its interval and counts other threads' allocations, so the
    CPU figure is an estimate; torch's CPU allocator has no peak counter to read instead.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        result = PeakMemory("cuda-max-allocated")
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        try:
            yield result
        finally:
            torch.cuda.synchronize(dev)
            result.bytes = max(0, torch.cuda.max_memory_allocated(dev) - before)
        return

    import psutil

    result = PeakMemory("cpu-rss-peak")
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        result.bytes = max(0, peak[0] - before)
