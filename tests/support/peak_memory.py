"""Run one ``lora-parity`` command in this process and report its peak host memory (ru_maxrss) as the
last line on stderr: ``peak-rss-bytes <n>``. ``--keep-full-copy`` first makes the check keep a full
copy of the loaded pipeline's components alive: the negative control of the memory bound.

    python -m tests.support.peak_memory [--keep-full-copy] check --family ... --model-path ... --lora ...
"""

from __future__ import annotations

import copy
import resource
import sys

MARKER = "peak-rss-bytes"


def keep_full_copies() -> list:
    """Every pipeline check loads files into is deep-copied and kept: what a check must never do."""
    from parity.checks import check

    kept: list = []
    original = check.load_files

    def load_files(pipe, family, *args, **kwargs):
        kept.append(copy.deepcopy(family.components(pipe)))
        return original(pipe, family, *args, **kwargs)

    check.load_files = load_files
    return kept


def main(argv: list[str]) -> int:
    kept = keep_full_copies() if argv[:1] == ["--keep-full-copy"] else None
    argv = argv[1:] if kept is not None else argv
    from parity.cli import main as cli

    code = cli(argv)
    print(f"{MARKER} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
