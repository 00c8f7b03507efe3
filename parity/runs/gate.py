"""Upgrade gating: the same suite run under old and new library versions, each leaving a results
bundle, compared into one verdict with its evidence.

A bundle is a folder ``tools/gate.sh`` fills::

    bundle.json              role (old/new), library versions, device, when, the command
    junit.xml                every parity check's outcome
    parity/summary.json      every check's largest error in ULPs and the share of its bound used
    golden/<class>/          baselines rendered by the old versions (old bundle only)
    golden-report/           side-by-side PNGs + index.json of images that moved (new bundle)
    bench/run.json           pytest-benchmark JSON

The verdict fails on: a check that passed before and fails now, a check that ran before and is
skipped or missing now (the gate can no longer vouch for it), and a benchmark beyond its gate.
Parity errors that grew without leaving their bound are evidence, not failures; a pinned finding
(strict xfail) that no longer reproduces is reported as changed behaviour to review.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.bench.compare import Comparison, FailOn, compare_runs
from parity.bench.results import BenchRun, read_run
from parity.errors import ParityInputError
from parity.runs.junit import FAILED, PASSED, SKIPPED, XFAILED, Outcome, parity_tests, read_outcomes

MANIFEST = "bundle.json"
JUNIT = "junit.xml"
PARITY = os.path.join("parity", "summary.json")
GOLDEN_REPORT = "golden-report"
BENCH = os.path.join("bench", "run.json")
ROLES = ("old", "new")


def write_manifest(bundle: str | os.PathLike, role: str, command: Sequence[str] = ()) -> Path:
    """``bundle.json``: which libraries and device produced this bundle."""
    from parity.devices import device_class, requested
    from parity.versions import library_versions

    if role not in ROLES:
        raise ParityInputError(f"bundle role must be one of {', '.join(ROLES)}, not {role!r}")
    path = Path(bundle) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "role": role,
        "versions": library_versions(),
        "device_class": device_class(requested("auto")),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) or sys.argv,
    }
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return path


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    outcomes: dict[str, Outcome]
    parity: dict[tuple[str, str, str], dict[str, Any]]  # (check, case, dtype) → summary row
    golden_moved: dict[str, dict[str, Any]]  # case → golden-report index entry
    bench: BenchRun | None
    # (check, case, dtype) → the test that recorded the row (JUnit ``parity`` properties)
    parity_tests: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @property
    def versions(self) -> dict[str, str]:
        return self.manifest.get("versions", {})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParityInputError(f"cannot read it ({exc.strerror or exc})", path=str(path)) from None
    except ValueError as exc:
        raise ParityInputError(f"not valid JSON ({exc})", path=str(path)) from None


def read_summary_rows(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``--parity-report``'s summary.json, by (check, case, dtype)."""
    rows = _read_json(path)
    if not isinstance(rows, list):
        raise ParityInputError("expected a list of summary rows", path=str(path))
    parity = {}
    for i, row in enumerate(rows):
        try:
            parity[(row["check"], row["case"], row["dtype"])] = row
        except (KeyError, TypeError):
            raise ParityInputError("summary row without check/case/dtype", path=str(path), key=str(i)) from None
    return parity


