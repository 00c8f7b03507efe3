"""The report's section on the groups timed together (parity/bench/groups.py): per group, each mode's
ratio to base with its interval beside its FLOP floor, and the noise floor the A/A pair measured."""

from __future__ import annotations

from parity.bench.record import BASE, FUSED, INTERLEAVED
from parity.bench.results import BenchRecord, BenchRun

GROUP_SECTION = "modes timed together (round-robin, a fresh order each round)"
GROUP_NOTE = ("ratio to base: the median of the per-round ratios and its 95% bootstrap interval; noise floor: "
              "how far the A/A pair's (base-again) interval reaches from 1, the finest difference the run can tell")


def group_records(run: BenchRun) -> list[BenchRecord]:
    return sorted((r for r in run.records if r.info is not None and r.info.kind == INTERLEAVED
                   and isinstance(r.info.mode_ratios, dict)),
                  key=lambda r: (r.info.family, r.info.size, str(r.info.quantization), r.info.device, r.info.dtype,
                                 str(r.info.call)))


def _heading(r: BenchRecord) -> str:
    noise = "-" if r.info.noise_floor is None else f"{r.info.noise_floor:.1%}"
    rounds = len((r.info.mode_seconds or {}).get(BASE, []))
    quantized = f" on {r.info.quantization}" if getattr(r.info, "quantization", None) else ""
    skipped = "".join(f"; {mode} skipped: {why}" for mode, why in (r.info.skipped_modes or {}).items())
    return (f"{r.info.family}/{r.info.size}/{r.info.dtype}/{r.info.device} {r.info.call}{quantized}: noise floor "
            f"{noise}, {rounds} rounds{skipped}")


def _note(mode: str, ratio: list[float], floor: float | None) -> str:
    if floor is None:
        return ""
    low, high = ratio[1], ratio[2]
    if mode == FUSED and not (low <= 1.0 <= high):
        return "fused runs base's arithmetic: its interval should hold 1"
    return "above the FLOP floor" if low > floor else ""


def group_tables(records: list[BenchRecord]) -> list[tuple[str, list[list[str]]]]:
    tables = []
    for r in records:
        rows = [["mode", "ratio to base [95% interval]", "FLOP floor", "note"]]
        floors = r.info.mode_flop_floors or {}
        for mode, ratio in r.info.mode_ratios.items():
            floor = floors.get(mode)
            rows.append([mode, f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]",
                         "-" if floor is None else f"{floor:.3f}", _note(mode, ratio, floor)])
        tables.append((_heading(r), rows))
    return tables
