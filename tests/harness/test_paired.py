"""Paired timing (parity/bench/paired.py) and interval judging (parity/bench/compare.py): rounds in a
fresh order that reach every target, the fastest call of a round kept, warm-up rounds dropped; a ratio
regresses only when its whole interval moved past the gate, and a gate finer than the noise floor
judges nothing."""

from __future__ import annotations

import pytest

from parity.bench.compare import BELOW_NOISE, FASTER, OK, REGRESSION, judge_interval, parse_fail_on
from parity.bench.paired import RoundRobin, summarize


def test_every_round_times_every_target_in_a_fresh_order():
    calls: list[str] = []
    robin = RoundRobin({name: (lambda n=name: calls.append(n)) for name in "abcd"}, seed=1)
    for _ in range(20):
        robin()
    assert all(sorted(order) == list("abcd") for order in robin.orders)
    assert len({tuple(order) for order in robin.orders}) > 5  # drawn again each round, not fixed
    assert all(len(seconds) == 20 for seconds in robin.seconds.values())


def test_warm_up_rounds_are_dropped_and_a_round_keeps_each_targets_fastest_call():
    delays = iter([5.0, 1.0, 3.0] * 2)  # three passes of one target; its fastest is kept

    clock = {"t": 0.0}

    def fake_target():
        clock["t"] += next(delays)

    robin = RoundRobin({"x": fake_target}, warmup=1, repeats=3)
    import parity.bench.paired as paired

    original = paired.time.perf_counter
    paired.time.perf_counter = lambda: clock["t"]
    try:
        robin()  # warm-up
        robin()
    finally:
        paired.time.perf_counter = original
    assert robin.seconds["x"] == [1.0]


def test_a_constant_pair_has_a_point_interval_and_no_spread():
    summary = summarize([2.0] * 10, [1.0] * 10)
    assert (summary.median, summary.low, summary.high) == (2.0, 2.0, 2.0)
    assert summarize([1.0] * 10, [1.0] * 10).spread == 0.0


GATE = [parse_fail_on("ratio:10%")]


@pytest.mark.parametrize(("old", "new", "noise", "verdict"), [
    ((1.00, 0.98, 1.02), (1.25, 1.22, 1.28), 0.02, REGRESSION),  # the whole interval moved up by > 10%
    ((1.00, 0.98, 1.02), (1.12, 1.05, 1.20), 0.02, OK),  # the median moved 12%, the interval not wholly
    ((1.00, 0.98, 1.02), (0.80, 0.78, 0.82), 0.02, FASTER),
    ((1.00, 0.80, 1.20), (1.40, 1.30, 1.50), 0.15, BELOW_NOISE),  # a 10% gate under a 15% noise floor
])
def test_a_ratio_regresses_only_when_its_interval_moved_past_the_gate(old, new, noise, verdict):
    assert judge_interval(old, new, noise, GATE)[1] == verdict


def test_a_regression_names_the_range_it_grew_by():
    failures, _ = judge_interval((1.0, 0.98, 1.02), (1.25, 1.22, 1.28), 0.02, GATE)
    assert failures == ("ratio +19.6%..+30.6% > 10%",)


# ---------------------------------------------------------------- a run with a group: superseded ratios, report


def _group(fused: float, noise: float = 0.02, sequential_fused: float = 1.0):
    from parity.bench import record as rec
    from tests.support.benchruns import bench, info

    group = info("group", kind=rec.INTERLEAVED, call=rec.FORWARD, noise_floor=noise,
                 mode_seconds={m: [0.01] * 5 for m in (rec.BASE, rec.BASE_AGAIN, "unfused-1", rec.FUSED)},
                 mode_ratios={rec.BASE_AGAIN: [1.0, 1 - noise, 1 + noise], "unfused-1": [1.3, 1.28, 1.32],
                              rec.FUSED: [fused, fused - 0.01, fused + 0.01]},
                 mode_flop_floors={rec.BASE: 1.0, rec.BASE_AGAIN: 1.0, "unfused-1": 1.03, rec.FUSED: 1.0})
    # the same family's modes timed one after another, whose fused ratio a slow spell distorted
    return [bench(group, 0.04), bench(info(rec.BASE), 0.010), bench(info(rec.FUSED), 0.010 * sequential_fused)]


def test_a_sequential_ratio_is_not_gated_where_its_group_was_timed_together(tmp_path, capsys):
    from parity.cli import main
    from tests.support.benchruns import write_run

    old = write_run(tmp_path / "old.json", _group(1.0))
    new = write_run(tmp_path / "new.json", _group(1.0, sequential_fused=8.6))  # issue 17's false 8.6x
    assert main(["compare", str(old), str(new), "--fail-on", "ratio:10%"]) == 0, capsys.readouterr().out
    slow = write_run(tmp_path / "slow.json", _group(1.25))
    assert main(["compare", str(old), str(slow), "--fail-on", "ratio:10%"]) == 1
    assert "::fused" in capsys.readouterr().out


def test_the_report_shows_each_ratio_with_its_interval_beside_its_flop_floor_and_the_noise_floor(tmp_path):
    from parity.bench.report import write_report
    from parity.bench.results import read_run
    from tests.support.benchruns import write_run

    run = read_run(write_run(tmp_path / "run.json", _group(1.0, noise=0.031)))
    text = write_report(run, tmp_path / "report", progress=False).markdown.read_text()
    assert "noise floor 3.1%" in text
    assert "| unfused-1 | 1.300 [1.280, 1.320] | 1.030 | above the FLOP floor |" in text
