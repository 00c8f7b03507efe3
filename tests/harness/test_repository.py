"""The repository's tracked root holds only what belongs there: a stray file (an editor's autosave,
a shell redirect gone wrong) fails here before it lands on main."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOT_ENTRIES = {
    ".ci", ".github", ".gitignore", "Makefile", "README.md", "benchmarks", "conftest.py", "docs", "golden",
    "parity", "pyproject.toml", "tests", "tools", "tox.ini",
}


def tracked_root_entries() -> set[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing is tracked")
    return {path.split("/", 1)[0] for path in listed.stdout.decode().split("\0") if path}


def misplaced(entries: set[str]) -> tuple[set[str], set[str]]:
    """(tracked but not expected, expected but not tracked)."""
    return entries - ROOT_ENTRIES, ROOT_ENTRIES - entries


def test_the_tracked_root_holds_only_the_expected_entries() -> None:
    assert misplaced(tracked_root_entries()) == (set(), set())


def test_a_stray_file_at_the_root_is_caught() -> None:
    # negative control: the file this guard was written after
    assert misplaced(tracked_root_entries() | {"hat it ran last#"}) == ({"hat it ran last#"}, set())


@pytest.mark.parametrize("name", ["notes.txt~", "#draft.py#", "what it ran last#", ".#lock", "x.py.orig", "run.log"])
def test_gitignore_keeps_editor_leftovers_out(name: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO, timeout=60)
    assert ignored.returncode == 0, f"{name!r} is not ignored by .gitignore"
