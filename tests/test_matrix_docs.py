"""The committed matrix run under docs/matrix/ (issue 35): a real run over at least six diffusers releases, linked
from the README, whose pages still read back as this lora-parity writes and checks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.matrix.report import check_matrix_page
from parity.matrix.schema import Matrix

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "docs" / "matrix").glob("*/matrix.json"))


def test_a_committed_run_exists_and_the_readme_links_the_latest():
    assert RUNS, "no committed matrix run under docs/matrix/<date>/"
    latest = RUNS[-1].parent.relative_to(ROOT).as_posix()
    assert f"]({latest}/matrix.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.parent.name)
def test_the_committed_run_covers_six_diffusers_releases_that_all_ran(path: Path):
    matrix = Matrix.from_json(json.loads(path.read_text(encoding="utf-8")))
    ran = {s.versions.get("diffusers") for s in matrix.sets if s.status == "ok"}
    assert len(ran) >= 6, ran
    assert all(s.versions.get("peft") and s.versions.get("transformers") for s in matrix.sets if s.status == "ok")
    assert matrix.machine and matrix.created.startswith(path.parent.name[:4])


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.parent.name)
def test_the_committed_pages_read_back_whole(path: Path):
    matrix = Matrix.from_json(json.loads(path.read_text(encoding="utf-8")))
    md = (path.parent / "matrix.md").read_text(encoding="utf-8")
    html = (path.parent / "matrix.html").read_text(encoding="utf-8")
    assert check_matrix_page(md, html, matrix) == []
