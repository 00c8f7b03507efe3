"""The compatibility matrix as people read it (issue 35): ``matrix.json`` (the data), ``matrix.md`` (a set table,
one grid per family, the rows that change between versions, a legend), ``matrix.html`` (one self-contained page:
the grid coloured by state, a cell's evidence on click) and a few terminal lines.

Every text that comes from a run (file names, error messages) is escaped: ``|`` and ``<`` in markdown, everything
in HTML; the page's evidence lives in one JSON blob rendered on click with ``textContent``. A set that did not
run (install or import failed) says so once, in its column header and the set table, not in every cell.
``check_matrix_page`` reads the written pages back, as parity/runs/pagecheck.py does for the gate page.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from parity.matrix.schema import STATES, WRONG_HOW, Cell, Matrix, Row, SetResult

SYMBOL = {"correct": "✓", "wrong": "✗", "refused": "⊘", "unavailable": "–", "error": "!"}
MISSING = "? no cell"  # a row × set the matrix holds no cell for (a set that ran): a bug upstream, shown as one
CHANGED = "Δ"
SET_NOTE = {"install-failed": "install failed", "import-failed": "cannot import", "crashed": "crashed part way",
            "skipped": "not run"}
CHANGES_TITLE = "Rows that change between versions"
LEGEND = (("correct", "✓ correct — the check passed against our reference"),
          ("wrong", f"✗ wrong: how — it failed; how is what the diagnosis measured ({', '.join(WRONG_HOW)})"),
          ("refused", "⊘ refused — diffusers/PEFT raised on a file our reader accepts"),
          ("unavailable", "– unavailable — the family, layout or API does not exist in that version set (no change when it appears)"),
          ("error", "! error — the check could not run (a crash; a set that failed to install or import)"),
          ("chg", f"{CHANGED} — the row's finding differs between the sets that ran (errors aside)"))
SET_HEADER = ["set", "pins", "status", "imported", "build s", "run s", "cached", "cells"]
NOT_RUN = ("install-failed", "import-failed")  # sets none of whose cells ran
SCRIPTS = 2  # the page's own <script> elements: the data blob and the code


def cell_label(cell: Cell | None) -> str:
    """A cell's text in the grids: ``✓ correct``, ``✗ wrong: scaled``, ``⊘ refused``, ``– unavailable``,
    ``! error``."""
    return MISSING if cell is None else f"{SYMBOL[cell.state]} {cell.label}"


def cell_of(matrix: Matrix, row_id: str, s: SetResult) -> Cell | None:
    """The row's cell in set ``s``; a set that did not run and holds no cell reads as an error with its detail."""
    cell = matrix.cell(row_id, s.version_set.name)
    if cell is None and s.status != "ok":
        cell = Cell("error", summary=s.detail or s.status)
    return cell


def set_note(s: SetResult) -> str:
    return "" if s.status == "ok" else SET_NOTE.get(s.status, s.status)


def set_heading(s: SetResult) -> str:
    return s.version_set.name + (f" ({set_note(s)})" if set_note(s) else "")


def grouped(matrix: Matrix) -> dict[str, dict[str, list[Row]]]:
    """family → layout → rows, each in the order it first appears in ``matrix.rows``."""
    out: dict[str, dict[str, list[Row]]] = {}
    for row in matrix.rows:
        out.setdefault(row.family, {}).setdefault(row.layout, []).append(row)
    return out


def state_counts(matrix: Matrix, s: SetResult) -> Counter:
    return Counter(c.state if c else "missing" for c in (cell_of(matrix, r.id, s) for r in matrix.rows))


def counts_text(counts: Counter, style: str = "symbols") -> str:
    """``✓ 2 · ✗ 1`` (symbols), ``✓2 ✗1`` (compact) or ``2 correct, 1 wrong`` (words)."""
    parts = [(SYMBOL.get(k, "?"), counts[k], k) for k in (*STATES, "missing") if counts[k]]
    if style == "words":
        return ", ".join(f"{n} {k}" for _, n, k in parts)
    return (" " if style == "compact" else " · ").join(f"{sym}{'' if style == 'compact' else ' '}{n}"
                                                        for sym, n, _ in parts)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}: {v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)}"
                     for k, v in d.items())


