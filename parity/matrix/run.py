"""The matrix driver: each version set's environment (built once, cached), its cells (run once per suite
source and case list, cached), one ``Matrix``.

Per version set, in up to ``jobs`` at a time:

1. ``envs.ensure_env``: the cached venv, built on first use; a set that fails to install is one row saying so.
2. The results cache: ``<cache>/results/<key>.jsonl``, where the key is the environment's, this checkout's
   source fingerprint and the case list. A complete file is reused, so adding a release costs only its run.
3. Otherwise ``parity.matrix.worker`` under the environment's interpreter, PYTHONPATH at this checkout; its
   lines are read as they come (progress every few seconds). A worker that cannot import is one row
   ("import-failed"); one that dies part way keeps its cells and the rest say it died ("crashed").

A set named by an existing interpreter (``VersionSet.python``) is run every time: nothing says its packages
are the same as last time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from parity.matrix.cases import MatrixCase
from parity.matrix.cells import error_cell, first_line
from parity.matrix.schema import Cell, Matrix, SetResult, VersionSet

REPO = Path(__file__).resolve().parents[2]
PROGRESS_SECONDS = 10.0  # a progress line per set at most this often
Log = Callable[[str], None]


def source_fingerprint() -> str:
    """A hash of this checkout's parity/ sources: a cached cell is only as good as the code that made it."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "parity").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cases_key(cases: Sequence[MatrixCase]) -> str:
    return hashlib.sha256(json.dumps([c.to_json() for c in cases], sort_keys=True).encode()).hexdigest()[:16]


def _read_results(path: Path) -> tuple[dict[str, Any] | None, dict[str, Cell]]:
    header, cells = None, {}
    if not path.exists():
        return None, cells
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a worker killed while writing it
            continue
        if "case" in record:
            data = record["cell"]
            cells[record["case"]] = Cell(**{**data, "evidence": tuple(data.get("evidence", ()))})
        elif header is None:
            header = record
    return header, cells


