"""``lora-parity check``: merge parity and unfuse drift of the user's LoRA files (parity.checks.check)."""

from __future__ import annotations

import argparse

from parity.checks.check import CheckReport, CheckRequest, plan_check, run_check
from parity.cli.arguments import (
    add_model_arguments,
    model_source,
    add_pickle_argument,
    add_run_arguments,
    comma_list,
    finite_float,
    float_list,
    positive_int,
)
from parity.cli.output import fmt, report_run, table, versions_line
from parity.options import EXPERT, QUANTIZATION

NAME = "check"
HELP = "merge parity and unfuse drift of LoRA files"
DESCRIPTION = """\
Fuse the given LoRA files into a family's pipeline with diffusers + PEFT and check the fused
weights against an independent float64 reference merge, per dtype; then check that repeated
fuse/unfuse cycles bring the base weights back within the rounding bound, and leave the pipeline
as it was loaded: each PEFT layer's scaling and active adapters unchanged, and one denoiser
forward equal to the forward before the first fuse (within the output tolerance table).

Both run at --scale, on one pipeline per dtype: the cycles start from the merge check's fuse. In
diffusers 0.42 fuse_lora(lora_scale=s) multiplies PEFT's scaling by s (scale_layer) and
unfuse_lora never divides it back, so at s != 1 the unfused pipeline runs its adapters at s times
their strength: that fails, and the verdict names the known diffusers behaviour.

With --quantization NAME the denoiser is quantized as users quantize it (diffusers' BitsAndBytesConfig,
TorchAoConfig, QuantoConfig, a GGUF read by from_single_file, or enable_layerwise_casting) and the
files are checked against a reference built from our own dequantization of the stored weights: the
unfused base forward and LoRA contribution per layer, the denoiser output, fuse_lora (within half a
requantization step, or what diffusers does instead) and the unfuse drift in quantization steps.

Exit codes: 0 all checks pass, 1 a parity check failed, 2 bad input."""
SHOWN_UNMATCHED = 3  # unmatched keys named in the text output; JSON lists them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--lora", action="append", required=True, metavar="FILE",
        help=".safetensors LoRA file, or a PEFT adapter folder (adapter_model.safetensors + adapter_config.json); "
             "repeatable"
    )
    parser.add_argument(
        "--dtype",
        type=comma_list,
        default=["float32"],
        metavar="DTYPES",
        help="comma-separated, from float32, float16, bfloat16 (default: float32)",
    )
    parser.add_argument(
        "--scale", type=finite_float, default=1.0,
        help="lora_scale for the merge check and the fuse/unfuse cycles (default: 1.0)",
    )
    parser.add_argument(
        "--weights",
        type=float_list,
        help="comma-separated adapter weights, one per --lora, in order (default: 1.0 each)",
    )
    parser.add_argument(
        "--cycles", type=positive_int, default=1, help="fuse/unfuse cycles for the drift check (default: 1)"
    )
    EXPERT.add_to(parser)
    QUANTIZATION.add_to(parser)
    add_pickle_argument(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.quantization is not None:  # another reference and report: parity/quant/check.py
        from parity.cli.quantized import format_quant, quant_request
        from parity.quant.check import run_quant_check

        return report_run(args, quant_request(args, model_source(args)), run_quant_check, format_quant)
    request = CheckRequest(
        family=args.family, loras=tuple(args.lora), dtypes=tuple(args.dtype), lora_scale=args.scale,
        weights=None if args.weights is None else tuple(args.weights), cycles=args.cycles, device=args.device,
        model_path=model_source(args), allow_pickle=args.allow_pickle, expert=args.expert,
    )
    return report_run(args, plan_check(request), run_check, format_check)


def _format_files(report: CheckReport) -> list[str]:
    experts = any(f.expert for f in report.files)
    rows = [["file", "layout", "keys read", "modules matched", "keys unmatched", "weight", "algorithms",
             *(["expert"] if experts else [])]]
    for f, weight in zip(report.files, report.weights):
        by_component = ", ".join(f"{c} {n}" for c, n in f.matched.items())
        rows.append([f.path, f.layout, str(f.keys_read), f"{sum(f.matched.values())} ({by_component})",
                     str(len(f.unmatched)), f"{weight:g}", ", ".join(f.algorithms),
                     *([f"{f.expert} ({f.expert_source})"] if experts else [])])
    lines = ["LoRA files", *table(rows)]
    for f in report.files:
        # one file module set in several modules (a fused qkv); the same module in both Wan experts is not a split
        split = {stem: mods for stem, mods in f.modules.items() if len({m.split(".", 1)[1] for m in mods}) > 1}
        if split:
            stem, mods = next(iter(split.items()))
            lines.append(f"  {f.path}: {len(split)} fused module(s) split at the model's widths, e.g. {stem} -> "
                         + " | ".join(m.rsplit(".", 1)[-1] for m in mods))
        if f.not_loaded:
            module, keys = next(iter(f.not_loaded.items()))
            lines.append(f"  {f.path}: diffusers put no LoRA on {len(f.not_loaded)} module(s) the file sets, "
                         f"e.g. {module} (keys {', '.join(keys)})")
        if f.loaded_elsewhere:
            lines.append(f"  {f.path}: diffusers put LoRA layers on {len(f.loaded_elsewhere)} module(s) the file "
                         f"does not set, e.g. {f.loaded_elsewhere[0]}")
        if f.unmatched:
            more = len(f.unmatched) - SHOWN_UNMATCHED
            names = ", ".join(f.unmatched[:SHOWN_UNMATCHED]) + (f" (+{more} more)" if more > 0 else "")
            lines.append(f"  {f.path}: keys matching no module: {names}")
    return lines


def _format_results(report: CheckReport) -> list[str]:
    first = report.results[0]
    lines = [f"Merge and {first.unfuse.cycles} fuse/unfuse cycle(s) at scale {first.scale:g} (ULPs of the dtype; "
             "bound ratio <= 1 passes); the unfused pipeline against the loaded one"]
    rows = [["dtype", "merge max ULP", "merge bound ratio", "unfuse max ULP first/last",
             "not bit-exact first/last", "unfuse bound ratio", "unfused state", "forward vs loaded (budget)",
             "result"]]
    for r in report.results:
        u, state = r.unfuse, r.unfuse.state
        rows.append([
            r.dtype, fmt(r.max_ulps), fmt(r.max_bound_ratio),
            f"{fmt(u.max_ulps[0])} / {fmt(u.max_ulps[-1])}",
            f"{u.frac_changed[0]:.1%} / {u.frac_changed[-1]:.1%}",
            fmt(u.max_bound_ratio), "ok" if state.ok else "CHANGED",
            f"{state.vs_loaded:.3g} ({state.budget:.3g})", "ok" if r.ok else "FAIL",
        ])
    lines += table(rows)
    failures = []
    for r in report.results:
        failures += [f"  {r.dtype}: {failure}" for failure in r.failures]
        # the worst are worded; --json's "failing" names every one
        unworded = [name for name in r.failing if not any(f.startswith(name + ":") for f in r.failures)]
        if unworded:
            failures.append(f"  {r.dtype}: and {len(unworded)} more weight(s) over their bound, e.g. {unworded[0]} "
                            "(--json lists them all)")
    return lines + (["", "Failures", *failures] if failures else [])


def format_check(report: CheckReport) -> str:
    header = [
        f"lora-parity check: family {report.family}, "
        f"model {report.model}, device {report.device}",
        versions_line(report.versions),
    ]
    verdict = "PASS" if report.ok else "FAIL: a parity check failed"
    if report.known:  # a finding explains the failure; it stays a failure (exit 1)
        verdict += "".join(f"\n  {known}" for known in report.known)
    return "\n".join([*header, "", *_format_files(report), "", *_format_results(report), "", verdict])
