"""Do two runs of the same suite on the same machine agree exactly? The determinism check.

A run folder holds ``junit.xml`` and ``parity/summary.json`` (``--junitxml`` and ``--parity-report``;
the same layout as a gate bundle). Two runs agree when the same tests ran with the same outcomes and
every measured error (ULPs, share of bound, golden metrics) is identical: no tolerance, because the
same code on the same inputs and machine must compute the same numbers, whatever the test order.
Wall-clock figures (a row's ``timing``) are the one thing compared by neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError
from parity.runs.gate import JUNIT, PARITY, read_summary_rows
from parity.runs.junit import read_outcomes


@dataclass
class Agreement:
    tests: int
    rows: int
    only_first: list[str] = field(default_factory=list)
    only_second: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # "test: first → second"
    numbers: list[str] = field(default_factory=list)  # "check case dtype: field first → second"

    @property
    def identical(self) -> bool:
        return not (self.only_first or self.only_second or self.outcomes or self.numbers)


# Summary-row fields that are measurements of time, not results: they differ between any two runs.
NOT_RESULTS = ("timing",)


def _row_differences(key: tuple[str, str, str], a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{' '.join(key)}: {name} {a.get(name)!r} → {b.get(name)!r}"
            for name in sorted((set(a) | set(b)) - set(NOT_RESULTS)) if a.get(name) != b.get(name)]


def _run_files(run: Path) -> tuple[Path, Path]:
    if not run.is_dir():
        raise ParityInputError("not a run folder (expected junit.xml and parity/summary.json in it)", path=str(run))
    return run / JUNIT, run / PARITY


def agree(first: str | os.PathLike, second: str | os.PathLike) -> Agreement:
    (junit_a, rows_a), (junit_b, rows_b) = _run_files(Path(first)), _run_files(Path(second))
    out_a, out_b = read_outcomes(junit_a), read_outcomes(junit_b)
    par_a, par_b = read_summary_rows(rows_a), read_summary_rows(rows_b)
    result = Agreement(tests=len(out_a), rows=len(par_a))
    result.only_first = sorted(set(out_a) - set(out_b)) + [" ".join(k) for k in sorted(set(par_a) - set(par_b))]
    result.only_second = sorted(set(out_b) - set(out_a)) + [" ".join(k) for k in sorted(set(par_b) - set(par_a))]
    result.outcomes = [f"{t}: {out_a[t].status} → {out_b[t].status}"
                       for t in sorted(set(out_a) & set(out_b)) if out_a[t].status != out_b[t].status]
    for key in sorted(set(par_a) & set(par_b)):
        result.numbers += _row_differences(key, par_a[key], par_b[key])
    return result


def format_agreement(result: Agreement, first: str, second: str, limit: int = 20) -> str:
    if result.identical:
        return (f"identical: {result.tests} tests with the same outcomes and {result.rows} measured errors "
                f"bit-for-bit the same in {first} and {second}")
    lines = [f"DIFFERENT: {first} and {second} do not agree"]
    for title, items in (("only in the first run", result.only_first), ("only in the second run", result.only_second),
                         ("outcome changed", result.outcomes), ("measured value changed", result.numbers)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {item}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"  … and {len(items) - limit} more")
    return "\n".join(lines)
