"""The report's section on the check against its floor (parity/bench/checkcost.py): check and floor
medians side by side, each round's ratio with their median and its interval, the bound marked, and
which checks are over it (parity/bench/report.py lists those among its flags).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from parity.bench.record import CHECK, CHECK_RATIO_BOUND
from parity.bench.results import BenchRecord, BenchRun, format_seconds

CHECK_FLAG_TEXT = f"⚠ above {CHECK_RATIO_BOUND:g}"
NO_CHECK_FLAGS = f"No check above {CHECK_RATIO_BOUND:g}× its floor."
CHECK_SECTION = f"check against its floor (bound {CHECK_RATIO_BOUND:g}×)"
CHECK_TABLE = "check and floor timed in the same rounds; the ratio is the median of the per-round ratios"


def check_records(run: BenchRun) -> list[BenchRecord]:
    return sorted((r for r in run.records if r.info is not None and r.info.kind == CHECK),
                  key=lambda r: (r.info.family, r.info.size, r.info.device, r.info.dtype, r.fullname))


def bound_of(r: BenchRecord) -> float:
    """The bound the benchmark was recorded with: a run is judged by the rule it ran under."""
    return float(r.info.ratio_bound or CHECK_RATIO_BOUND)


def over_bound(run: BenchRun) -> list[tuple[BenchRecord, float, float]]:
    """(record, median ratio, bound) of every check whose median ratio to its floor is above its bound."""
    ratios = run.ratios()
    return [(r, ratios[r.fullname], bound_of(r)) for r in check_records(run)
            if r.fullname in ratios and ratios[r.fullname] > bound_of(r)]


def round_ratios(r: BenchRecord) -> list[float]:
    checks, floors = r.info.check_seconds or [], r.info.floor_seconds or []
    return [c / f for c, f in zip(checks, floors) if f > 0]


def _label(r: BenchRecord) -> str:
    return f"{r.info.family}/{r.info.size}/{r.info.dtype}/{r.info.device}"


def _floor_median(r: BenchRecord) -> float | None:
    return statistics.median(r.info.floor_seconds) if r.info.floor_seconds else None


def check_plot(records: Sequence[BenchRecord]) -> Any | None:
    """Check and floor medians side by side, then each round's ratio, their median with its interval,
    and the bound; None when no record carries a ratio (a smoke run's)."""
    rs = [r for r in records if r.info.ratio is not None]
    if not rs:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.2 * len(rs) + 2.0), 7.2), layout="constrained")
    times, ratios = fig.subplots(2, 1)
    xs = list(range(len(rs)))
    floors = [_floor_median(r) for r in rs]
    times.bar([x - 0.2 for x in xs], [r.stat("median") for r in rs], 0.4, label="check")
    times.bar([x + 0.2 for x in xs], [math.nan if f is None else f for f in floors], 0.4,
              label="floor (from_pretrained + load + fuse + unfuse)")
    times.set_ylabel("median [s]")
    times.set_title("check and its floor, timed in the same rounds")
    times.legend(fontsize="small")
    medians = [float(r.info.ratio) for r in rs]
    low = [m - float(r.info.ratio_low if r.info.ratio_low is not None else m) for m, r in zip(medians, rs)]
    high = [float(r.info.ratio_high if r.info.ratio_high is not None else m) - m for m, r in zip(medians, rs)]
    bars = ratios.bar(xs, medians, 0.6, yerr=[low, high], capsize=3, color="lightsteelblue",
                      label="median of rounds (95% bootstrap interval)")
    ratios.bar_label(bars, fmt="%.2f", fontsize=7)
    for x, r in zip(xs, rs):
        per_round = round_ratios(r)
        ratios.scatter([x] * len(per_round), per_round, s=12, color="black", zorder=3,
                       label="one round" if x == 0 else None)
    bound = max(bound_of(r) for r in rs)
    ratios.axhline(1.0, color="grey", linewidth=0.8)
    ratios.axhline(bound, color="red", linestyle="--", linewidth=1.0, label=f"bound {bound:g}")
    shown = [*medians, *(m + h for m, h in zip(medians, high)), *(x for r in rs for x in round_ratios(r)), bound]
    ratios.set_ylim(0, max(shown) * 1.15)
    for ax in (times, ratios):
        ax.set_xticks(xs, [_label(r) for r in rs], rotation=30, ha="right")
        ax.set_xlim(-0.75, len(rs) - 0.25)  # one case would otherwise stretch its bars over the whole width
    ratios.set_ylabel("check / floor")
    ratios.set_title(f"check / floor per round (bound {bound:g})")
    ratios.legend(fontsize="small")
    return fig


def check_rows(records: Sequence[BenchRecord]) -> list[list[str]]:
    """The section's table, header first."""
    rows = [["family", "size", "dtype", "device", "check median", "floor median", "check/floor (median of rounds)",
             "95% interval", "per round", "rounds", "bound", "flag", "notes"]]
    for r in records:
        info = r.info
        interval = ("-" if info.ratio_low is None or info.ratio_high is None
                    else f"{info.ratio_low:.2f} – {info.ratio_high:.2f}")
        flagged = info.ratio is not None and info.ratio > bound_of(r)
        rows.append([info.family, info.size, info.dtype, info.device, format_seconds(r.stat("median")),
                     format_seconds(_floor_median(r)), "-" if info.ratio is None else f"{info.ratio:.2f}", interval,
                     ", ".join(f"{x:.2f}" for x in round_ratios(r)) or "-", str(int(r.stat("rounds"))),
                     f"{bound_of(r):g}", CHECK_FLAG_TEXT if flagged else "", info.notes or ""])
    return rows
