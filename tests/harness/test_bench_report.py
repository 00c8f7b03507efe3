"""``lora-parity report``: files, plots, tables and the fused flag (with controls that stay unflagged),
and one end-to-end run over pytest-benchmark's own JSON and JUnit output."""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parity.bench.report import FLAG_TEXT, NO_FLAGS
from parity.bench.results import format_seconds, read_run
from parity.cli import main
from tests.support.benchruns import CPU_NAME, bench, standard_benchmarks, stats, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]
FLAGGED_MODES_PER_DTYPE = 3  # fused, fused+unloaded, compiled-fused
DTYPES = 2  # standard_benchmarks' float32 and bfloat16


def report(capsys, tmp_path, benchmarks, *args: str) -> tuple[int, Path, str, str]:
    run = write_run(tmp_path / "run.json", benchmarks)
    out = tmp_path / "bench"
    code = main(["report", "--benchmark-json", str(run), "--out", str(out), *args])
    stdout, stderr = capsys.readouterr()
    return code, out, stdout, stderr


# One worker runs every test here, so the module's report (``flagged``, 1-2 s of PNGs) is made once, not
# once on each xdist worker.
pytestmark = pytest.mark.xdist_group("bench-report")


@pytest.fixture(scope="module")
def flagged(tmp_path_factory) -> tuple[int, Path, str, str]:
    """One report, shared by the checks that only read it: fused modes at 1.10x, unfused-1 at 1.05x, and
    one foreign benchmark."""
    tmp = tmp_path_factory.mktemp("flagged")
    benchmarks = [*standard_benchmarks(fused=1.10, unfused=1.05), bench(None, 0.003, "test_foreign")]
    run = write_run(tmp / "run.json", benchmarks)
    stdout, stderr = io.StringIO(), io.StringIO()
    # never "long", however loaded the machine: the progress test sets the threshold the other way
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr("parity.bench.report.LONG_WORK_SECONDS", math.inf)
        code = main(["report", "--benchmark-json", str(run), "--out", str(tmp / "bench")])
    return code, tmp / "bench", stdout.getvalue(), stderr.getvalue()


