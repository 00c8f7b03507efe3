"""The README a newcomer reads in five minutes, and the docs/ pages it links: every page is linked from the
README, every relative link and anchor resolves, the README stays short, and no prose names a commit hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_LIMIT = 12_000  # characters (issue 34)
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")
FENCE = re.compile(r"```.*?```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.*)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


def broken_links(page: Path) -> list[str]:
    out = []
    for target in links(page):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        resolved = page if not path else (page.parent / path).resolve()
        if not resolved.exists():
            out.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            out.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return out


def test_the_readme_is_short_enough_to_read_in_five_minutes():
    assert len(README.read_text()) <= README_LIMIT, len(README.read_text())


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_every_doc_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if not t.startswith("http")}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_the_readmes_first_example_is_the_two_commands_ci_runs():
    first = re.search(r"```sh\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ["make parity", "make test"]
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"parity", "test"} <= targets
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_no_prose_names_a_commit_hash(page):
    prose = FENCE.sub("", page.read_text())
    hashes = [h for h in re.findall(r"\b[0-9a-f]{7,40}\b", prose) if re.search(r"[a-f]", h) and re.search(r"\d", h)]
    assert hashes == []
