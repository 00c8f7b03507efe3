"""Reading pytest's ``--junitxml`` file: the outcome of every test, by id."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from parity.errors import ParityInputError

PASSED, FAILED, SKIPPED, XFAILED = "passed", "failed", "skipped", "xfailed"
XPASS_STRICT = "[XPASS(strict)]"  # pytest's failure message when a strict xfail passes


@dataclass(frozen=True)
class Outcome:
    test: str  # classname::name
    status: str  # passed, failed (failures and errors), skipped, xfailed
    message: str = ""

    @property
    def unexpectedly_passed(self) -> bool:
        """A strict xfail (a pinned finding) that passed: the behaviour it pins has changed."""
        return self.status == FAILED and self.message.startswith(XPASS_STRICT)


@dataclass(frozen=True)
class JunitSummary:
    path: str
    passed: int
    failed: int  # failures and errors
    skipped: int
    xfailed: int
    failing: tuple[str, ...]  # classname::name of each failed or errored test


def read_outcomes(path: str | os.PathLike) -> dict[str, Outcome]:
    """Every ``<testcase>`` of the file, by ``classname::name``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ParityInputError("is a directory, not a JUnit XML file", path=path)
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise ParityInputError(f"cannot read it ({exc.strerror or exc})", path=path) from None
    except ET.ParseError as exc:
        raise ParityInputError(f"not valid XML ({exc})", path=path) from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ParityInputError(f"not a JUnit XML file (root element <{root.tag}>)", path=path)
    outcomes = {}
    for case in root.iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        tags = {child.tag: child for child in case}
        bad = tags.get("failure", tags.get("error"))
        if bad is not None:
            outcomes[test] = Outcome(test, FAILED, bad.get("message", "") or (bad.text or "").strip()[:500])
        elif "skipped" in tags:
            # pytest writes an xfail as <skipped type="pytest.xfail">
            status = XFAILED if tags["skipped"].get("type") == "pytest.xfail" else SKIPPED
            outcomes[test] = Outcome(test, status, tags["skipped"].get("message", ""))
        else:
            outcomes[test] = Outcome(test, PASSED)
    return outcomes


def parity_tests(path: str | os.PathLike) -> dict[tuple[str, str, str], str]:
    """(check, case, dtype) of every ``parity_record`` row (a JUnit ``parity`` property) → the test that
    recorded it, so a report can put a measured error with its test's outcome."""
    import json

    out = {}
    try:
        root = ET.parse(os.fspath(path)).getroot()
    except (OSError, ET.ParseError):
        return out  # read_outcomes names the bad file
    for case in root.iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        for prop in case.iter("property"):
            if prop.get("name") != "parity":
                continue
            try:
                row = json.loads(prop.get("value", ""))
                out[(row["check"], row["case"], row["dtype"])] = test
            except (ValueError, KeyError, TypeError):
                continue
    return out


def read_junit(path: str | os.PathLike) -> JunitSummary:
    """Count outcomes in pytest's ``--junitxml`` file."""
    outcomes = read_outcomes(path)
    counts = {s: sum(o.status == s for o in outcomes.values()) for s in (PASSED, FAILED, SKIPPED, XFAILED)}
    failing = tuple(o.test for o in outcomes.values() if o.status == FAILED)
    return JunitSummary(os.fspath(path), failing=failing, **counts)
