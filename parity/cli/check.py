"""``lora-parity check``: merge parity and unfuse drift of the user's LoRA files (parity.checks.check)."""

from __future__ import annotations

import argparse

from parity.checks.check import UNFUSE_LORA_SCALE, CheckReport, CheckRequest, plan_check, run_check
from parity.cli.arguments import (
    add_model_arguments,
    add_pickle_argument,
    add_run_arguments,
    comma_list,
    finite_float,
    float_list,
    positive_int,
)
from parity.cli.output import fmt, report_run, table, versions_line

NAME = "check"
HELP = "merge parity and unfuse drift of LoRA files"
DESCRIPTION = f"""\
Fuse the given LoRA files into a family's pipeline with diffusers + PEFT and check the fused
weights against an independent float64 reference merge, per dtype; then check that repeated
fuse/unfuse cycles bring the base weights back within the rounding bound.

The unfuse cycles run on a freshly built pipeline with freshly loaded adapters, always at
lora_scale {UNFUSE_LORA_SCALE}: in diffusers 0.42 fuse_lora(lora_scale=s) multiplies PEFT's scaling
by s (scale_layer) and unfuse_lora never divides it back, so a second fuse at s != 1 would merge
s^2 times the delta. --scale therefore applies to the merge check only.

Exit codes: 0 all checks pass, 1 a parity check failed, 2 bad input."""
SHOWN_UNMATCHED = 3  # unmatched keys named in the text output; JSON lists them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--lora", action="append", required=True, metavar="FILE", help=".safetensors LoRA file (repeatable)"
    )
    parser.add_argument(
        "--dtype",
        type=comma_list,
        default=["float32"],
        metavar="DTYPES",
        help="comma-separated, from float32, float16, bfloat16 (default: float32)",
    )
    parser.add_argument(
        "--scale", type=finite_float, default=1.0, help="lora_scale for the merge check (default: 1.0)"
    )
    parser.add_argument(
        "--weights",
        type=float_list,
        help="comma-separated adapter weights, one per --lora, in order (default: 1.0 each)",
    )
    parser.add_argument(
        "--cycles", type=positive_int, default=1, help="fuse/unfuse cycles for the drift check (default: 1)"
    )
    add_pickle_argument(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    request = CheckRequest(
        family=args.family, loras=tuple(args.lora), dtypes=tuple(args.dtype), lora_scale=args.scale,
        weights=None if args.weights is None else tuple(args.weights), cycles=args.cycles, device=args.device,
        model_path=args.model_path, allow_pickle=args.allow_pickle,
    )
    return report_run(args, plan_check(request), run_check, format_check)


def _format_files(report: CheckReport) -> list[str]:
    rows = [["file", "layout", "modules matched", "keys unmatched", "weight"]]
    for f, weight in zip(report.files, report.weights):
        by_component = ", ".join(f"{c} {n}" for c, n in f.matched.items())
        rows.append([f.path, f.layout, f"{sum(f.matched.values())} ({by_component})", str(len(f.unmatched)),
                     f"{weight:g}"])
    lines = ["LoRA files", *table(rows)]
    for f in report.files:
        if f.unmatched:
            more = len(f.unmatched) - SHOWN_UNMATCHED
            names = ", ".join(f.unmatched[:SHOWN_UNMATCHED]) + (f" (+{more} more)" if more > 0 else "")
            lines.append(f"  {f.path}: keys matching no module: {names}")
    return lines


def _format_results(report: CheckReport) -> list[str]:
    first = report.results[0]
    lines = [f"Merge at scale {first.scale:g}; unfuse over {first.unfuse.cycles} cycle(s) at scale "
             f"{UNFUSE_LORA_SCALE:g} (ULPs of the dtype; bound ratio <= 1 passes)"]
    rows = [["dtype", "merge max ULP", "merge bound ratio", "unfuse max ULP first/last",
             "not bit-exact first/last", "unfuse bound ratio", "result"]]
    for r in report.results:
        u = r.unfuse
        rows.append([
            r.dtype, fmt(r.max_ulps), fmt(r.max_bound_ratio),
            f"{fmt(u.max_ulps[0])} / {fmt(u.max_ulps[-1])}",
            f"{u.frac_changed[0]:.1%} / {u.frac_changed[-1]:.1%}",
            fmt(u.max_bound_ratio), "ok" if r.ok else "FAIL",
        ])
    lines += table(rows)
    failures = [f"  {r.dtype}: {failure}" for r in report.results for failure in r.failures]
    return lines + (["", "Failures", *failures] if failures else [])


def format_check(report: CheckReport) -> str:
    header = [
        f"lora-parity check: family {report.family}, "
        f"model {report.model_path or 'tiny (built-in, seed 0)'}, device {report.device}",
        versions_line(report.versions),
    ]
    verdict = "PASS" if report.ok else "FAIL: a parity check failed"
    return "\n".join([*header, "", *_format_files(report), "", *_format_results(report), "", verdict])
