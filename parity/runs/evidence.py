"""The gate's evidence grouped for reading: changed tests by check, then by family and layout, each group
with its count and the message its tests share; and error growth shown with the digits that show it.

Issue 17: the gate page listed 137 "fixed" rows as one flat table, and "parity errors that grew" showed
0.50 → 0.50. A reader wants to see "test_fuse_matches_reference_merge, flux, kohya-bfl: 12, the same
finding" once, and a growth that is there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from parity.checks.cases import DEVICES, DTYPES

NO_PART = "-"


@dataclass(frozen=True)
class EvidenceGroup:
    check: str  # the test function
    family: str
    layout: str
    tests: tuple[str, ...]
    message: str  # the first line most of its tests report, with how many share it

    @property
    def count(self) -> int:
        return len(self.tests)


def family_names() -> list[str]:
    """Every family a test id may name: those this environment builds and those it cannot."""
    from parity.zoo import FAMILIES, UNAVAILABLE  # the zoo's registry, read when a page is made

    return [*FAMILIES, *UNAVAILABLE]


def id_parts(test: str, families: Iterable[str]) -> tuple[str, str, str]:
    """(check, family, layout) of a test id ``path::function[params]``: the family is the longest family
    name its parameters start with, the layout what follows it up to the dtype or device."""
    function = test.rsplit("::", 1)[-1]
    check, _, params = function.partition("[")
    # ``check[params]@xdist_group``: the group suffix goes before the closing bracket
    tokens = params.split("@")[0].rstrip("]").split("-") if params else []
    family = NO_PART
    for name in sorted(families, key=len, reverse=True):
        parts = name.split("-")
        if tokens[:len(parts)] == parts:
            family, tokens = name, tokens[len(parts):]
            break
    if family == NO_PART:
        return check, NO_PART, NO_PART
    layout = []
    for token in tokens:
        if token in DTYPES or token in DEVICES:
            break
        layout.append(token)
    return check, family, "-".join(layout) or NO_PART


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def common_message(messages: Sequence[str], width: int = 160) -> str:
    """The first line most messages share, and how many share it when not all do."""
    lines = Counter(_first_line(m) for m in messages)
    if not lines:
        return ""
    line, count = lines.most_common(1)[0]
    line = line if len(line) <= width else line[: width - 1] + "…"
    return line if count == len(messages) else f"{line} ({count} of {len(messages)})"


def group_changes(changes: Sequence[Any], families: Iterable[str]) -> list[EvidenceGroup]:
    """``changes`` (anything with ``test`` and ``message``) grouped by check, family and layout, largest first."""
    families = list(families)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for change in changes:
        groups.setdefault(id_parts(change.test, families), []).append(change)
    out = [EvidenceGroup(*key, tuple(c.test for c in items), common_message([c.message for c in items]))
           for key, items in groups.items()]
    return sorted(out, key=lambda g: (-g.count, g.check, g.family, g.layout))


def distinct(old: float, new: float, digits: int = 2, most: int = 8) -> tuple[str, str]:
    """``old`` and ``new`` with the fewest decimals (at least ``digits``) that tell them apart."""
    for places in range(digits, most + 1):
        a, b = f"{old:.{places}f}", f"{new:.{places}f}"
        if a != b:
            return a, b
    return f"{old:.{most}g}", f"{new:.{most}g}"


def growth_ratio(old: float, new: float) -> str:
    if old == 0:
        return "from 0" if new else "×1"
    return f"×{new / old:.4g}"
