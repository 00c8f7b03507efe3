"""What the verbs print and write: exit codes, the one-line error, tables, progress lines on stderr,
and JSON reports."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from parity.errors import ParityInputError

PROG = "lora-parity"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def print_error(message: str) -> None:
    # Library messages may span lines; the contract is one line per error.
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def versions_line(versions: dict[str, str]) -> str:
    v = versions
    return f"versions: torch {v['torch']}, diffusers {v['diffusers']}, peft {v['peft']}, transformers {v['transformers']}"


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else str(x)


class StderrProgress:
    """``[i/n] label ... ok (1.2 s)`` lines on stderr, so stdout carries only the report
    (parity.checks.progress.Progress). A step that advances for longer than ADVANCE_EVERY seconds
    also prints ``  120/794 weights compared, 12.3 s`` lines, one at most every ADVANCE_EVERY seconds."""

    ADVANCE_EVERY = 5.0

    def __init__(self, enabled: bool, total: int = 0) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.started = self.last = 0.0
        self.label = ""
        self.broke_line = False

    def plan(self, steps: int) -> None:
        self.total = steps

    @contextmanager
    def step(self, label: str) -> Iterator[Callable[[bool], None]]:
        self.done += 1
        self.label, self.broke_line = label, False
        outcome = {"ok": True}
        if self.enabled:
            print(f"[{self.done}/{self.total}] {label} ...", end="", file=sys.stderr, flush=True)
        self.started = self.last = time.perf_counter()
        try:
            yield lambda ok: outcome.update(ok=ok)
        except BaseException:
            if self.enabled:  # end the open line so a traceback starts on its own
                print(" error", file=sys.stderr, flush=True)
            raise
        if self.enabled:
            word = "ok" if outcome["ok"] else "FAIL"
            again = f"[{self.done}/{self.total}] {self.label} ..." if self.broke_line else ""
            print(f"{again} {word} ({time.perf_counter() - self.started:.1f} s)", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def advance(self, done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.ADVANCE_EVERY:
            return
        self.last = now
        print(("" if self.broke_line else "\n") + f"  {done}/{total} {what}, {now - self.started:.1f} s",
              file=sys.stderr, flush=True)
        self.broke_line = True


def check_json_target(path: str | None, overwrite: bool) -> None:
    """Find out before a long run, not after it, that the report cannot be written or would clobber one."""
    from parity.runs.folders import claim_file

    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent):
        raise ParityInputError("cannot write the JSON report here", path=path)
    claim_file(path, overwrite)


def report_run(args: Any, plan: Any, run: Callable[[Any, Any], Any], format_report: Callable[[Any], str]) -> int:
    """A check's run as the CLI shows it: the JSON report's file claimed before the long work, the
    libraries quiet, progress on stderr, the report on stdout (and as JSON), its verdict as the exit code."""
    import warnings

    from parity.quiet import quiet_libraries

    check_json_target(args.json, args.overwrite)
    quiet_libraries()
    warnings.filterwarnings("ignore")  # the CLI's stderr carries progress and at most one error line
    report = run(plan, StderrProgress(enabled=not args.quiet))
    print(format_report(report))
    if args.json:
        write_json(report.to_json(), args.json)
    return EXIT_OK if report.ok else EXIT_FAILED


def _json_safe(value: Any) -> Any:
    # inf/nan are not JSON; an element that overflowed reads as null (and its result is not ok).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(report: dict[str, Any], path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(report), fh, indent=2, allow_nan=False)
            fh.write("\n")
    except OSError as exc:
        raise ParityInputError(f"cannot write the JSON report ({exc.strerror})", path=path) from None
