"""The upgrade gate: a broken "new" fails it with the evidence, an unchanged one passes.

End to end, on real bundles: the same parity and golden checks run twice in subprocesses, the
second time either unchanged or with PEFT's fuse broken (``tests/support/broken_fuse.py``: merged
deltas lose alpha/rank), then ``lora-parity gate`` judges the pair. The rest uses small hand-made
bundles to pin each kind of evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.cli import main
from parity.runs.gate import judge, read_bundle, write_manifest
from tests.support.junit import junit_xml

REPO = Path(__file__).resolve().parents[2]
# the module's bundles are built once, on one xdist worker
pytestmark = pytest.mark.xdist_group("gate-bundles")
# A small slice of the suite that fusing touches: merge parity and the fused golden image, flux only.
SLICE = ["tests/test_merge_parity.py", "tests/test_golden.py", "-k", "flux-diffusers-float32-cpu-s1 or flux-fused-1.0"]


def _bundle(path: Path, role: str, old: Path | None = None, broken: bool = False) -> Path:
    write_manifest(path, role)
    golden = ["--update-golden", "--golden-dir", str(path / "golden")] if old is None else ["--golden-dir", str(old / "golden")]
    plugin = ["-p", "tests.support.broken_fuse"] if broken else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *SLICE, "-q", "-p", "no:cacheprovider", "-n", "0", *plugin,
         f"--junitxml={path / 'junit.xml'}", f"--parity-report={path / 'parity'}",
         f"--golden-report={path / 'golden-report'}", *golden],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert (path / "junit.xml").exists(), done.stdout[-2000:] + done.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(tmp_path_factory.mktemp("gate") / "old", "old")


# The two end-to-end bundles are `make slow` (two pytest subprocess runs, 41 s on 2 cores; `make gate` is the
# real thing): the verdict's rules are pinned on the hand-made bundles below.
@pytest.mark.slow
def test_a_new_version_whose_fuse_drops_alpha_fails_the_gate_with_evidence(old_bundle: Path, tmp_path: Path, capsys) -> None:
    new = _bundle(tmp_path / "new", "new", old=old_bundle, broken=True)
    assert main(["gate", str(old_bundle), str(new), "--out", str(tmp_path / "report")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "test_fuse_matches_reference_merge" in out
    verdict = judge(read_bundle(old_bundle), read_bundle(new))
    assert any("test_merge_parity" in c.test for c in verdict.regressions)
    assert any("fused" in case for case in verdict.golden_moved)  # the fused image moved, with its PNG
    html = (tmp_path / "report" / "gate.html").read_text()
    assert "<img src='golden/" in html and (tmp_path / "report" / "golden").is_dir()


@pytest.mark.slow
def test_an_unchanged_new_version_passes_the_gate(old_bundle: Path, tmp_path: Path) -> None:
    # the control for the one above: the same versions, nothing broken
    new = _bundle(tmp_path / "new", "new", old=old_bundle)
    assert main(["gate", str(old_bundle), str(new), "--out", str(tmp_path / "report")]) == 0


# ---------------------------------------------------------------- hand-made bundles


def _handmade(path: Path, role: str, cases: dict[str, str], ulps: float = 1.0) -> Path:
    write_manifest(path, role)
    (path / "junit.xml").write_text(junit_xml(cases))
    (path / "parity").mkdir()
    row = {"check": "merge", "case": "flux-a", "dtype": "float32", "max_ulps": ulps, "max_bound_ratio": ulps / 4,
           "detail": "", "outcome": "passed"}
    (path / "parity" / "summary.json").write_text(json.dumps([row]))
    return path


def test_each_kind_of_change_lands_in_its_section(tmp_path: Path) -> None:
    old = _handmade(tmp_path / "old", "old", {
        "t::regressed": "passed", "t::lost": "passed", "t::gone": "passed", "t::finding": "xfailed",
        "t::fixed": "failed", "t::same": "passed", "t::broken": "failed",
    })
    new = _handmade(tmp_path / "new", "new", {
        "t::regressed": "failed", "t::lost": "skipped", "t::finding": "xpass", "t::fixed": "passed",
        "t::same": "passed", "t::brand_new": "failed", "t::broken": "failed",
    }, ulps=2.5)
    v = judge(read_bundle(old), read_bundle(new))
    assert [c.test for c in v.regressions] == ["t::regressed"]
    assert sorted(c.test for c in v.lost) == ["t::gone", "t::lost"]
    assert [c.test for c in v.findings_changed] == ["t::finding"]
    assert [c.test for c in v.fixed] == ["t::fixed"]
    assert [c.test for c in v.still_failing] == ["t::broken"]
    assert [c.test for c in v.new_failures] == ["t::brand_new"]
    assert [(c.old_ulps, c.new_ulps) for c in v.parity_grew] == [(1.0, 2.5)]
    assert not v.ok


def test_a_changed_finding_and_grown_errors_alone_do_not_fail_the_gate(tmp_path: Path) -> None:
    old = _handmade(tmp_path / "old", "old", {"t::finding": "xfailed", "t::same": "passed"})
    new = _handmade(tmp_path / "new", "new", {"t::finding": "xpass", "t::same": "passed"}, ulps=3.0)
    v = judge(read_bundle(old), read_bundle(new))
    assert v.ok and v.findings_changed and v.parity_grew


@pytest.mark.parametrize("damage", ["no-manifest", "bad-junit", "not-a-folder", "bad-summary"])
def test_an_unreadable_bundle_is_bad_input(tmp_path: Path, damage: str, capsys) -> None:
    old = _handmade(tmp_path / "old", "old", {"t::a": "passed"})
    new = _handmade(tmp_path / "new", "new", {"t::a": "passed"})
    if damage == "no-manifest":
        (new / "bundle.json").unlink()
    elif damage == "bad-junit":
        (new / "junit.xml").write_text("<testsuites><testcase")
    elif damage == "bad-summary":
        (new / "parity" / "summary.json").write_text("{}")
    else:
        new = tmp_path / "nothing"
    assert main(["gate", str(old), str(new), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(new) in err[0]
