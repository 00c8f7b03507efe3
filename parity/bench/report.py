"""The benchmark report of one pytest-benchmark run: ``report.md``, a self-contained ``index.html``
and ``plots/*.png`` (latency, ratio to the baseline mode beside the FLOP floor, operations, memory, and
the check against its floor with the bound marked).

Plots use matplotlib's ``Figure`` directly (Agg, through savefig), never pyplot: no display, and no
global backend switch for whoever imported us.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.bench.checkreport import (
    CHECK_FLAG_TEXT,
    CHECK_SECTION,
    CHECK_TABLE,
    NO_CHECK_FLAGS,
    check_plot,
    check_records,
    check_rows,
    over_bound,
)
from parity.bench.groupreport import GROUP_NOTE, GROUP_SECTION, group_records, group_tables
from parity.bench.record import (
    BASE,
    CHECK,
    COMPILED_BASE,
    COMPILED_FUSED,
    FORWARD,
    FUSED,
    FUSED_RATIO_FLAG,
    FUSED_UNLOADED,
    HOTSWAP_READY,
    INTERLEAVED,
    OPERATION,
    OPERATIONS,
    PIPELINE,
    group_name,
)
from parity.bench.results import BenchRecord, BenchRun, format_seconds
from parity.errors import ParityInputError
from parity.runs.junit import JunitSummary

# Modes that run exactly the base arithmetic, so any ratio above the flag is overhead to explain.
FLAGGED_MODES = (FUSED, FUSED_UNLOADED, COMPILED_FUSED)
FLAG_TEXT = f"⚠ above {FUSED_RATIO_FLAG:g}"
LONG_WORK_SECONDS = 3.0  # plotting progress appears on stderr only once the work has taken this long
NO_FLAGS = f"No fused mode above {FUSED_RATIO_FLAG:g}× its baseline."
MIB = 2**20

Panel = tuple[str, str, str]  # family, size, device: one set of figures each


# ---------------------------------------------------------------- derived values


@dataclass(frozen=True)
class Flag:
    record: BenchRecord
    ratio: float
    bound: float = FUSED_RATIO_FLAG

    @property
    def text(self) -> str:
        return CHECK_FLAG_TEXT if self.record.info.kind == CHECK else FLAG_TEXT


def fused_flags(run: BenchRun) -> list[Flag]:
    """Every fused / fused+unloaded / compiled-fused benchmark slower than its baseline beyond the flag."""
    ratios = run.ratios()
    return [
        Flag(r, ratios[r.fullname]) for r in run.records
        if r.info is not None and r.info.mode in FLAGGED_MODES and ratios.get(r.fullname, 0.0) > FUSED_RATIO_FLAG
    ]


def _mode_key(mode: str) -> tuple[int, float, str]:
    """Reports list modes base, unfused-N, fused, fused+unloaded, compiled-…, then operations, then others."""
    fixed = {BASE: 0, FUSED: 2, FUSED_UNLOADED: 3, COMPILED_BASE: 4, COMPILED_FUSED: 5}
    if mode in fixed:
        return fixed[mode], 0, mode
    number = re.search(r"(\d+)$", mode)
    n = float(number.group(1)) if number else 0.0
    if mode.startswith("unfused-"):
        return 1, n, mode
    if mode.startswith(HOTSWAP_READY):
        return 6, n, mode
    if mode in OPERATIONS:
        return 7, OPERATIONS.index(mode), mode
    return 8, 0, mode


def _label(r: BenchRecord) -> str:
    """x-axis / table label of a record: its mode, with the LoRA rank when it has one."""
    return r.info.mode + (f" r{r.info.rank}" if r.info.rank else "")


def _sort_key(r: BenchRecord) -> tuple:
    return (*_mode_key(r.info.mode), r.info.rank, r.info.dtype, r.fullname)


def _panels(run: BenchRun) -> dict[Panel, list[BenchRecord]]:
    panels: dict[Panel, list[BenchRecord]] = {}
    for r in run.records:
        if r.info is not None and r.info.kind not in (CHECK, INTERLEAVED):  # those have their own sections
            panels.setdefault((r.info.family, r.info.size, r.info.device), []).append(r)
    return {k: sorted(v, key=_sort_key) for k, v in sorted(panels.items())}


def _versions(run: BenchRun) -> dict[str, str]:
    seen: dict[str, list[str]] = {}
    for r in run.records:
        for package, version in (r.info.versions if r.info else {}).items():
            if str(version) not in seen.setdefault(package, []):
                seen[package].append(str(version))
    return {package: " / ".join(values) for package, values in seen.items()}


# ---------------------------------------------------------------- plots


def _figure(n_axes: int, n_labels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * n_labels + 2.0), 3.6 * n_axes), layout="constrained")
    axes = fig.subplots(n_axes, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _time_unit(seconds: float) -> tuple[str, float]:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return unit, scale
    return "ns", 1e-9


def _dtypes(records: Sequence[BenchRecord]) -> list[str]:
    return sorted({r.info.dtype for r in records if r.info is not None})


def _bars(ax: Any, records: Sequence[BenchRecord], value: Callable[[BenchRecord], float | None],
          err: Callable[[BenchRecord], tuple[float, float]] | None = None) -> tuple[list[str], float, list[Any]]:
    """Grouped bars: one group per label, one bar per dtype. Returns the labels, the bar width and the bars."""
    labels = list(dict.fromkeys(_label(r) for r in records))
    dtypes = _dtypes(records)
    width = 0.8 / max(1, len(dtypes))
    containers = []
    for i, dtype in enumerate(dtypes):
        xs, ys, lo, hi = [], [], [], []
        for r in records:
            v = value(r)
            if r.info.dtype != dtype or v is None:
                continue
            xs.append(labels.index(_label(r)) + (i - (len(dtypes) - 1) / 2) * width)
            ys.append(v)
            e = err(r) if err else (0.0, 0.0)
            lo.append(e[0])
            hi.append(e[1])
        if xs:
            containers.append(ax.bar(xs, ys, width, label=dtype, yerr=[lo, hi] if err else None, capsize=3))
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    if dtypes:
        ax.legend(fontsize="small")
    return labels, width, containers


def _iqr_error(scale: float) -> Callable[[BenchRecord], tuple[float, float]]:
    def err(r: BenchRecord) -> tuple[float, float]:
        median = r.stat("median")
        q1, q3 = r.stats.get("q1"), r.stats.get("q3")
        if q1 is None or q3 is None:  # older files: centre the IQR on the median
            q1, q3 = median - r.stat("iqr") / 2, median + r.stat("iqr") / 2
        return max(0.0, median - q1) / scale, max(0.0, q3 - median) / scale

    return err


def _latency_axes(ax: Any, records: Sequence[BenchRecord], title: str) -> None:
    unit, scale = _time_unit(max(r.stat("median") for r in records))
    _bars(ax, records, lambda r: r.stat("median") / scale, _iqr_error(scale))
    ax.set_ylabel(f"median [{unit}] (bars: IQR)")
    ax.set_title(title)


def _kinds(records: Sequence[BenchRecord], kinds: Sequence[str]) -> list[tuple[str, list[BenchRecord]]]:
    return [(k, rs) for k in kinds if (rs := [r for r in records if r.info.kind == k])]


def _latency_plot(panel: Panel, records: Sequence[BenchRecord], ratios: dict[str, float]) -> Any | None:
    parts = _kinds(records, (FORWARD, PIPELINE))
    if not parts:
        return None
    fig, axes = _figure(len(parts), max(len(rs) for _, rs in parts))
    for ax, (kind, rs) in zip(axes, parts):
        _latency_axes(ax, rs, f"{'/'.join(panel)}: {kind} latency per mode")
    return fig


def _ratio_plot(panel: Panel, records: Sequence[BenchRecord], ratios: dict[str, float]) -> Any | None:
    parts = [(k, [r for r in rs if r.fullname in ratios and r.info.mode not in (BASE, COMPILED_BASE)])
             for k, rs in _kinds(records, (FORWARD, PIPELINE))]
    parts = [(k, rs) for k, rs in parts if rs]
    if not parts:
        return None
    fig, axes = _figure(len(parts), max(len(rs) for _, rs in parts))
    for ax, (kind, rs) in zip(axes, parts):
        labels, width, bars = _bars(ax, rs, lambda r: ratios[r.fullname])
        for container in bars:
            ax.bar_label(container, fmt="%.3f", fontsize=7)
        dtypes = _dtypes(rs)
        floors = [(labels.index(_label(r)) + (dtypes.index(r.info.dtype) - (len(dtypes) - 1) / 2) * width,
                   r.flop_floor) for r in rs if r.flop_floor is not None]
        if floors:
            ax.scatter(*zip(*floors), marker="_", s=400, color="black", linewidths=2, zorder=3, label="FLOP floor")
        # Ratios sit near 1: an axis from 0 would hide the few percent that matter.
        shown = [ratios[r.fullname] for r in rs] + [f for _, f in floors] + [1.0, FUSED_RATIO_FLAG]
        ax.set_ylim(min(shown) * 0.95, max(shown) * 1.05)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.axhline(FUSED_RATIO_FLAG, color="red", linestyle="--", linewidth=0.8,
                   label=f"fused flag {FUSED_RATIO_FLAG:g}")
        ax.set_ylabel("median / baseline median")
        ax.set_title(f"{'/'.join(panel)}: {kind} ratio to base (compiled: to compiled-base)")
        ax.legend(fontsize="small")
    return fig


def _operations_plot(panel: Panel, records: Sequence[BenchRecord], ratios: dict[str, float]) -> Any | None:
    rs = [r for r in records if r.info.kind == OPERATION]
    if not rs:
        return None
    fig, (ax,) = _figure(1, len(rs))
    _latency_axes(ax, rs, f"{'/'.join(panel)}: LoRA operations")
    medians = [r.stat("median") for r in rs if r.stat("median") > 0]
    if medians and max(medians) / min(medians) > 100:  # load vs set_adapters spans decades
        ax.set_yscale("log")
    return fig


def _memory_plot(panel: Panel, records: Sequence[BenchRecord], ratios: dict[str, float]) -> Any | None:
    parts = [(k, [r for r in rs if r.info.peak_memory_bytes is not None])
             for k, rs in _kinds(records, (FORWARD, PIPELINE, OPERATION))]
    parts = [(k, rs) for k, rs in parts if rs]
    if not parts:
        return None
    fig, axes = _figure(len(parts), max(len(rs) for _, rs in parts))
    for ax, (kind, rs) in zip(axes, parts):
        _bars(ax, rs, lambda r: r.info.peak_memory_bytes / MIB)
        kinds = sorted({r.info.memory_kind for r in rs if r.info.memory_kind})
        ax.set_ylabel(f"peak [MiB] ({', '.join(kinds) or 'unknown'})")
        ax.set_title(f"{'/'.join(panel)}: {kind} peak memory")
    return fig


PLOTS = (("latency", _latency_plot), ("ratio", _ratio_plot), ("operations", _operations_plot),
         ("memory", _memory_plot))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class _LateProgress:
    """``[i/n] label`` on stderr, but only once the work has run longer than LONG_WORK_SECONDS."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.start = total, enabled, 0, time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled and time.perf_counter() - self.start > LONG_WORK_SECONDS:
            print(f"[{self.done}/{self.total}] {label}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tables


def markdown_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub markdown table; the first row is the header."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(rows[0]), "|" + "---|" * len(rows[0]), *(line(r) for r in rows[1:])]


def _html_cell(text: str) -> str:
    flagged = text in (FLAG_TEXT, CHECK_FLAG_TEXT)
    return f"<td class='flag'>{html.escape(text)}</td>" if flagged else f"<td>{html.escape(text)}</td>"


def _html_table(rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _group_rows(records: Sequence[BenchRecord], ratios: dict[str, float]) -> list[list[str]]:
    rows = [["mode", "rank", "dtype", "median", "IQR", "rounds", "ratio to baseline", "flop floor", "memory", "flag"]]
    for r in records:
        info = r.info
        ratio = ratios.get(r.fullname)
        flagged = info.mode in FLAGGED_MODES and ratio is not None and ratio > FUSED_RATIO_FLAG
        memory = "-" if info.peak_memory_bytes is None else f"{info.peak_memory_bytes / MIB:.1f} MiB"
        rows.append([info.mode, str(info.rank or "-"), info.dtype, format_seconds(r.stat("median")),
                     format_seconds(r.stat("iqr")), str(int(r.stat("rounds"))), _ratio(ratio),
                     _ratio(info.flop_floor), memory, FLAG_TEXT if flagged else ""])
    return rows


def _other_rows(records: Sequence[BenchRecord]) -> list[list[str]]:
    rows = [["benchmark", "group", "median", "IQR", "rounds"]]
    for r in records:
        rows.append([r.fullname, r.group or "-", format_seconds(r.stat("median")), format_seconds(r.stat("iqr")),
                     str(int(r.stat("rounds")))])
    return rows


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    """What was written, and what the reader must look at."""

    markdown: Path
    html: Path
    plots: list[Path] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)


@dataclass
class _Section:
    title: str
    plots: list[tuple[str, Path, bytes]]  # caption, file, PNG
    tables: list[tuple[str, list[list[str]]]]  # heading, rows


def _header(run: BenchRun) -> list[tuple[str, str]]:
    cpu = run.machine_info.get("cpu") if isinstance(run.machine_info.get("cpu"), dict) else {}
    python = " ".join(str(run.machine_info.get(k, "")) for k in ("python_implementation", "python_version")).strip()
    devices = sorted({r.info.device_name for r in run.records if r.info is not None})
    commit = run.commit_info
    items = [
        ("run", run.datetime or "unknown"),
        ("file", run.path),
        ("cpu", str(cpu.get("brand_raw") or "unknown")),
        ("python", python or "unknown"),
        ("devices", ", ".join(devices) or "unknown"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(_versions(run).items())) or "unknown"),
        ("pytest-benchmark", run.version or "unknown"),
    ]
    if commit.get("id"):
        dirty = " (dirty)" if commit.get("dirty") else ""
        items.append(("commit", f"{commit['id']}{dirty} {commit.get('branch', '')}".strip()))
    return items


