"""What a matrix holds, as data: rows (a case: family × layout × check), version sets (columns), and one cell
per row × set. ``matrix.json`` is ``Matrix.to_json()``; the markdown and HTML reports read only this.

A cell's ``state``:

- ``correct``: the check passed against our reference;
- ``wrong``: it failed; ``how`` says in one word what the diagnosis measured (``WRONG_HOW``);
- ``refused``: diffusers/PEFT raised on a file our reader accepts; ``summary`` is the error's first line;
- ``unavailable``: the family, layout or API does not exist in that version set (said so in ``summary``);
- ``error``: the check itself could not run (the worker crashed, a set failed to install or import).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = 1
STATES = ("correct", "wrong", "refused", "unavailable", "error")
# What a wrong cell's diagnosis measured (parity/checks/diagnosis.py phrases, parity/matrix/cells.py maps them):
# dropped (nothing merged), scaled (a multiple of the reference delta: alpha, weight or scale off), sign,
# split (a fused file module split wrongly), swapped (output halves in the other order), rounding (an extra
# rounding in a half-precision dtype), untargeted (a weight no adapter targets changed), missing, drift
# (unfuse beyond its bound), recompiled, output (hotswap output off), other.
WRONG_HOW = ("dropped", "scaled", "sign", "split", "swapped", "rounding", "untargeted", "missing", "drift",
             "recompiled", "output", "other")
# A version set's status: ok (its cells ran), install-failed, import-failed, crashed (the worker died part way:
# the cells it finished are kept, the rest are errors), skipped (not run: --only, or no room).
SET_STATUSES = ("ok", "install-failed", "import-failed", "crashed")


@dataclass(frozen=True)
class Row:
    id: str  # unique, stable across runs: "<family>/<layout case id>/<check>"
    family: str
    layout: str  # the layout case's id without the family (e.g. "kohya-locon"), or the user's file name
    check: str  # merge | merge-bf16 | merge-noalpha | unfuse | hotswap | algorithm | file
    what: str  # one phrase: what the check loads and measures


@dataclass(frozen=True)
class Cell:
    state: str  # one of STATES
    how: str | None = None  # wrong: one of WRONG_HOW
    summary: str = ""  # one line: the diagnosis, the error's first line, or what is unavailable
    evidence: tuple[str, ...] = ()  # the check's own lines (failures, worst weights, swap records)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"cell state {self.state!r} is not one of {STATES}")
        if (self.state == "wrong") != (self.how is not None):
            raise ValueError(f"a {self.state} cell {'needs' if self.state == 'wrong' else 'takes no'} how")
        if self.how is not None and self.how not in WRONG_HOW:
            raise ValueError(f"wrong how {self.how!r} is not one of {WRONG_HOW}")

    @property
    def label(self) -> str:
        """The cell's short text in the grid: the state, and for wrong ones how."""
        return f"wrong: {self.how}" if self.state == "wrong" else self.state


@dataclass(frozen=True)
class VersionSet:
    """One column: the pins it installs, or an existing interpreter (``python``) used as it is."""

    name: str  # what the column is headed with, e.g. "diffusers 0.42.1"
    pins: dict[str, str] = field(default_factory=dict)  # package -> exact version
    python: str | None = None  # an existing environment's interpreter: nothing is installed
    env: dict[str, str] = field(default_factory=dict)  # extra environment for its worker (PYTHONPATH first)
    rule: str = ""  # how the pins were chosen (e.g. "peft: newest released before diffusers 0.37.1")


@dataclass
class SetResult:
    version_set: VersionSet
    status: str  # one of SET_STATUSES
    detail: str = ""  # install-failed / import-failed / crashed: the first line of why
    versions: dict[str, str] = field(default_factory=dict)  # what the worker imported (torch, diffusers, peft, …)
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    cached: bool = False  # its cells came from the results cache
    log: str = ""  # path of the install or worker log, for the reader


@dataclass
class Matrix:
    created: str
    machine: dict[str, Any]
    suite: dict[str, Any]  # lora-parity version, source fingerprint, selection
    sets: list[SetResult]
    rows: list[Row]
    cells: dict[str, dict[str, Cell]]  # row id -> set name -> cell

    def cell(self, row: Row | str, set_name: str) -> Cell | None:
        return self.cells.get(row if isinstance(row, str) else row.id, {}).get(set_name)

    def changes(self, row: Row | str) -> bool:
        """Whether the row's verdict differs between the version sets that have it (its finding changed): a
        family that is only unavailable in older sets, or a set that did not run, is no change."""
        labels = {c.label for name, c in self.cells.get(row if isinstance(row, str) else row.id, {}).items()
                  if c.state not in ("error", "unavailable")}
        return len(labels) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "machine": self.machine,
            "suite": self.suite,
            "sets": [asdict(s) for s in self.sets],
            "rows": [asdict(r) for r in self.rows],
            "cells": {r: {s: asdict(c) for s, c in by_set.items()} for r, by_set in self.cells.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Matrix:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"matrix.json schema {data.get('schema')!r}, this lora-parity reads {SCHEMA}")
        sets = [SetResult(**{**s, "version_set": VersionSet(**s["version_set"])}) for s in data["sets"]]
        rows = [Row(**r) for r in data["rows"]]
        cells = {r: {s: Cell(**{**c, "evidence": tuple(c.get("evidence", ()))}) for s, c in by_set.items()}
                 for r, by_set in data["cells"].items()}
        return cls(data["created"], data["machine"], data["suite"], sets, rows, cells)
