"""The benchmark suites' options (benchmarks/conftest.py reads them)."""

from __future__ import annotations

import pytest

from parity.options import QUANTIZATION


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption(
        "--bench-size",
        default="tiny",
        choices=("tiny", "small", "full"),
        help="benchmarks: tiny zoo models (seconds on a CPU); small: full-width denoisers with one block or layer "
        "per level, so CPU ratios measure the layers' arithmetic; full: full-size denoisers with real shapes (GPU)",
    )
    group.addoption(
        "--bench-rounds", type=int, default=None, help="benchmarks: timed rounds per case (default: by size and kind)"
    )
    group.addoption(
        "--bench-blocks",
        type=int,
        default=None,
        help="benchmarks at full size: transformer blocks to build (default: a few; latency is linear in blocks)",
    )
    # one option for the run: the benchmarks time the quantized subject (benchmarks/test_bench_quantized.py),
    # the quantized golden cases (tests/test_quantized_golden.py) render on it, and with --lora the user's
    # files are checked on it (tests/test_quantized_bases.py: test_user_lora_on_quantized_base)
    QUANTIZATION.add_to(group, help="benchmarks: time base / unfused / fused, the load+quantize and the fuse on the "
                        "denoiser quantized by NAME instead of the float benchmarks; golden: render every case on "
                        "it (tests/test_quantized_golden.py); with --lora: check those files on it. Choices: " + ", ".join(QUANTIZATION.kwargs["choices"]))
