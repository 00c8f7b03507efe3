"""What every CLI error must look like: exit 2 and exactly one line on stderr, no traceback; and what
every --help must look like: exit 0, a usage line, no traceback."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout

import pytest


def assert_one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lora-parity: error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def help_problem(main: Callable[[list[str]], int], argv: list[str]) -> str | None:
    """What is wrong with ``main([*argv, "--help"])``, or None: it must exit 0 and print a usage line,
    with no exception and no traceback. argparse formats help lazily, so a bad help string (a lone
    '%') only shows when --help runs; that is why every verb's --help is run rather than inspected."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*argv, "--help"])
    except Exception as exc:  # noqa: BLE001 - the failure being looked for
        return f"{' '.join(argv) or '(top level)'} --help raised {type(exc).__name__}: {exc}"
    text = out.getvalue() + err.getvalue()
    if code != 0:
        return f"{' '.join(argv) or '(top level)'} --help exited {code}: {text.strip()[-200:]}"
    if "Traceback" in text:
        return f"{' '.join(argv) or '(top level)'} --help printed a traceback"
    if not out.getvalue().startswith("usage:"):
        return f"{' '.join(argv) or '(top level)'} --help printed no usage on stdout: {text[:200]!r}"
    return None
