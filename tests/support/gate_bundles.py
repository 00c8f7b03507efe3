"""A hand-made pair of gate bundles shaped like a real `make gate` (a golden image moved because the old
versions merged XLabs files wrongly, a known finding that still reproduces, an error that grew within its
bound, a fixed check), and the gate page written from them: for the report tests and the screenshot test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from parity.checks.findings import KOHYA_PER_MODULE_ALPHA
from parity.golden.mismatch import side_by_side
from parity.golden.pixels import png_bytes
from parity.runs.gate import judge, read_bundle, write_manifest
from parity.runs.gatereport import write_gate_report
from tests.support.junit import junit_xml

GOLDEN = "tests.test_golden::test_golden[flux-xlabs-1.0]"
XLABS = "tests.test_merge_parity::test_fuse_matches_reference_merge[flux-xlabs-float32-cpu-s1-x1]@loaded-flux-x1"
FINDING = ("tests.test_merge_parity::test_fuse_matches_reference_merge[sd15-kohya-float32-cpu-s0.5-x2]"
           "@loaded-sd15-kohya-float32-cpu-x2")
FUSED = "tests.test_golden::test_golden[flux-fused-1.0]"
SAME = "tests.test_cli::test_help"


def _row(check: str, case: str, ulps: float, ratio: float) -> dict:
    return {"check": check, "case": case, "dtype": "float32", "max_ulps": ulps, "max_bound_ratio": ratio,
            "detail": "", "timing": "", "outcome": "passed"}


def _bundle(path: Path, role: str, cases: dict, rows: dict[str, dict]) -> Path:
    write_manifest(path, role)
    (path / "junit.xml").write_text(junit_xml(cases, {t: [r] for t, r in rows.items()}))
    (path / "parity").mkdir()
    (path / "parity" / "summary.json").write_text(json.dumps(list(rows.values())))
    return path


def synthetic_gate(tmp: Path) -> tuple[Path, Path]:
    """(gate.md, gate.html) of the hand-made pair, written to ``tmp / "report"``."""
    finding = ("xfailed", KOHYA_PER_MODULE_ALPHA.reason)
    old = _bundle(tmp / "old", "old", {GOLDEN: "passed", XLABS: "failed", FINDING: finding, FUSED: "passed",
                                       SAME: "passed"},
                  {FINDING: _row("merge", "sd15-kohya-float32-cpu-s0.5-x2", 2466004.7, 322000.0),
                   GOLDEN: _row("golden", "flux-xlabs-1.0", 0.5, 1.0), FUSED: _row("golden", "flux-fused-1.0", 0.4988, 1.0)})
    new = _bundle(tmp / "new", "new", {GOLDEN: ("failed", "AssertionError: flux-xlabs-1.0: SSIM 0.99954"),
                                       XLABS: "passed", FINDING: finding, FUSED: "passed", SAME: "passed"},
                  {FINDING: _row("merge", "sd15-kohya-float32-cpu-s0.5-x2", 2638537.13, 344308.7),
                   GOLDEN: _row("golden", "flux-xlabs-1.0", 8.28, 16.55), FUSED: _row("golden", "flux-fused-1.0", 0.4989, 1.0)})
    rng = np.random.default_rng(0)
    expected = rng.random((32, 32, 3))
    actual = np.clip(expected + rng.normal(0, 0.02, expected.shape), 0, 1)
    artifacts = new / "golden-report" / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "flux-xlabs-1.0.png").write_bytes(png_bytes(side_by_side(expected, actual, 0.00196)))
    (new / "golden-report" / "index.json").write_text(json.dumps({"flux-xlabs-1.0": {
        "image": "artifacts/flux-xlabs-1.0.png", "max_abs": 0.0325, "max_abs_max": 0.00196, "ssim": 0.99954,
        "ssim_min": 0.957, "psnr": 43.62, "psnr_min": 54.14, "failures": ["max-abs 0.0325 > 0.00196"]}}))
    verdict = judge(read_bundle(old), read_bundle(new))
    assert verdict.ok  # the move is vouched for by the XLabs fix; the finding still reproduces
    return write_gate_report(verdict, tmp / "report")

