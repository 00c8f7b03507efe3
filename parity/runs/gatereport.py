"""The gate verdict as people read it: a few lines on the terminal, the same as markdown and HTML."""

from __future__ import annotations

import html
import os
import shutil
from collections import Counter
from pathlib import Path

from parity.bench.compare import REGRESSION, table_cells
from parity.bench.report import markdown_table
from parity.runs.evidence import distinct, family_names, group_changes, growth_ratio
from parity.runs.gate import GOLDEN_REPORT, Bundle, Verdict

SHOWN = 10  # rows per section on the terminal; the files list every row


def _libs(bundle: Bundle) -> str:
    v = bundle.versions
    return ", ".join(f"{name} {v[name]}" for name in ("diffusers", "peft", "transformers", "torch") if name in v)


def _first_line(text: str, width: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def headline(verdict: Verdict) -> str:
    if verdict.ok:
        return "PASS: no check regressed, none was lost" + ("" if verdict.bench is None else ", no benchmark beyond its gate")
    parts = []
    if verdict.regressions:
        parts.append(f"{len(verdict.regressions)} check(s) passed before and fail now")
    if verdict.lost:
        parts.append(f"{len(verdict.lost)} check(s) no longer run")
    if verdict.new_failures:
        parts.append(f"{len(verdict.new_failures)} new check(s) fail")
    if verdict.bench is not None and not verdict.bench.ok:
        parts.append(f"{sum(r.verdict == REGRESSION for r in verdict.bench.rows)} benchmark(s) beyond their gate")
    return "FAIL: " + "; ".join(parts)


GROUPED = ["check", "family", "layout", "tests", "before → now", "message"]


Section = tuple[str, list[str], list[list[str]], list[str]]  # title, header, rows, every test it groups


def _sections(verdict: Verdict) -> list[Section]:
    """(title, header, rows, tests) per kind of evidence, failing kinds first. Changed tests come grouped by
    check, family and layout (parity/runs/evidence.py); their full list is in ``details``."""
    out = []
    tests = GROUPED
    families = family_names()

    def changes(items):
        rows = []
        status = {c.test: f"{c.old} → {c.new}" for c in items}
        for group in group_changes(items, families):
            statuses = Counter(status[test] for test in group.tests)
            rows.append([group.check, group.family, group.layout, str(group.count),
                         ", ".join(s for s, _ in statuses.most_common()), group.message])
        return rows

    def tested(title, items):
        return title, tests, changes(items), [c.test for c in items]

    out.append(tested("Regressed: passed before, fail now", verdict.regressions))
    out.append(tested("No longer checked: ran before, skipped or gone now", verdict.lost))
    out.append(tested("New checks that fail", verdict.new_failures))
    out.append((
        "Golden images that moved (expected | actual | difference)",
        ["case", "max-abs", "SSIM", "PSNR (dB)", "why"],
        [[case, f"{e['max_abs']:.3g} (≤ {e['max_abs_max']:.3g})", f"{e['ssim']:.5f}", f"{e['psnr']:.2f}",
          _first_line("; ".join(e.get("failures", [])))] for case, e in sorted(verdict.golden_moved.items())],
        [],
    ))
    if verdict.bench is not None:
        bench_rows = table_cells(verdict.bench)
        slower = [row for row in bench_rows[1:] if any(REGRESSION in cell for cell in row)]
        out.append(("Benchmarks beyond their gate", bench_rows[0], slower, []))
    out.append((
        "Parity errors that grew (still within their bound unless a check above failed)",
        ["check", "case", "dtype", "ULP before", "ULP now", "growth", "bound used now"],
        [[c.check, c.case, c.dtype, *distinct(c.old_ulps, c.new_ulps), growth_ratio(c.old_ulps, c.new_ulps),
          f"{c.new_bound_ratio:.2f}"] for c in verdict.parity_grew],
        [],
    ))
    out.append(tested("Golden images that moved because the old versions merged wrongly (their family and layout's "
                      "parity checks failed before and pass now): not a regression", verdict.moved_by_fix))
    out.append(tested("Pinned findings that no longer reproduce (behaviour changed: review, then update "
                      "tests/test_findings.py)", verdict.findings_changed))
    out.append(tested("Fixed: failed before, pass now", verdict.fixed))
    out.append(tested("Failing before and now: not compared, so not vouched for", verdict.still_failing))
    return out


def terminal_lines(verdict: Verdict) -> list[str]:
    lines = [
        f"old: {_libs(verdict.old)}  ({verdict.old.path})",
        f"new: {_libs(verdict.new)}  ({verdict.new.path})",
        headline(verdict),
    ]
    for title, _, rows, details in _sections(verdict):
        if not rows:
            continue
        counted = f"{len(details)} in {len(rows)} group(s)" if details else str(len(rows))
        lines.append(f"  {title}: {counted}")
        for row in rows[:SHOWN]:
            lines.append("    " + " | ".join(cell for cell in row if cell))
        if len(rows) > SHOWN:
            lines.append(f"    … {len(rows) - SHOWN} more in the report")
    if verdict.bench is not None:
        lines.append(f"  benchmarks compared: {len(verdict.bench.rows)}")
    return lines


def _golden_images(verdict: Verdict, out: Path) -> dict[str, str]:
    """Copy the new bundle's side-by-side PNGs next to the report so it stands alone."""
    images = {}
    for case, entry in verdict.golden_moved.items():
        src = verdict.new.path / GOLDEN_REPORT / entry.get("image", "")
        if src.is_file():
            dst = out / "golden" / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            images[case] = os.path.relpath(dst, out)
    return images


def write_gate_report(verdict: Verdict, out: str | os.PathLike) -> tuple[Path, Path]:
    """``gate.md`` and ``gate.html`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = _golden_images(verdict, out)
    md = ["# Upgrade gate", "", f"- old: {_libs(verdict.old)}", f"- new: {_libs(verdict.new)}", "",
          f"**{headline(verdict)}**"]
    body = [f"<h1>Upgrade gate</h1><p>old: {html.escape(_libs(verdict.old))}<br>new: {html.escape(_libs(verdict.new))}</p>",
            f"<p class='{'pass' if verdict.ok else 'fail'}'><b>{html.escape(headline(verdict))}</b></p>"]
    for title, header, rows, details in _sections(verdict):
        if not rows:
            continue
        counted = f"{len(details)} in {len(rows)} group(s)" if details else str(len(rows))
        md += ["", f"## {title} ({counted})", "", *markdown_table([header, *rows])]
        body.append(f"<h2>{html.escape(title)} ({counted})</h2><table><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                    + "</table>")
        if details:
            md += ["", f"<details><summary>all {len(details)} tests</summary>", "", *(f"- `{t}`" for t in details),
                   "", "</details>"]
            body.append(f"<details><summary>all {len(details)} tests</summary><ul>"
                        + "".join(f"<li>{html.escape(t)}</li>" for t in details) + "</ul></details>")
        if title.startswith("Golden"):
            for case, rel in sorted(images.items()):
                md.append(f"\n![{case}]({rel})")
                body.append(f"<p>{html.escape(case)}<br><img src='{html.escape(rel)}' alt='{html.escape(case)}'></p>")
    md_path, html_path = out / "gate.md", out / "gate.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(
        "<!doctype html><meta charset='utf-8'><title>upgrade gate</title><style>body{font-family:sans-serif}"
        "td,th{padding:3px 8px;border:1px solid #ccc;vertical-align:top}table{border-collapse:collapse}"
        ".pass{color:#060}.fail{color:#a00}img{image-rendering:pixelated}</style>" + "".join(body) + "\n",
        encoding="utf-8",
    )
    return md_path, html_path
