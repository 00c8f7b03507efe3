"""``lora-parity matrix``: the compatibility matrix across library version sets (parity.matrix)."""

from __future__ import annotations

import argparse
import os
import sys

from parity.cli.arguments import add_overwrite_argument, comma_list, positive_int
from parity.cli.output import EXIT_OK
from parity.errors import ParityInputError

NAME = "matrix"
HELP = "which diffusers/peft versions load, fuse and hotswap which LoRA layouts correctly"
DESCRIPTION = """\
Run the merge-parity, unfuse and hotswap checks for every family x layout of the tiny zoo (or your own
--lora files on one --family) under each of several library version sets, each in its own cached
environment, and write one grid: matrix.json, matrix.md and matrix.html in a new run folder under
reports/matrix/ (reports/matrix/latest).

Version sets: by default the last 8 diffusers minor releases, each with the peft and transformers
released on or before its day (--list-sets prints them and the rule). --set adds one
(diffusers==0.37.1,peft==0.18.1,transformers==5.5.4 or NAME=python:/path/to/python for an existing
environment, used as it is); --sets-file reads a TOML list. --torch adds torch as an axis.

Each cell: correct, wrong (how: dropped, scaled, split, swapped, ...), refused (diffusers' error,
first line), unavailable (the family or API does not exist in that version), or error. A set that
fails to install or import is one column saying so.

Environments and results are cached (--cache-dir; default $LORA_PARITY_CACHE/matrix or
~/.cache/lora-parity/matrix): a second run with one more release runs only that release.

Exit codes: 0 the matrix was written (whatever its cells say), 2 bad input."""
MATRIX_ROOT = os.path.join("reports", "matrix")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sets = parser.add_argument_group("version sets")
    sets.add_argument("--set", dest="sets", action="append", default=[], metavar="SPEC",
                      help="a version set (repeatable): diffusers==X,peft==Y[,transformers==Z][,torch==T], "
                           "NAME=… to name it, or NAME=python:PATH for an existing environment")
    sets.add_argument("--sets-file", metavar="TOML", help="version sets from a TOML file ([[set]] name, pins, python)")
    sets.add_argument("--last", type=positive_int, default=8, metavar="N",
                      help="without --set/--sets-file: the last N diffusers minor releases (default 8)")
    sets.add_argument("--torch", type=comma_list, default=None, metavar="V[,V…]",
                      help="torch versions as an axis: every set once per version (default: this torch)")
    sets.add_argument("--list-sets", action="store_true", help="print the version sets and how they were chosen, and exit")
    sets.add_argument("--refresh-releases", action="store_true",
                      help="fetch the release dates the default sets are chosen by from the package index first")
    cases = parser.add_argument_group("cases")
    cases.add_argument("--family", action="append", default=None, metavar="F",
                       help="only these families (repeatable); with --lora, the one family the files are for")
    cases.add_argument("--check", type=comma_list, default=None, metavar="C[,C…]",
                       help="only these checks: merge, merge-noalpha, merge-bf16, unfuse, hotswap, algorithm (default: all)")
    cases.add_argument("--lora", action="append", default=[], metavar="FILE",
                       help="your own LoRA files (repeatable) as the rows: each file's merge and unfuse")
    cases.add_argument("--model-path", metavar="PATH",
                       help="with --lora: the model folder they are checked on (default: the tiny model, or the "
                            "published architecture where the files are wider)")
    run = parser.add_argument_group("running")
    run.add_argument("--jobs", type=positive_int, default=2, metavar="N", help="version sets run at a time (default 2)")
    run.add_argument("--cache-dir", metavar="DIR", help="environments and results cache")
    run.add_argument("--rebuild", action="store_true", help="build the environments again")
    run.add_argument("--rerun", action="store_true", help="run every set again, ignoring cached results")
    parser.add_argument("--out", metavar="DIR",
                        help=f"matrix.json, matrix.md, matrix.html (default: a new run folder {MATRIX_ROOT}/<time>-<id>/)")
    add_overwrite_argument(parser)


def _version_sets(args: argparse.Namespace) -> list:
    from parity.matrix import versionsets

    if args.refresh_releases:
        versionsets.refresh_releases()
    sets = [versionsets.parse_set(text) for text in args.sets]
    if args.sets_file:
        sets += versionsets.read_sets_file(args.sets_file)
    if not sets:
        sets = versionsets.default_sets(args.last)
    if args.torch:
        sets = versionsets.with_torch(sets, args.torch)
    names = [vs.name for vs in sets]
    if len(set(names)) != len(names):
        raise ParityInputError(f"two version sets share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}): "
                               "name them with NAME=…")
    return sets


def _cases(args: argparse.Namespace) -> tuple[list, dict]:
    from parity.matrix.cases import CHECKS, file_cases, matrix_cases
    from parity.zoo import get_family

    if args.lora:
        if not args.family or len(args.family) != 1:
            raise ParityInputError("--lora needs exactly one --family: the family the files are for")
        get_family(args.family[0])  # an unknown family: one line naming the choices
        for path in args.lora:
            if not os.path.isfile(path):
                raise ParityInputError("no such file", path=path)
        files = [os.path.abspath(p) for p in args.lora]
        model = os.path.abspath(args.model_path) if args.model_path else None
        return file_cases(args.family[0], files, model), {"family": args.family[0], "files": files, "model_path": model}
    if args.model_path:
        raise ParityInputError("--model-path is for --lora files; the case table's rows run on the tiny zoo")
    checks = tuple(args.check or CHECKS)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ParityInputError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    for name in args.family or ():
        get_family(name)
    cases = matrix_cases(args.family, checks)
    if not cases:
        raise ParityInputError("no case selected")
    return cases, {"families": args.family or "all", "checks": list(checks)}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from parity.matrix.envs import default_cache_dir
    from parity.matrix.report import terminal_lines, write_matrix_report
    from parity.matrix.run import run_matrix
    from parity.runs.folders import output_folder

    sets = _version_sets(args)
    if args.list_sets:
        for vs in sets:
            what = f"python {vs.python}" if vs.python else ", ".join(f"{k}=={v}" for k, v in vs.pins.items())
            print(f"{vs.name}: {what}" + (f"  ({vs.rule})" if vs.rule else ""))
        return EXIT_OK
    cases, selection = _cases(args)
    out = output_folder(args.out, "matrix", args.overwrite, args.command_line, MATRIX_ROOT)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    print(f"matrix: {len(cases)} cells × {len(sets)} version sets, {args.jobs} at a time; cache {cache}",
          file=sys.stderr)
    matrix = run_matrix(sets, cases, cache, out, jobs=args.jobs, rebuild=args.rebuild, rerun=args.rerun,
                        selection=selection, log=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(terminal_lines(matrix)))
    paths = write_matrix_report(matrix, out)
    print(f"report: {paths[2]} ({paths[1]}, {paths[0]})")
    return EXIT_OK
