"""Nothing lost (parity/runs/folders.py): default outputs go to a new run folder per run and ``latest`` moves
to it; a named folder or file holding a previous run's output is refused with one line (exit 2 from
the CLI, a usage error from pytest) and left untouched, unless --overwrite / --overwrite-reports.

The CLI side uses report/compare on ready-made benchmark JSON (no model); the pytest side runs a
two-line test file in a pytest subprocess, once under xdist, so controller and workers must agree."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main
from parity.runs import folders as runfolders
from parity.tolerances import GoldenThresholds
from tests.support.benchruns import standard_benchmarks, write_run
from tests.support.filesnap import differences, snapshot


def run_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def bench_json(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run.json", standard_benchmarks())


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the defaults are relative: reports/<kind>/ under the working folder
    return tmp_path


# ---------------------------------------------------------------- CLI


def test_two_report_runs_with_defaults_land_in_two_folders_and_the_first_stays_byte_identical(in_tmp, bench_json,
                                                                                           capsys):
    root = in_tmp / "reports" / "bench"
    assert main(["report", "--benchmark-json", str(bench_json), "-q"]) == 0
    [first] = run_folders(root)
    assert runfolders.latest(root) == first and (first / "index.html").is_file() and runfolders.read_marker(first)
    kept = snapshot(first)

    assert main(["report", "--benchmark-json", str(bench_json), "-q"]) == 0
    folders = run_folders(root)
    assert len(folders) == 2 and first in folders
    [second] = [f for f in folders if f != first]
    assert differences(kept, snapshot(first)) == []
    assert runfolders.latest(root) == second  # the pointer moved
    assert runfolders.read_marker(second)["lora_parity_run"] != runfolders.read_marker(first)["lora_parity_run"]
    assert str(second.relative_to(in_tmp)) in capsys.readouterr().out  # the new folder is named


def test_report_into_a_folder_holding_a_previous_report_exits_2_with_one_line_and_leaves_it_untouched(
        tmp_path, bench_json, capsys):
    out = tmp_path / "mine"
    assert main(["report", "--benchmark-json", str(bench_json), "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    kept = snapshot(out)

    assert main(["report", "--benchmark-json", str(bench_json), "--out", str(out), "-q"]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert str(out) in line and "earlier run" in line and "--overwrite" in line
    assert captured.out == ""
    assert differences(kept, snapshot(out)) == []


def test_report_with_overwrite_replaces_the_previous_report_and_its_stale_files(tmp_path, bench_json):
    out = tmp_path / "mine"
    assert main(["report", "--benchmark-json", str(bench_json), "--out", str(out), "-q"]) == 0
    old_run = runfolders.read_marker(out)["lora_parity_run"]
    (out / "plots" / "from-the-old-run.png").write_bytes(b"stale")

    assert main(["report", "--benchmark-json", str(bench_json), "--out", str(out), "-q", "--overwrite"]) == 0
    assert runfolders.read_marker(out)["lora_parity_run"] != old_run
    assert (out / "index.html").is_file() and not (out / "plots" / "from-the-old-run.png").exists()


def test_a_run_folder_holding_only_another_command_s_output_is_accepted(tmp_path, bench_json, capsys):
    # tools/bench.sh: pytest writes run.json into the run folder, then the report goes beside it.
    run = runfolders.fresh_run_dir(tmp_path / "bench")
    (run / "run.json").write_bytes(bench_json.read_bytes())
    assert main(["report", "--benchmark-json", str(run / "run.json"), "--out", str(run), "-q"]) == 0
    assert main(["compare", str(bench_json), str(run / "run.json"), "--out", str(run)]) == 0
    assert (run / "compare.md").is_file() and (run / "index.html").is_file()
    # ...but the same command twice is refused
    assert main(["compare", str(bench_json), str(run / "run.json"), "--out", str(run)]) == 2
    assert "compare.md" in one_error_line(capsys.readouterr().err)


def test_compare_refuses_an_unrelated_non_empty_folder_and_with_overwrite_keeps_its_files(tmp_path, bench_json,
                                                                                         capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("not ours")
    kept = snapshot(theirs)
    assert main(["compare", str(bench_json), str(bench_json), "--out", str(theirs)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(theirs) in line and "not a lora-parity run folder" in line
    assert differences(kept, snapshot(theirs)) == []

    assert main(["compare", str(bench_json), str(bench_json), "--out", str(theirs), "--overwrite"]) == 0
    assert (theirs / "notes.txt").read_text() == "not ours" and (theirs / "compare.md").is_file()


def test_check_json_refuses_an_existing_file_before_any_work_and_leaves_it_untouched(tmp_path, capsys):
    out = tmp_path / "out.json"
    out.write_text('{"from": "an earlier run"}')
    kept = snapshot(tmp_path)
    code = main(["check", "--family", "sd15", "--lora", str(tmp_path / "never_read.safetensors"), "--json", str(out)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(out) in line and "--overwrite" in line
    assert differences(kept, snapshot(tmp_path)) == []


def test_golden_cli_mismatches_go_to_a_new_run_folder_per_run_and_a_clean_run_makes_none(in_tmp, monkeypatch,
                                                                                       capsys):
    from parity.golden import verify

    def mismatching_case(store, case, report_dir, update, device, model_path):  # rendering is not what is tested here
        verify.compare_image(case.id, np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3)),
                             GoldenThresholds(0.01, 40.0, 0.99), report_dir)
        return verify.CaseOutcome(case.id, False, ["mismatch"])

    monkeypatch.setattr(verify, "run_case", mismatching_case)
    root = in_tmp / "reports" / "golden"
    assert main(["golden", "verify", "--family", "sd15", "-q"]) == 1
    [first] = run_folders(root)
    kept = snapshot(first)
    assert main(["golden", "verify", "--family", "sd15", "-q"]) == 1
    [second] = [f for f in run_folders(root) if f != first]
    assert differences(kept, snapshot(first)) == [] and runfolders.latest(root) == second
    assert f"mismatch report: {second.relative_to(in_tmp) / 'index.html'}" in capsys.readouterr().out

    monkeypatch.setattr(verify, "run_case", lambda store, case, *a: verify.CaseOutcome(case.id, True, ["ok"]))
    assert main(["golden", "verify", "--family", "sd15", "-q"]) == 0
    assert len(run_folders(root)) == 2 and runfolders.latest(root) == second  # nothing to report, no folder


def test_latest_falls_back_to_a_text_file_where_symlinks_fail(tmp_path, monkeypatch):
    first = runfolders.fresh_run_dir(tmp_path)

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    second = runfolders.fresh_run_dir(tmp_path)
    assert (tmp_path / runfolders.LATEST_FILE).read_text().strip() == second.name
    (tmp_path / runfolders.LATEST_LINK).unlink()  # the stale link to the first would otherwise win
    assert runfolders.latest(tmp_path) == second != first


def test_shell_entry_point_makes_a_run_folder_finds_it_and_refuses_a_used_one(tmp_path, capsys):
    assert main(["runs", "new", str(tmp_path / "gate")]) == 0
    made = Path(capsys.readouterr().out.strip())
    assert main(["runs", "latest", str(tmp_path / "gate")]) == 0
    assert Path(capsys.readouterr().out.strip()) == made
    (made / "old").mkdir()
    assert main(["runs", "claim", str(made)]) == 2  # whole-folder claim: it holds a bundle already
    assert str(made) in one_error_line(capsys.readouterr().err)
    assert main(["runs", "latest", str(tmp_path / "nothing")]) == 2


# ---------------------------------------------------------------- pytest plugin

TEST_FILE = textwrap.dedent("""
    import os

    import numpy as np
    import pytest

    from parity.tolerances import GoldenThresholds
    from parity.golden.verify import compare_image

    @pytest.mark.parametrize("case", ["a", "b", "c", "d"])
    def test_a_golden_mismatch(case, golden_config, parity_record):
        parity_record("demo", "float32", 1.0, 0.5, os.environ.get("PYTEST_XDIST_WORKER", "main"))
        result = compare_image(case, np.zeros((8, 8, 3), np.uint8), np.ones((8, 8, 3)),
                               GoldenThresholds(0.01, 40.0, 0.99), golden_config.report_dir)
        assert not result.ok and result.artifact