def set_fields(matrix: Matrix, s: SetResult) -> list[str]:
    v = s.version_set
    pins = ", ".join(f"{k}=={x}" for k, x in v.pins.items()) or (f"existing {v.python}" if v.python else "")
    status = s.status + (f": {s.detail}" if s.detail else "") + (f" (log {s.log})" if s.log else "")
    return [v.name, pins + (f" ({v.rule})" if v.rule else ""), status,
            ", ".join(f"{k} {x}" for k, x in s.versions.items()), f"{s.build_seconds:.1f}", f"{s.run_seconds:.1f}",
            "yes" if s.cached else "no", counts_text(state_counts(matrix, s))]


def changed_rows(matrix: Matrix) -> list[Row]:
    return [r for r in matrix.rows if matrix.changes(r)]


def _runs(matrix: Matrix, row: Row) -> str:
    """The row across the sets, runs of equal labels together: ``a, b: ✗ wrong: scaled · c: ✓ correct``."""
    runs: list[tuple[list[str], str]] = []
    for s in matrix.sets:
        label = cell_label(cell_of(matrix, row.id, s))
        if runs and runs[-1][1] == label:
            runs[-1][0].append(s.version_set.name)
        else:
            runs.append(([s.version_set.name], label))
    return " · ".join(f"{', '.join(names)}: {label}" for names, label in runs)


def terminal_lines(matrix: Matrix, limit: int = 20) -> list[str]:
    """Each set's status and cells by state, then the rows that change (as many as fit in ``limit`` lines)."""
    changed = changed_rows(matrix)
    width = max((len(s.version_set.name) for s in matrix.sets), default=0)
    out = [f"matrix: {len(matrix.rows)} rows × {len(matrix.sets)} version sets, {len(changed)} rows change"]
    for s in matrix.sets:
        detail = f" ({_one_line(s.detail, 90)})" if s.detail else ""
        counts = "" if s.status in NOT_RUN else ": " + counts_text(
            state_counts(matrix, s), "words")
        out.append(f"  {s.version_set.name:<{width}}  {s.status}{detail}{counts}{' (cached)' if s.cached else ''}")
    if changed:
        room = max(3, limit - len(out) - 1)
        shown = changed if len(changed) <= room else changed[:room - 1]
        out.append("rows that change between sets:")
        out += [f"  {r.id}: {_runs(matrix, r)}" for r in shown]
        if len(shown) < len(changed):
            out.append(f"  … and {len(changed) - len(shown)} more: matrix.md, '{CHANGES_TITLE}'")
    return out


def _one_line(text: str, width: int = 0) -> str:
    line = " ".join(str(text).split())
    return line[:width - 1] + "…" if width and len(line) > width else line


def md_text(text: str) -> str:
    """One line of markdown table text: whitespace collapsed, ``& < >`` as entities, ``|`` escaped."""
    return html.escape(_one_line(text), quote=False).replace("|", "\\|")


