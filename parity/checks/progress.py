"""How a long check reports its steps. A check says how many steps it will take, then runs each inside
``progress.step(label)``, which yields a setter for the step's verdict. The CLI prints the steps on
stderr; tests pass :data:`SILENT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Progress(Protocol):
    def plan(self, steps: int) -> None:
        """How many ``step`` calls follow."""

    def step(self, label: str) -> AbstractContextManager[Callable[[bool], None]]:
        """One step; call what it yields with False when the step's check failed."""


class _Silent:
    def plan(self, steps: int) -> None:
        pass

    @contextmanager
    def step(self, label: str) -> Iterator[Callable[[bool], None]]:
        yield lambda ok: None


SILENT: Progress = _Silent()
