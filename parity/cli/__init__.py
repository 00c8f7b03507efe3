"""``lora-parity``: the command line, one module per verb. A verb module holds its NAME, HELP and
DESCRIPTION, ``add_arguments(parser)`` and ``run(args) -> exit code``; it parses, calls one check
(parity/checks, parity/golden, parity/bench, parity/runs) and prints its report.

Exit codes: 0 every check passed, 1 a parity check failed, 2 bad input (printed as one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys

from parity.cli import (
    agree,
    check,
    compare,
    doctor,
    edit,
    families,
    gate,
    golden,
    hotswap,
    matrix,
    model,
    report,
    runs,
)
from parity.cli.arguments import Parser
from parity.cli.output import EXIT_BAD_INPUT, PROG, print_error
from parity.errors import LoaderRefused, ParityInputError

# The one place verbs are registered, in the order `lora-parity --help` lists them.
VERBS = (check, hotswap, edit, golden, families, model, report, compare, gate, matrix, agree, runs, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Parity checks for LoRA in diffusers + PEFT.")
    parser.add_argument("--version", action=doctor.VersionAction,
                        help="print the versions of lora-parity, torch, diffusers, peft and transformers, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb in VERBS:
        p = sub.add_parser(verb.NAME, help=verb.HELP, description=verb.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        verb.add_arguments(p)
        p.set_defaults(run=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed as one line)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    # Run folders record the command that made them (parity/runs/folders.py).
    args.command_line = [PROG, *(sys.argv[1:] if argv is None else argv)]
    try:
        return args.run(args)
    except ParityInputError as exc:
        print_error(str(exc))
        return EXIT_BAD_INPUT
    except LoaderRefused as exc:  # a verdict on diffusers, not on the file: stdout, like every FAIL
        print(f"FAIL: {' '.join(str(exc).split())}")
        return 1
