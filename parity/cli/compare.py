"""``lora-parity compare``: two pytest-benchmark runs compared and gated (parity.bench.compare)."""

from __future__ import annotations

import argparse

from parity.cli.arguments import add_overwrite_argument, fail_on
from parity.cli.output import EXIT_FAILED, EXIT_OK, table

NAME = "compare"
HELP = "compare two pytest-benchmark runs and gate on regressions"
DESCRIPTION = """\
Compare two pytest-benchmark runs benchmark by benchmark (matched by fullname) and gate on
regressions. --fail-on mirrors pytest-benchmark's --benchmark-compare-fail: STAT:N% fails when
new/old grows by more than N%, STAT:X or STAT:Xs when new - old exceeds X seconds (STAT: min, max,
mean, median, iqr, stddev). ratio:N% compares each mode's within-run ratio to its baseline mode
(compiled modes to compiled-base, others to base) between the runs: robust on noisy runners where
every absolute time moves together. Without --fail-on nothing counts as a regression.

Runs from different devices are refused unless --allow-cross-device.

Exit codes: 0 no regression beyond the gates, 1 a regression, 2 bad input."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD.json", help="the reference run")
    parser.add_argument("new", metavar="NEW.json", help="the run under test")
    parser.add_argument("--fail-on", action="append", type=fail_on, default=[], metavar="GATE",
                        help="STAT:N%%, STAT:SECONDS or ratio:N%% (repeatable), e.g. median:10%%")
    parser.add_argument("--allow-cross-device", action="store_true", help="compare runs from different devices")
    parser.add_argument("--out", metavar="DIR", help="also write the table as DIR/compare.md")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from parity.bench.compare import compare_runs, table_cells, verdict_line
    from parity.bench.report import markdown_table
    from parity.bench.results import read_run
    from parity.runs.folders import output_folder

    old, new = read_run(args.old), read_run(args.new)
    out = output_folder(args.out, "compare", args.overwrite, args.command_line)  # refused before the table
    comparison = compare_runs(old, new, args.fail_on, allow_cross_device=args.allow_cross_device)
    cells = table_cells(comparison)
    verdict = verdict_line(comparison)
    print(f"{args.old} -> {args.new} ({'; '.join(comparison.new_devices)})")
    print("\n".join(table(cells)))
    print(verdict)
    if out is not None:
        md = [f"# {args.old} -> {args.new}", "", *markdown_table(cells), "", verdict]
        (out / "compare.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return EXIT_OK if comparison.ok else EXIT_FAILED
