"""``lora-parity edit``: the Qwen-Image-Edit-2509 workflow on a user's LoRA file (parity.checks.edit)."""

from __future__ import annotations

import argparse
import os

from parity.checks.cases import EDIT_SEQUENCES
from parity.checks.edit import EditReport, EditRequest, run_edit, write_strip
from parity.checks.progress import Progress
from parity.cli.arguments import add_run_arguments, comma_list
from parity.cli.output import EXIT_FAILED, EXIT_OK, StderrProgress, check_json_target, table, write_json
from parity.errors import ParityInputError
from parity.options import MODEL_PATH
from parity.runs.folders import adopt, output_folder
from parity.tolerances import FLOAT_DTYPES
from parity.zoo import get_family
from parity.zoo.qwenimage_edit import NAME as EDIT_FAMILY
from parity.zoo.qwenimage_edit import PIPELINE

NAME = "edit"
HELP = "the Qwen-Image-Edit-2509 workflow: the fused edit against the no-fuse edit, as its users run it"
DESCRIPTION = """\
Edit seeded input images with QwenImageEditPlusPipeline as its users do (a prompt,
negative_prompt=" ", true_cfg_scale=4.0, guidance_scale=1.0, a seeded generator), applying --lora
two ways: no fuse (load_lora_weights(file, adapter_name=n) + set_adapters(n, adapter_weights=[1.0]))
and fuse (unfuse_lora() -> load_lora_weights -> fuse_lora(adapter_names=[n], lora_scale=1.0,
safe_fusing=True)). Per dtype x number of input images: the fused image must be within 3 e_fwd + 1 ULP
of the no-fuse image (e_fwd: the no-fuse image against its float64 twin), the fused weights must
match lora-parity's reference merge, and the LoRA must move the image by more than that budget.

--sequence fresh runs the fuse block on a fresh pipeline; one-pipeline runs it after the no-fuse
block on the same pipeline, as the workflow's own code does (diffusers 0.42 refuses the second load
under the same adapter name: a known finding). Without --model-path the tiny edit pipeline is used.

Each run writes no-fuse | fused | difference (red where over the budget) as a PNG into --out (default:
a new run folder under reports/edit/).

Exit codes: 0 every run within its budget and its merge; 1 otherwise; 2 bad input."""

DEFAULT_ROOT = os.path.join("reports", "edit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", default=EDIT_FAMILY, help=f"a family whose pipeline is {PIPELINE} "
                        f"(default: {EDIT_FAMILY})")
    MODEL_PATH.add_to(parser, help="local Qwen-Image-Edit-2509 folder; default: the tiny edit pipeline")
    parser.add_argument("--lora", required=True, metavar="FILE", help=".safetensors LoRA file for the transformer")
    parser.add_argument("--dtype", type=comma_list, default=["float32"], metavar="DTYPES",
                        help="comma-separated: float32, float16, bfloat16 (default: float32)")
    parser.add_argument("--images", default="1", help="comma-separated numbers of input images (default: 1)")
    parser.add_argument("--sequence", default="fresh", choices=[*EDIT_SEQUENCES, "both"],
                        help="where the fuse block runs (default: fresh)")
    parser.add_argument("--out", metavar="DIR", help="folder for the images (default: a new run folder under "
                        f"{DEFAULT_ROOT}/)")
    add_run_arguments(parser)


def _requests(args: argparse.Namespace) -> list[EditRequest]:
    family = get_family(args.family)
    if family.pipeline_class != PIPELINE:
        raise ParityInputError(f"--family {args.family} runs {family.pipeline_class}; the edit workflow needs a "
                               f"{PIPELINE} family ({EDIT_FAMILY})")
    dtypes = args.dtype
    if any(d not in FLOAT_DTYPES or d == "float64" for d in dtypes):
        raise ParityInputError(f"--dtype {','.join(dtypes)}: use float32, float16 or bfloat16")
    try:
        images = [int(n) for n in args.images.split(",")]
    except ValueError:
        images = []
    if not images or min(images) < 1:
        raise ParityInputError(f"--images {args.images}: give positive whole numbers, e.g. 1,2,3")
    if not os.path.isfile(args.lora):
        raise ParityInputError("no such file", path=args.lora)
    sequences = EDIT_SEQUENCES if args.sequence == "both" else (args.sequence,)
    return [EditRequest(args.lora, dtype, n, sequence, model_path=args.model_path, device=args.device,
                        family=args.family) for dtype in dtypes for n in images for sequence in sequences]


def run(args: argparse.Namespace) -> int:
    from parity.quiet import quiet_libraries

    requests = _requests(args)
    check_json_target(args.json, args.overwrite)
    folder = output_folder(args.out, "edit", args.overwrite, args.command_line, default_root=DEFAULT_ROOT)
    quiet_libraries()
    progress: Progress = StderrProgress(enabled=not args.quiet)
    progress.plan(len(requests))
    reports = []
    for request in requests:
        label = f"{request.dtype}, {request.images} input image(s), {request.sequence}"
        with progress.step(label) as outcome:
            report = run_edit(request)
            reports.append((report, write_strip(report, folder / "images")))
            outcome(report.ok)
    print(format_edit(reports))
    if args.json:
        write_json({"runs": [report.to_json() | {"image": path} for report, path in reports]}, args.json)
    if args.out is None and adopt(folder, args.command_line):
        print(f"images: {folder / 'images'}")
    return EXIT_OK if all(report.ok for report, _ in reports) else EXIT_FAILED


def _merge_cell(report: EditReport) -> str:
    if report.merge is None:
        return "-"
    return f"{report.merge.max_ulps:.2f} ({report.merge.max_bound_ratio:.2f})"


def format_edit(reports: list[tuple[EditReport, str | None]]) -> str:
    first = reports[0][0].request
    rows = [["dtype", "images", "fuse block", "e_fwd", "fused vs no-fuse (budget)", "LoRA effect",
             "merge max ULP (bound ratio)", "result"]]
    for report, _ in reports:
        r = report.request
        vs = "-" if report.fused is None else f"{report.diff:.3g} ({report.budget:.3g})"
        rows.append([r.dtype, str(r.images), r.sequence, f"{report.float64_error:.3g}", vs,
                     f"{report.lora_effect:.3g}", _merge_cell(report), "ok" if report.ok else "FAIL"])
    lines = [f"lora-parity edit: family {first.family}, model {first.model_path or 'tiny (built-in, seed 0)'}, "
             f"file {first.lora}", "", *table(rows)]
    failures = [f"  {report.request.dtype}, {report.request.images} image(s), {report.request.sequence}: {f}"
                for report, _ in reports for f in report.failures]
    images = [f"  {path}" for _, path in reports if path]
    if images:
        lines += ["", "no-fuse | fused | difference (red over the budget)", *images]
    if failures:
        lines += ["", "Failures", *failures]
    ok = all(report.ok for report, _ in reports)
    return "\n".join([*lines, "", "PASS: every fused edit within budget of the no-fuse edit" if ok
                      else "FAIL: an edit parity check failed"])