def read_bundle(path: str | os.PathLike) -> Bundle:
    """A bundle folder; bad input names the file that is missing or unreadable."""
    root = Path(path)
    if not root.is_dir():
        raise ParityInputError("not a results bundle folder", path=str(root))
    manifest = _read_json(root / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("role") not in ROLES:
        raise ParityInputError("not a bundle manifest (no role old/new)", path=str(root / MANIFEST))
    parity = read_summary_rows(root / PARITY)
    index = root / GOLDEN_REPORT / "index.json"
    golden_moved = _read_json(index) if index.exists() else {}
    bench = read_run(root / BENCH) if (root / BENCH).exists() else None
    return Bundle(root, manifest, read_outcomes(root / JUNIT), parity, golden_moved, bench,
                  parity_tests(root / JUNIT))


@dataclass(frozen=True)
class TestChange:
    test: str
    old: str  # status before
    new: str  # status now, "missing" when the test is gone
    message: str = ""


@dataclass(frozen=True)
class ParityChange:
    check: str
    case: str
    dtype: str
    old_ulps: float
    new_ulps: float
    new_bound_ratio: float

    @property
    def growth(self) -> float:
        return self.new_ulps - self.old_ulps


@dataclass
class Verdict:
    old: Bundle
    new: Bundle
    regressions: list[TestChange] = field(default_factory=list)  # passed (or xfailed) before, fail now
    lost: list[TestChange] = field(default_factory=list)  # ran before, skipped or gone now
    new_failures: list[TestChange] = field(default_factory=list)  # not in the old run, failing
    findings_changed: list[TestChange] = field(default_factory=list)  # pinned findings that no longer reproduce
    fixed: list[TestChange] = field(default_factory=list)  # failed before, pass now
    still_failing: list[TestChange] = field(default_factory=list)  # failed before and now: not vouched for
    parity_grew: list[ParityChange] = field(default_factory=list)
    golden_moved: dict[str, dict[str, Any]] = field(default_factory=dict)
    # golden images that moved where the old versions failed the parity checks of the same family and
    # layout and the new ones pass them: the old image came from a wrong merge (vouched_moves)
    moved_by_fix: list[TestChange] = field(default_factory=list)
    # known findings (strict xfails) that still reproduce in the new run: expected failures, shown by name
    findings: list[TestChange] = field(default_factory=list)
    bench: Comparison | None = None

    @property
    def ok(self) -> bool:
        bench_ok = self.bench is None or self.bench.ok
        return not (self.regressions or self.lost or self.new_failures) and bench_ok


GOLDEN_TEST = "::test_golden["


def _family_layout(test: str) -> tuple[str, str]:
    """(family, registered layout) of a test id: the layout part cut to the longest layout name that
    starts it (``xlabs-1.0`` → ``xlabs``, ``kohya-sgm`` stays whole)."""
    from parity.lora.layouts import LAYOUTS
    from parity.runs.evidence import family_names, id_parts

    _, family, part = id_parts(test, family_names())
    names = [n for n in LAYOUTS if part == n or part.startswith(n + "-")]
    return family, max(names, key=len) if names else part


def vouch_for_moves(verdict: Verdict) -> None:
    """Move a golden image's regression to ``moved_by_fix`` where the parity checks of its family and
    layout failed under the old versions and all pass under the new: the old image was rendered with a
    merge those checks show was wrong (measured: FLUX.1 XLabs files under diffusers 0.35.2), so the
    image had to move, and the new one is the one the checks vouch for."""
    fixed = {_family_layout(c.test) for c in verdict.fixed if GOLDEN_TEST not in c.test}
    broken = {_family_layout(c.test) for c in [*verdict.regressions, *verdict.still_failing, *verdict.new_failures]
              if GOLDEN_TEST not in c.test}
    kept = []
    for change in verdict.regressions:
        moved = GOLDEN_TEST in change.test and _family_layout(change.test) in fixed - broken
        (verdict.moved_by_fix if moved else kept).append(change)
    verdict.regressions = kept


def judge(old: Bundle, new: Bundle, bench_gates: Sequence[FailOn] = (), allow_cross_device: bool = False) -> Verdict:
    """Compare two bundles test by test, error by error, image by image and benchmark by benchmark."""
    verdict = Verdict(old, new, golden_moved=dict(new.golden_moved))
    for test, before in sorted(old.outcomes.items()):
        now = new.outcomes.get(test)
        if now is None:
            if before.status == PASSED:
                verdict.lost.append(TestChange(test, before.status, "missing"))
            continue
        change = TestChange(test, before.status, now.status, now.message)
        if now.unexpectedly_passed:
            verdict.findings_changed.append(change)
        elif before.status in (PASSED, XFAILED) and now.status == FAILED:
            # a pinned finding that now fails some other way (not the pinned exception) also regressed
            verdict.regressions.append(change)
        elif before.status == PASSED and now.status == SKIPPED:
            verdict.lost.append(change)
        elif before.status == FAILED and now.status == PASSED:
            verdict.fixed.append(change)
        elif before.status == FAILED and now.status == FAILED:
            verdict.still_failing.append(change)
    for test, now in sorted(new.outcomes.items()):
        if test not in old.outcomes and now.status == FAILED:
            verdict.new_failures.append(TestChange(test, "absent", now.status, now.message))
        if now.status == XFAILED:
            before = old.outcomes.get(test)
            verdict.findings.append(TestChange(test, before.status if before else "absent", now.status, now.message))
    vouch_for_moves(verdict)
    for key, row in new.parity.items():
        before_row = old.parity.get(key)
        if before_row is not None and row["max_ulps"] > before_row["max_ulps"]:
            verdict.parity_grew.append(
                ParityChange(*key, before_row["max_ulps"], row["max_ulps"], row["max_bound_ratio"])
            )
    verdict.parity_grew.sort(key=lambda c: (-c.new_bound_ratio, -c.growth))
    if old.bench is not None and new.bench is not None:
        verdict.bench = compare_runs(old.bench, new.bench, bench_gates, allow_cross_device=allow_cross_device)
    return verdict
