"""Golden images on a quantized denoiser (issue 33): Z-Image's base image and its unfused LoRA at 1.0 on
an int8 weight-only torchao transformer and on a Q8_0 GGUF of it, against the baselines stored under
their own keys (``zimage-torchao-int8wo-lora-1.0``: parity/golden/quantized.py), so a float baseline
and a quantized one never meet, and an upgrade of torchao or gguf that changes the render is a moved
image. Thresholds: the golden table of parity/tolerances.py, e_A measured against a float64 render on
our own dequantization of the quantized weights.

With ``--quantization NAME`` every golden case renders on NAME instead (create its baselines with
``--update-golden``; a fused case whose fuse_lora raises there is skipped with diffusers' error).
Negative controls: tests/harness/test_quantized_golden_control.py.
"""

from __future__ import annotations

import pytest

from parity.checks.cases import golden_cases
from parity.golden.quantized import QuantizedGoldenCase, quantized, quantized_golden_cases
from parity.golden.verify import run_case
from parity.pytest.cases import params
from parity.zoo import FAMILIES
from tests.support.quantizers import needs_quantizers
from tests.support.families import needs

pytestmark = [pytest.mark.golden, needs_quantizers(), needs("zimage")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    name = metafunc.config.getoption("--quantization", default=None)
    if "zimage" not in FAMILIES:  # the gate's old env: the committed cases are Z-Image's (skipped by needs())
        cases = []
    else:
        cases = quantized_golden_cases() if name is None else [quantized(c, name) for c in golden_cases()]
    metafunc.parametrize("case", params(cases))


def test_quantized_golden(case: QuantizedGoldenCase, golden_config, parity_record):
    if golden_config.skip_missing and not golden_config.update and not golden_config.store.has(case.id):
        pytest.skip(f"no baseline image for {case.id} in {golden_config.store.dir} (--golden-missing skip)")
    outcome = run_case(golden_config.store, case, golden_config.report_dir, golden_config.update,
                       golden_config.device, golden_config.model_path)
    if outcome.skipped is not None:
        pytest.skip(outcome.skipped)
    if outcome.result is not None:
        m, t = outcome.result.metrics, outcome.result.thresholds
        parity_record("golden", case.dtype, m["max_abs"] * 255, m["max_abs"] / t.max_abs,
                      f"{case.quantization}: SSIM {m['ssim']:.5f}, PSNR {m['psnr']:.1f} dB")
    assert outcome.ok, "\n".join(outcome.lines)
