"""The recipe checks (tests/support/ci_recipes.py, run by tests/test_ci_recipes.py) must fail a recipe
that would fail in CI: copies of the real recipes with one thing broken each, a make target that does
not exist first among them, are reported, naming what is wrong; the unbroken copies pass, so the
planted change is what each check caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ci_recipes import REPO, github_problems, gitlab_problems

GATE = REPO / ".github" / "workflows" / "gate.yml"
BENCH = REPO / ".github" / "workflows" / "bench.yml"
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"


def planted(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert text.count(old) >= 1, f"{old!r} is not in {source.name}"
    out = tmp_path / source.name
    out.write_text(text.replace(old, new))
    return out


@pytest.mark.parametrize("source", [GATE, BENCH], ids=lambda p: p.name)
def test_an_unchanged_copy_passes(tmp_path: Path, source: Path) -> None:
    assert github_problems(planted(tmp_path, source, "name:", "name:")) == []


def test_a_step_naming_a_nonexistent_make_target_fails(tmp_path: Path) -> None:
    problems = github_problems(planted(tmp_path, GATE, "run: make gate", "run: make gate-nightly"))
    assert len(problems) == 1 and "make gate-nightly: no such target in the Makefile" in problems[0]


def test_a_nonexistent_verb_or_a_bad_option_value_fails(tmp_path: Path) -> None:
    problems = github_problems(planted(tmp_path, BENCH, "lora-parity compare", "lora-parity benchcompare"))
    assert len(problems) == 1 and "invalid choice: 'benchcompare'" in problems[0]
    # the value comes from the workflow's env: the check substitutes it before parsing
    problems = github_problems(planted(tmp_path, BENCH, "BENCH_GATE: ratio:25%", "BENCH_GATE: ratio:lots"))
    assert len(problems) == 1 and "--fail-on" in problems[0]


def test_an_upload_outside_the_reports_folders_fails(tmp_path: Path) -> None:
    problems = github_problems(planted(tmp_path, BENCH, "path: reports/bench/", "path: benchmark-output/"))
    assert len(problems) == 1 and "not under reports/" in problems[0]
    problems = github_problems(planted(tmp_path, BENCH, "path: reports/bench/", "path: reports/benchmarks/"))
    assert len(problems) == 1 and "nothing writes reports/benchmarks" in problems[0]


def test_a_job_without_a_runner_or_a_step_without_an_action_fails(tmp_path: Path) -> None:
    problems = github_problems(planted(tmp_path, GATE, "    runs-on: ubuntu-latest\n", ""))
    assert problems == ["gate.yml: job upgrade-gate: needs runs-on and steps"]
    problems = github_problems(planted(tmp_path, GATE, "      - uses: actions/checkout@v4\n",
                                       "      - name: checkout\n"))
    assert problems == ["gate.yml: job upgrade-gate: step 1 (checkout): needs exactly one of run and uses"]


def test_a_bad_cron_fails(tmp_path: Path) -> None:
    problems = github_problems(planted(tmp_path, GATE, '"17 4 * * 1"', '"weekly"'))
    assert problems == ["gate.yml: cron {'cron': 'weekly'} is not five fields"]


def test_gitlab_a_nonexistent_make_target_or_stage_fails(tmp_path: Path) -> None:
    assert gitlab_problems(planted(tmp_path, GITLAB, "stages:", "stages:")) == []
    problems = gitlab_problems(planted(tmp_path, GITLAB, "- make gpu ARGS", "- make cuda ARGS"))
    assert len(problems) == 1 and "make cuda: no such target" in problems[0]
    problems = gitlab_problems(planted(tmp_path, GITLAB, "stage: bench", "stage: benchmarks"))
    assert problems == ["gitlab-ci.yml: job bench-compare: stage 'benchmarks' is not in stages ['test', 'gate', 'bench']"]