def _worker_env(vs: VersionSet, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    extra = vs.env.get("PYTHONPATH")
    env.update({k: v for k, v in vs.env.items() if k != "PYTHONPATH"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, str(REPO)) if p)
    env["LORA_PARITY_MATRIX_THREADS"] = str(threads)
    env.pop("PYTHONHOME", None)
    return env


def _run_worker(vs: VersionSet, python: str, cases_file: Path, results: Path, log_path: Path, total: int,
                threads: int, log: Log) -> int:
    """The worker's exit code; progress while it runs, from its results file."""
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen([python, "-m", "parity.matrix.worker", str(cases_file), str(results)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=_worker_env(vs, threads), cwd=REPO)
        start = last = time.monotonic()
        shown = 0
        while proc.poll() is None:
            time.sleep(0.2)
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last, done = time.monotonic(), len(_read_results(results)[1])
                if done != shown:
                    log(f"matrix: {vs.name}: {done}/{total} cells ({last - start:.0f} s)")
                    shown = done
        return proc.returncode


def run_set(vs: VersionSet, cases: Sequence[MatrixCase], cache_dir: Path, logs: Path, *, threads: int = 1,
            rebuild: bool = False, rerun: bool = False, source: str | None = None,
            log: Log = print) -> tuple[SetResult, dict[str, Cell]]:
    """One version set's cells; ``source``: the checkout's fingerprint, taken once for the whole matrix."""
    from parity.matrix.envs import ensure_env

    env = ensure_env(vs, cache_dir, rebuild=rebuild, log=log)
    result = SetResult(vs, "ok", build_seconds=round(env.seconds, 1), log=str(env.log_path or ""))
    if env.status != "ok" or env.python is None:
        result.status, result.detail = "install-failed", env.detail or "the environment could not be built"
        return result, {}
    source = source or source_fingerprint()
    key = hashlib.sha256(f"{env.key}|{vs.python}|{source}|{_cases_key(cases)}".encode()).hexdigest()[:20]
    final = cache_dir / "results" / f"{key}.jsonl"
    if final.exists() and not rerun and vs.python is None:
        header, cells = _read_results(final)
        if header is not None and "versions" in header and set(cells) >= {c.id for c in cases}:
            result.versions, result.cached = header["versions"], True
            log(f"matrix: {vs.name}: {len(cells)} cells from the results cache ({final})")
            return result, cells
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
    cases_file = partial.with_suffix(".cases.json")
    cases_file.write_text(json.dumps([c.to_json() for c in cases]), encoding="utf-8")
    partial.unlink(missing_ok=True)
    log_path = logs / f"{_slug(vs.name)}.log"
    result.log = str(log_path)
    log(f"matrix: {vs.name}: running {len(cases)} cells (log {log_path})")
    start = time.monotonic()
    code = _run_worker(vs, env.python, cases_file, partial, log_path, len(cases), threads, log)
    result.run_seconds = round(time.monotonic() - start, 1)
    header, cells = _read_results(partial)
    cases_file.unlink(missing_ok=True)
    if header is None or "import_error" in header:
        result.status = "import-failed"
        result.detail = (header or {}).get("import_error") or f"the worker exited with {code} before a line: " + \
            _last_line(log_path)
        partial.unlink(missing_ok=True)
        return result, {}
    result.versions = header.get("versions", {})
    missing = [c for c in cases if c.id not in cells]
    if code != 0 or missing:
        result.status = "crashed"
        result.detail = f"the worker exited with {code} after {len(cells)} of {len(cases)} cells: {_last_line(log_path)}"
        partial.unlink(missing_ok=True)  # nothing partial is cached: the next run runs the set again
        return result, cells
    if vs.python is None:
        partial.replace(final)
    else:
        partial.unlink(missing_ok=True)
    log(f"matrix: {vs.name}: {len(cells)} cells in {result.run_seconds:.0f} s")
    return result, cells


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in name).strip("-") or "set"


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return first_line(lines[-1]) if lines else "(empty log)"


def _set_cells(result: SetResult, cells: dict[str, Cell], cases: Sequence[MatrixCase]) -> dict[str, Cell]:
    """Every case a cell: a set that did not run says why in each of its cells (once in the set table)."""
    why = {"install-failed": "the environment did not install", "import-failed": "the environment cannot import",
           "crashed": "the worker died before this cell"}.get(result.status, "not run")
    return {c.id: cells.get(c.id) or error_cell(f"{why}: {result.detail}") for c in cases}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def run_matrix(sets: Sequence[VersionSet], cases: Sequence[MatrixCase], cache_dir: Path, out: Path, *,
               jobs: int = 2, rebuild: bool = False, rerun: bool = False, selection: dict[str, Any] | None = None,
               log: Log = print) -> Matrix:
    """Every version set's cells, ``jobs`` sets at a time (each worker on cpus/jobs threads)."""
    from parity.versions import library_versions

    names = [vs.name for vs in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"two version sets share a name: {names}")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    lock = threading.Lock()
    source = source_fingerprint()

    def say(line: str) -> None:
        with lock:
            log(line)

    def one(vs: VersionSet) -> tuple[SetResult, dict[str, Cell]]:
        try:
            return run_set(vs, cases, cache_dir, logs, threads=threads, rebuild=rebuild, rerun=rerun, source=source,
                           log=say)
        except Exception as exc:  # noqa: BLE001 - one set's failure is its row, never the whole matrix's
            return SetResult(vs, "crashed", detail=f"{type(exc).__name__}: {first_line(str(exc))}"), {}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(one, sets))
    cells: dict[str, dict[str, Cell]] = {c.id: {} for c in cases}
    for result, set_cells in done:
        for case_id, cell in _set_cells(result, set_cells, cases).items():
            cells[case_id][result.version_set.name] = cell
    suite = {"lora_parity": library_versions().get("lora-parity", ""), "source": source,
             "cases": len(cases), "selection": selection or {}}
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return Matrix(created, machine(), suite, [r for r, _ in done], [c.row() for c in cases], cells)
