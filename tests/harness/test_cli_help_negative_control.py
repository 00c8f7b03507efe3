"""The --help check (tests/test_cli_help.py) must catch a broken help string: a throwaway parser whose
help holds a lone '%', as `gate --help` did, makes help_problem report the ValueError argparse raises."""

from __future__ import annotations

import argparse

from tests.support.cli import help_problem


def throwaway_main(help_text: str):
    def main(argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog="throwaway")
        parser.add_argument("--gate", help=help_text)
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    return main


def test_a_lone_percent_in_a_help_string_is_reported() -> None:
    problem = help_problem(throwaway_main("default ratio:25%)"), [])
    assert problem is not None and "ValueError" in problem and "unsupported format character" in problem


def test_the_same_help_with_the_percent_doubled_passes() -> None:
    assert help_problem(throwaway_main("default ratio:25%%)"), []) is None
