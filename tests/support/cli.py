"""What every CLI error must look like: exit 2 and exactly one line on stderr, no traceback."""

from __future__ import annotations

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