""")


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In process: the controller reuses this process's torch and diffusers imports (a fresh pytest
    # with the plugin takes ~7 s to start); xdist workers are still real processes.
    return pytester.runpytest_inprocess("-p", "parity.pytest.plugin", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
                                        *args)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")  # rootdir: reports/ lands in the throwaway project
    pytester.makepyfile(test_demo=TEST_FILE)
    monkeypatch.setattr("parity.pytest.reports._ROWS", [])  # the inner runs' summary rows stay out of this run's
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return pytester


# make slow (9 s: two inner pytest runs under xdist); the one-process folder rules run by default above
@pytest.mark.slow
def test_pytest_default_golden_reports_land_in_one_run_folder_per_run_shared_by_the_xdist_worker(project):
    root = project.path / "reports" / "golden"
    # One worker is enough to show it writes where the controller decided (which marks and points at
    # that folder); each more worker costs a process start (~7 s).
    first_run = run_pytest(project, "-n", "1", "--parity-report", "summary")
    assert first_run.ret == 0, first_run.outlines[-30:] + first_run.errlines[-30:]
    [first] = run_folders(root)  # the worker wrote into the controller's folder
    assert sorted(p.name for p in (first / "artifacts").iterdir()) == [f"{c}.png" for c in "abcd"]
    workers = {row["detail"] for row in json.loads((project.path / "summary" / "summary.json").read_text())}
    assert workers == {"gw0"}
    assert runfolders.latest(root) == first and runfolders.read_marker(first)
    assert f"golden mismatches: {first / 'index.html'}" in first_run.outlines
    kept = snapshot(first)

    second_run = run_pytest(project, "-n", "0")
    assert second_run.ret == 0, second_run.outlines[-30:] + second_run.errlines[-30:]
    [second] = [f for f in run_folders(root) if f != first]
    assert differences(kept, snapshot(first)) == []
    assert runfolders.latest(root) == second


def test_pytest_parity_report_into_a_previous_run_s_folder_is_a_usage_error_unless_overwrite_reports(project):
    out = project.path / "kept-summary"
    one_case = "test_demo.py::test_a_golden_mismatch[a]"
    assert run_pytest(project, one_case, "--parity-report", str(out)).ret == 0
    kept, first_run = snapshot(out), runfolders.read_marker(out)["lora_parity_run"]
    assert (out / "summary.md").is_file()

    refused = run_pytest(project, one_case, "--parity-report", str(out))
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    line = one_error_line("\n".join(refused.errlines))
    assert str(out) in line and "--overwrite-reports" in line
    assert differences(kept, snapshot(out)) == []

    replaced = run_pytest(project, one_case, "--parity-report", str(out), "--overwrite-reports")
    assert replaced.ret == 0, replaced.outlines[-30:] + replaced.errlines[-30:]
    assert runfolders.read_marker(out)["lora_parity_run"] != first_run
    assert len(json.loads((out / "summary.json").read_text())) == 1
