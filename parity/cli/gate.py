"""``lora-parity gate``: one verdict on an upgrade from two results bundles (parity.runs.gate)."""

from __future__ import annotations

import argparse
import os

from parity.cli.arguments import add_overwrite_argument, fail_on
from parity.cli.output import EXIT_FAILED, EXIT_OK

NAME = "gate"
HELP = "one verdict on an upgrade from the old and new results bundles"
DESCRIPTION = """\
One verdict on an upgrade from two results bundles (tools/gate.sh old|new, or tox -e gate-old and
gate-new): checks that passed before and fail now, checks that no longer run, golden images that
moved (with their side-by-side PNGs), parity errors that grew in ULPs, and benchmarks beyond the
gate. Writes gate.md and gate.html to --out.

Exit codes: 0 no regression, 1 a regression, 2 bad input."""
# Within-run ratios (fused/base, unfused/base) move little between runs on one machine, while
# absolute times on a shared runner drift together by tens of percent (docs/benchmarks/README.md).
DEFAULT_GATE_BENCH = "ratio:25%"
GATE_ROOT = os.path.join("reports", "gate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD_BUNDLE", help="results bundle of the current versions")
    parser.add_argument("new", metavar="NEW_BUNDLE", help="results bundle of the candidate versions")
    parser.add_argument("--bench-fail-on", action="append", type=fail_on, default=None, metavar="GATE",
                        # argparse %-formats help strings: the gate's own '%' must be doubled.
                        help=f"benchmark gate as for `compare` (repeatable; default "
                             f"{DEFAULT_GATE_BENCH.replace('%', '%%')})")
    parser.add_argument("--allow-cross-device", action="store_true", help="bundles from different devices")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"gate.md and gate.html (default: a new run folder {GATE_ROOT}/<time>-<id>/; "
                             f"{GATE_ROOT}/latest)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from parity.runs.folders import output_folder
    from parity.runs.gate import judge, read_bundle
    from parity.runs.gatereport import terminal_lines, write_gate_report

    gates = args.bench_fail_on if args.bench_fail_on is not None else [fail_on(DEFAULT_GATE_BENCH)]
    old, new = read_bundle(args.old), read_bundle(args.new)
    out = output_folder(args.out, "gate", args.overwrite, args.command_line, GATE_ROOT)
    verdict = judge(old, new, gates, args.allow_cross_device)
    print("\n".join(terminal_lines(verdict)))
    md, page = write_gate_report(verdict, out)
    print(f"report: {page} ({md})")
    return EXIT_OK if verdict.ok else EXIT_FAILED
