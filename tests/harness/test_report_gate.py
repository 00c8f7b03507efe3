"""The gate page a reader trusts at a glance (issue 34), on a hand-made pair of bundles shaped like the
real `make gate` of 2026-12-07: one golden image (flux-xlabs-1.0) moved because the old versions merged
XLabs files wrongly, and a known finding (KOHYA_PER_MODULE_ALPHA, a strict xfail) whose error grew.

That page listed flux-xlabs-1.0 under two headings and showed the finding's case under "Parity errors that
grew (still within their bound ...)" at 344,308x its bound. Now: every test is in one section, the
finding's case is shown as the finding by name, and every image is captioned expected | actual |
difference, checked on the written markdown and HTML (parity/runs/pagecheck.py), with negative controls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.runs import pagecheck
from parity.runs.gate import judge, read_bundle
from parity.runs.gatereport import sections
from tests.support.gate_bundles import FINDING, GOLDEN, XLABS, synthetic_gate



@pytest.fixture
def page(tmp_path: Path) -> tuple[str, str]:
    md, html = synthetic_gate(tmp_path)
    return md.read_text(), html.read_text()


def _section_of(md: str, needle: str) -> list[str]:
    """The headings of the markdown sections whose text holds ``needle``."""
    out, title = [], ""
    for block in md.split("\n## ")[1:]:
        title, _, text = block.partition("\n")
        if needle in text and title not in out:
            out.append(title)
    return out


def test_every_case_is_in_exactly_one_section(page):
    md, html = page
    assert pagecheck.in_more_than_one_section(pagecheck.md_cases(md)) == {}
    assert pagecheck.in_more_than_one_section(pagecheck.html_cases(html)) == {}
    # the moved image: one section, the one that explains it (was: listed twice, first as unexcused)
    [where] = _section_of(md, "flux-xlabs-1.0")
    assert where.startswith("Golden images that moved because the old versions merged wrongly")
    assert set(pagecheck.md_cases(md)) >= {GOLDEN, FINDING, XLABS}  # every changed test is listed somewhere


def test_a_finding_s_case_is_shown_as_the_finding_by_name_not_as_within_its_bound(page):
    md, _ = page
    [where] = _section_of(md, "sd15-kohya-float32-cpu-s0.5-x2")
    assert where.startswith("Known findings that still reproduce")
    row = next(line for line in md.splitlines() if line.startswith("| KOHYA_PER_MODULE_ALPHA |"))
    assert "2466004.70 → 2638537.13 ULP (×1.07)" in row and "3.443e+05× its bound" in row
    grew = md.split("## Parity errors that grew")[1] if "## Parity errors that grew" in md else ""
    assert "sd15-kohya" not in grew and "flux-xlabs-1.0" not in grew
    assert "flux-fused-1.0" in grew  # a case whose check passes stays there, within its bound


def test_every_image_is_captioned_expected_actual_difference(page):
    md, html = page
    assert md.count("![") == 1 and html.count("<img") == 1
    assert pagecheck.md_uncaptioned_images(md) == []
    assert pagecheck.html_uncaptioned_images(html) == []


def test_the_sections_the_terminal_shows_are_the_page_s(tmp_path: Path):
    synthetic_gate(tmp_path)
    verdict = judge(read_bundle(tmp_path / "old"), read_bundle(tmp_path / "new"))
    tests = [t for s in sections(verdict) for t in s.tests]
    assert len(tests) == len(set(tests))


# ---------------------------------------------------------------- negative controls: the checks see a bad page


def test_control_a_case_listed_in_two_sections_fails_the_uniqueness_check(page):
    md, html = page
    # the old page: the moved image's test listed again under a second heading
    twice_md = md + f"\n## Golden images that moved (1)\n\n<details><summary>all 1 tests</summary>\n\n- `{GOLDEN}`\n"
    assert list(pagecheck.in_more_than_one_section(pagecheck.md_cases(twice_md))) == [GOLDEN]
    twice_html = html + f"<h2>Parity errors that grew</h2><table><tr data-case='{FINDING}'><td>x</td></tr></table>"
    assert list(pagecheck.in_more_than_one_section(pagecheck.html_cases(twice_html))) == [FINDING]


def test_control_an_uncaptioned_image_fails_the_caption_check(page):
    md, html = page
    assert pagecheck.md_uncaptioned_images(md + "\n![flux-xlabs-1.0](golden/flux-xlabs-1.0.png)\n") == \
        ["![flux-xlabs-1.0](golden/flux-xlabs-1.0.png)"]
    bare = html + "<p>flux-xlabs-1.0<br><img src='golden/flux-xlabs-1.0.png' alt='flux-xlabs-1.0'></p>"
    assert pagecheck.html_uncaptioned_images(bare) == ["golden/flux-xlabs-1.0.png"]
    half = html + "<figure><img src='x.png'><figcaption>expected | actual</figcaption></figure>"
    assert pagecheck.html_uncaptioned_images(half) == ["x.png"]
