"""Reading a pytest-benchmark JSON file (``--benchmark-json``) into records the report and the run
comparison share.

pytest-benchmark owns the file layout (``machine_info``, ``commit_info``, ``benchmarks``,
``datetime``, ``version``; each benchmark ``group``/``name``/``fullname``/``extra_info``/``stats``);
this only validates it and reads our ``BenchInfo`` back out of ``extra_info``. A benchmark whose
``extra_info`` is not a ``BenchInfo`` (a foreign file) keeps ``info=None`` and still compares by
``fullname``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from parity.bench.record import CHECK, FORWARD, INTERLEAVED, KINDS, PIPELINE, BenchInfo, baseline_mode, group_name
from parity.errors import ParityInputError

# The stats every reader relies on; pytest-benchmark writes these since 3.x.
REQUIRED_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "rounds")
# BenchInfo fields without a default: extra_info with all of them is one of ours.
INFO_KEYS = tuple(f.name for f in fields(BenchInfo) if f.default is MISSING and f.default_factory is MISSING)


@dataclass(frozen=True)
class BenchRecord:
    """One benchmark: pytest-benchmark's name, group and stats, and our BenchInfo when present."""

    fullname: str
    name: str
    group: str | None
    stats: dict[str, float]
    info: BenchInfo | None
    extra_info: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str) -> float:
        return float(self.stats[name])

    @property
    def flop_floor(self) -> float | None:
        return self.info.flop_floor if self.info is not None else None


@dataclass(frozen=True)
class BenchRun:
    """One pytest-benchmark JSON file."""

    path: str
    records: list[BenchRecord]
    machine_info: dict[str, Any] = field(default_factory=dict)
    commit_info: dict[str, Any] = field(default_factory=dict)
    datetime: str | None = None
    version: str | None = None  # pytest-benchmark's

    def by_fullname(self) -> dict[str, BenchRecord]:
        return {r.fullname: r for r in self.records}

    def cpu_brand(self) -> str:
        cpu = self.machine_info.get("cpu")
        brand = cpu.get("brand_raw") if isinstance(cpu, dict) else None
        return str(brand or self.machine_info.get("processor") or self.machine_info.get("machine") or "unknown")

    def devices(self) -> tuple[str, ...]:
        """Which devices ran it: each benchmark's ``device_class device_name``, or the CPU brand
        from machine_info when no benchmark says."""
        named = {f"{r.info.device_class} {r.info.device_name}" for r in self.records if r.info is not None}
        return tuple(sorted(named)) if named else (f"cpu {self.cpu_brand()}",)

    def ratios(self) -> dict[str, float]:
        """Each forward/pipeline benchmark's median over its baseline mode's median in the same group
        (family/size/dtype/device/kind), by fullname; baseline modes map to 1.0. A check against its
        floor maps to its recorded median per-round ratio check/floor."""
        return {**baseline_ratios(self.records), **check_ratios(self.records)}


def baseline_ratios(records: Iterable[BenchRecord]) -> dict[str, float]:
    """See ``BenchRun.ratios``; the first baseline record of a group is the one divided by."""
    records = [r for r in records if r.info is not None and r.info.kind in (FORWARD, PIPELINE)]
    baselines: dict[tuple[str, str], BenchRecord] = {}
    for r in records:
        baselines.setdefault((group_name(r.info), r.info.mode), r)
    out = {}
    for r in records:
        base = baselines.get((group_name(r.info), baseline_mode(r.info.mode)))
        if base is not None and base.stat("median") > 0:
            out[r.fullname] = r.stat("median") / base.stat("median")
    return out


Interval = tuple[float, float, float]  # a ratio's median, and the low and high ends of its interval
# fullname::mode names one mode's ratio inside an interleaved group's record (split at the last "::":
# pytest's fullnames hold it too)
MODE_SEPARATOR = "::"


