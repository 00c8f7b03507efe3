"""The case table (parity/checks/cases.py) as pytest parameters: a case's data become its marks.

``slow`` → the ``slow`` marker; ``known`` → a strict xfail raising the finding's exception type, with
the finding as the reason; a CUDA device → the ``gpu`` marker (skipped with a reason elsewhere); a
``group`` → ``xdist_group``, so the cases sharing a compiled model or a built subject stay on one
worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest


def marks_of(case: Any) -> list[pytest.MarkDecorator]:
    marks = []
    if getattr(case, "device", "cpu") == "cuda":
        marks.append(pytest.mark.gpu)
    if getattr(case, "slow", False):
        marks.append(pytest.mark.slow)
    known = getattr(case, "known", None)
    if known is not None:
        marks.append(pytest.mark.xfail(strict=True, raises=known.raises, reason=known.reason))
    group = getattr(case, "group", None)
    if group is not None:
        marks.append(pytest.mark.xdist_group(group))
    return marks


def params(cases: Iterable[Any], *marks: pytest.MarkDecorator) -> list[Any]:
    """One ``pytest.param`` per case, its id the case's, its marks the case's plus ``marks``."""
    return [pytest.param(case, id=case.id, marks=[*marks_of(case), *marks]) for case in cases]


def family_params(cases: Iterable[Any]) -> list[Any]:
    """One ``pytest.param`` per case of parity.checks.cases.family_cases: its family's name, its marks."""
    return [pytest.param(case.family, id=case.id, marks=marks_of(case)) for case in cases]
