"""Each xdist worker on a multi-GPU machine gets its own GPU, and its share of the CPU cores."""

from __future__ import annotations


def test_xdist_workers_are_spread_over_the_gpus() -> None:
    from parity.pytest.devices import worker_cuda_index

    assert [worker_cuda_index(f"gw{i}", 2) for i in range(4)] == [0, 1, 0, 1]
    assert worker_cuda_index("gw3", 4) == 3
    # nothing to pin outside xdist or with a single GPU
    assert worker_cuda_index(None, 4) is None and worker_cuda_index("gw1", 1) is None


def test_xdist_workers_share_the_cpu_cores() -> None:
    from parity.pytest.devices import worker_threads

    assert worker_threads(cpu_count=2, workers=2) == 1
    assert worker_threads(cpu_count=16, workers=4) == 4
    assert worker_threads(cpu_count=2, workers=3) == 1  # never zero threads
