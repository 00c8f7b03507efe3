"""The gate verdict as people read it: a few lines on the terminal, the same as markdown and HTML.

Issue 34: a reader trusts the page at a glance when every case is in exactly one section (the first that
explains it, failing kinds first), a known finding's case is shown as that finding by name (never as a
parity error "within its bound"), and every image says which panel is expected, actual and difference.
Each section lists the tests it stands for, so parity/runs/pagecheck.py can check the page itself.
"""

from __future__ import annotations

import html
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from parity.bench.compare import REGRESSION, table_cells
from parity.bench.report import markdown_table
from parity.runs.evidence import distinct, family_names, group_changes, growth_ratio
from parity.runs.findings import finding_name, what
from parity.runs.gate import GOLDEN_REPORT, GOLDEN_TEST, Bundle, ParityChange, TestChange, Verdict, _family_layout
from parity.runs.junit import PASSED

SHOWN = 10  # rows per section on the terminal; the files list every row
CAPTION = ("expected (the old versions' image)", "actual (the new versions')",
           "difference (scaled to its largest: grey within the max-abs budget, red over it)")


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


@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list[str]]
    cases: list[tuple[str, ...]]  # per row, the tests it stands for
    failing: bool = False  # a kind of evidence that fails the gate
    images: list[tuple[str, str]] = field(default_factory=list)  # (test, golden case) whose image it shows

    @property
    def tests(self) -> list[str]:
        return [t for row in self.cases for t in row]

    @property
    def counted(self) -> str:
        tests = len(self.tests)
        return str(tests) if tests == len(self.rows) else f"{tests} in {len(self.rows)} group(s)"


def golden_test(verdict: Verdict, case: str) -> str:
    """The new run's test id of a golden image's case (``golden::<case>`` where the run has none)."""
    needle = f"{GOLDEN_TEST}{case}]"
    for test in verdict.new.outcomes:
        if needle in test:
            return test
    return f"golden::{case}"


def parity_test(verdict: Verdict, change: ParityChange) -> str:
    """The test that recorded a parity row (JUnit properties; ``check::case::dtype`` where unknown)."""
    key = (change.check, change.case, change.dtype)
    return verdict.new.parity_tests.get(key) or verdict.old.parity_tests.get(key) or "::".join(key)


def _grouped(title: str, items: Sequence[TestChange], failing: bool = False) -> Section:
    status = {c.test: f"{c.old} → {c.new}" for c in items}
    rows, cases = [], []
    for group in group_changes(items, family_names()):
        statuses = Counter(status[test] for test in group.tests)
        rows.append([group.check, group.family, group.layout, str(group.count),
                     ", ".join(s for s, _ in statuses.most_common()), group.message])
        cases.append(group.tests)
    return Section(title, GROUPED, rows, cases, failing)


def _image_metrics(entry: dict) -> list[str]:
    return [f"{entry['max_abs']:.3g} (≤ {entry['max_abs_max']:.3g})", f"{entry['ssim']:.5f}", f"{entry['psnr']:.2f}"]


def _error_text(changes: Sequence[ParityChange], rows: Sequence[dict]) -> str:
    """The largest error of a finding's tests now, and the one that grew most since the old run."""
    if not rows:
        return ""
    worst = max(rows, key=lambda r: r["max_ulps"])
    text = f"{worst['case']}: {worst['max_ulps']:.2f} ULP, {worst['max_bound_ratio']:.4g}× its bound"
    mine = {(r["check"], r["case"], r["dtype"]) for r in rows}
    grew = [c for c in changes if (c.check, c.case, c.dtype) in mine]
    if grew:
        most = max(grew, key=lambda c: c.new_ulps / c.old_ulps if c.old_ulps else float("inf"))
        before, now = distinct(most.old_ulps, most.new_ulps)
        change = (f"{before} → {now} ULP ({growth_ratio(most.old_ulps, most.new_ulps)}), "
                  f"{most.new_bound_ratio:.4g}× its bound (expected: the finding)")
        if most.case == worst["case"]:
            return f"{most.case}: {change}"
        text += f"; grew most: {most.case} {change}"
    return text


def _findings(title: str, verdict: Verdict, items: Sequence[TestChange], failing: bool = False) -> Section:
    """Tests grouped by the finding they pin, shown by its name (parity/runs/findings.py)."""
    rows_of: dict[str, list[dict]] = {}
    for key, test in verdict.new.parity_tests.items():
        if key in verdict.new.parity:
            rows_of.setdefault(test, []).append(verdict.new.parity[key])
    groups: dict[str, list[TestChange]] = {}
    for change in items:
        groups.setdefault(finding_name(change.message), []).append(change)
    rows, cases = [], []
    for name, changes in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        checks = Counter(c.test.rsplit("::", 1)[-1].partition("[")[0] for c in changes)
        statuses = Counter(f"{c.old} → {c.new}" for c in changes)
        errors = [row for c in changes for row in rows_of.get(c.test, [])]
        rows.append([name, what(changes[0].message, 120), str(len(changes)), ", ".join(checks),
                     ", ".join(s for s, _ in statuses.most_common()), _error_text(verdict.parity_grew, errors)])
        cases.append(tuple(c.test for c in changes))
    header = ["finding", "what diffusers/PEFT does", "tests", "checks", "before → now", "largest error now"]
    return Section(title, header, rows, cases, failing)


