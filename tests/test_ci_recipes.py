"""The CI recipes users copy (docs/ci.md): every GitHub Actions workflow in .github/workflows/ and the
GitLab CI file docs/ci/gitlab-ci.yml load as YAML, have the structure their CI reads, run only make
targets and lora-parity commands that exist (tests/support/ci_recipes.py), upload what the suite writes,
and hold the three jobs issue 34 asks for: `make gpu` on a GPU runner with its reports uploaded, the
upgrade gate on a schedule, and the benchmark compare against a stored baseline.

Where check-jsonschema is installed (the dev extra, which `make` installs), the files are also validated against the
SchemaStore schemas it vendors for GitHub workflows and GitLab CI."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ci_recipes import REPO, github_problems, gitlab_jobs, gitlab_problems, load, steps_running

WORKFLOWS = sorted([*(REPO / ".github" / "workflows").glob("*.yml"), *(REPO / ".github" / "workflows").glob("*.yaml")])
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"
DOC = REPO / "docs" / "ci.md"


def test_there_are_recipes() -> None:
    assert {p.name for p in WORKFLOWS} >= {"gpu.yml", "gate.yml", "bench.yml"}
    assert GITLAB.is_file()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflow_is_valid(path: Path) -> None:
    assert github_problems(path) == []


def test_gitlab_recipe_is_valid() -> None:
    assert gitlab_problems(GITLAB) == []


def workflows() -> dict[str, dict]:
    return {p.name: load(p) for p in WORKFLOWS}


def uploads(job: dict) -> list[str]:
    return [line.strip() for step in job["steps"] if str(step.get("uses", "")).startswith("actions/upload-artifact@")
            for line in str(step["with"]["path"]).splitlines() if line.strip()]


def test_github_gpu_job_runs_make_gpu_on_a_gpu_runner_and_uploads_its_reports() -> None:
    doc = workflows()["gpu.yml"]
    (name,) = steps_running(doc, r"\bmake gpu\b")
    job = doc["jobs"][name]
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    assert "reports/" in uploads(job)
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload.get("if") == "always()"  # the reports matter most when a check failed


def test_github_gate_runs_on_a_schedule_and_uploads_its_page() -> None:
    doc = workflows()["gate.yml"]
    on = doc.get("on", doc.get(True))
    assert on["schedule"] and "workflow_dispatch" in on
    (name,) = steps_running(doc, r"\bmake gate\b")
    assert "reports/gate/" in uploads(doc["jobs"][name])


def test_github_bench_compares_against_the_stored_baseline() -> None:
    doc = workflows()["bench.yml"]
    (name,) = steps_running(doc, r"lora-parity compare \"\$BENCH_BASELINE\" reports/bench/latest/run\.json")
    assert steps_running(doc, r"\bmake bench\b") == [name]
    assert "reports/bench/" in uploads(doc["jobs"][name])
    assert (REPO / doc["env"]["BENCH_BASELINE"]).is_file()  # the baseline the recipe names is committed


def test_gitlab_recipe_has_the_same_three_jobs() -> None:
    jobs = gitlab_jobs(load(GITLAB))

    def running(pattern: str) -> dict:
        (job,) = [j for j in jobs.values() if any(re.search(pattern, line) for line in j["script"])]
        return job

    gpu = running(r"\bmake gpu\b")
    assert "gpu" in gpu["tags"] and gpu["artifacts"]["when"] == "always" and "reports/" in gpu["artifacts"]["paths"]
    gate = running(r"\bmake gate\b")
    assert any('$CI_PIPELINE_SOURCE == "schedule"' in rule.get("if", "") for rule in gate["rules"])
    assert "reports/gate/" in gate["artifacts"]["paths"]
    bench = running(r"lora-parity compare \"\$BENCH_BASELINE\"")
    assert "reports/bench/" in bench["artifacts"]["paths"]


def test_the_doc_page_names_every_recipe() -> None:
    text = DOC.read_text()
    for path in [*WORKFLOWS, GITLAB]:
        assert str(path.relative_to(REPO)) in text, path.name
    for target in re.findall(r"\]\(([^)#]+)\)", text):  # relative links resolve
        if "://" not in target:
            assert (DOC.parent / target).exists(), target


@pytest.mark.skipif(importlib.util.find_spec("check_jsonschema") is None,
                    reason="check-jsonschema is not installed (pip install check-jsonschema)")
@pytest.mark.parametrize(("schema", "files"), [("vendor.github-workflows", WORKFLOWS), ("vendor.gitlab-ci", [GITLAB])],
                         ids=["github-workflows", "gitlab-ci"])
def test_recipes_match_the_published_schema(schema: str, files: list[Path]) -> None:
    run = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
