"""A known finding (a strict xfail whose reason starts ``finding: ``) by name, for the reports.

pytest keeps only an xfail's reason (in JUnit ``<skipped type="pytest.xfail" message=...>`` and on the
report's ``wasxfail``); the reports show the finding by the name it has in parity/checks/findings.py or
parity/quant/findings.py (``KOHYA_PER_MODULE_ALPHA``), found by its reason, and by its first clause where
it is a reason written in a test (tests/test_findings.py) with no constant.
"""

from __future__ import annotations

import functools

PREFIX = "finding: "
XPASS_STRICT = "[XPASS(strict)] "


def is_finding(reason: str) -> bool:
    return _reason(reason).startswith(PREFIX)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    return reason[len(XPASS_STRICT):].strip() if reason.startswith(XPASS_STRICT) else reason


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """reason → constant name, over the modules that define findings as data."""
    import importlib

    names: dict[str, str] = {}
    for module in ("parity.checks.findings", "parity.quant.findings"):
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a module this environment cannot import names nothing
            continue
        known = getattr(mod, "Known", None) or getattr(importlib.import_module("parity.checks.findings"), "Known")
        for name, value in vars(mod).items():
            if isinstance(value, known) and name.isupper():
                names.setdefault(value.reason, name)
    return names


def what(reason: str, width: int = 90) -> str:
    """The finding's first clause: what diffusers/PEFT does, without the where and why."""
    text = _reason(reason)
    text = text[len(PREFIX):] if text.startswith(PREFIX) else text
    depth, cut = 0, len(text)
    for i, ch in enumerate(text):  # the first ": " or "; " outside brackets
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth <= 0 and ch in ":;" and text[i + 1:i + 2] == " ":
            cut = i
            break
    text = text[:cut].strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def finding_name(reason: str) -> str:
    """``KOHYA_PER_MODULE_ALPHA`` for a finding defined as data; else its first clause."""
    text = _reason(reason)
    return _names().get(text) or what(text)