def sections(verdict: Verdict) -> list[Section]:
    """Every kind of evidence, failing kinds first; a test is in the first section that explains it and in
    no other. Empty sections are left out."""
    out: list[Section] = []
    shown: set[str] = set()

    def add(section: Section) -> None:
        keep = [(row, cases) for row, cases in zip(section.rows, section.cases) if not set(cases) & shown]
        section.rows, section.cases = [r for r, _ in keep], [c for _, c in keep]
        section.images = [(t, case) for t, case in section.images if t in section.tests]
        if section.rows:
            out.append(section)
            shown.update(section.tests)

    def fresh(items: Sequence[TestChange]) -> list[TestChange]:
        return [c for c in items if c.test not in shown]

    by_fix = {c.test for c in verdict.moved_by_fix}
    findings = {c.test for c in verdict.findings}
    moved = {golden_test(verdict, case): case for case in verdict.golden_moved}
    unexcused = {t: case for t, case in moved.items() if t not in by_fix and t not in findings}

    golden = Section("Golden images that moved: passed before, fail now", ["case", "max-abs", "SSIM", "PSNR (dB)", "why"],
                     [], [], failing=True)
    for test, case in sorted(unexcused.items(), key=lambda kv: kv[1]):
        entry = verdict.golden_moved[case]
        golden.rows.append([case, *_image_metrics(entry), _first_line("; ".join(entry.get("failures", [])))])
        golden.cases.append((test,))
        golden.images.append((test, case))
    add(golden)
    add(_grouped("Regressed: passed before, fail now", fresh(verdict.regressions), failing=True))
    add(_grouped("No longer checked: ran before, skipped or gone now", fresh(verdict.lost), failing=True))
    add(_grouped("New checks that fail", fresh(verdict.new_failures), failing=True))
    if verdict.bench is not None:
        bench_rows = table_cells(verdict.bench)
        slower = [row for row in bench_rows[1:] if any(REGRESSION in cell for cell in row)]
        add(Section("Benchmarks beyond their gate", bench_rows[0], slower, [(f"bench::{r[0]}",) for r in slower],
                    failing=True))
    add(_findings("Pinned findings that no longer reproduce (behaviour changed: review, then update the finding)",
                  verdict, fresh(verdict.findings_changed)))

    fixed_by_layout = Counter(_family_layout(c.test) for c in verdict.fixed if GOLDEN_TEST not in c.test)
    excused = Section("Golden images that moved because the old versions merged wrongly: not a regression",
                      ["case", "family", "layout", "max-abs", "SSIM", "PSNR (dB)", "why the old image was wrong"], [], [])
    for change in fresh(verdict.moved_by_fix):
        case = moved.get(change.test) or change.test.rsplit("[", 1)[-1].split("]")[0]
        family, layout = _family_layout(change.test)
        entry = verdict.golden_moved.get(case)
        metrics = _image_metrics(entry) if entry else ["", "", ""]
        excused.rows.append([case, family, layout, *metrics,
                             f"{fixed_by_layout[(family, layout)]} parity check(s) of {family} {layout} files failed "
                             "under the old versions and all pass under the new"])
        excused.cases.append((change.test,))
        if entry:
            excused.images.append((change.test, case))
    add(excused)
    add(_findings("Known findings that still reproduce (strict xfails: expected to fail, not a regression)",
                  verdict, fresh(verdict.findings)))

    grew = [(c, parity_test(verdict, c)) for c in verdict.parity_grew]
    status = {t: o.status for t, o in verdict.new.outcomes.items()}
    header = ["check", "case", "dtype", "ULP before", "ULP now", "growth", "bound used now"]

    def grew_rows(keep) -> tuple[list[list[str]], list[tuple[str, ...]]]:
        picked = [(c, t) for c, t in grew if t not in shown and keep(c, t)]
        return ([[c.check, c.case, c.dtype, *distinct(c.old_ulps, c.new_ulps), growth_ratio(c.old_ulps, c.new_ulps),
                  f"{c.new_bound_ratio:.2f}"] for c, _ in picked], [(t,) for _, t in picked])

    add(Section("Parity errors that grew, within their bound (their checks pass)", header,
                *grew_rows(lambda c, t: status.get(t, PASSED) == PASSED and c.new_bound_ratio <= 1)))
    add(Section("Parity errors that grew past their bound although no check above failed (review)", header,
                *grew_rows(lambda c, t: status.get(t, PASSED) == PASSED)))
    add(_grouped("Fixed: failed before, pass now", fresh(verdict.fixed)))
    add(_grouped("Failing before and now: not compared, so not vouched for", fresh(verdict.still_failing)))
    return out


