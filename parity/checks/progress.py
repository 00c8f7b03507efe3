"""How a long check reports its steps. A check says how many steps it will take, then runs each inside
``progress.step(label)``, which yields a setter for the step's verdict; inside a step that walks many
weights it calls ``progress.advance(done, total, what)`` as it goes (on a real model a step is minutes).
The CLI prints the steps on stderr; tests pass :data:`SILENT`.
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

    def advance(self, done: int, total: int, what: str) -> None:
        """Within the current step: ``done`` of ``total`` ``what`` (e.g. "weights compared")."""

    def note(self, message: str) -> None:
        """A line before the steps (the predicted memory)."""


class _Silent:
    def plan(self, steps: int) -> None:
        pass

    @contextmanager
    def step(self, label: str) -> Iterator[Callable[[bool], None]]:
        yield lambda ok: None

    def advance(self, done: int, total: int, what: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


SILENT: Progress = _Silent()
