"""Run-vs-run comparison of two pytest-benchmark runs, and the regression gate over it.

Gates mirror pytest-benchmark's ``--benchmark-compare-fail``: ``STAT:N%`` fails when
``new/old - 1 > N%``, ``STAT:X`` / ``STAT:Xs`` when ``new - old > X`` seconds. ``ratio:N%`` instead
compares each benchmark's within-run ratio to its baseline mode (``BenchRun.ratios``; a check against
its floor: check/floor) between the runs: on a noisy shared runner every absolute time may move
together, the ratio does not.

Pure functions: ``compare_runs`` returns a ``Comparison``; callers (the CLI, an upgrade gate comparing
a run under old against new diffusers/peft) format it and pick the exit code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from parity.bench.results import (
    MODE_SEPARATOR,
    BenchRecord,
    BenchRun,
    Interval,
    format_seconds,
    interleaved_groups,
    interleaved_ratios,
)
from parity.bench import record as rec
from parity.errors import ParityInputError

TIME_STATS = ("min", "max", "mean", "median", "iqr", "stddev")
RATIO = "ratio"
OK, REGRESSION, FASTER, ONLY_OLD, ONLY_NEW = "ok", "REGRESSION", "faster", "only-in-old", "only-in-new"
BELOW_NOISE = "below-noise"  # a ratio gate finer than the runs' noise floor: not judged (issue 17)
NOT_JUDGED = "-"  # matched, but no --fail-on gate to judge it by
SHOWN_REGRESSIONS = 5  # names on the verdict line; the table lists every one

_FAIL_ON = re.compile(
    r"^(?P<stat>[a-z]+):(?:(?P<percent>[0-9]*\.?[0-9]+)%|(?P<seconds>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)s?)$"
)


@dataclass(frozen=True)
class FailOn:
    """One gate: ``stat`` is a pytest-benchmark time stat or ``ratio``."""

    stat: str
    threshold: float  # a fraction when relative (10% -> 0.10), else seconds
    relative: bool
    text: str

    def change(self, old: float, new: float) -> float:
        """What the threshold is held against: relative or absolute growth from old to new."""
        if not self.relative:
            return new - old
        if old == 0:
            return 0.0 if new == 0 else float("inf")
        return new / old - 1.0


def parse_fail_on(text: str) -> FailOn:
    """``median:10%``, ``min:0.001`` or ``min:0.001s`` (seconds), ``ratio:5%``; ValueError otherwise."""
    m = _FAIL_ON.match(text.strip())
    if m is None or m["stat"] not in (*TIME_STATS, RATIO):
        raise ValueError(f"--fail-on {text!r}: expected STAT:N% or STAT:SECONDS with STAT one of "
                         f"{', '.join(TIME_STATS)}, or ratio:N%")
    if m["percent"] is not None:
        return FailOn(m["stat"], float(m["percent"]) / 100.0, True, text.strip())
    if m["stat"] == RATIO:
        raise ValueError(f"--fail-on {text!r}: ratio takes a percentage, e.g. ratio:5%")
    return FailOn(m["stat"], float(m["seconds"]), False, text.strip())


@dataclass(frozen=True)
class Row:
    """One benchmark, matched by fullname. ``old``/``new`` are None when it is in one run only."""

    fullname: str
    label: str  # what the table shows: the short name where unique, else the fullname
    old: BenchRecord | None
    new: BenchRecord | None
    stat: str  # the time stat shown in the old/new columns
    old_ratio: float | None = None  # within-run ratio to the baseline mode
    new_ratio: float | None = None
    failures: tuple[str, ...] = ()  # one text per gate it fails
    verdict: str = OK
    # an interleaved group's mode ratio (fullname::mode): its interval in each run, and the larger of
    # the two runs' noise floors (parity/bench/groups.py)
    old_interval: Interval | None = None
    new_interval: Interval | None = None
    noise_floor: float | None = None

    @property
    def old_value(self) -> float | None:
        return self.old.stat(self.stat) if self.old is not None else None

    @property
    def new_value(self) -> float | None:
        return self.new.stat(self.stat) if self.new is not None else None

    @property
    def change(self) -> float | None:
        """new/old of the shown stat."""
        if self.old_value is None or self.new_value is None or self.old_value == 0:
            return None
        return self.new_value / self.old_value


@dataclass(frozen=True)
class Comparison:
    old_path: str
    new_path: str
    old_devices: tuple[str, ...]
    new_devices: tuple[str, ...]
    checks: tuple[FailOn, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == REGRESSION]

    @property
    def below_noise(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == BELOW_NOISE]

    @property
    def ok(self) -> bool:
        return not self.regressions

    @property
    def shows_ratios(self) -> bool:
        return any(c.stat == RATIO for c in self.checks)


def check_same_device(old: BenchRun, new: BenchRun) -> None:
    """Timings from different devices say nothing about a regression: refuse them."""
    if old.devices() != new.devices():
        raise ParityInputError(
            f"runs are from different devices: {old.path}: {'; '.join(old.devices())} vs "
            f"{new.path}: {'; '.join(new.devices())} (pass --allow-cross-device to compare anyway)"
        )


def _judge(row: Row, checks: Sequence[FailOn]) -> tuple[tuple[str, ...], str]:
    """The row against every gate. A ratio with an interval in both runs (a group's mode) regresses only
    when its whole interval grew beyond the gate (the new interval's low end over the old one's high end)
    and is faster only when its whole interval fell; a gate finer than the row's noise floor judges
    nothing. A ratio without one, and a time stat, compare the two values."""
    if not checks:
        return (), NOT_JUDGED
    failures, faster, unjudged = [], False, False
    for check in checks:
        limit = check.text.split(":", 1)[1]
        if check.stat == RATIO and row.old_interval is not None and row.new_interval is not None:
            if check.threshold < (row.noise_floor or 0.0):
                unjudged = True
                continue
            old, new = row.old_interval, row.new_interval
            least, most = new[1] / old[2] - 1.0, new[2] / old[1] - 1.0
            if least > check.threshold:
                failures.append(f"ratio {least:+.1%}..{most:+.1%} > {limit}")
            faster = faster or most < -check.threshold
            continue
        if check.stat == RATIO:
            if row.old_ratio is None or row.new_ratio is None:
                continue  # a baseline mode, an operation or a foreign benchmark: no ratio to gate
            a, b = row.old_ratio, row.new_ratio
        else:
            a, b = row.old.stat(check.stat), row.new.stat(check.stat)
        change = check.change(a, b)
        if change > check.threshold:
            grew = f"{change:+.1%}" if check.relative else f"+{format_seconds(change)}"
            failures.append(f"{check.stat} {grew} > {limit}")
        faster = faster or change < -check.threshold
    if failures:
        return tuple(failures), REGRESSION
    if unjudged:
        return (f"the gate is finer than the noise floor {row.noise_floor:.1%}",), BELOW_NOISE
    return (), FASTER if faster else OK


def judge_interval(old: Interval, new: Interval, noise_floor: float,
                   checks: Sequence[FailOn]) -> tuple[tuple[str, ...], str]:
    """One paired ratio between two runs against the ratio gates (``_judge``)."""
    row = Row("", "", None, None, "median", old_interval=old, new_interval=new, noise_floor=noise_floor)
    return _judge(row, [c for c in checks if c.stat == RATIO])


def _interval_rows(old: BenchRun, new: BenchRun, checks: Sequence[FailOn]) -> list[Row]:
    """One row per mode ratio of each interleaved group, judged by its interval."""
    old_by, new_by = old.by_fullname(), new.by_fullname()
    old_iv, new_iv = interleaved_ratios(old.records), interleaved_ratios(new.records)
    rows = []
    for key in list(old_iv) + [k for k in new_iv if k not in old_iv]:
        fullname, mode = key.rsplit(MODE_SEPARATOR, 1)  # pytest's fullnames hold "::" themselves
        o, n = old_by.get(fullname), new_by.get(fullname)
        a, b = old_iv.get(key), new_iv.get(key)
        noise = max((r.info.noise_floor or 0.0 for r in (o, n) if r is not None and r.info is not None), default=0.0)
        label = f"{(o or n).name}{MODE_SEPARATOR}{mode}"
        row = Row(key, label, o, n, "median", a[0] if a else None, b[0] if b else None,
                  old_interval=a, new_interval=b, noise_floor=noise)
        if a is None or b is None:
            rows.append(replace(row, verdict=ONLY_NEW if a is None else ONLY_OLD))
            continue
        failures, verdict = _judge(row, [c for c in checks if c.stat == RATIO])  # its stats are whole rounds
        rows.append(replace(row, failures=failures, verdict=verdict))
    return rows


def _superseded(record: BenchRecord | None, groups: set) -> bool:
    """A per-mode forward/pipeline benchmark whose group was also timed interleaved in both runs: its
    ratio, from modes timed one after another, is not gated (the interleaved one is)."""
    info = record.info if record is not None else None
    return info is not None and (info.family, info.size, info.dtype, info.device, info.kind) in groups


def _labels(fullnames: Sequence[str], records: dict[str, BenchRecord]) -> dict[str, str]:
    names = [records[f].name for f in fullnames]
    return {f: (n if names.count(n) == 1 else f) for f, n in zip(fullnames, names)}


def compare_runs(old: BenchRun, new: BenchRun, checks: Sequence[FailOn] = (),
                 allow_cross_device: bool = False) -> Comparison:
    """Match benchmarks by fullname (old's order, then those only in new) and judge each against every
    gate; without gates nothing regresses and the rows only show the change."""
    if not allow_cross_device:
        check_same_device(old, new)
    old_by, new_by = old.by_fullname(), new.by_fullname()
    fullnames = list(old_by) + [f for f in new_by if f not in old_by]
    labels = _labels(fullnames, {**new_by, **old_by})
    time_stats = [c.stat for c in checks if c.stat != RATIO]
    stat = time_stats[0] if time_stats else "median"
    old_ratios, new_ratios = old.ratios(), new.ratios()
    groups = interleaved_groups(old.records) & interleaved_groups(new.records)
    rows = []
    for f in fullnames:
        o, n = old_by.get(f), new_by.get(f)
        if (o or n).info is not None and (o or n).info.kind == rec.INTERLEAVED:
            continue  # judged per mode ratio below
        row = Row(f, labels[f], o, n, stat, old_ratios.get(f), new_ratios.get(f))
        if o is None or n is None:
            rows.append(replace(row, verdict=ONLY_NEW if o is None else ONLY_OLD))
            continue
        gated = [c for c in checks if not (c.stat == RATIO and _superseded(o, groups))]
        failures, verdict = _judge(row, gated)
        rows.append(replace(row, failures=failures, verdict=verdict))
    rows += _interval_rows(old, new, checks)
    return Comparison(old.path, new.path, old.devices(), new.devices(), tuple(checks), rows)


def _ratio_cell(value: float | None, interval: Interval | None = None) -> str:
    if interval is not None:
        return f"{interval[0]:.3f} [{interval[1]:.3f}, {interval[2]:.3f}]"
    return "-" if value is None else f"{value:.3f}"


def table_cells(comparison: Comparison) -> list[list[str]]:
    """The per-benchmark table as strings, header first: for the text table and compare.md alike."""
    stat = comparison.rows[0].stat if comparison.rows else "median"
    header = ["benchmark", f"old {stat}", f"new {stat}", "new/old"]
    if comparison.shows_ratios:
        header += ["old ratio", "new ratio"]
    rows = [header + ["verdict"]]
    for r in comparison.rows:
        cells = [r.label, format_seconds(r.old_value), format_seconds(r.new_value),
                 "-" if r.change is None else f"{r.change:.3f}"]
        if comparison.shows_ratios:
            cells += [_ratio_cell(r.old_ratio, r.old_interval), _ratio_cell(r.new_ratio, r.new_interval)]
        verdict = r.verdict + (f" ({'; '.join(r.failures)})" if r.failures else "")
        rows.append(cells + [verdict])
    return rows


def verdict_line(comparison: Comparison) -> str:
    gates = ", ".join(c.text for c in comparison.checks)
    if not comparison.checks:
        return "no --fail-on gate given: nothing counts as a regression"
    regressions = comparison.regressions
    unjudged = comparison.below_noise
    noise = (f"; {len(unjudged)} ratio(s) not judged: {gates} is finer than the noise floor "
             f"{max(r.noise_floor or 0.0 for r in unjudged):.1%}") if unjudged else ""
    if not regressions:
        return f"no regression beyond {gates}{noise}"
    names = ", ".join(r.label for r in regressions[:SHOWN_REGRESSIONS])
    more = len(regressions) - SHOWN_REGRESSIONS
    noun = "regression" if len(regressions) == 1 else "regressions"
    return f"{len(regressions)} {noun} beyond {gates}: {names}" + (f" (+{more} more)" if more > 0 else "") + noise
