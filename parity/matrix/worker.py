"""Runs a matrix's cases in one version set's environment and writes one JSON line per cell.

    python -m parity.matrix.worker CASES.json RESULTS.jsonl

The driver (parity/matrix/run.py) starts it with the environment's interpreter and PYTHONPATH at this
repository, so the checks are this checkout's, whatever diffusers/peft the environment holds. The first
line written is the versions it imported (or why it could not); then a line per cell as it finishes, so a
worker that dies part way keeps the cells it ran. Each cell calls the suite's own checks (parity/checks:
fuse_and_measure, fuse_unfuse_cycles, run_hotswap, run_check), the ones the tests and the CLI call.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from parity.matrix.cases import MERGE_CHECKS, MatrixCase


def _emit(out: Any, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def _reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Loads:
    """One loaded pipeline per (family, layout, targets, expert, adapter set), handed out as deep copies:
    the cases sharing a load (merge and unfuse of the two adapters) load once, as the tests' cache does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loaded: dict[tuple, Any] = {}

    def get(self, case: MatrixCase) -> Any:
        from parity.checks.cases import ADAPTER_SPECS, ADAPTER_WEIGHTS, ONE_FILE_SETS, LayoutCase
        from parity.checks.fuse import load_files
        from parity.checks.prepare import fresh_copy, prepare

        if case.load not in self.loaded:
            self.loaded.clear()  # a case's loads are adjacent in the table: keep one alive
            specs = (ONE_FILE_SETS[case.adapters],) if isinstance(case.adapters, str) else ADAPTER_SPECS[: case.adapters]
            folder = self.directory / f"load{len(os.listdir(self.directory))}"
            folder.mkdir()
            lc = LayoutCase(case.family, case.layout, case.targets, expert=case.expert)
            try:
                prep = prepare(lc, specs, "float32", "cpu", str(folder))
                load_files(prep.pipe, prep.family, prep.loras, ADAPTER_WEIGHTS[case.adapters] if len(specs) > 1 else None)
                self.loaded[case.load] = prep
            except Exception as exc:  # noqa: BLE001 - the refusal (or the error) is every sharing case's cell
                self.loaded[case.load] = exc
        prep = self.loaded[case.load]
        if isinstance(prep, Exception):
            raise prep
        return fresh_copy(prep)


def _merge(case: MatrixCase, loads: Loads, start: float) -> Any:
    from parity.checks.cases import ADAPTER_WEIGHTS
    from parity.checks.fuse import fuse_and_measure
    from parity.matrix.cells import merge_cell, refused_cell

    prep = loads.get(case)
    try:
        result = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, ADAPTER_WEIGHTS[case.adapters],
                                  case.scale, restore=False)
    except Exception as exc:  # noqa: BLE001 - fuse_lora raising on loaded adapters is diffusers' verdict
        return refused_cell(f"fuse_lora raised {_reason(exc)}", time.perf_counter() - start)
    failing = sorted((r for r in result.reports if not r.ok), key=lambda r: -r.max_bound_ratio)
    return merge_cell([r.diagnosis for r in failing], len(result.reports), result.changed_untargeted, result.missing,
                      result.failures(limit=12), time.perf_counter() - start)


def _unfuse(case: MatrixCase, loads: Loads, start: float) -> Any:
    from parity.checks.cases import ADAPTER_WEIGHTS
    from parity.checks.fuse import fuse_unfuse_cycles
    from parity.matrix.cells import refused_cell, unfuse_cell

    prep = loads.get(case)
    try:
        result = fuse_unfuse_cycles(prep.pipe, prep.components, prep.before, prep.loras,
                                    ADAPTER_WEIGHTS[case.adapters], cycles=1, lora_scale=case.scale, restore=False)
    except Exception as exc:  # noqa: BLE001
        return refused_cell(f"fuse_lora/unfuse_lora raised {_reason(exc)}", time.perf_counter() - start)
    return unfuse_cell(result.bound_ratio[0], result.max_ulps[0], result.changed_untargeted,
                       time.perf_counter() - start)


def _hotswap(case: MatrixCase, directory: Path, start: float) -> Any:
    from diffusers.loaders import lora_base

    from parity.checks.cases import FIRST_SWAP, HOTSWAP_TARGET_RANK, LAYOUT_FIRST, LAYOUT_SWAPS, SWAPS
    from parity.checks.dynamo import reset
    from parity.checks.swaps import HotswapRequest, run_hotswap
    from parity.lora.synth import write_lora
    from parity.matrix.cells import hotswap_cell, unavailable_cell
    from parity.zoo import FAMILIES, build_pipeline

    if not hasattr(lora_base.LoraBaseMixin, "enable_lora_hotswap"):
        return unavailable_cell("this diffusers has no enable_lora_hotswap")
    fam = FAMILIES[case.family]
    first, second = (FIRST_SWAP, SWAPS[1]) if case.layout == "diffusers" else (LAYOUT_FIRST, LAYOUT_SWAPS[0])
    components = fam.components(build_pipeline(fam))
    paths = tuple(write_lora(components, {fam.denoiser: fam.default_targets[fam.denoiser]},
                             directory / f"{case.family}-{case.layout}-{spec.name}.safetensors", case.layout,
                             seed=spec.seed, rank=spec.rank, alpha=spec.alpha) for spec in (first, second))
    reset()
    try:
        report = run_hotswap(HotswapRequest(case.family, paths, target_rank=HOTSWAP_TARGET_RANK))
    finally:
        reset()
    [record] = report.swaps or [None]
    if record is None:
        return hotswap_cell(False, "diffusers deleted the adapter: " + "; ".join(report.skipped),
                            [], time.perf_counter() - start)
    return hotswap_cell(record.recompiled, record.refused, record.failures, time.perf_counter() - start)


