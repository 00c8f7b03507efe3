"""``lora-parity report``: the benchmark report of one pytest-benchmark run (parity.bench.report)."""

from __future__ import annotations

import argparse
import os

from parity.cli.arguments import add_overwrite_argument, add_quiet_argument
from parity.cli.output import EXIT_OK

NAME = "report"
HELP = "markdown/HTML report with plots of a pytest-benchmark run"
DESCRIPTION = """\
Write the benchmark report of one pytest-benchmark run (--benchmark-json): report.md, a
self-contained index.html and plots/*.png (latency per mode and dtype with IQR bars, ratio to the
baseline mode beside the FLOP floor, LoRA operation times, peak memory, the check against its floor).
Every fused, fused+unloaded or compiled-fused ratio above the fused flag, and every check above 1.5x
its floor, is marked and listed at the top.

Exit codes: 0 report written, 2 bad input."""
BENCH_ROOT = os.path.join("reports", "bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark-json", required=True, metavar="RUN.json", help="pytest-benchmark JSON file")
    parser.add_argument("--junit", metavar="JUNIT.xml", help="pytest --junitxml file: adds test outcome counts")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"output folder (default: a new run folder {BENCH_ROOT}/<time>-<id>/; "
                             f"{BENCH_ROOT}/latest)")
    add_overwrite_argument(parser)
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    from parity.bench.report import write_report
    from parity.bench.results import read_run
    from parity.runs.folders import output_folder
    from parity.runs.junit import read_junit

    run = read_run(args.benchmark_json)
    junit = read_junit(args.junit) if args.junit else None
    out = output_folder(args.out, "bench-report", args.overwrite, args.command_line, BENCH_ROOT)
    report = write_report(run, out, junit, progress=not args.quiet)
    print(f"wrote {report.html}, {report.markdown} and {len(report.plots)} plot(s) for {len(run.records)} benchmark(s)")
    for flag in report.flags:
        print(f"  flagged: {flag.record.fullname}: {flag.record.info.mode} ratio {flag.ratio:.3f}")
    return EXIT_OK
