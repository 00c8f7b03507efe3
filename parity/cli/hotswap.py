"""``lora-parity hotswap``: swap LoRA files into a compiled denoiser and check every swap
(parity.checks.swaps)."""

from __future__ import annotations

import argparse

from parity.checks.swaps import HotswapReport, HotswapRequest, SwapRecord, plan_hotswap, run_hotswap
from parity.cli.arguments import (add_model_arguments, add_pickle_argument, add_run_arguments, model_source,
                                  positive_int)
from parity.cli.output import report_run, table, versions_line
from parity.options import COMPILE_BACKEND, COMPILE_MODE, EXPERT, QUANTIZATION

NAME = "hotswap"
HELP = "hotswap LoRA files into a compiled model: recompiles, refusals, output vs a fresh load"
DESCRIPTION = """\
Hotswap LoRA files one after another into a compiled denoiser, the way diffusers documents it:
enable_lora_hotswap(target_rank=...) before the first load, load the first --lora, compile and
warm up, then load every next --lora with hotswap=True into the same adapter. Per swap: did dynamo
recompile, did diffusers refuse the swap, does the output match a fresh eager load of that file
alone (and, at model level, the float64 reference merge of it), the swap time against the first
load + compile, and the change in the denoiser's parameter count.

The first file is loaded before compiling; the later ones are swapped into its adapter, so they
must target the same modules or a subset of them. diffusers refuses a file with extra modules
("unexpected keys") and then deletes the adapter, so the files after a refused one are not swapped.

Only the denoiser (unet or transformer) part of each file is swapped: diffusers refuses to hotswap
text encoders. At --level model (the default, faster: one denoiser step per output) files are
loaded with the denoiser's load_lora_adapter(prefix=...), which ignores other components' keys. It
converts no layout itself, so a file in another layout than diffusers' (kohya, diffusion_model, ...)
is read by lora-parity and its denoiser part handed over in the diffusers layout: every layout that
`check` reads hotswaps. At --level pipeline files go through load_lora_weights, which converts the
layouts itself, and must hold denoiser keys only.

Wan 2.2 (two experts): --expert high swaps into transformer (the high-noise expert, where
load_lora_weights loads by default), low into transformer_2 (load_into_transformer_2=True at
--level pipeline, transformer_2.load_lora_adapter at --level model), both into each, every one
compiled. The files' transformer keys go into the expert(s) named; all files share one expert.

--quantization NAME swaps into a quantized denoiser (quantized as users quantize it, as `check
--quantization` does); the fresh load each swap is compared with is built on the same quantized base,
and the float64 runs use our dequantization of its weights. A quantizer that cannot run here (a
missing package, bitsandbytes without a GPU) is bad input.

--target-rank defaults to the largest denoiser rank in the files. A smaller one is bad input: PEFT
would have to grow the padded LoRA tensors on that swap (torch.utils.swap_tensors), which changes
their shapes and always recompiles.

Exit codes: 0 no recompile, no refusal and every output within its budget; 1 otherwise; 2 bad input."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--lora",
        action="append",
        required=True,
        metavar="FILE",
        help=".safetensors LoRA file, at least two: the first is loaded before compiling, the rest swapped in order",
    )
    parser.add_argument(
        "--target-rank",
        type=positive_int,
        metavar="N",
        help="rank every LoRA layer is padded to (default: the largest denoiser rank in the files)",
    )
    parser.add_argument(
        "--level",
        default="model",
        help="model: the denoiser's own loader and one denoiser step (default); pipeline: load_lora_weights "
        "and one tiny image",
    )
    EXPERT.add_to(parser, help="Wan 2.2: the expert every --lora file is swapped into: high (transformer), low "
                  "(transformer_2) or both, each compiled (default: high, where load_lora_weights loads without "
                  "load_into_transformer_2)")
    COMPILE_BACKEND.add_to(parser)
    COMPILE_MODE.add_to(parser)
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default: float32)")
    QUANTIZATION.add_to(parser, help="quantize the denoiser(s) as users do, then hotswap into it (default: none); "
                        "see `lora-parity check --help` for what each choice applies")
    add_pickle_argument(parser)
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    request = HotswapRequest(
        family=args.family, loras=tuple(args.lora), target_rank=args.target_rank, level=args.level,
        compile_backend=args.compile_backend, compile_mode=args.compile_mode, dtype=args.dtype, device=args.device,
        model_path=model_source(args), allow_pickle=args.allow_pickle, expert=args.expert,
        quantization=args.quantization,
    )
    return report_run(args, plan_hotswap(request), run_hotswap, format_hotswap)


def _fmt_error(value: float | None, budget: float | None) -> str:
    if value is None or budget is None:
        return "-"
    return f"{value:.3g} (<= {budget:.3g})"


def _recompile_cell(swap: SwapRecord) -> str:
    if not swap.recompiled:
        return "no"
    # error_on_recompile stops dynamo before it builds the graph, so a caught recompile counts 0 graphs.
    return f"yes ({swap.new_graphs} new graph(s))" if swap.new_graphs else "yes"


def _format_swaps(report: HotswapReport) -> list[str]:
    rows = [["file", "rank", "recompile", "swap + call", "vs load+compile", "vs fresh load",
             "float64 LoRA vs our merge", "params", "result"]]
    for s in report.swaps:
        seconds = s.swap_seconds + s.call_seconds
        timed = seconds > 0 and s.refused is None and not s.recompiled
        speedup = f"{report.compile_seconds / seconds:.0f}x faster" if timed else "-"
        reference = _fmt_error(s.errors.get("vs_reference"), s.budgets.get("vs_reference"))
        rows.append([
            s.path, str(report.ranks[s.path]),
            _recompile_cell(s),
            f"{seconds:.2f} s" if s.refused is None else "-", speedup,
            _fmt_error(s.vs_fresh, s.vs_fresh_budget), reference,
            f"{s.params_delta:+d}", "ok" if s.ok else ("REFUSED" if s.refused else "FAIL"),
        ])
    return table(rows)


def format_hotswap(report: HotswapReport) -> str:
    mode = f", mode {report.mode}" if report.mode else ""
    expert = f", expert {report.expert} ({' + '.join(report.components)})" if report.expert else ""
    quantization = f", quantization {report.quantization}" if report.quantization else ""
    header = [
        f"lora-parity hotswap: family {report.family}, model {report.model}, "
        f"level {report.level}{expert}, device {report.device}, dtype {report.dtype}{quantization}",
        versions_line(report.versions),
        f"first: {report.first} (rank {report.ranks[report.first]}), target rank {report.target_rank}: "
        f"loaded, compiled ({report.backend}{mode}) and warmed up in {report.compile_seconds:.1f} s; "
        f"{report.parameters} parameters",
        *(f"warm-up: the compiled model recompiled at its second call, before any swap and not counted "
          f"against them: {reason}" for reason in report.warmup_recompiles),
    ]
    lines = [*header, "", "Swaps (outputs: max |difference| (<= its budget); params: change since the first load)",
             *_format_swaps(report)]
    failures = [f"  {s.path}: {failure}" for s in report.swaps for failure in s.failures]
    if report.skipped:
        skipped = ", ".join(report.skipped)
        failures.append(f"  not swapped (diffusers deleted the adapter after the refusal): {skipped}")
    if failures:
        lines += ["", "Failures", *failures]
    verdict = "PASS: no recompile, no refusal, every output within budget" if report.ok else (
        "FAIL: a hotswap parity check failed"
    )
    return "\n".join([*lines, "", verdict])