def md_unescape(text: str) -> str:
    return html.unescape(text.replace("\\|", "|"))


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(matrix: Matrix) -> str:
    sets, changed = matrix.sets, changed_rows(matrix)
    lines = ["# LoRA compatibility matrix", "",
             f"Created {md_text(matrix.created)} · machine: {md_text(_kv(matrix.machine))} · "
             f"suite: {md_text(_kv(matrix.suite))}", "",
             f"{len(matrix.rows)} rows × {len(sets)} version sets; {len(changed)} rows change between versions.", "",
             "## Version sets", "", _md_row(SET_HEADER), "|" + "---|" * len(SET_HEADER)]
    lines += [_md_row([md_text(x) for x in set_fields(matrix, s)]) for s in sets]
    lines += ["", "## Grid", "", "Legend at the end; a row marked " + CHANGED + " changes between versions.", ""]
    for family, layouts in grouped(matrix).items():
        rows = [r for rs in layouts.values() for r in rs]
        lines += [f"### {md_text(family)}", "", f"{len(rows)} rows, {sum(map(matrix.changes, rows))} change.", "",
                  _md_row(["layout", "check", *(md_text(set_heading(s)) for s in sets)]),
                  "|---|---|" + "---|" * len(sets)]
        lines += [_md_row([md_text(r.layout), md_text(r.check) + (f" {CHANGED}" if matrix.changes(r) else ""),
                           *(cell_label(cell_of(matrix, r.id, s)) for s in sets)]) for r in rows]
        lines.append("")
    lines += [f"## {CHANGES_TITLE}", ""]
    if not changed:
        lines += ["None: every row has the same finding in every set that ran.", ""]
    for r in changed:
        lines += [f"### {md_text(r.id)}", "", md_text(r.what), ""]
        for s in sets:
            cell = cell_of(matrix, r.id, s)
            why = (f"{set_note(s)}: see the set table" if s.status in NOT_RUN
                   else md_text(cell.summary) if cell else "")
            lines.append(f"- {md_text(s.version_set.name)}: {cell_label(cell)}" + (f" — {why}" if why else ""))
        lines.append("")
    lines += ["## Legend", "", *(f"- {md_text(text)}" for _, text in LEGEND)]
    return "\n".join(lines) + "\n"


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#1a1a1a}h1{margin:0 0 4px}p{margin:4px 0}
table{border-collapse:separate;border-spacing:0}
th,td{padding:3px 7px;border-right:1px solid #ddd;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
table.sets td{max-width:32em;overflow-wrap:anywhere}
table.sets th,table.sets td:is(:first-child,:nth-child(n+5)){white-space:nowrap}
table.sets{margin:6px 0 12px;border-top:1px solid #ddd}
#grid thead th{position:sticky;top:0;z-index:2;background:#f3f3f3;border-bottom:2px solid #999;min-width:7em}
#grid thead th.l,#grid thead th.k{z-index:3}#grid th.l,#grid th.k{position:sticky;background:#fff;z-index:1}
#grid th.l{left:0;width:15em;min-width:15em;max-width:15em;overflow-wrap:anywhere;font-weight:600}
#grid th.k{left:15em;width:9em;min-width:9em;font-weight:normal;border-right:2px solid #999;white-space:nowrap}
#grid th.l,#grid th.k{box-sizing:border-box}small.note{display:block;color:#b00020;font-weight:600}
small.cnt{display:block;color:#666;font-weight:normal;font-size:11px}
tr.fam th{background:#e3e8f0;font-size:15px;padding:6px;text-align:left;position:sticky;left:0}
tr.r:not(.first) th.l{font-size:0}tr.first>*{border-top:2px solid #bbb}tr.chg th.l{box-shadow:inset 5px 0 #d4006a}
.d{color:#d4006a;font-weight:700}#grid td{white-space:nowrap;cursor:pointer}
td:focus{outline:3px solid #1565c0;outline-offset:-3px}td.sel{outline:3px solid #111;outline-offset:-3px}
.x-correct{background:#dcf3dc;color:#0b5d0b}.x-wrong{background:#f9d2d2;color:#8b0000;font-weight:600}
.x-refused{background:#ffe3bd;color:#7a4100}.x-unavailable{background:#ececec;color:#5c5c5c}
.x-error{background:#e8def6;color:#4a2a7a}
td.off{background:repeating-linear-gradient(45deg,#f4f0fa 0 6px,#fff 6px 12px);color:#8a78a8}
.x-none{background:#fff;color:#b00020;border:1px dashed #b00020}
.chip{display:inline-block;padding:1px 6px;margin:2px 4px 2px 0;border-radius:3px}.chip.x-chg{color:#d4006a}
#controls{margin:8px 0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
#panel{position:fixed;right:12px;bottom:12px;width:min(42em,90vw);max-height:55vh;overflow:auto;background:#fff;
border:1px solid #888;box-shadow:0 4px 18px #0004;padding:10px 14px;z-index:5}
#panel h2{font-size:15px;margin:0 24px 4px 0;overflow-wrap:anywhere}
#panel pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:6px;margin:6px 0}
#panel button{position:absolute;right:8px;top:6px}#panel .lab{display:inline-block;padding:1px 6px}
"""

SCRIPT = """(()=>{const D=JSON.parse(document.getElementById('matrix-data').textContent),
g=document.getElementById('grid'),P=document.getElementById('panel'),only=document.getElementById('only'),
q=document.getElementById('q'),rows=[...g.querySelectorAll('tr.r')],$=s=>P.querySelector(s);
let cur=g.querySelector('td');if(cur)cur.tabIndex=0;
function show(td){const tr=td.parentNode,r=D.rows[+tr.dataset.i],j=td.cellIndex-2,c=r.cells[j];
$('h2').textContent=r.id+' · '+D.sets[j];$('.lab').textContent=td.textContent;$('.lab').className='lab '+td.className
.replace('sel','');$('.what').textContent=r.what;$('.sum').textContent=c?c.summary:'no cell recorded for this set';
$('pre').textContent=c&&c.evidence.length?c.evidence.join('\\n'):'(no evidence lines)';
$('.sec').textContent=c?c.seconds.toFixed(2)+' s':'';P.hidden=false;
g.querySelectorAll('td.sel').forEach(x=>x.classList.remove('sel'));td.classList.add('sel')}
function go(td){if(!td||td.tagName!=='TD')return;if(cur)cur.tabIndex=-1;td.tabIndex=0;td.focus();cur=td}
g.addEventListener('click',e=>{const td=e.target.closest('td');if(td){go(td);show(td)}});
g.addEventListener('keydown',e=>{const td=e.target.closest('td');if(!td)return;const k=e.key;let n=null;
if(k==='Enter'||k===' '){e.preventDefault();show(td);return}if(k==='ArrowLeft')n=td.previousElementSibling;
else if(k==='ArrowRight')n=td.nextElementSibling;else if(k==='ArrowUp'||k==='ArrowDown'){let t=td.parentNode;
do{t=k==='ArrowUp'?t.previousElementSibling:t.nextElementSibling}while(t&&(t.hidden||!t.classList.contains('r')));
if(t)n=t.cells[td.cellIndex]}if(n&&n.tagName==='TD'){e.preventDefault();go(n);if(!P.hidden)show(n)}});
function close(){P.hidden=true;if(cur)cur.focus()}$('button').addEventListener('click',close);
document.addEventListener('keydown',e=>{if(e.key==='Escape'&&!P.hidden)close()});
function apply(){const o=only.checked,s=q.value.trim().toLowerCase(),seen=new Set();let last=null,n=0;
for(const tr of rows){const v=(!o||tr.classList.contains('chg'))&&(!s||tr.dataset.row.toLowerCase().includes(s));
tr.hidden=!v;if(v){n++;const key=tr.dataset.fam+'\\0'+tr.cells[0].textContent;tr.classList.toggle('first',key!==last);
last=key;seen.add(tr.dataset.fam)}}for(const f of g.querySelectorAll('tr.fam'))f.hidden=!seen.has(f.dataset.fam);
document.getElementById('shown').textContent=n+' of '+rows.length+' rows shown'}
only.addEventListener('change',apply);q.addEventListener('input',apply)})();"""


def _blob(data: dict) -> str:
    """JSON safe inside <script>: no ``<``, ``>`` or ``&`` survives as itself."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def html_page(matrix: Matrix) -> str:
    esc, sets, changed = html.escape, matrix.sets, changed_rows(matrix)
    data: dict = {"sets": [s.version_set.name for s in sets], "rows": []}
    head = "".join(
        f"<th class=s title='{esc(set_fields(matrix, s)[1])}'>{esc(s.version_set.name)}"
        + (f"<small class=note>{esc(set_note(s))}</small>" if set_note(s) else
           f"<small class=cnt>{esc(counts_text(state_counts(matrix, s), 'compact'))}</small>") + "</th>" for s in sets)
    body, offs = [], [" off" if s.status in NOT_RUN else "" for s in sets]
    for family, layouts in grouped(matrix).items():
        rows = [r for rs in layouts.values() for r in rs]
        body.append(f"<tr class=fam data-fam='{esc(family)}'><th colspan={2 + len(sets)}>{esc(family)} "
                    f"<small>{len(rows)} rows, {sum(map(matrix.changes, rows))} change</small></th></tr>")
        for layout, rs in layouts.items():
            for j, r in enumerate(rs):
                cells = [cell_of(matrix, r.id, s) for s in sets]
                data["rows"].append({"id": r.id, "what": r.what, "cells": [None if c is None else {
                    "summary": c.summary, "evidence": list(c.evidence), "seconds": c.seconds} for c in cells]})
                ch = matrix.changes(r)
                tds = "".join(f"<td class='x-{c.state if c else 'none'}{off}' tabindex=-1>{esc(cell_label(c))}</td>"
                              for c, off in zip(cells, offs))
                body.append(f"<tr class='r{' chg' if ch else ''}{' first' if j == 0 else ''}' "
                            f"data-i={len(data['rows']) - 1} data-row='{esc(r.id)}' data-fam='{esc(family)}'>"
                            f"<th class=l scope=row>{esc(layout)}</th><th class=k title='{esc(r.what)}'>"
                            f"{esc(r.check)}{f' <span class=d>{CHANGED}</span>' if ch else ''}</th>{tds}</tr>")
    set_rows = "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in set_fields(matrix, s)) + "</tr>" for s in sets)
    legend = " ".join(f"<span class='chip x-{k}'>{esc(text)}</span>" for k, text in LEGEND)
    return (
        f"<!doctype html><html lang=en><meta charset='utf-8'><title>LoRA compatibility matrix</title>"
        f"<style>{STYLE}</style><h1>LoRA compatibility matrix</h1>"
        f"<p>Created {esc(matrix.created)} · machine: {esc(_kv(matrix.machine))} · "
        f"suite: {esc(_kv(matrix.suite))}</p>"
        f"<p><b>{len(matrix.rows)} rows × {len(sets)} version sets; {len(changed)} rows change between versions."
        f"</b> Click a cell (or focus it and press Enter; arrow keys move) for its evidence.</p>"
        f"<details open><summary>Version sets ({len(sets)})</summary><table class=sets><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in SET_HEADER) + f"</tr>{set_rows}</table></details>"
        f"<details open><summary>Legend</summary><p>{legend}</p></details>"
        f"<div id=controls><label><input type=checkbox id=only> only rows that change ({len(changed)})</label>"
        f"<label>filter rows <input id=q type=search placeholder='family/layout/check'></label>"
        f"<span id=shown>{len(matrix.rows)} of {len(matrix.rows)} rows shown</span></div>"
        f"<table id=grid><thead><tr><th class=l>layout</th><th class=k>check</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        f"<div id=panel role=region aria-label='cell evidence' aria-live=polite hidden><button type=button "
        f"aria-label=close>×</button><h2></h2><span class=lab></span> <span class=sec></span><p class=what></p>"
        f"<p class=sum></p><pre></pre></div>"
        f"<script type='application/json' id='matrix-data'>{_blob(data)}</script><script>{SCRIPT}</script></html>\n")


def write_matrix_report(matrix: Matrix, out: Path) -> tuple[Path, Path, Path]:
    """``out``/matrix.json, matrix.md, matrix.html."""
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "matrix.json", out / "matrix.md", out / "matrix.html"
    paths[0].write_text(json.dumps(matrix.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(matrix), encoding="utf-8")
    paths[2].write_text(html_page(matrix), encoding="utf-8")
    return paths


# ---- reading the pages back -----------------------------------------------------------------------------------

_MD_CELLS = re.compile(r"(?<!\\)\|")


def _split(line: str) -> list[str]:
    return [c.strip() for c in _MD_CELLS.split(line.strip())[1:-1]]


class _Grid(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []  # {"id", "i", "chg", "check", "cells": [(class, text)]}
        self.blob, self._in, self._text = None, None, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in, self._text = ("blob" if a.get("id") == "matrix-data" else "code"), ""
        elif tag == "tr" and "data-row" in a:
            self.rows.append({"id": a["data-row"], "i": a.get("data-i"), "chg": "chg" in (a.get("class") or "").split(),
                              "check": "", "cells": []})
        elif self.rows and tag in ("td", "th") and self._in is None:
            self._in, self._text, self._cls = tag, "", a.get("class") or ""

    def handle_endtag(self, tag):
        if tag == "script" and self._in == "blob":
            self.blob = self._text
        elif tag == "td" and self._in == "td":
            self.rows[-1]["cells"].append((self._cls, self._text))
        elif tag == "th" and self._in == "th" and self._cls == "k":
            self.rows[-1]["check"] = self._text
        if tag in ("script", "td", "th"):
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._text += data


def _counted(ids: list[str], where: str, wanted: list[Row]) -> list[str]:
    seen, known = Counter(ids), {r.id for r in wanted}
    return ([f"{where}: row {r.id} is not listed" for r in wanted if not seen[r.id]]
            + [f"{where}: row {i} is listed {n} times" for i, n in seen.items() if n > 1]
            + [f"{where}: row {i} is not in the matrix" for i in seen if i not in known])


def check_matrix_page(md_text: str, html_text: str, matrix: Matrix) -> list[str]:
    """What is wrong with a written matrix.md / matrix.html for ``matrix``: a row missing or listed twice, a cell
    whose label is not its state's, a table with a column too many or few, the changes section not listing
    exactly the rows that change, a failed set's detail missing, data that escaped its escaping."""
    problems = [f"the matrix lists row {i} {n} times" for i, n in Counter(r.id for r in matrix.rows).items() if n > 1]
    rows, sets = list({r.id: r for r in matrix.rows}.values()), matrix.sets
    by_key = {(r.family, r.layout, r.check): r for r in rows}
    want = {r.id: [f"{SYMBOL[c.state]} {c.label}" if c else MISSING for c in (cell_of(matrix, r.id, s) for s in sets)]
            for r in rows}  # written out again, not cell_label: the check must not share the writer's mistakes
    section, family, grid_ids, change_ids, set_lines = "", "", [], [], {}
    lines = md_text.splitlines()
    for n, line in enumerate(lines):
        if n + 1 < len(lines) and lines[n + 1].startswith("|---"):
            continue  # a table's header
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("### "):
            family = md_unescape(line[4:])
            if section == CHANGES_TITLE:
                change_ids.append(family)
        elif section == "Version sets" and line.startswith("| "):
            set_lines[md_unescape(_split(line)[0])] = md_unescape(line)
        elif section == "Grid" and line.startswith("| "):
            cells = _split(line)
            if len(cells) != 2 + len(sets):
                problems.append(f"matrix.md: a {family} grid row has {len(cells)} columns, not {2 + len(sets)}: {line}")
                continue
            layout, check = md_unescape(cells[0]), md_unescape(cells[1])
            marked = check.endswith(f" {CHANGED}")
            row = by_key.get((family, layout, check.removesuffix(f" {CHANGED}")))
            if row is None:
                problems.append(f"matrix.md: grid row {family}/{layout}/{check} is no row of the matrix")
                continue
            grid_ids.append(row.id)
            if cells[2:] != want[row.id]:
                problems.append(f"matrix.md: row {row.id} reads {cells[2:]}, its cells are {want[row.id]}")
            if marked != matrix.changes(row):
                problems.append(f"matrix.md: row {row.id} is {'' if marked else 'not '}marked {CHANGED}")
    problems += _counted(grid_ids, "matrix.md grid", rows)
    problems += _counted(change_ids, f"matrix.md '{CHANGES_TITLE}'", changed_rows(matrix))
    for s in sets:
        line = set_lines.get(s.version_set.name)
        if line is None or (s.detail and _one_line(s.detail) not in line):
            problems.append(f"matrix.md: set {s.version_set.name} ({s.status}) is not in the set table with its detail")
    if re.search(r"<[A-Za-z/!?]", md_text):
        problems.append("matrix.md: holds raw HTML (unescaped text from the data)")

    page = _Grid()
    page.feed(html_text)
    page.close()
    problems += _counted([r["id"] for r in page.rows], "matrix.html grid", rows)
    scripts = len(re.findall(r"<script", html_text, re.IGNORECASE))  # the text, not the parse: one opened
    if scripts != SCRIPTS:  # by the data swallows the page's own up to their </script>
        problems.append(f"matrix.html: {scripts} <script> tags, the page has {SCRIPTS} (unescaped data?)")
    try:
        blob = json.loads(page.blob or "")
    except ValueError:
        return problems + ["matrix.html: no readable evidence blob (script#matrix-data)"]
    by_id = {r.id: r for r in rows}
    for got in page.rows:
        row = by_id.get(got["id"])
        if row is None:
            continue
        labels = [text for _, text in got["cells"]]
        cells = [cell_of(matrix, row.id, s) for s in sets]
        states = [next((t[2:] for t in c.split() if t.startswith("x-")), "") for c, _ in got["cells"]]
        if labels != want[row.id] or states != [c.state if c else "none" for c in cells]:
            problems.append(f"matrix.html: row {row.id} reads {labels}, its cells are {want[row.id]}")
        if got["chg"] != matrix.changes(row) or (CHANGED in got["check"]) != matrix.changes(row):
            problems.append(f"matrix.html: row {row.id} is {'' if got['chg'] else 'not '}marked as changing")
        entry = blob["rows"][int(got["i"])] if str(got["i"]).isdigit() and int(got["i"]) < len(blob["rows"]) else {}
        if entry.get("id") != row.id or entry.get("cells") != [None if c is None else {
                "summary": c.summary, "evidence": list(c.evidence), "seconds": c.seconds} for c in cells]:
            problems.append(f"matrix.html: the evidence blob's entry for row {row.id} is not its cells'")
    return problems
