"""``lora-parity golden``: update or verify the golden images (parity.golden.verify)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from parity.cli.arguments import (add_overwrite_argument, add_quiet_argument, add_source_arguments, comma_list,
                                  model_source)
from parity.cli.output import EXIT_FAILED, EXIT_OK, StderrProgress
from parity.golden.mismatch import DEFAULT_REPORT_DIR
from parity.golden.store import DEFAULT_GOLDEN_DIR
from parity.options import DEVICE, GOLDEN_CLASS, MODEL_PATH, QUANTIZATION
from parity.quiet import quiet_libraries

NAME = "golden"
HELP = "update or verify the golden images of the seeded pipeline cases"
DESCRIPTION = """\
Render the golden cases (parity/checks/cases.py: base, LoRA at 0.5/1.0, fused, two adapters, a per-step
schedule, kohya and LoCon files) and compare them with the stored 8-bit images of this device class,
or rewrite those images.

update  renders each selected case twice, refuses non-finite or differing runs, measures its float64
        error, writes the PNG and merges its manifest entry atomically, then verifies it; baselines of
        cases not selected are never touched.
verify  compares; on a mismatch writes <report-dir>/artifacts/<case>.png (expected | actual |
        difference) and <report-dir>/index.html. A missing baseline fails and names the command.

With --quantization NAME every selected case renders on the denoiser quantized by NAME (torchao, GGUF,
quanto, fp8 layerwise casting; parity/quant/registry.py) and is stored under <family>-NAME-<case>, beside
the float baselines, its manifest entry naming the quantizer packages' versions; a fused case whose
fuse_lora raises there (GGUF, fp8) is skipped with diffusers' error where it has no baseline.

With --model-path DIR (and one --family) the cases render on that model folder instead of the tiny
model, and the manifest records the folder: keep its baselines under their own --golden-dir. Its float64
twin (update) holds one module in float64 at a time, not a float64 model.

Exit codes: 0 every case passes, 1 a case failed or has no baseline, 2 bad input."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("update", "verify"))
    parser.add_argument("--family", action="append", type=comma_list, metavar="F",
                        help="only these families (repeatable or comma-separated; default: all)")
    parser.add_argument("--golden-dir", default=DEFAULT_GOLDEN_DIR, metavar="DIR",
                        help=f"golden image root (default: {DEFAULT_GOLDEN_DIR})")
    GOLDEN_CLASS.add_to(parser)
    QUANTIZATION.add_to(parser, help="render every selected case on the denoiser quantized by NAME, as users "
                        "quantize it, each stored under its own key <family>-NAME-<case> with the quantizer "
                        "versions in its manifest entry (default: the float denoiser). Choices: "
                        + ", ".join(QUANTIZATION.kwargs["choices"]))
    MODEL_PATH.add_to(parser, help="local diffusers pipeline folder (a Hub snapshot too) or single-file .safetensors "
                      "checkpoint to render on (one --family); default: the tiny deterministic models")
    add_source_arguments(parser)
    parser.add_argument("--report-dir", default=None, metavar="DIR",
                        help="where mismatch images and index.html go (default: a new run folder "
                             f"{DEFAULT_REPORT_DIR}/<time>-<id>/, made only on a mismatch; "
                             f"{DEFAULT_REPORT_DIR}/latest)")
    add_overwrite_argument(parser)
    DEVICE.add_to(parser)
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    from parity.checks.cases import golden_cases
    from parity.devices import device_class, resolve, strict_float32
    from parity.golden import verify
    from parity.golden.quantized import quantized
    from parity.golden.store import GoldenStore, new_update_token
    from parity.runs.folders import adopt, output_folder
    from parity.errors import ParityInputError
    from parity.zoo import get_family

    families = [get_family(f).name for group in (args.family or []) for f in group]
    if args.model_path is not None and len(families) != 1:
        raise ParityInputError(f"--model-path renders one family's cases: give exactly one --family "
                               f"(got {len(families) or 'none'})", path=args.model_path)
    device = resolve(args.device)
    quiet_libraries()
    warnings.filterwarnings("ignore")
    strict_float32(device)
    update = args.action == "update"
    # An update stages every baseline and commits them together: a killed run leaves the old ones.
    store = GoldenStore(Path(args.golden_dir), args.golden_class or device_class(device),
                        staging=new_update_token() if update else None)
    if args.quantization is not None:
        from parity.quant.registry import require

        require(args.quantization, device)  # one line, exit 2, where it cannot run here
    cases = [quantized(case, args.quantization) for case in golden_cases(families or None)]
    # A named --report-dir is claimed now; the default run folder is only named, since a run with no
    # mismatch writes nothing there (``adopt`` marks it if one did).
    report_dir = output_folder(args.report_dir, "golden-report", args.overwrite, args.command_line,
                               DEFAULT_REPORT_DIR, create=False)

    def show(result: verify.CaseOutcome) -> None:
        if result.skipped is not None:
            print(f"skip  {result.skipped}")
            return
        shown = [line for line in result.lines if "baseline written" not in line] if result.ok else result.lines[:1]
        print(("ok    " if result.ok else "FAIL  ") + "\n      ".join(shown[0].splitlines()[:1] + shown[1:]))

    outcomes = verify.run_cases(store, cases, report_dir, update, device, StderrProgress(enabled=not args.quiet),
                                on_outcome=show, model_path=model_source(args))
    failed = [result for result in outcomes if not result.ok]
    for result in failed:
        print("\n" + "\n".join(result.lines))
    skipped = sum(result.skipped is not None for result in outcomes)
    print(f"\n{len(cases) - len(failed) - skipped} passed, {len(failed)} failed"
          + (f", {skipped} skipped" if skipped else "") + f" ({store.dir})")
    if args.report_dir is None and adopt(report_dir, args.command_line):
        print(f"mismatch report: {report_dir / 'index.html'}")
    return EXIT_OK if not failed else EXIT_FAILED