def _flag_lines(flags: Sequence[Flag]) -> list[str]:
    return [f"{group_name(f.record.info)} {f.record.info.mode}: ratio {f.ratio:.3f} ({f.text}) — "
            f"{f.record.fullname}" for f in flags]


def _no_flag_lines(run: BenchRun) -> list[str]:
    """What the flags section says when nothing is flagged, per kind of flag the run could raise."""
    return [NO_FLAGS] + ([NO_CHECK_FLAGS] if check_records(run) else [])


def _junit_lines(junit: JunitSummary) -> list[str]:
    counts = f"{junit.passed} passed, {junit.failed} failed, {junit.skipped} skipped, {junit.xfailed} xfailed"
    return [counts, *(f"failed: {name}" for name in junit.failing)]


def _markdown(run: BenchRun, sections: Sequence[_Section], flags: Sequence[Flag], junit: JunitSummary | None,
              out: Path) -> str:
    lines = ["# Benchmark report", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(run)]
    lines += ["", "## Flags", ""]
    lines += [f"- {line}" for line in _flag_lines(flags)] or [" ".join(_no_flag_lines(run))]
    if junit is not None:
        lines += ["", f"## Tests ({junit.path})", "", *(f"- {line}" for line in _junit_lines(junit))]
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        lines += [f"![{caption}]({path.relative_to(out).as_posix()})" for caption, path, _ in s.plots]
        for heading, rows in s.tables:
            lines += ["", f"### {heading}", "", *markdown_table(rows)]
    return "\n".join(lines) + "\n"


