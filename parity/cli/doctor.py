"""``lora-parity doctor``: what this machine can run (parity/doctor.py collects it), and the
``--version`` action of the top-level parser."""

from __future__ import annotations

import argparse
from typing import Any

from parity.cli.arguments import add_overwrite_argument
from parity.cli.output import EXIT_OK, check_json_target, write_json
from parity.golden.store import DEFAULT_GOLDEN_DIR

NAME = "doctor"
HELP = "versions, device, and which families, quantizers and golden baselines this machine can run"
DESCRIPTION = """\
Report what this machine can run: the versions of lora-parity, torch, diffusers, peft, transformers
and the quantizer packages; the CPU (model, cores, memory) and each CUDA device with its compute
capability; which model families (--family) and quantizers (--quantization) run here, and why not;
and how many golden cases have a baseline for this machine's device class.

Informative, not a gate: exit 0 whenever it could report (a section it could not read says why),
2 on bad input (a --json file that exists, without --overwrite)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--golden-dir", default=DEFAULT_GOLDEN_DIR, metavar="DIR",
                        help="the golden images' root folder (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT (a new file)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    from parity.doctor import collect, format_text

    check_json_target(args.json, args.overwrite)
    report = collect(golden_dir=args.golden_dir)
    print(format_text(report))
    if args.json:
        write_json(report, args.json)
    return EXIT_OK


class VersionAction(argparse.Action):
    """``lora-parity --version``: the package and library versions on stdout, exit 0 (argparse's own
    version action rewraps the text into one paragraph)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        from parity.doctor import version_text

        print(version_text())
        parser.exit(0)
