"""The matrix's own logic on real version sets (parity/matrix/run.py, worker.py, cells.py), without building
an environment: each set is this interpreter, as ``NAME=python:PATH`` names one.

- ``this``: this environment as it is; its cells are the suite's verdicts (sd15's diffusers layout and a
  user's kohya file, as ``matrix --lora FILE --family sd15`` takes it: correct).
- ``broken-fuse``: the same environment with a ``sitecustomize`` that halves every LoRA delta PEFT merges —
  the negative control: its merge cells must say wrong, scaled, and no other set's cell may change.
- ``no-interpreter``: a set whose interpreter does not exist: one row saying it did not install.
- ``cannot-import``: a set whose diffusers raises on import: one row saying so, never a crash.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from parity.matrix import run as matrix_run
from parity.matrix.cases import MatrixCase, file_cases, matrix_cases
from parity.matrix.schema import Matrix, VersionSet
from tests.support.trainer_files import kohya_sd15

# One worker runs every test here, so the module's matrix (four sets, each a worker process checking sd15:
# 24 s on 2 cores) is built once, not once on each xdist worker.
pytestmark = pytest.mark.xdist_group("matrix-run")

# sd15's diffusers layout: the two adapters' merge and their unfuse share one load (a few seconds per set)
CASES = [c for c in matrix_cases(["sd15"], ("merge", "unfuse")) if c.layout == "diffusers"]

BREAK_FUSE = '''
# Installed on PYTHONPATH by tests/harness/test_matrix_run.py: every LoRA delta PEFT merges is halved.
from peft.tuners.lora import layer as _layer

_delta = _layer.Linear.get_delta_weight
_layer.Linear.get_delta_weight = lambda self, adapter: 0.5 * _delta(self, adapter)
'''
BREAK_IMPORT = 'raise ImportError("this diffusers is broken on purpose")\n'


def _python_set(name: str, python: str, pythonpath: Path | None = None) -> VersionSet:
    return VersionSet(name, python=python, env={"PYTHONPATH": str(pythonpath)} if pythonpath else {})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    root = tmp_path_factory.mktemp("matrix")
    (root / "broken-fuse").mkdir()
    (root / "broken-fuse" / "sitecustomize.py").write_text(BREAK_FUSE, encoding="utf-8")
    (root / "cannot-import" / "diffusers").mkdir(parents=True)
    (root / "cannot-import" / "diffusers" / "__init__.py").write_text(BREAK_IMPORT, encoding="utf-8")
    sets = [_python_set("this", sys.executable), _python_set("broken-fuse", sys.executable, root / "broken-fuse"),
            _python_set("no-interpreter", str(root / "missing" / "python")),
            _python_set("cannot-import", sys.executable, root / "cannot-import")]
    # a user's file (`matrix --lora FILE --family sd15`), as kohya's train_network.py writes it: its rows too
    user_file = kohya_sd15(root / "user-kohya.safetensors")
    cases = CASES + file_cases("sd15", [str(user_file)])
    return matrix_run.run_matrix(sets, cases, root / "cache", root / "out", jobs=3, log=lambda line: None)


def _states(matrix: Matrix, set_name: str) -> dict[str, str]:
    return {row.id: matrix.cells[row.id][set_name].label for row in matrix.rows}


def test_this_environment_fuses_and_unfuses_the_diffusers_layout_correctly(matrix: Matrix) -> None:
    [this] = [s for s in matrix.sets if s.version_set.name == "this"]
    assert this.status == "ok" and this.versions["diffusers"] != "not installed"
    assert _states(matrix, "this") == {"sd15/diffusers/merge": "correct", "sd15/diffusers/unfuse": "correct",
                                       "sd15/user-kohya.safetensors/file-merge": "correct",
                                       "sd15/user-kohya.safetensors/file-unfuse": "correct"}


def test_a_set_whose_fuse_is_broken_shows_wrong_scaled_merge_cells(matrix: Matrix) -> None:
    """The negative control: the same environment with PEFT's delta halved."""
    cell = matrix.cells["sd15/diffusers/merge"]["broken-fuse"]
    assert (cell.state, cell.how) == ("wrong", "scaled"), cell
    assert "0.5× the reference delta" in cell.summary, cell.summary
    assert cell.evidence, "a wrong cell carries the check's failing weights"
    user = matrix.cells["sd15/user-kohya.safetensors/file-merge"]["broken-fuse"]
    assert (user.state, user.how) == ("wrong", "scaled"), user
    assert matrix.changes("sd15/diffusers/merge")
    # unfuse_lora subtracts the same halved delta: the weights come back, and the matrix says so
    assert matrix.cells["sd15/diffusers/unfuse"]["broken-fuse"].state == "correct"


def test_a_set_that_cannot_install_is_one_row_saying_so(matrix: Matrix) -> None:
    [missing] = [s for s in matrix.sets if s.version_set.name == "no-interpreter"]
    assert missing.status == "install-failed" and "python" in missing.detail, missing
    assert {matrix.cells[r.id]["no-interpreter"].state for r in matrix.rows} == {"error"}


def test_a_set_that_cannot_import_is_one_row_saying_so(matrix: Matrix) -> None:
    [broken] = [s for s in matrix.sets if s.version_set.name == "cannot-import"]
    assert broken.status == "import-failed", broken
    assert "broken on purpose" in broken.detail
    assert all("cannot import" in matrix.cells[r.id]["cannot-import"].summary for r in matrix.rows)


def test_the_matrix_json_round_trips(matrix: Matrix) -> None:
    again = Matrix.from_json(json.loads(json.dumps(matrix.to_json())))
    assert again.to_json() == matrix.to_json()


def test_a_built_environments_results_are_cached_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A set with a built environment runs once; a second run reads its cells back without starting a worker
    (a stand-in worker writes the cells: what is tested is the cache around it)."""
    from parity.matrix import envs

    def built(vs: VersionSet, cache_dir: Path, **_: object) -> envs.EnvResult:
        return envs.EnvResult(python=sys.executable, status="ok", detail="", seconds=0.0, log_path=None,
                              cached=True, key="fake-built-env")

    def worker(vs: VersionSet, python: str, cases_file: Path, results: Path, *args: object) -> int:
        # what a worker writes: its versions, then a line per case (parity/matrix/worker.py)
        lines = [{"versions": {"diffusers": "0.0"}}] + [
            {"case": c["family"] + "/" + c["layout"] + "/" + c["check"], "cell": {"state": "correct"}}
            for c in json.loads(cases_file.read_text(encoding="utf-8"))]
        results.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        return 0

    monkeypatch.setattr(envs, "ensure_env", built)
    monkeypatch.setattr(matrix_run, "_run_worker", worker)
    vs = VersionSet("pinned", pins={"diffusers": "0.0"})
    first, cells = matrix_run.run_set(vs, CASES[:1], tmp_path, tmp_path, log=lambda line: None)
    assert first.status == "ok" and not first.cached and cells["sd15/diffusers/merge"].state == "correct"

    def no_worker(*args: object, **kwargs: object) -> int:
        raise AssertionError("a cached set started a worker")

    monkeypatch.setattr(matrix_run, "_run_worker", no_worker)
    second, again = matrix_run.run_set(vs, CASES[:1], tmp_path, tmp_path, log=lambda line: None)
    assert second.cached and again == cells
    # another case list is another key: it runs
    with pytest.raises(AssertionError, match="started a worker"):
        matrix_run.run_set(vs, [MatrixCase("sd15", "diffusers", "unfuse", adapters=2)], tmp_path, tmp_path,
                           log=lambda line: None)
