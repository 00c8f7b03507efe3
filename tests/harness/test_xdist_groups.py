"""`--dist loadgroup` keeps the cases of one ``xdist_group`` on one worker: what lets a compiled
hotswap session, a loaded LoRA template or a benchmark subject be built once. pytest 9.2 with
pytest-xdist 3.8 ignored the marks silently (pyproject.toml pins pytest below 9.2); this is the check
that would have said so."""

from __future__ import annotations

import textwrap

import pytest

TEST_FILE = textwrap.dedent("""
    import os

    import pytest

    @pytest.mark.parametrize("i", [pytest.param(i, marks=pytest.mark.xdist_group("one")) for i in range(4)])
    def test_grouped(i, record_property):
        record_property("worker", os.environ.get("PYTEST_XDIST_WORKER", "main"))

    @pytest.mark.parametrize("i", range(4))
    def test_free(i, record_property):
        record_property("worker", os.environ.get("PYTEST_XDIST_WORKER", "main"))
""")


def workers_by_test(pytester: pytest.Pytester, dist: str) -> dict[str, set[str]]:
    pytester.makepyfile(test_groups=TEST_FILE)
    result = pytester.runpytest_inprocess("-n", "2", "--dist", dist, "-p", "no:cacheprovider", "-q", "--junitxml=j.xml")
    assert result.ret == 0, result.outlines[-20:]
    import xml.etree.ElementTree as ET

    out: dict[str, set[str]] = {}
    for case in ET.parse(pytester.path / "j.xml").getroot().iter("testcase"):
        worker = case.find("properties/property[@name='worker']").get("value")
        out.setdefault(case.get("name").split("[")[0], set()).add(worker)
    return out


def test_loadgroup_runs_a_group_on_one_worker(pytester: pytest.Pytester) -> None:
    assert len(workers_by_test(pytester, "loadgroup")["test_grouped"]) == 1


def test_load_spreads_the_same_tests_over_both_workers(pytester: pytest.Pytester) -> None:
    # negative control: without loadgroup the marked cases are not kept together, so the check above
    # can fail
    assert len(workers_by_test(pytester, "load")["test_grouped"]) == 2
