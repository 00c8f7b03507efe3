"""JUnit XML as pytest writes it, for hand-made runs and gate bundles: a test id → an outcome."""

from __future__ import annotations

import json
from xml.sax.saxutils import quoteattr


def junit_xml(cases: dict[str, str | tuple[str, str]], parity: dict[str, list[dict]] | None = None) -> str:
    """``cases``: test → status, or (status, message) (an xfail's reason, a failure's message);
    ``parity``: test → the ``parity_record`` rows it recorded (JUnit ``parity`` properties)."""
    body = []
    for test, status in cases.items():
        status, message = status if isinstance(status, tuple) else (status, None)
        cls, name = test.split("::")
        inner = {
            "passed": "",
            "failed": f"<failure message={quoteattr(message or 'assert 1 == 2')}>boom</failure>",
            "xpass": f"<failure message={quoteattr('[XPASS(strict)] ' + (message or 'finding'))}/>",
            "skipped": f"<skipped type='pytest.skip' message={quoteattr(message or 'no GPU')}/>",
            "xfailed": f"<skipped type='pytest.xfail' message={quoteattr(message or 'finding')}/>",
        }[status]
        props = "".join(f"<property name='parity' value={quoteattr(json.dumps(row))}/>" for row in (parity or {}).get(test, []))
        props = f"<properties>{props}</properties>" if props else ""
        body.append(f"<testcase classname={quoteattr(cls)} name={quoteattr(name)}>{props}{inner}</testcase>")
    return f"<testsuites><testsuite name='pytest'>{''.join(body)}</testsuite></testsuites>"
