"""``lora-parity model``: write a family's published architecture, synthetic weights, as a model folder
(parity.zoo.published), and a LoRA file for it; to measure a real-size check on any machine."""

from __future__ import annotations

import argparse
import sys

from parity.cli.arguments import finite_float, positive_int
from parity.cli.output import EXIT_OK
from parity.errors import ParityInputError

NAME = "model"
HELP = "write a family's published architecture (synthetic weights) as a model folder"
DESCRIPTION = """\
Write the family's published architecture as a diffusers folder: its LoRA-capable components built
from the published configs with deterministic weights, the other parts sized to fit (what `check`
uses without --model-path). --blocks N builds a transformer (flux, qwenimage, wan, zimage, flux2,
flux2-klein) with N blocks at full width (flux: N double-stream and 2N single-stream ones; flux2: N and 6N;
flux2-klein: N and 4N (4B) or 3N (9B); wan: N in each expert; zimage: N main layers beside its 2+2
refiners): memory and time are linear in blocks. --published picks one of a
family's published models: for wan, wan2.2-t2v-a14b (the default: two 14B experts, transformer and
transformer_2, boundary_ratio 0.875), wan2.1-t2v-14b or wan2.1-t2v-1.3b (one transformer, no
transformer_2, no boundary_ratio); for zimage, z-image-turbo (the default) or z-image, one 6B
architecture under two names; for flux2-klein, flux.2-klein-4b (the default) or flux.2-klein-9b; flux2 is
flux.2-dev (32B: larger than this machine in any dtype, so give it --blocks). --dtype
stores the weights in float16 or bfloat16 (the float32 values rounded), as published checkpoints are:
a bfloat16 check of a float32 folder holds the mapped file beside the model while diffusers loads it.
--lora FILE also writes a LoRA file for it on the family's default targets.

Exit codes: 0 written, 2 bad input (a folder that is not empty, too little disk or memory)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    parser.add_argument("--blocks", type=positive_int, help="transformer blocks (default: as published)")
    parser.add_argument("--published", metavar="NAME",
                        help="which published model, for a family of several (wan: wan2.2-t2v-a14b, the default; "
                        "wan2.1-t2v-14b; wan2.1-t2v-1.3b; zimage: z-image-turbo, the default; z-image; "
                        "flux2-klein: flux.2-klein-4b, the default; flux.2-klein-9b; flux2: flux.2-dev)")
    parser.add_argument("--dtype", default="float32",
                        help="the dtype its weights are stored in (default: float32)")
    parser.add_argument("--lora", metavar="FILE", help="also write a LoRA file for the model here")
    parser.add_argument("--layout", help="the LoRA file's layout (default: the family's first)")
    parser.add_argument("--rank", type=positive_int, default=8, help="LoRA rank (default: 8)")
    parser.add_argument("--alpha", type=finite_float, help="LoRA alpha (default: none written)")


def run(args: argparse.Namespace) -> int:
    from parity.lora.layouts import LAYOUTS
    from parity.lora.synth import write_lora
    from parity.quiet import quiet_libraries
    from parity.tolerances import dtype_from_name
    from parity.zoo import get_family
    from parity.zoo.published import ensure_folder, meta_components, published

    quiet_libraries()
    family = get_family(args.family)
    layout = args.layout or family.layouts[0]
    if layout not in LAYOUTS:
        raise ParityInputError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    model = published(family, args.blocks, folder=args.out, dtype=dtype_from_name(args.dtype), variant=args.published)
    ensure_folder(family, model, note=lambda line: print(line, file=sys.stderr))
    print(f"{model.describe()}: {model.parameters / 1e9:.2f} B parameters")
    if args.lora:
        write_lora(meta_components(family, args.blocks, variant=args.published), family.default_targets, args.lora,
                   layout=layout, rank=args.rank, alpha=args.alpha)
        print(f"LoRA file ({layout}, rank {args.rank}): {args.lora}")
    return EXIT_OK
