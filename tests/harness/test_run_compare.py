"""``lora-parity compare``: run-vs-run table, the --fail-on gates (each with a control that passes),
device refusal and unreadable input."""

from __future__ import annotations

import json

import pytest
from pytest_benchmark.utils import parse_compare_fail

from parity.bench.compare import REGRESSION, compare_runs, parse_fail_on
from parity.bench.record import COMPILED_BASE, COMPILED_FUSED, FUSED, FUSED_UNLOADED, unfused_mode
from parity.bench.results import read_run
from parity.cli import main
from tests.support.benchruns import (
    GPU_NAME,
    MACHINE_INFO,
    bench,
    fullname,
    info,
    scaled,
    standard_benchmarks,
    write_run,
)


def compare(capsys, old, new, *args: str) -> tuple[int, str, str]:
    code = main(["compare", str(old), str(new), *args])
    out, err = capsys.readouterr()
    return code, out, err


def verdict_of(out: str, name: str) -> str:
    (line,) = [line for line in out.splitlines() if line.strip().startswith(name.split("::")[-1])]
    return line


@pytest.fixture
def runs(tmp_path):
    """The reference run, and a writer of a second run from per-fullname time factors."""
    benchmarks = standard_benchmarks()
    old = write_run(tmp_path / "old.json", benchmarks)

    def new(factors: dict[str, float], name: str = "new.json"):
        return write_run(tmp_path / name, scaled(benchmarks, factors))

    return benchmarks, old, new


def test_a_benchmark_20_percent_slower_fails_median_10_percent_and_passes_median_25_percent(capsys, runs):
    benchmarks, old, new = runs
    slow = fullname(benchmarks, unfused_mode(1))
    new_path = new({slow: 1.2})

    code, out, _ = compare(capsys, old, new_path, "--fail-on", "median:10%")
    assert code == 1
    assert "REGRESSION" in verdict_of(out, slow)
    assert out.splitlines()[-1].startswith("1 regression beyond median:10%: ")
    assert out.count("REGRESSION") == 1

    code, out, _ = compare(capsys, old, new_path, "--fail-on", "median:25%")
    assert code == 0
    assert "REGRESSION" not in out
    assert out.splitlines()[-1] == "no regression beyond median:25%"


@pytest.mark.parametrize(
    ("mode", "factor", "verdict"),
    [(FUSED, 1.05, "ok"), (unfused_mode(2), 0.8, "faster")],
    ids=["5-percent-slower-is-ok", "20-percent-faster-is-marked-faster"],
)
def test_changes_within_median_10_percent_pass(capsys, runs, mode: str, factor: float, verdict: str):
    benchmarks, old, new = runs
    name = fullname(benchmarks, mode)
    code, out, _ = compare(capsys, old, new({name: factor}), "--fail-on", "median:10%")
    assert code == 0
    assert verdict_of(out, name).endswith(" " + verdict)


def test_repeated_fail_on_gates_each_judge_every_benchmark(capsys, runs):
    benchmarks, old, new = runs
    slow = fullname(benchmarks, unfused_mode(1))
    code, out, _ = compare(capsys, old, new({slow: 1.2}), "--fail-on", "median:25%", "--fail-on", "min:10%")
    assert code == 1
    assert "min +20.0% > 10%" in verdict_of(out, slow)
    assert out.splitlines()[-1].startswith("1 regression beyond median:25%, min:10%")


@pytest.mark.parametrize("gate", ["median:10%", "median:25%", "min:0.001", "max:0.003", "mean:5"])
def test_gates_agree_with_pytest_benchmark_compare_fail(gate, runs):
    benchmarks, old, new = runs
    slow = fullname(benchmarks, "base")
    old_run, new_run = read_run(old), read_run(new({slow: 1.2}))
    theirs = parse_compare_fail(gate)
    compared, current = old_run.by_fullname()[slow].stats, new_run.by_fullname()[slow].stats

    comparison = compare_runs(old_run, new_run, [parse_fail_on(gate)])

    (row,) = [r for r in comparison.rows if r.fullname == slow]
    assert (row.verdict == REGRESSION) == bool(theirs.fails(current, compared))


def test_absolute_gate_in_seconds_fails_on_a_larger_difference_only(capsys, runs):
    benchmarks, old, new = runs
    slow = fullname(benchmarks, "base")  # 10 ms, 20% slower: +2 ms
    new_path = new({slow: 1.2})
    assert compare(capsys, old, new_path, "--fail-on", "median:0.001s")[0] == 1
    assert compare(capsys, old, new_path, "--fail-on", "median:0.003")[0] == 0


def test_ratio_gate_catches_fused_over_base_growing_while_every_time_doubles(capsys, runs):
    benchmarks, old, new = runs
    doubled = {b["fullname"]: 2.0 for b in benchmarks}
    fused = fullname(benchmarks, FUSED)

    code, out, _ = compare(capsys, old, new({**doubled, fused: 2.0 * 1.08}), "--fail-on", "ratio:5%")
    assert code == 1
    assert "ratio +8.0% > 5%" in verdict_of(out, fused)
    assert out.count("REGRESSION") == 1


def test_ratio_gate_does_not_fire_on_a_uniform_doubling_that_median_gate_fails(capsys, runs):
    benchmarks, old, new = runs
    doubled = new({b["fullname"]: 2.0 for b in benchmarks})

    assert compare(capsys, old, doubled, "--fail-on", "ratio:5%")[0] == 0
    code, out, _ = compare(capsys, old, doubled, "--fail-on", "median:10%")
    assert code == 1
    assert out.count("REGRESSION") == len(benchmarks)


