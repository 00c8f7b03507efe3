"""The compatibility matrix's report (issue 35, parity/matrix/report.py) on a hand-made matrix: three version
sets (one that failed to install), rows of two families, every cell state, a row that changes between versions,
and a user's file whose name and error hold ``|`` and ``<script>``.

The pages are checked as written (``check_matrix_page``: every row once, each cell its state's label, the
changes section exactly the rows that change, a failed set's detail in the set table, nothing unescaped), and
the check itself is shown to catch a row listed twice, a missing row, a dropped label and unescaped text.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from parity.matrix import report
from parity.matrix.report import check_matrix_page, terminal_lines, write_matrix_report
from parity.matrix.schema import Cell, Matrix, Row, SetResult, VersionSet

OLD, BROKEN, NEW = "diffusers 0.37.1", "diffusers 0.39.0", "diffusers 0.42.1"
INSTALL_ERROR = "pip: ResolutionImpossible: peft==0.13.2 | transformers<4.40 (see <log>)"
USER_FILE = "my|lora<script>.safetensors"
INJECTED = "<script>alert('x')</script> worker died | exit 9"
CHANGED = ("flux/xlabs/merge", "sd15/kohya-locon/merge")


def _matrix(extra_rows: list[Row] = ()) -> Matrix:
    sets = [
        SetResult(VersionSet(OLD, {"diffusers": "0.37.1", "peft": "0.17.1"}, rule="peft: newest before 0.37.1"), "ok",
                  versions={"torch": "2.8.0", "diffusers": "0.37.1", "peft": "0.17.1"}, build_seconds=81.2,
                  run_seconds=40.5),
        SetResult(VersionSet(BROKEN, {"diffusers": "0.39.0", "peft": "0.13.2"}), "install-failed",
                  detail=INSTALL_ERROR, build_seconds=12.0, log="/cache/sets/0.39.0/install.log"),
        SetResult(VersionSet(NEW, {"diffusers": "0.42.1", "peft": "0.18.0"}), "ok",
                  versions={"torch": "2.8.0", "diffusers": "0.42.1", "peft": "0.18.0"}, build_seconds=0.0,
                  run_seconds=41.0, cached=True),
    ]
    rows = [
        Row("flux/xlabs/merge", "flux", "xlabs", "merge", "merge an XLabs FLUX.1 file at scale 1 against ours"),
        Row("flux/xlabs/unfuse", "flux", "xlabs", "unfuse", "fuse, unfuse: the base weights come back"),
        Row("flux/kohya/merge", "flux", "kohya", "merge", "merge a kohya FLUX.1 file"),
        Row(f"flux/{USER_FILE}/file", "flux", USER_FILE, "file", "the user's file, merged"),
        Row("sd15/kohya-locon/merge", "sd15", "kohya-locon", "merge", "merge a kohya LoCon SD1.5 file"),
        Row("sd15/kohya-locon/hotswap", "sd15", "kohya-locon", "hotswap", "hotswap two LoCon adapters"),
        *extra_rows,
    ]
    ok = Cell("correct", summary="within bound (0.41 ULP)", seconds=0.8)
    old_new = {
        "flux/xlabs/merge": (Cell("wrong", how="scaled", summary="merged 2.0× the reference delta",
                                  evidence=("transformer.single_transformer_blocks.0.attn.to_q: ratio 2.000",
                                            "worst weight: 3.1e6 ULP"), seconds=1.5), ok),
        "flux/xlabs/unfuse": (ok, ok),
        "flux/kohya/merge": (Cell("refused", summary="IndexError: list index out of range"),) * 2,
        f"flux/{USER_FILE}/file": (Cell("unavailable", summary="no API for user files in 0.37.1"),
                                   Cell("error", summary=INJECTED, evidence=(INJECTED,))),
        "sd15/kohya-locon/merge": (ok, Cell("wrong", how="dropped", summary="nothing merged in 12 modules")),
        "sd15/kohya-locon/hotswap": (Cell("refused", summary="ValueError: hotswap needs the same ranks"), ok),
    }
    # the hotswap row changes too (refused → correct); CHANGED names the two merges asserted by name. The user
    # file's row (unavailable, then error) does not: a family or API that appears is no change, nor a set that
    # did not run
    cells = {rid: {OLD: old, BROKEN: Cell("error", summary=INSTALL_ERROR), NEW: new}
             for rid, (old, new) in old_new.items()}
    for r in extra_rows:
        cells[r.id] = {OLD: ok, BROKEN: Cell("error", summary=INSTALL_ERROR), NEW: ok}
    return Matrix("2026-12-08T10:00:00Z", {"host": "ci-1", "cpu": "2 cores"},
                  {"lora-parity": "0.1.0", "fingerprint": "abc123", "selection": "merge,unfuse,hotswap"},
                  sets, rows, cells)


@pytest.fixture
def written(tmp_path: Path) -> tuple[Matrix, str, str, Path]:
    matrix = _matrix()
    js, md, html = write_matrix_report(matrix, tmp_path / "matrix")
    assert (js.name, md.name, html.name) == ("matrix.json", "matrix.md", "matrix.html")
    return matrix, md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8"), js


def _grid_lines(md: str) -> list[str]:
    grid = md.split("\n## Grid\n")[1].split(f"\n## {report.CHANGES_TITLE}\n")[0]
    return [line for line in grid.splitlines() if line.startswith("| ") and not line.startswith("| layout |")]


def _changes(md: str) -> str:
    return md.split(f"\n## {report.CHANGES_TITLE}\n")[1].split("\n## Legend\n")[0]


def test_the_json_round_trips(written):
    matrix, _, _, js = written
    data = json.loads(js.read_text(encoding="utf-8"))
    assert Matrix.from_json(data) == matrix and data == json.loads(json.dumps(matrix.to_json()))


def test_the_markdown_lists_every_row_once_with_its_cells(written):
    matrix, md, html, _ = written
    assert check_matrix_page(md, html, matrix) == []
    lines = _grid_lines(md)
    assert len(lines) == len(matrix.rows)  # each row once, nothing else
    cols = [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines]
    assert {len(c) for c in cols} == {2 + len(matrix.sets)}  # the user's "|" is escaped, not a column
    by_row = {(c[0].strip(), c[1].strip()): [x.strip() for x in c[2:]] for c in cols}
    assert by_row[("xlabs", "merge Δ")] == ["✗ wrong: scaled", "! error", "✓ correct"]
    assert by_row[("xlabs", "unfuse")] == ["✓ correct", "! error", "✓ correct"]
    assert by_row[("kohya", "merge")] == ["⊘ refused", "! error", "⊘ refused"]
    assert by_row[("my\\|lora&lt;script&gt;.safetensors", "file")] == ["– unavailable", "! error", "! error"]
    assert by_row[("kohya-locon", "merge Δ")] == ["✓ correct", "! error", "✗ wrong: dropped"]
    # the failed set: its column header says so, its detail is in the set table once, in no cell or change line
    assert f"| {BROKEN} (install failed) |" in md
    assert md.count("peft==0.13.2 \\| transformers&lt;4.40") == 1
    assert [line for line in md.splitlines() if line.startswith(f"| {BROKEN} |")][0].count("install-failed: pip") == 1
    assert "<script" not in md and "&lt;script&gt;alert" not in _grid_lines(md)[3]


def test_the_changes_section_lists_the_rows_that_change_and_only_them(written):
    matrix, md, _, _ = written
    changes = _changes(md)
    headings = [line[4:] for line in changes.splitlines() if line.startswith("### ")]
    assert headings == ["flux/xlabs/merge", "sd15/kohya-locon/merge", "sd15/kohya-locon/hotswap"]
    assert set(CHANGED) <= set(headings) and "flux/xlabs/unfuse" not in changes
    assert "safetensors/file" not in changes  # unavailable then error: neither makes a change
    xlabs = changes.split("### flux/xlabs/merge")[1].split("###")[0]
    assert f"- {OLD}: ✗ wrong: scaled — merged 2.0× the reference delta" in xlabs
    assert f"- {BROKEN}: ! error — install failed: see the set table" in xlabs and f"- {NEW}: ✓ correct" in xlabs


def test_the_html_page_holds_every_row_once_escaped_with_its_evidence(written):
    matrix, md, html, _ = written
    for row in matrix.rows:
        assert html.count(f"data-row='{report.html.escape(row.id)}'") == 1, row.id
    assert html.count("<script") == 2 and "<script>alert" not in html and "\\u003cscript\\u003ealert('x')" in html
    assert "src=" not in html and "href=" not in html and "@import" not in html  # self-contained
    blob = json.loads(html.split("<script type='application/json' id='matrix-data'>")[1].split("</script>")[0])
    entry = next(r for r in blob["rows"] if r["id"] == "flux/xlabs/merge")
    assert entry["cells"][0]["evidence"] == ["transformer.single_transformer_blocks.0.attn.to_q: ratio 2.000",
                                            "worst weight: 3.1e6 ULP"]
    user = next(r for r in blob["rows"] if r["id"] == f"flux/{USER_FILE}/file")
    assert user["cells"][2] == {"summary": INJECTED, "evidence": [INJECTED], "seconds": 0.0}
    assert f"{BROKEN}<small class=note>install failed</small>" in html
    assert html.count("class='r chg") == 3  # the changed rows are marked


def test_the_terminal_summary(written):
    matrix, _, _, _ = written
    lines = terminal_lines(matrix)
    assert lines[0] == "matrix: 6 rows × 3 version sets, 3 rows change"
    assert any(BROKEN in line and "install-failed" in line for line in lines)
    assert any(line.strip().startswith(f"{OLD}  ok: 2 correct, 1 wrong, 2 refused, 1 unavailable") for line in lines)
    assert f"  flux/xlabs/merge: {OLD}: ✗ wrong: scaled · {BROKEN}: ! error · {NEW}: ✓ correct" in lines
    many = _matrix([Row(f"sd15/x{i}/merge", "sd15", f"x{i}", "merge", "") for i in range(40)])
    for i in range(40):
        many.cells[f"sd15/x{i}/merge"][NEW] = Cell("wrong", how="sign", summary="")
    lines = terminal_lines(many)
    assert len(lines) <= 20 and lines[-1].startswith("  … and ") and "more" in lines[-1]


# ---- negative controls: the check catches broken pages --------------------------------------------------------

def test_the_check_catches_a_row_listed_twice(tmp_path):
    matrix = _matrix()
    matrix.rows.append(matrix.rows[0])  # a writer that lists a row twice
    _, md, html = write_matrix_report(matrix, tmp_path)
    problems = check_matrix_page(md.read_text(), html.read_text(), matrix)
    assert "matrix.md grid: row flux/xlabs/merge is listed 2 times" in problems
    assert "matrix.html grid: row flux/xlabs/merge is listed 2 times" in problems
    assert "matrix.md 'Rows that change between versions': row flux/xlabs/merge is listed 2 times" in problems


def test_the_check_catches_a_missing_row(written):
    matrix, md, html, _ = written
    md = "\n".join(line for line in md.splitlines() if not line.startswith("| kohya | merge |"))
    html = re.sub(r"<tr class='r[^']*' data-i=\d+ data-row='flux/kohya/merge'.*?</tr>", "", html)
    assert check_matrix_page(md, html, matrix) == ["matrix.md grid: row flux/kohya/merge is not listed",
                                                   "matrix.html grid: row flux/kohya/merge is not listed"]
    changes = md.split("### sd15/kohya-locon/merge")  # a changed row left out of the changes section
    md = changes[0] + "### sd15/kohya-locon/hotswap" + changes[1].split("### sd15/kohya-locon/hotswap")[1]
    assert any("'Rows that change between versions': row sd15/kohya-locon/merge is not listed" in p
               for p in check_matrix_page(md, html, matrix))


def test_the_check_catches_a_dropped_label(tmp_path, monkeypatch):
    matrix = _matrix()
    real = report.cell_label
    monkeypatch.setattr(report, "cell_label", lambda c: "" if c is not None and c.state == "wrong" else real(c))
    _, md, html = write_matrix_report(matrix, tmp_path)
    problems = check_matrix_page(md.read_text(), html.read_text(), matrix)
    assert sum(p.startswith("matrix.md: row ") and "reads" in p for p in problems) == 2
    assert sum(p.startswith("matrix.html: row ") and "reads" in p for p in problems) == 2


def test_the_check_catches_unescaped_text(tmp_path, monkeypatch):
    matrix = _matrix()
    monkeypatch.setattr(report, "md_text", lambda text: " ".join(str(text).split()))
    monkeypatch.setattr(report.html, "escape", lambda text, quote=True: text)
    _, md, html = write_matrix_report(matrix, tmp_path)
    problems = check_matrix_page(md.read_text(), html.read_text(), matrix)
    assert any("grid row has 6 columns, not 5" in p for p in problems)  # the user's "|" split its row
    assert "matrix.md: holds raw HTML (unescaped text from the data)" in problems
    assert any(re.match(r"matrix.html: \d+ <script> tags, the page has 2", p) for p in problems)


def test_the_check_catches_a_failed_set_without_its_detail(written):
    matrix, md, html, _ = written
    md = md.replace("install-failed: pip", "install-failed")
    assert check_matrix_page(md, html, matrix) == [
        f"matrix.md: set {BROKEN} (install-failed) is not in the set table with its detail"]


def test_a_large_matrix_is_written_and_checked_quickly(tmp_path):
    sets = [SetResult(VersionSet(f"diffusers 0.{30 + i}.0"), "ok") for i in range(10)]
    rows = [Row(f"fam{f}/layout{l}/{c}", f"fam{f}", f"layout{l}", c, "")
            for f in range(8) for l in range(10) for c in ("merge", "unfuse", "hotswap", "merge-bf16", "file")]
    cells = {r.id: {s.version_set.name: Cell("wrong", how="scaled", evidence=("a", "b")) if (i + j) % 37 == 0
                    else Cell("correct") for j, s in enumerate(sets)} for i, r in enumerate(rows)}
    matrix = Matrix("now", {}, {}, sets, rows, cells)
    start = time.perf_counter()
    _, md, html = write_matrix_report(matrix, tmp_path)
    assert check_matrix_page(md.read_text(), html.read_text(), matrix) == []
    assert time.perf_counter() - start < 3.0 and html.stat().st_size < 2_000_000
    assert len(terminal_lines(matrix)) <= 20
