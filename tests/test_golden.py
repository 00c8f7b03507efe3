"""Seeded pipeline renders match the stored golden images of this device class.

Cases are data (parity.checks.cases.golden_cases: family × base / LoRA at 0.5 and 1.0 / fused / two
adapters / per-step schedule / kohya file / LoCon, and for Wan's two experts a LoRA in each); this is
the one generic check over them. A video (Wan) is stored as its frames side by side in one PNG and
compared frame by frame, each frame held to an image's thresholds.
Thresholds: GOLDEN_TOLERANCES in parity/tolerances.py. ``--update-golden`` rewrites the selected
baselines first; without it a missing baseline fails with the command that creates it. Mismatches
write artifacts/<case>.png (expected | actual | amplified difference; a row per frame for a video) and index.html in this run's
folder reports/golden/<UTC time>-<id>/ (reports/golden/latest), or in --golden-report DIR.
"""

from __future__ import annotations

import pytest

from parity.checks.cases import GoldenCase, golden_cases
from parity.golden.verify import run_case
from parity.pytest.cases import params

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("case", params(golden_cases()))
def test_golden(case: GoldenCase, golden_config, parity_record):
    if golden_config.skip_missing and not golden_config.update and not golden_config.store.has(case.id):
        pytest.skip(f"no baseline image for {case.id} in {golden_config.store.dir} (--golden-missing skip)")
    outcome = run_case(golden_config.store, case, golden_config.report_dir, golden_config.update,
                       golden_config.device, golden_config.model_path)
    if outcome.result is not None:
        m, t = outcome.result.metrics, outcome.result.thresholds
        parity_record("golden", case.dtype, m["max_abs"] * 255, m["max_abs"] / t.max_abs,
                      f"SSIM {m['ssim']:.5f}, PSNR {m['psnr']:.1f} dB")
    assert outcome.ok, "\n".join(outcome.lines)