def terminal_lines(verdict: Verdict) -> list[str]:
    lines = [
        f"old: {_libs(verdict.old)}  ({verdict.old.path})",
        f"new: {_libs(verdict.new)}  ({verdict.new.path})",
        headline(verdict),
    ]
    for section in sections(verdict):
        lines.append(f"  {section.title}: {section.counted}")
        for row in section.rows[:SHOWN]:
            lines.append("    " + " | ".join(cell for cell in row if cell))
        if len(section.rows) > SHOWN:
            lines.append(f"    … {len(section.rows) - SHOWN} more in the report")
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


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")[:60]


def _md_caption(case: str) -> str:
    return f"*{case}, left to right: {CAPTION[0]} · {CAPTION[1]} · {CAPTION[2]}*"


STYLE = (
    "body{font-family:sans-serif;margin:16px;max-width:1400px}"
    "td,th{padding:3px 8px;border:1px solid #ccc;vertical-align:top;text-align:left;overflow-wrap:anywhere}"
    "td{max-width:32em}th{white-space:nowrap;overflow-wrap:normal}table{border-collapse:collapse;margin:6px 0}"
    ".pass{color:#060}.fail{color:#a00}h2.fail{border-left:6px solid #a00;padding-left:6px}"
    "h2{border-left:6px solid #9ab;padding-left:6px;margin-top:28px}"
    "img{image-rendering:pixelated;display:block}"
    "figure{display:inline-block;margin:8px 16px 8px 0}"
    "figcaption{display:flex;font-size:13px;color:#333}"
    "figcaption span{flex:1;text-align:center;padding:2px 4px}"
    "figcaption b{display:block;text-align:left}"
    "ul.glance li{margin:2px 0}code{font-size:12px}"
)


def _html_figure(test: str, case: str, rel: str) -> str:
    spans = "".join(f"<span>{html.escape(c)}</span>" for c in CAPTION)
    return (f"<figure data-case='{html.escape(test)}'><img src='{html.escape(rel)}' "
            f"alt='{html.escape(case)}: expected | actual | difference'>"
            f"<figcaption><b>{html.escape(case)}</b></figcaption><figcaption>{spans}</figcaption></figure>")


def write_gate_report(verdict: Verdict, out: str | os.PathLike) -> tuple[Path, Path]:
    """``gate.md`` and ``gate.html`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = _golden_images(verdict, out)
    parts = sections(verdict)
    md = ["# Upgrade gate", "", f"- old: {_libs(verdict.old)}", f"- new: {_libs(verdict.new)}", "",
          f"**{headline(verdict)}**", "", "Each test is in one section below, the first that explains it:", ""]
    md += [f"- {s.title}: {s.counted}" for s in parts] or ["- nothing changed"]
    verdict_class = "pass" if verdict.ok else "fail"
    body = [f"<h1>Upgrade gate</h1><p>old: {html.escape(_libs(verdict.old))}<br>new: {html.escape(_libs(verdict.new))}</p>",
            f"<p class='{verdict_class}'><b>{html.escape(headline(verdict))}</b></p>",
            "<p>Each test is in one section below, the first that explains it:</p><ul class='glance'>"
            + ("".join(f"<li class='{'fail' if s.failing else ''}'><a href='#{_anchor(s.title)}'>{html.escape(s.title)}"
                       f"</a>: {s.counted}</li>" for s in parts) or "<li>nothing changed</li>") + "</ul>"]
    for section in parts:
        title, counted = section.title, section.counted
        md += ["", f"## {title} ({counted})", "", *markdown_table([section.header, *section.rows])]
        body.append(f"<h2 id='{_anchor(title)}' class='{'fail' if section.failing else ''}'>{html.escape(title)} "
                    f"({counted})</h2><table><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in section.header) + "</tr>"
                    + "".join(("<tr data-case='{}'>".format(html.escape(cases[0])) if len(cases) == 1 else "<tr>")
                              + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                              for row, cases in zip(section.rows, section.cases))
                    + "</table>")
        for test, case in section.images:
            if case in images:
                md += ["", f"![{case}: expected | actual | difference]({images[case]})", "", _md_caption(case)]
                body.append(_html_figure(test, case, images[case]))
        tests = section.tests
        md += ["", f"<details><summary>all {len(tests)} tests</summary>", "", *(f"- `{t}`" for t in tests),
               "", "</details>"]
        body.append(f"<details><summary>all {len(tests)} tests</summary><ul>"
                    + "".join(f"<li data-case='{html.escape(t)}'><code>{html.escape(t)}</code></li>" for t in tests)
                    + "</ul></details>")
    md_path, html_path = out / "gate.md", out / "gate.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>upgrade gate</title><style>{STYLE}</style>" + "".join(body) + "\n",
        encoding="utf-8",
    )
    return md_path, html_path
