"""The --parity-report summary lists every recorded row, worst bound usage first, with its outcome."""

from __future__ import annotations

import json

from parity.runs.summary import write_summary

ROWS = [
    {"check": "merge", "case": "a", "dtype": "float32", "max_ulps": 1.2, "max_bound_ratio": 0.4, "detail": "", "outcome": "passed"},
    {"check": "merge", "case": "b", "dtype": "bfloat16", "max_ulps": 9.0, "max_bound_ratio": 3.5, "detail": "", "outcome": "failed"},
    {"check": "unfuse", "case": "c", "dtype": "float16", "max_ulps": 1.0, "max_bound_ratio": 1.0, "detail": "x", "outcome": "passed"},
]


def test_summary_tables_put_the_worst_case_first_and_count_failures(tmp_path):
    write_summary(tmp_path, ROWS, exitstatus=1)

    text = (tmp_path / "summary.md").read_text()
    assert "**2 passed, 1 failed**" in text
    merge_table = text.split("## merge")[1].split("## unfuse")[0]
    assert merge_table.index("| b |") < merge_table.index("| a |")
    assert "| c | float16 | 1.00 | 1.00 | passed | x |" in text
    assert json.loads((tmp_path / "summary.json").read_text()) == ROWS

