"""The readable summary of a parity run (``--parity-report DIR``): a headline in pytest's own numbers, then
one table per check, worst first (markdown and HTML), and the same rows as JSON (the rows gate bundles
and ``lora-parity agree`` compare).

Issue 34: the summary opened with "316 passed, 23 failed" while pytest said "700 passed, 227 skipped, 62
xfailed": it counted only the tests that record a measured error, and its "failed" were known findings
(strict xfails). The headline now counts every test as pytest's terminal summary does, names the known
findings as such, and says what the tables count when they count something narrower.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from parity.runs.findings import finding_name

# pytest's summary-line order, and the words a reader gets for each category
PYTEST_ORDER = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "error")
XFAIL_OUTCOMES = ("xfailed",)


def pytest_line(counts: dict[str, int]) -> str:
    """The counts as pytest's own summary line gives them (``700 passed, 227 skipped, 62 xfailed``)."""
    parts = [f"{counts[k]} {'errors' if k == 'error' and counts[k] != 1 else k}" for k in PYTEST_ORDER if counts.get(k)]
    parts += [f"{n} {k}" for k, n in sorted(counts.items()) if k not in PYTEST_ORDER and n]
    return ", ".join(parts) or "no tests ran"


def headline(counts: dict[str, int]) -> str:
    """What a reader needs first: passed, known findings, failures, then what did not run."""
    failed = counts.get("failed", 0) + counts.get("error", 0)
    parts = [f"{counts.get('passed', 0)} passed",
             f"{counts.get('xfailed', 0)} known findings (strict xfails: fail as pinned)",
             f"{failed} failed" + (f" ({counts['error']} of them errors)" if counts.get("error") else "")]
    if counts.get("xpassed"):
        parts.append(f"{counts['xpassed']} xpassed")
    parts.append(f"{counts.get('skipped', 0)} skipped")
    if counts.get("deselected"):
        parts.append(f"{counts['deselected']} deselected")
    return ", ".join(parts)


def _outcome(row: dict) -> str:
    """A row's outcome for the reader: a strict xfail is shown as its finding, by name."""
    if row["outcome"] == "xfailed" or row.get("finding"):
        return f"known finding: {finding_name(row.get('finding', ''))}" if row.get("finding") else "known finding"
    return row["outcome"]


def rows_line(rows: list[dict]) -> str:
    outcomes = Counter(r["outcome"] for r in rows)
    known = sum(outcomes[o] for o in XFAIL_OUTCOMES)
    other = {o: n for o, n in outcomes.items() if o not in ("passed", "failed", *XFAIL_OUTCOMES)}
    text = f"{outcomes['passed']} passed, {known} known findings, {outcomes['failed']} failed"
    return text + "".join(f", {n} {o}" for o, n in sorted(other.items()))


def lines_of(rows: list[dict], exitstatus: int, counts: dict[str, int] | None) -> tuple[list[str], list[str]]:
    """(headline paragraphs, notes): the same text for markdown and HTML."""
    if counts is None:  # a caller that did not count the run: the rows are all we know
        passed = sum(r["outcome"] == "passed" for r in rows)
        return [f"{passed} passed, {len(rows) - passed} failed"], [
            f"These count only the {len(rows)} measured errors below: the run's other "
            "tests were not counted."]
    head = [headline(counts)]
    notes = [f"pytest's own summary line: {pytest_line(counts)}.",
             f"The tables below count something narrower: the {len(rows)} measured errors (one row per check that "
             f"compares an error with its bound): {rows_line(rows)}. The run's other tests check behaviour and "
             "record no error figure; their outcomes are in junit.xml."]
    return head, notes


def _versions_line() -> str:
    from parity.versions import library_versions

    return ", ".join(f"{name} {version}" for name, version in library_versions().items())


HEADER = ["case", "dtype", "max error (ULP)", "bound used", "outcome", "detail"]


def _cells(r: dict) -> list[str]:
    return [r["case"], r["dtype"], f"{r['max_ulps']:.2f}", f"{r['max_bound_ratio']:.2f}", _outcome(r),
            "; ".join(x for x in (r["detail"], r.get("timing", "")) if x)]


STYLE = ("body{font-family:sans-serif;margin:16px;max-width:1400px}"
         "td,th{padding:3px 8px;border:1px solid #ccc;vertical-align:top;text-align:left;overflow-wrap:break-word}"
         "td{max-width:40em}th{white-space:nowrap}td.n{text-align:right}table{border-collapse:collapse;margin:6px 0}"
         ".pass{color:#060}.fail{color:#a00}.known{color:#850}h2{border-left:6px solid #9ab;padding-left:6px}")


def _cell_class(i: int, row: dict) -> str:
    if i in (2, 3):
        return "n"
    if i == 4:
        return {"passed": "pass", "failed": "fail"}.get(row["outcome"], "known")
    return ""


def write_summary(out: Path, rows: list[dict], exitstatus: int, counts: dict[str, int] | None = None) -> None:
    """``summary.md`` and ``summary.html``: the headline in pytest's numbers (``counts``, by pytest's
    category) and a table per check (worst first); ``summary.json``: the rows."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    head, notes = lines_of(rows, exitstatus, counts)
    checks = {check: sorted((r for r in rows if r["check"] == check), key=lambda r: -r["max_bound_ratio"])
              for check in sorted({r["check"] for r in rows})}
    versions = _versions_line()
    lines = ["# lora-parity summary", "", versions, "", *(f"**{h}** (exit status {exitstatus})" for h in head)]
    for note in notes:
        lines += ["", note]
    for check, mine in checks.items():
        lines += ["", f"## {check}", "", "| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in mine]
    (out / "summary.md").write_text("\n".join(lines) + "\n")

    ok = counts is not None and exitstatus == 0 and not (counts.get("failed") or counts.get("error"))
    body = [f"<h1>lora-parity summary</h1><p>{html.escape(versions)}</p>",
            *(f"<p class='{'pass' if ok else 'fail'}'><b>{html.escape(h)}</b> (exit status {exitstatus})</p>"
              for h in head),
            *(f"<p>{html.escape(n)}</p>" for n in notes)]
    for check, mine in checks.items():
        body.append(f"<h2>{html.escape(check)} ({len(mine)})</h2><table><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in HEADER) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td class='{_cell_class(i, r)}'>{html.escape(c)}</td>"
                                               for i, c in enumerate(_cells(r))) + "</tr>" for r in mine)
                    + "</table>")
    (out / "summary.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>lora-parity summary</title><style>{STYLE}</style>"
        + "".join(body) + "\n", encoding="utf-8")