def interleaved_ratios(records: Iterable[BenchRecord]) -> dict[str, Interval]:
    """Each interleaved group's mode ratios to base, by ``fullname::mode`` (a smoke run's group, which
    records nothing, is left out)."""
    out = {}
    for r in records:
        if r.info is None or r.info.kind != INTERLEAVED or not isinstance(r.info.mode_ratios, dict):
            continue
        for mode, value in r.info.mode_ratios.items():
            if isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value):
                out[f"{r.fullname}{MODE_SEPARATOR}{mode}"] = (float(value[0]), float(value[1]), float(value[2]))
    return out


def interleaved_groups(records: Iterable[BenchRecord]) -> set[tuple[str, str, str, str, str | None]]:
    """(family, size, dtype, device, call) of every interleaved group that recorded its ratios."""
    return {(r.info.family, r.info.size, r.info.dtype, r.info.device, r.info.call) for r in records
            if r.info is not None and r.info.kind == INTERLEAVED and isinstance(r.info.mode_ratios, dict)}


def check_ratios(records: Iterable[BenchRecord]) -> dict[str, float]:
    """Each check-against-floor benchmark's median ratio check/floor, by fullname (one of kind CHECK
    recorded by a smoke run or an older writer carries none and is left out)."""
    return {r.fullname: float(r.info.ratio) for r in records
            if r.info is not None and r.info.kind == CHECK and _is_number(r.info.ratio)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bench_info(extra: dict[str, Any]) -> BenchInfo | None:
    if not all(k in extra for k in INFO_KEYS) or extra.get("kind") not in KINDS:
        return None
    try:
        return BenchInfo.from_extra_info(extra)
    except TypeError:
        return None


def _record(bench: Any, index: int, path: str) -> BenchRecord:
    where = f"benchmarks[{index}]"
    if not isinstance(bench, dict):
        raise ParityInputError("a benchmark entry is not a JSON object", path=path, key=where)
    fullname = bench.get("fullname")
    if not isinstance(fullname, str) or not fullname:
        raise ParityInputError("benchmark has no fullname", path=path, key=f"{where}.fullname")
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        raise ParityInputError(f"benchmark {fullname} has no stats", path=path, key=f"{where}.stats")
    bad = [k for k in REQUIRED_STATS if not _is_number(stats.get(k))]
    if bad:
        raise ParityInputError(f"benchmark {fullname} lacks finite stats {', '.join(bad)}", path=path,
                               key=f"{where}.stats")
    extra = bench.get("extra_info")
    extra = extra if isinstance(extra, dict) else {}
    group = bench.get("group")
    return BenchRecord(
        fullname=fullname,
        name=str(bench.get("name") or fullname),
        group=group if isinstance(group, str) else None,
        stats={k: v for k, v in stats.items() if _is_number(v)},
        info=_bench_info(extra),
        extra_info=extra,
    )


def read_run(path: str | os.PathLike) -> BenchRun:
    """Read and validate one ``--benchmark-json`` file; bad input raises ParityInputError naming it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ParityInputError("is a directory, not a pytest-benchmark JSON file", path=path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ParityInputError(f"cannot read it ({exc.strerror or exc})", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParityInputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ParityInputError("not a pytest-benchmark JSON file (no 'benchmarks' list)", path=path,
                               key="benchmarks")
    records = [_record(b, i, path) for i, b in enumerate(data["benchmarks"])]
    seen: set[str] = set()
    for r in records:
        if r.fullname in seen:  # one test benchmarks once: a repeat means concatenated or edited files
            raise ParityInputError(f"benchmark {r.fullname} appears twice", path=path, key="benchmarks")
        seen.add(r.fullname)

    def obj(key: str) -> dict[str, Any]:
        value = data.get(key)
        return value if isinstance(value, dict) else {}

    return BenchRun(
        path=path,
        records=records,
        machine_info=obj("machine_info"),
        commit_info=obj("commit_info"),
        datetime=data.get("datetime") if isinstance(data.get("datetime"), str) else None,
        version=data.get("version") if isinstance(data.get("version"), str) else None,
    )


def format_seconds(seconds: float | None) -> str:
    """A time in the unit that keeps three significant digits readable (s, ms, µs, ns)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