def test_report_writes_markdown_self_contained_html_and_the_four_kinds_of_png(flagged):
    code, out, _, stderr = flagged

    assert code == 0
    assert stderr == ""  # work shorter than LONG_WORK_SECONDS shows no progress
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == [f"{kind}-sd15-tiny-cpu.png" for kind in ("latency", "memory", "operations", "ratio")]
    for name in plots:
        assert (out / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
    page = (out / "index.html").read_text()
    assert page.count("src='data:image/png;base64,iVBORw0KGgo") == len(plots)  # base64 of the PNG signature
    assert "src='plots/" not in page
    markdown = (out / "report.md").read_text()
    assert all(f"(plots/{name})" in markdown for name in plots)


def test_fused_modes_at_1_10_times_baseline_are_flagged_in_both_files_and_listed_at_the_top(flagged):
    code, out, stdout, _ = flagged

    assert code == 0
    markdown, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    flags = markdown.split("## Flags")[1].split("\n## ")[0]
    assert flags.count(FLAG_TEXT) == FLAGGED_MODES_PER_DTYPE * DTYPES
    assert "sd15/tiny/float32/cpu/forward compiled-fused: ratio 1.100" in flags
    assert markdown.index("## Flags") < markdown.index("## sd15/tiny/cpu")
    assert markdown.count(FLAG_TEXT) == 2 * FLAGGED_MODES_PER_DTYPE * DTYPES  # the list and the table cells
    assert page.count(f"<td class='flag'>{FLAG_TEXT}</td>") == FLAGGED_MODES_PER_DTYPE * DTYPES
    assert stdout.count("flagged:") == FLAGGED_MODES_PER_DTYPE * DTYPES


def test_fused_at_baseline_and_a_slow_unfused_mode_are_not_flagged(capsys, tmp_path):
    # unfused LoRA does extra arithmetic: its ratio above the flag is expected, not a finding.
    code, out, stdout, _ = report(capsys, tmp_path, standard_benchmarks(fused=1.00, unfused=1.10))

    assert code == 0
    assert FLAG_TEXT not in (out / "report.md").read_text()
    assert FLAG_TEXT not in (out / "index.html").read_text()
    assert NO_FLAGS in (out / "report.md").read_text() and NO_FLAGS in (out / "index.html").read_text()
    assert "flagged:" not in stdout


def test_group_tables_show_median_iqr_rounds_ratio_and_flop_floor(flagged):
    _, out, _, _ = flagged

    markdown = (out / "report.md").read_text()
    group = markdown.split("### sd15/tiny/float32/cpu/forward")[1].split("###")[0]
    assert "| mode | rank | dtype | median | IQR | rounds | ratio to baseline | flop floor | memory | flag |" in group
    base_iqr, compiled_iqr = format_seconds(stats(0.010)["iqr"]), format_seconds(stats(0.006 * 1.10)["iqr"])
    assert f"| base | - | float32 | 10 ms | {base_iqr} | 5 | 1.000 | - | 50.0 MiB |  |" in group
    assert "| unfused-1 | 4 | float32 | 10.5 ms |" in group and "| 1.050 | 1.030 |" in group
    compiled_fused = f"| compiled-fused | 4 | float32 | 6.6 ms | {compiled_iqr} | 5 | 1.100 | 1.000 | 50.0 MiB |"
    assert f"{compiled_fused} {FLAG_TEXT} |" in group


def test_header_names_the_run_machine_versions_and_device(flagged):
    _, out, _, _ = flagged

    head = (out / "report.md").read_text().split("## Flags")[0]
    assert "2026-05-01T10:05:00" in head and CPU_NAME in head and "CPython 3.11.7" in head
    assert "diffusers 0.42.0" in head and "peft 0.17.1" in head and "torch 2.13.0" in head


def test_benchmarks_without_bench_info_go_to_an_other_section(flagged):
    code, out, _, _ = flagged

    assert code == 0
    other = (out / "report.md").read_text().split("## other")[1]
    assert "| tests/test_foreign.py::test_foreign | - | 3 ms |" in other


def test_a_run_of_foreign_benchmarks_only_still_reports(capsys, tmp_path):
    code, out, _, _ = report(capsys, tmp_path, [bench(None, 0.003, "test_foreign")])

    assert code == 0
    assert "## other" in (out / "index.html").read_text().replace("<h2>other</h2>", "## other")
    assert list((out / "plots").iterdir()) == []


def test_unreadable_benchmark_json_or_junit_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["report", "--benchmark-json", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(bad) in err

    run = write_run(tmp_path / "run.json", standard_benchmarks())
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuites><testsuite>")
    assert main(["report", "--benchmark-json", str(run), "--junit", str(junit), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(junit) in err


BENCH_TEST = textwrap.dedent("""
    import pytest
    from parity.bench.record import BenchInfo, group_name

    def spin(n):
        return sum(i * i for i in range(n))

    @pytest.mark.parametrize("mode, work", [("base", 2000), ("fused", 2000), ("unfused-1", 4000)])
    def test_forward(benchmark, mode, work):
        info = BenchInfo(kind="forward", family="sd15", mode=mode, dtype="float32", device="cpu",
                         device_name="test cpu", device_class="cpu", size="tiny", rank=0 if mode == "base" else 4,
                         flops_base=1e6, flops_lora=None if mode == "base" else 1e4, versions={"peft": "x"})
        benchmark.group = group_name(info)
        benchmark.extra_info.update(info.to_extra_info())
        benchmark.pedantic(spin, args=(work,), rounds=7, iterations=1)

    def test_plain(benchmark):
        benchmark(spin, 10)

    def test_fails():
        assert False

    def test_skipped():
        pytest.skip("no")

    @pytest.mark.xfail(reason="known")
    def test_xfails():
        assert False
""")


def test_end_to_end_on_pytest_benchmarks_own_json_and_junit_output(capsys, tmp_path):
    (tmp_path / "test_tiny_bench.py").write_text(BENCH_TEST)
    run_json, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    # Not the xdist worker's variables: pytest-benchmark disables itself when it sees PYTEST_XDIST_WORKER.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_tiny_bench.py", f"--benchmark-json={run_json}", f"--junitxml={junit}",
         "-p", "no:xdist", "-p", "no:cacheprovider", "-p", "no:randomly", "--benchmark-enable",
         "--benchmark-max-time=0.01", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # test_fails fails, on purpose

    run = read_run(run_json)
    assert sorted(r.info.mode for r in run.records if r.info) == ["base", "fused", "unfused-1"]
    assert [r.name for r in run.records if r.info is None] == ["test_plain"]
    assert main(["report", "--benchmark-json", str(run_json), "--junit", str(junit), "--out", str(tmp_path / "r")]) == 0
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "4 passed, 1 failed, 1 skipped, 1 xfailed" in markdown
    assert "failed: test_tiny_bench::test_fails" in markdown
    assert "| unfused-1 | 4 | float32 |" in markdown and "| 1.010 |" in markdown  # the flop floor
    assert "## other" in markdown
    assert (tmp_path / "r" / "plots" / "latency-sd15-tiny-cpu.png").read_bytes().startswith(PNG_SIGNATURE)

    capsys.readouterr()
    assert main(["compare", str(run_json), str(run_json), "--fail-on", "median:10%", "--fail-on", "ratio:5%"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no regression beyond median:10%, ratio:5%"


def test_report_progress_appears_on_stderr_once_the_work_is_long(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("parity.bench.report.LONG_WORK_SECONDS", 0.0)  # every step counts as long
    code, _, _, stderr = report(capsys, tmp_path, standard_benchmarks())
    assert code == 0
    assert stderr.splitlines()[0] == "[1/4] latency plot of sd15/tiny/cpu"

    code, _, _, stderr = report(capsys, tmp_path, standard_benchmarks(), "-q", "--overwrite")  # same folder again
    assert code == 0 and stderr == ""
