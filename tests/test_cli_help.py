"""``--help`` exits 0 with its usage for ``lora-parity`` and every verb in the registry (and every
sub-action a verb declares), so a verb added to parity.cli.VERBS is covered without editing this file."""

from __future__ import annotations

import argparse

import pytest

from parity.cli import VERBS, build_parser, main
from tests.support.cli import help_problem


def sub_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands a parser declares (add_subparsers), by name."""
    return {name: p for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, p in action.choices.items()}


def command_lines() -> list[list[str]]:
    verbs = sub_actions(build_parser())
    lines: list[list[str]] = [[]]
    for verb in VERBS:  # the registry, not the parser, decides which verbs there are
        lines.append([verb.NAME])
        lines += [[verb.NAME, action] for action in sub_actions(verbs[verb.NAME])]
    return lines


@pytest.mark.parametrize("argv", command_lines(), ids=lambda argv: " ".join(argv) or "lora-parity")
def test_help_exits_0_with_usage(argv: list[str]) -> None:
    assert help_problem(main, argv) is None


def test_every_registered_verb_is_covered() -> None:
    assert {line[0] for line in command_lines() if line} == {verb.NAME for verb in VERBS}