def test_ratio_gate_divides_compiled_modes_by_compiled_base(capsys, runs):
    benchmarks, old, new = runs
    # compiled-base 20% faster, everything else unchanged: only compiled-fused's ratio grows.
    code, out, _ = compare(capsys, old, new({fullname(benchmarks, COMPILED_BASE): 0.8}), "--fail-on", "ratio:5%")
    assert code == 1
    assert "REGRESSION" in verdict_of(out, fullname(benchmarks, COMPILED_FUSED))
    assert "REGRESSION" not in verdict_of(out, fullname(benchmarks, FUSED))
    assert out.count("REGRESSION") == 1


def test_benchmarks_in_one_run_only_are_listed_and_not_counted_as_regressions(capsys, tmp_path, runs):
    benchmarks, old, _ = runs
    gone = fullname(benchmarks, FUSED_UNLOADED)
    new_path = write_run(tmp_path / "new.json", [b for b in benchmarks if b["fullname"] != gone]
                         + [bench(info(unfused_mode(4)), 0.012)])

    code, out, _ = compare(capsys, old, new_path, "--fail-on", "median:10%")

    assert code == 0
    assert verdict_of(out, gone).endswith("only-in-old")
    assert verdict_of(out, "test_forward[sd15-tiny-unfused-4-float32-cpu]").endswith("only-in-new")
    assert out.splitlines()[-1] == "no regression beyond median:10%"


def test_runs_from_different_devices_are_refused_naming_both_unless_allowed(capsys, tmp_path):
    old = write_run(tmp_path / "cpu.json", standard_benchmarks(device="cpu"))
    gpu = [dict(b, fullname=b["fullname"].replace("-cuda]", "-cpu]")) for b in standard_benchmarks(device="cuda")]
    new = write_run(tmp_path / "gpu.json", gpu)

    code, out, err = compare(capsys, old, new, "--fail-on", "median:10%")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert MACHINE_INFO["cpu"]["brand_raw"] in err and GPU_NAME in err

    code, out, _ = compare(capsys, old, new, "--fail-on", "median:10%", "--allow-cross-device")
    assert code == 0
    assert "only-in" not in out


def test_foreign_runs_compare_by_fullname_and_use_the_cpu_brand_as_device(capsys, tmp_path):
    old = write_run(tmp_path / "old.json", [bench(None, 0.01, "test_a"), bench(None, 0.02, "test_b")])
    new = write_run(tmp_path / "new.json", [bench(None, 0.012, "test_a"), bench(None, 0.02, "test_b")])
    other_cpu = json.loads(json.dumps(MACHINE_INFO))
    other_cpu["cpu"]["brand_raw"] = "Intel(R) Xeon(R) Platinum 8480+"
    elsewhere = write_run(tmp_path / "elsewhere.json", [bench(None, 0.01, "test_a")], machine_info=other_cpu)

    code, out, _ = compare(capsys, old, new, "--fail-on", "median:10%")
    assert code == 1
    assert "REGRESSION" in verdict_of(out, "test_a") and verdict_of(out, "test_b").endswith(" ok")

    code, _, err = compare(capsys, old, elsewhere)
    assert code == 2 and "Intel(R) Xeon(R) Platinum 8480+" in err


def test_compare_prints_one_line_per_benchmark_and_writes_compare_md(capsys, tmp_path, runs):
    benchmarks, old, new = runs
    code, out, _ = compare(capsys, old, new({}), "--fail-on", "median:10%", "--out", str(tmp_path / "cmp"))

    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 + 1 + len(benchmarks) + 1  # run line, table header, benchmarks, verdict
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.count("\n| ") == 1 + len(benchmarks)
    assert "no regression beyond median:10%" in md


def test_unparsable_fail_on_is_a_usage_error(capsys, runs):
    _, old, _ = runs
    for gate in ("median:ten%", "p99:10%", "ratio:0.1s", "median"):
        code, out, err = compare(capsys, old, old, "--fail-on", gate)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and "--fail-on" in err


def _truncated(tmp_path):
    path = write_run(tmp_path / "truncated.json", standard_benchmarks())
    path.write_text(path.read_text()[:500])
    return path


def _not_a_benchmark_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"machine_info": {}, "results": []}))
    return path


def _a_json_list(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    return path


def _no_stats(tmp_path):
    benchmarks = standard_benchmarks()
    del benchmarks[3]["stats"]
    return write_run(tmp_path / "nostats.json", benchmarks)


def _non_numeric_median(tmp_path):
    benchmarks = standard_benchmarks()
    benchmarks[0]["stats"]["median"] = "fast"
    return write_run(tmp_path / "badstat.json", benchmarks)


def _directory(tmp_path):
    path = tmp_path / "run.json"
    path.mkdir()
    return path


def _missing(tmp_path):
    return tmp_path / "missing.json"


@pytest.mark.parametrize("make", [_truncated, _not_a_benchmark_file, _a_json_list, _no_stats, _non_numeric_median,
                                  _directory, _missing])
def test_unreadable_input_exits_2_with_one_line_naming_the_file(capsys, tmp_path, runs, make):
    _, good, _ = runs
    bad = make(tmp_path)
    for old, new in ((bad, good), (good, bad)):
        code, out, err = compare(capsys, old, new, "--fail-on", "median:10%")
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert str(bad) in err


def test_without_a_gate_nothing_is_judged_and_the_exit_is_0(capsys, runs):
    benchmarks, old, new = runs
    code, out, _ = compare(capsys, old, new({b["fullname"]: 2.0 for b in benchmarks}))
    assert code == 0
    assert "REGRESSION" not in out and " ok" not in out
    assert out.splitlines()[-1] == "no --fail-on gate given: nothing counts as a regression"
