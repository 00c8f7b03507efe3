"""The parity summary's headline agrees with pytest's own summary line (issue 34): passed, known findings
(strict xfails), failures and skipped, counted over every test of the run, and it says that its tables
count something narrower (the tests that record a measured error)."""

from __future__ import annotations

import re

import pytest

from parity.runs.summary import headline, pytest_line

TEST_FILE = '''
import pytest

@pytest.mark.parametrize("case", ["a", "b"])
def test_measured(parity_record, case):
    parity_record("merge", "float32", 1.0, 0.5)

@pytest.mark.xfail(strict=True, reason="finding: fuse_lora does something else: because")
def test_pinned(parity_record):
    parity_record("merge", "float32", 900.0, 300.0)
    assert False

def test_behaviour():
    pass

def test_broken():
    assert 1 == 2

def test_not_here():
    pytest.skip("no GPU")

def test_deselected():
    pass

@pytest.fixture
def bad():
    raise RuntimeError("setup")

def test_errors(bad):
    pass
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_demo=TEST_FILE)
    monkeypatch.setattr("parity.pytest.reports._ROWS", [])
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return pytester


def test_the_headline_counts_every_test_as_pytest_does_and_names_the_known_findings(project):
    result = project.runpytest_inprocess("-p", "parity.pytest.plugin", "-p", "no:cacheprovider", "-p", "no:randomly",
                                         "-q", "-n", "0", "--parity-report", "out", "-k", "not deselected")
    pytests = re.sub(r" in [0-9.]+s.*$", "", result.outlines[-1]).strip("= ")
    counts = result.parseoutcomes()
    assert counts == {"passed": 3, "failed": 1, "skipped": 1, "xfailed": 1, "deselected": 1, "errors": 1}, pytests
    text = (project.path / "out" / "summary.md").read_text()
    assert f"pytest's own summary line: {pytests}." in text  # word for word
    first = next(line for line in text.splitlines() if line.startswith("**"))
    assert first.startswith("**3 passed, 1 known findings (strict xfails: fail as pinned), 2 failed (1 of them errors), "
                            "1 skipped, 1 deselected** (exit status 1)"), first
    # the tables count the three tests that record an error, and say so
    assert "the 3 measured errors" in text and "2 passed, 1 known findings, 0 failed" in text
    assert "| known finding: fuse_lora does something else |" in text
    page = (project.path / "out" / "summary.html").read_text()
    assert "pytest&#x27;s own summary line" in page and "known finding" in page


def test_the_headline_words_and_pytest_s_line():
    counts = {"passed": 700, "skipped": 227, "xfailed": 62}
    assert pytest_line(counts) == "700 passed, 227 skipped, 62 xfailed"  # the pytest line
    assert headline(counts) == "700 passed, 62 known findings (strict xfails: fail as pinned), 0 failed, 227 skipped"
