"""``lora-parity agree``: do two runs of the suite agree exactly (parity.runs.agree)."""

from __future__ import annotations

import argparse

from parity.cli.output import EXIT_FAILED, EXIT_OK

NAME = "agree"
HELP = "do two runs of the suite give identical outcomes and numbers (determinism)"
DESCRIPTION = """\
Two runs of the suite on one machine (each a folder with junit.xml from --junitxml and
parity/summary.json from --parity-report; tools/repeat.sh makes both, the second in random order)
must agree exactly: the same tests, the same outcomes, every measured error bit-for-bit the same.
Exit 0 when they do, 1 with the differences when not, 2 on unreadable input.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", metavar="RUN1", help="the first run folder")
    parser.add_argument("second", metavar="RUN2", help="the second run folder")


def run(args: argparse.Namespace) -> int:
    from parity.runs.agree import agree, format_agreement

    result = agree(args.first, args.second)
    print(format_agreement(result, args.first, args.second))
    return EXIT_OK if result.identical else EXIT_FAILED