def _algorithm(case: MatrixCase, directory: Path, start: float) -> Any:
    from parity.lora.algorithms import write_algorithm_file

    path = write_algorithm_file(case.family, case.layout, directory)
    return _file(case, start, str(path))


def _file(case: MatrixCase, start: float, path: str | None = None) -> Any:
    """``lora-parity check`` of one file: a user's (the case's path), or an algorithm file written here."""
    from parity.checks.check import CheckRequest, run_check
    from parity.matrix.cells import error_cell, merge_cell, refused_cell, unfuse_cell

    try:
        report = run_check(CheckRequest(case.family, (path or case.layout,), model_path=case.model_path))
    except Exception as exc:  # noqa: BLE001 - LoaderRefused, and whatever diffusers raises on the file
        from parity.errors import LoaderRefused, ParityInputError

        if isinstance(exc, LoaderRefused):
            return refused_cell(exc.reason, time.perf_counter() - start)
        if isinstance(exc, ParityInputError):  # e.g. a file this version's family cannot read: not diffusers' fault
            return error_cell(str(exc), time.perf_counter() - start)
        raise
    [result] = report.results
    if case.check in ("file-merge", "algorithm"):
        missing = result.failing[len(result.diagnoses):]  # failing: the weights over their bound, then the missing
        return merge_cell(result.diagnoses, sum(report.files[0].matched.values()), result.merge_untargeted, missing,
                          [f for f in result.failures if not f.startswith("unfuse")], time.perf_counter() - start)
    unfuse = result.unfuse
    return unfuse_cell(unfuse.max_bound_ratio, max(unfuse.max_ulps, default=0.0), [], time.perf_counter() - start,
                       extra=[] if unfuse.state.ok else unfuse.state.failures(unfuse.lora_scale, unfuse.cycles))


def run_case(case: MatrixCase, loads: Loads, directory: Path) -> Any:
    from parity.errors import LoaderRefused
    from parity.matrix.cells import error_cell, refused_cell, unavailable_cell
    from parity.zoo.registry import UNAVAILABLE

    start = time.perf_counter()
    if case.family in UNAVAILABLE:
        return unavailable_cell(f"{case.family}: {UNAVAILABLE[case.family]}")
    try:
        if case.check in MERGE_CHECKS:
            return _merge(case, loads, start)
        if case.check == "unfuse":
            return _unfuse(case, loads, start)
        if case.check == "hotswap":
            return _hotswap(case, directory, start)
        if case.check == "algorithm":
            return _algorithm(case, directory, start)
        return _file(case, start)
    except LoaderRefused as exc:
        return refused_cell(exc.reason, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one cell's error is that cell's, never the whole set's
        return error_cell(f"the check raised {_reason(exc)}", time.perf_counter() - start,
                          traceback.format_exc().splitlines()[-12:])


def main(argv: list[str]) -> int:
    cases_path, results_path = argv
    with open(results_path, "a", encoding="utf-8") as out:
        try:
            import torch

            from parity.matrix.cells import error_cell  # noqa: F401 - imports the checks' dependencies early
            from parity.quiet import quiet_libraries
            from parity.versions import library_versions

            versions = library_versions()
            import diffusers  # noqa: F401
            import peft  # noqa: F401

            from parity.zoo.registry import UNAVAILABLE
        except Exception as exc:  # noqa: BLE001 - a version set that cannot import is one row saying so
            _emit(out, {"import_error": _reason(exc), "traceback": traceback.format_exc().splitlines()[-8:]})
            return 3
        quiet_libraries()
        torch.set_num_threads(int(os.environ.get("LORA_PARITY_MATRIX_THREADS", "1")))
        cases = [MatrixCase.from_json(c) for c in json.loads(Path(cases_path).read_text(encoding="utf-8"))]
        done = set()
        if os.path.getsize(results_path) > 0:  # a resumed run: skip what the file already holds
            for line in Path(results_path).read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                done.add(record.get("case"))
        _emit(out, {"versions": versions, "unavailable": UNAVAILABLE, "cases": len(cases)})
        with tempfile.TemporaryDirectory(prefix="lora-parity-matrix-") as tmp:
            loads = Loads(Path(tmp) / "loads")
            loads.directory.mkdir()
            for i, case in enumerate(cases, start=1):
                if case.id in done:
                    continue
                cell = run_case(case, loads, Path(tmp))
                from dataclasses import asdict

                _emit(out, {"case": case.id, "cell": asdict(cell)})
                print(f"{i}/{len(cases)} {case.id}: {cell.label}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