CSS = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
       "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.flag{color:#b00;font-weight:bold}"
       "img{max-width:100%;display:block;margin:.5em 0}")


def _html(run: BenchRun, sections: Sequence[_Section], flags: Sequence[Flag], junit: JunitSummary | None) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Benchmark report</title>",
             f"<style>{CSS}</style></head><body><h1>Benchmark report</h1><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in _header(run)]
    parts.append("</ul><h2>Flags</h2>")
    if flags:
        parts.append("<ul>" + "".join(f"<li class='flag'>{e(line)}</li>" for line in _flag_lines(flags)) + "</ul>")
    else:
        parts.append(f"<p>{e(' '.join(_no_flag_lines(run)))}</p>")
    if junit is not None:
        parts.append(f"<h2>Tests ({e(junit.path)})</h2><ul>"
                     + "".join(f"<li>{e(line)}</li>" for line in _junit_lines(junit)) + "</ul>")
    for s in sections:
        parts.append(f"<h2>{e(s.title)}</h2>")
        parts += [f"<img alt='{e(caption)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                  for caption, _, png in s.plots]
        parts += [f"<h3>{e(heading)}</h3>{_html_table(rows)}" for heading, rows in s.tables]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(run: BenchRun, out: str | os.PathLike, junit: JunitSummary | None = None,
                 progress: bool = True) -> Report:
    """Write ``report.md``, ``index.html`` and ``plots/*.png`` under ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParityInputError("exists and is not a directory", path=str(out))
    (out / "plots").mkdir(parents=True, exist_ok=True)
    ratios = run.ratios()
    panels = _panels(run)
    steps = _LateProgress(len(panels) * len(PLOTS), progress)
    sections, plots = [], []
    checks = check_records(run)
    if checks:
        section = _Section(CHECK_SECTION, [], [(CHECK_TABLE, check_rows(checks))])
        fig = check_plot(checks)
        if fig is not None:
            path = out / "plots" / "check-vs-floor.png"
            png = _png(fig)
            path.write_bytes(png)
            section.plots.append(("check against its floor", path, png))
            plots.append(path)
        sections.append(section)
    grouped = group_records(run)
    if grouped:
        sections.append(_Section(GROUP_SECTION, [], [("how to read it", [[""], [GROUP_NOTE]])]
                                 + group_tables(grouped)))
    for panel, records in panels.items():
        section = _Section("/".join(panel), [], [])
        for name, plot in PLOTS:
            steps.step(f"{name} plot of {'/'.join(panel)}")
            fig = plot(panel, records, ratios)
            if fig is None:
                continue
            path = out / "plots" / f"{name}-{_slug('-'.join(panel))}.png"
            png = _png(fig)
            path.write_bytes(png)
            section.plots.append((f"{name} {'/'.join(panel)}", path, png))
            plots.append(path)
        groups: dict[str, list[BenchRecord]] = {}
        for r in records:
            groups.setdefault(group_name(r.info), []).append(r)
        section.tables = [(g, _group_rows(rs, ratios)) for g, rs in groups.items()]
        sections.append(section)
    other = [r for r in run.records if r.info is None]
    if other:
        sections.append(_Section("other", [], [("benchmarks without a BenchInfo in extra_info", _other_rows(other))]))
    flags = fused_flags(run) + [Flag(r, ratio, bound) for r, ratio, bound in over_bound(run)]
    report = Report(out / "report.md", out / "index.html", plots, flags)
    report.markdown.write_text(_markdown(run, sections, flags, junit, out), encoding="utf-8")
    report.html.write_text(_html(run, sections, flags, junit), encoding="utf-8")
    return report
