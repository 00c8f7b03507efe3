"""Benchmark verdicts that hold on a shared runner (issue 17), end to end on real runs: two runs of the
same code compare clean under ``ratio:10%``, a run beside a busy process too (slow), and a run whose
fused forward is 20% slower (``-p tests.support.slow_fuse``) is a regression on the fused ratio and on
nothing else. Each run is the interleaved group benchmark (benchmarks/test_bench_groups.py) on the
tiny flux forward."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.cli import main

REPO = Path(__file__).resolve().parents[2]
HOG_SECONDS = 120  # the busy neighbour stops by itself after this, whatever happens to the test
# one core kept busy in pure Python until its deadline
HOG = f"import time\nend = time.monotonic() + {HOG_SECONDS}\nwhile time.monotonic() < end:\n    sum(range(1000))\n"
RUN = ["benchmarks/test_bench_groups.py", "--benchmark-enable", "--family", "flux", "-k", "forward and float32",
       "--bench-rounds", "60", "-q", "-n", "0", "-p", "no:cacheprovider"]


# the runs are one worker's, built once (a second worker's runs would be the first's busy neighbour)
# Slow (make slow): its module fixture is two whole benchmark runs in subprocesses, 40 s on 2 cores; the
# comparison's verdict rules are pinned on hand-made runs in test_run_compare.py and test_bench_report.py.
pytestmark = [pytest.mark.xdist_group("bench-noise"), pytest.mark.slow]


def _run(path: Path, *plugins: str) -> Path:
    extra = [arg for plugin in plugins for arg in ("-p", plugin)]
    # pytest-benchmark disables itself where it sees an xdist worker's variables, which a run started from
    # inside a worker inherits: the run would time nothing
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    done = subprocess.run([sys.executable, "-m", "pytest", *RUN, *extra, "--benchmark-json", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and path.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench-noise")
    return {"a": _run(folder / "a.json"), "b": _run(folder / "b.json"),
            "slow": _run(folder / "slow.json", "tests.support.slow_fuse")}


def test_two_runs_of_the_same_code_compare_clean(runs, capsys):
    code = main(["compare", str(runs["a"]), str(runs["b"]), "--fail-on", "ratio:10%"])
    out = capsys.readouterr().out
    assert code == 0, out


def test_a_fused_forward_20_percent_slower_is_a_regression_on_the_fused_ratio_only(runs, capsys):
    code = main(["compare", str(runs["a"]), str(runs["slow"]), "--fail-on", "ratio:10%"])
    out = capsys.readouterr().out
    assert code == 1, out
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert regressions and all("::fused" in line for line in regressions), out


@pytest.mark.slow
def test_a_run_beside_a_busy_process_causes_no_false_regression(runs, tmp_path, capsys):
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(1.0)  # busy before the run starts
        busy = _run(tmp_path / "busy.json")
    finally:
        hog.terminate()  # done early; bounded by HOG_SECONDS in any case
        hog.wait(timeout=30)
    code = main(["compare", str(runs["a"]), str(busy), "--fail-on", "ratio:10%"])
    out = capsys.readouterr().out
    assert code == 0, out
