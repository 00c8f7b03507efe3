"""The check-against-its-floor benchmark (parity/bench/checkcost.py, benchmarks/test_bench_check.py):
rounds alternate their order and pair up, the ratio's median and interval, the report's bound, and
the negative control: a check made slower than 1.5x its floor is flagged, the same stand-in at the
floor's own cost is not.

The real check runs at several times its floor on the tiny zoo (docs/benchmarks.md), so it cannot
serve as the control that passes; the controls replace it, through monkeypatch, with a stand-in that
does the floor's own work, once (ratio about 1) or three times (about 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from parity.bench import checkcost
from parity.bench import record as rec
from parity.bench.checkcost import CostSubject, time_check_against_floor
from parity.bench.paired import bootstrap_interval, summarize
from parity.bench.checkreport import CHECK_FLAG_TEXT, CHECK_SECTION, NO_CHECK_FLAGS
from parity.bench.compare import compare_runs, parse_fail_on
from parity.bench.record import BenchInfo
from parity.bench.report import NO_FLAGS, write_report
from parity.bench.results import read_run
from parity.tolerances import dtype_from_name
from parity.zoo import get_family
from tests.support.benchruns import bench, info, write_run

REPO = Path(__file__).resolve().parents[2]
FAMILY = "qwenimage"  # the cheapest floor of the zoo: about 0.3 s on 2 cores


class FakeBenchmark:
    """pytest-benchmark 5.3's ``pedantic`` as far as the benchmark relies on it: enabled, every round is
    setup, target, teardown; disabled, setup and target once and no teardown."""

    def __init__(self, disabled: bool = False) -> None:
        self.disabled = disabled
        self.group: str | None = None
        self.extra_info: dict[str, Any] = {}

    def pedantic(self, target, setup=None, teardown=None, rounds=1, warmup_rounds=0, iterations=1):
        if self.disabled:
            setup()
            return target()
        for _ in range(warmup_rounds + rounds):
            setup()
            target()
            teardown()


@dataclass(frozen=True)
class Passed:
    ok: bool = True


def recorder(order: list[str], seconds: dict[str, float]) -> tuple[Any, Any]:
    def check(subject: CostSubject) -> Passed:
        order.append("C")
        time.sleep(seconds["C"])
        return Passed()

    def floor(subject: CostSubject) -> None:
        order.append("F")
        time.sleep(seconds["F"])

    return check, floor


@pytest.fixture
def no_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full collection between sleeps of milliseconds would be most of these tests' time.
    monkeypatch.setattr(checkcost, "_settle", lambda device: None)


def fake_subject(tmp_path: Path) -> CostSubject:
    return CostSubject(get_family(FAMILY), str(tmp_path), ("lora.safetensors",), dtype_from_name("float32"), "cpu",
                       "tiny")


def test_rounds_alternate_their_order_and_pair_check_with_floor(tmp_path, no_collect):
    order: list[str] = []
    check, floor = recorder(order, {"C": 0.02, "F": 0.01})
    bench_ = FakeBenchmark()

    timed = time_check_against_floor(bench_, fake_subject(tmp_path), rounds=4, warmup=1, check_fn=check,
                                     floor_fn=floor)

    assert order == ["F", "C"] + ["F", "C", "C", "F", "F", "C", "C", "F"]  # warm-up, then F C | C F | F C | C F
    assert len(timed.check_seconds) == len(timed.floor_seconds) == 4
    extra = bench_.extra_info
    assert extra["kind"] == rec.CHECK and extra["mode"] == rec.CHECK_VS_FLOOR
    assert extra["check_seconds"] == timed.check_seconds and extra["floor_seconds"] == timed.floor_seconds
    assert extra["ratio_bound"] == rec.CHECK_RATIO_BOUND
    assert 1.2 < extra["ratio"] < 3.5  # 20 ms against 10 ms of sleep, on a loaded runner
    assert extra["ratio_low"] <= extra["ratio"] <= extra["ratio_high"]
    assert bench_.group == f"{FAMILY}/tiny/float32/cpu/check"


def test_a_disabled_benchmark_runs_one_floor_and_one_check_and_records_nothing(tmp_path, no_collect):
    order: list[str] = []
    check, floor = recorder(order, {"C": 0.0, "F": 0.0})
    bench_ = FakeBenchmark(disabled=True)

    time_check_against_floor(bench_, fake_subject(tmp_path), rounds=5, warmup=1, check_fn=check, floor_fn=floor)

    assert order == ["F", "C"]
    assert bench_.extra_info == {}


def test_the_ratio_is_the_median_of_per_round_ratios_with_an_interval_inside_their_range():
    summary = summarize([3.0, 2.0, 9.0, 2.4, 2.2], [1.0, 1.0, 1.0, 2.0, 1.1], rec.CHECK_RATIO_BOUND)
    assert summary.ratios == pytest.approx((3.0, 2.0, 9.0, 1.2, 2.0))
    assert summary.median == pytest.approx(2.0)
    assert 1.2 <= summary.low <= summary.median <= summary.high <= 9.0
    assert not summary.within  # 2.0 > 1.5
    assert bootstrap_interval([1.3]) == (1.3, 1.3)
    assert bootstrap_interval([1.0, 2.0, 3.0]) == bootstrap_interval([1.0, 2.0, 3.0])  # seeded
    with pytest.raises(ValueError, match="must pair up"):
        summarize([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- the report and the comparison


def check_bench(ratio: float, family: str = "sd15", bound: float = rec.CHECK_RATIO_BOUND) -> dict[str, Any]:
    floors = [1.0, 1.1, 0.9]
    checks = [f * ratio for f in floors]
    record = replace(info(rec.CHECK_VS_FLOOR, kind=rec.CHECK, family=family), rank=0, adapters=1,
                     check_seconds=checks, floor_seconds=floors, ratio=ratio, ratio_low=ratio * 0.95,
                     ratio_high=ratio * 1.05, ratio_bound=bound)
    return bench(record, ratio)


def test_a_check_above_its_bound_is_flagged_and_one_below_is_not(tmp_path, capsys):
    run = read_run(write_run(tmp_path / "run.json", [check_bench(2.0, "sd15"), check_bench(1.2, "flux")]))

    report = write_report(run, tmp_path / "out", progress=False)

    assert [f.record.info.family for f in report.flags] == ["sd15"]
    assert report.flags[0].ratio == pytest.approx(2.0)
    markdown, page = report.markdown.read_text(), report.html.read_text()
    flags = markdown.split("## Flags")[1].split("\n## ")[0]
    assert f"sd15/tiny/float32/cpu/check {rec.CHECK_VS_FLOOR}: ratio 2.000 ({CHECK_FLAG_TEXT})" in flags
    assert "flux" not in flags
    section = markdown.split(f"## {CHECK_SECTION}")[1]
    assert "| sd15 | tiny | float32 | cpu | 2 s | 1 s | 2.00 | 1.90 – 2.10 | 2.00, 2.00, 2.00 | 5 | 1.5 |" in section
    assert "| 1.20 | 1.14 – 1.26 | 1.20, 1.20, 1.20 | 5 | 1.5 |  |" in section  # flux: no flag cell
    assert page.count(f"<td class='flag'>{CHECK_FLAG_TEXT}</td>") == 1
    assert (tmp_path / "out" / "plots" / "check-vs-floor.png").read_bytes().startswith(b"\x89PNG")


def test_no_check_above_its_bound_says_so_and_a_run_without_checks_says_nothing_of_them(tmp_path):
    with_checks = write_report(read_run(write_run(tmp_path / "a.json", [check_bench(1.2)])), tmp_path / "a",
                               progress=False)
    without = write_report(read_run(write_run(tmp_path / "b.json", [bench(info("base"), 0.01)])), tmp_path / "b",
                           progress=False)

    assert with_checks.flags == []
    assert f"{NO_FLAGS} {NO_CHECK_FLAGS}" in with_checks.markdown.read_text()
    assert NO_CHECK_FLAGS not in without.markdown.read_text() and CHECK_SECTION not in without.markdown.read_text()


def test_the_bound_recorded_with_the_benchmark_is_the_one_held_to(tmp_path):
    run = read_run(write_run(tmp_path / "run.json", [check_bench(2.0, bound=3.0)]))
    assert write_report(run, tmp_path / "out", progress=False).flags == []


def test_compare_gates_the_check_ratio_between_runs(tmp_path):
    old = read_run(write_run(tmp_path / "old.json", [check_bench(1.3)]))
    new = read_run(write_run(tmp_path / "new.json", [check_bench(1.8)]))

    comparison = compare_runs(old, new, [parse_fail_on("ratio:25%")])

    (row,) = comparison.rows
    assert (row.old_ratio, row.new_ratio) == (pytest.approx(1.3), pytest.approx(1.8))
    assert not comparison.ok and row.failures == ("ratio +38.5% > 25%",)
    assert compare_runs(old, old, [parse_fail_on("ratio:25%")]).ok


# ---------------------------------------------------------------- the negative control, on a real model


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> CostSubject:
    return checkcost.tiny_subject(get_family(FAMILY), str(tmp_path_factory.mktemp("check-cost")),
                                  dtype_from_name("float32"), "cpu")


class WorkClock:
    """checkcost's clock for this control: it advances one unit per floor's worth of work done, whatever
    the machine's load. Timed on the real clock, the control failed under `make test`'s two workers (a
    check doing the floor's work three times read 0.84x the floor): a test asserts what the machinery
    does with times, and the benchmarks measure the times themselves."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def floor(self, subject: CostSubject) -> None:
        checkcost.floor(subject)  # the real work, so the path is the benchmark's own
        self.now += 1.0


def standing_in_for_check(times: int, clock: WorkClock):
    """A replacement for run_check that does the floor's own work ``times`` times on the request's
    folder and files."""

    def run_check(request: Any, progress: Any = None) -> Passed:
        as_floor = CostSubject(get_family(request.family), request.model_path, request.loras,
                               dtype_from_name(request.dtypes[0]), request.device, "tiny")
        for _ in range(times):
            clock.floor(as_floor)
        return Passed()

    return run_check


def measured(subject: CostSubject, tmp_path: Path, name: str, clock: WorkClock) -> dict[str, Any]:
    bench_ = FakeBenchmark()
    time_check_against_floor(bench_, subject, rounds=3, warmup=0, floor_fn=clock.floor)
    entry = bench(BenchInfo.from_extra_info(bench_.extra_info), bench_.extra_info["ratio"], name=name)
    return json.loads(json.dumps(entry))


def test_a_check_slowed_beyond_the_bound_is_flagged_and_fails_the_gate(subject, tmp_path, monkeypatch):
    clock = WorkClock()
    monkeypatch.setattr(checkcost, "time", clock)
    monkeypatch.setattr(checkcost, "run_check", standing_in_for_check(1, clock))
    control = measured(subject, tmp_path, "test_check[qwenimage]", clock)
    monkeypatch.setattr(checkcost, "run_check", standing_in_for_check(3, clock))  # the injected slowdown
    slowed = measured(subject, tmp_path, "test_check[qwenimage]", clock)

    assert control["extra_info"]["ratio"] == 1.0 < rec.CHECK_RATIO_BOUND < slowed["extra_info"]["ratio"] == 3.0
    report = write_report(read_run(write_run(tmp_path / "control.json", [control])), tmp_path / "c", progress=False)
    assert report.flags == [] and NO_CHECK_FLAGS in report.markdown.read_text()
    report = write_report(read_run(write_run(tmp_path / "slowed.json", [slowed])), tmp_path / "s", progress=False)
    assert [f.record.info.mode for f in report.flags] == [rec.CHECK_VS_FLOOR]
    assert CHECK_FLAG_TEXT in report.markdown.read_text()
    gate = compare_runs(read_run(tmp_path / "control.json"), read_run(tmp_path / "slowed.json"),
                        [parse_fail_on("ratio:25%")])
    assert not gate.ok


# ---------------------------------------------------------------- under pytest-benchmark itself

BENCH_TEST = textwrap.dedent("""
    import time
    from dataclasses import dataclass

    from parity.bench.checkcost import CostSubject, time_check_against_floor
    from parity.tolerances import dtype_from_name
    from parity.zoo import get_family

    ORDER = []

    @dataclass
    class Passed:
        ok: bool = True

    def check(subject):
        ORDER.append("C")
        time.sleep(0.02)
        return Passed()

    def floor(subject):
        ORDER.append("F")
        time.sleep(0.01)

    def test_check(benchmark, tmp_path):
        subject = CostSubject(get_family("qwenimage"), str(tmp_path), ("x",), dtype_from_name("float32"), "cpu", "tiny")
        time_check_against_floor(benchmark, subject, rounds=3, warmup=1, check_fn=check, floor_fn=floor)
        with open("order.txt", "w") as f:
            f.write("".join(ORDER))
""")


# make slow (7 s: an inner pytest-benchmark run); the cost bound and its control run by default
@pytest.mark.slow
def test_under_pytest_benchmark_the_stats_are_the_check_s_and_rounds_alternate(tmp_path):
    (tmp_path / "test_check_bench.py").write_text(BENCH_TEST)
    run_json = tmp_path / "run.json"
    # Not the xdist worker's variables: pytest-benchmark disables itself when it sees PYTEST_XDIST_WORKER.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_check_bench.py", f"--benchmark-json={run_json}", "-p", "no:xdist",
         "-p", "no:cacheprovider", "-p", "no:randomly", "--benchmark-enable", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    assert (tmp_path / "order.txt").read_text() == "FC" + "FCCFFC"
    (record,) = read_run(run_json).records
    assert record.stat("rounds") == 3
    assert record.stat("median") == pytest.approx(sorted(record.info.check_seconds)[1], rel=0.05, abs=0.002)
    assert record.info.ratio is not None and len(record.info.floor_seconds) == 3
