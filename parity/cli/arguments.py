"""Argument parsing shared by the verbs: the parser whose usage errors are one line, value types,
and the argument groups several verbs take."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, NoReturn

from parity.cli.output import EXIT_BAD_INPUT, print_error
from parity.options import ALLOW_PICKLE, DEVICE, MODEL_CONFIG, MODEL_PATH, VARIANT

if TYPE_CHECKING:  # the gate parser is imported when a verb uses it, not at every start
    from parity.bench.compare import FailOn


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the same single stderr line as every other input error."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_BAD_INPUT)


def comma_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    return items


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    return [finite_float(item) for item in comma_list(text)]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def fail_on(text: str) -> FailOn:
    from parity.bench.compare import parse_fail_on

    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model a verb checks: a zoo family, tiny or from the user's folder."""
    parser.add_argument("--family", required=True, help="model family (see `lora-parity families`)")
    MODEL_PATH.add_to(parser, help="local diffusers pipeline folder (a Hub snapshot too) or single-file .safetensors "
                      "checkpoint; default: the family's tiny deterministic model, or for files wider than it its "
                      "published architecture (synthetic weights)")
    add_source_arguments(parser)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """How --model-path is read: --variant (a folder), --model-config (a single file)."""
    VARIANT.add_to(parser)
    MODEL_CONFIG.add_to(parser)


def model_source(args: argparse.Namespace) -> str | None:
    """--model-path with --variant and --model-config, as every verb passes it on."""
    from parity.zoo.source import model_path

    return model_path(args.model_path, getattr(args, "variant", None), getattr(args, "model_config", None))


def add_pickle_argument(parser: argparse.ArgumentParser) -> None:
    ALLOW_PICKLE.add_to(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a verb runs and where its report goes: the same for every one of them."""
    DEVICE.add_to(parser)
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT (a new file)")
    add_overwrite_argument(parser)
    add_quiet_argument(parser)


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    # parity/runs/folders.py: a named output that holds a previous run's output is refused without this.
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous run's output at the named --json/--out/--report-dir")


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
