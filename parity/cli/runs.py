"""``lora-parity runs``: run folders and gate bundles for shell scripts (tools/*.sh), through the same
rules as every other command (parity/runs/folders.py): ``new ROOT`` and ``latest ROOT`` print a run
folder, ``claim DIR`` checks an explicit one, ``bundle DIR ROLE`` starts a gate bundle."""

from __future__ import annotations

import argparse

from parity.cli.output import EXIT_OK

NAME = "runs"
HELP = "for scripts: make, find or claim a run folder; start an upgrade-gate bundle"
DESCRIPTION = """\
What tools/parity.sh, bench.sh, gate.sh and repeat.sh use to place their outputs, so that they follow
the same rules as the other commands: a new run folder per run, `latest` pointing at it, and a named
folder refused when it holds a previous run's output.

new ROOT         make a new run folder under ROOT, point ROOT/latest at it, print it
latest ROOT      print ROOT's newest run folder
claim DIR        check (and mark) an explicit output folder; refused (exit 2) as the other commands refuse
bundle DIR ROLE  write DIR/bundle.json for an upgrade-gate results bundle (ROLE: old or new)

Exit codes: 0 done, 2 refused or bad input."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from parity.runs.folders import OUTPUTS

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="create a fresh run folder under ROOT and print it")
    new.add_argument("root")
    new.add_argument("--command", default=None, help="the command the folder is for, as its marker records it")
    sub.add_parser("latest", help="print ROOT's newest run folder").add_argument("root")
    claim = sub.add_parser("claim", help="check an explicit output folder (and mark it)")
    claim.add_argument("folder")
    claim.add_argument("--produces", default=None,
                       help=f"a writer ({', '.join(OUTPUTS)}) or comma-separated names written there (default: all)")
    claim.add_argument("--overwrite", action="store_true")
    claim.add_argument("--flag", default="--overwrite", help="how the refusal names the override")
    claim.add_argument("--command", default=None, help="the command the folder is for, as its marker records it")
    bundle = sub.add_parser("bundle", help="write the manifest of an upgrade-gate results bundle")
    bundle.add_argument("folder")
    bundle.add_argument("role", help="old or new")


def run(args: argparse.Namespace) -> int:
    from parity.errors import ParityInputError
    from parity.runs.folders import OUTPUTS, claim_dir, fresh_run_dir, latest
    from parity.runs.gate import write_manifest

    if args.action == "new":
        print(fresh_run_dir(args.root, args.command))
    elif args.action == "latest":
        found = latest(args.root)
        if found is None:
            raise ParityInputError("holds no run folder (no latest pointer)", path=args.root)
        print(found)
    elif args.action == "claim":
        produces = (OUTPUTS.get(args.produces) or args.produces.split(",")) if args.produces else None
        print(claim_dir(args.folder, produces, args.overwrite, args.flag, args.command))
    else:
        write_manifest(args.folder, args.role, args.command_line)
    return EXIT_OK
