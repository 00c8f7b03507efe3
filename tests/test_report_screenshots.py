"""The gate and parity report pages as users see them: rendered by a headless Chromium and screenshotted
(issue 34). The screenshots land in reports/screenshots/<run>/ (reports/screenshots/latest) for a
developer to look at; the test checks each is a page with content (not blank), and that the pages it
shot hold what a reader trusts: every case in one section, every image captioned.

Needs a Chromium (Debian: `apt-get install chromium`; or LORA_PARITY_CHROMIUM=/path): skips, saying so,
where there is none (CI machines).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from parity.runs import pagecheck
from parity.runs.folders import fresh_run_dir
from parity.runs.summary import write_summary
from tests.support.gate_bundles import synthetic_gate

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH, HEIGHT = 1280, 2000


def _chromium() -> str | None:
    named = os.environ.get("LORA_PARITY_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to screenshot the report pages with (apt-get install "
                                                "chromium, or set LORA_PARITY_CHROMIUM)"),
    pytest.mark.xdist_group("report-screenshots"),
]


@pytest.fixture(scope="module")
def shots() -> Path:
    return fresh_run_dir(REPO / "reports" / "screenshots", "pytest tests/test_report_screenshots.py")


def screenshot(page: Path, png: Path, tmp_path: Path) -> Path:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--hide-scrollbars", f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert png.is_file(), f"{CHROMIUM} wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return png


def assert_not_blank(png: Path) -> None:
    """A page with content: the window's size, and a good share of its pixels neither white nor one colour."""
    from PIL import Image

    image = Image.open(io.BytesIO(png.read_bytes())).convert("RGB")
    assert image.size == (WIDTH, HEIGHT), image.size
    small = image.resize((WIDTH // 4, HEIGHT // 4))
    pixels = list(small.getdata())
    inked = sum(1 for p in pixels if min(p) < 200) / len(pixels)
    colours = len(set(pixels))
    assert inked > 0.02 and colours > 50, f"{png}: looks blank ({inked:.1%} inked, {colours} colours)"


def test_the_gate_page_renders_with_its_captioned_images(shots: Path, tmp_path: Path) -> None:
    md, html = synthetic_gate(tmp_path)
    text = html.read_text()
    assert pagecheck.html_uncaptioned_images(text) == [] and pagecheck.in_more_than_one_section(
        pagecheck.html_cases(text)) == {}
    # the page and its image folder beside the screenshot, so the developer sees what was shot
    shutil.copytree(html.parent, shots / "gate", dirs_exist_ok=True)
    assert_not_blank(screenshot(shots / "gate" / "gate.html", shots / "gate.png", tmp_path))


def test_the_parity_summary_page_renders(shots: Path, tmp_path: Path) -> None:
    rows = [
        {"check": "merge", "case": "sd15-kohya-float32-cpu-s0.5-x2", "dtype": "float32", "max_ulps": 2638537.13,
         "max_bound_ratio": 344308.7, "detail": "60 weights", "outcome": "xfailed",
         "finding": "finding: in a kohya SD/SDXL file with per-module alpha (resize_lora.py --dynamic_method), the "
                    "attention projections get the file's most common alpha"},
        *({"check": "merge", "case": f"flux-diffusers-float32-cpu-s{s}-x1", "dtype": "float32", "max_ulps": 0.5 + s,
           "max_bound_ratio": 0.1 * s, "detail": "", "outcome": "passed"} for s in range(8)),
        {"check": "unfuse", "case": "sd15-diffusers-float32", "dtype": "float32", "max_ulps": 1.0,
         "max_bound_ratio": 0.25, "detail": "", "outcome": "passed"},
    ]
    out = shots / "parity"
    write_summary(out, rows, 0, {"passed": 700, "skipped": 227, "xfailed": 62})
    assert "700 passed, 62 known findings" in (out / "summary.html").read_text()
    assert_not_blank(screenshot(out / "summary.html", shots / "parity.png", tmp_path))
