"""The readable summary of a parity run (``--parity-report DIR``): one markdown table per check, worst
first, and the same rows as JSON (the rows gate bundles and ``lora-parity agree`` compare)."""

from __future__ import annotations

import json
from pathlib import Path


def write_summary(out: Path, rows: list[dict], exitstatus: int) -> None:
    """A markdown table per check (worst first) and the same rows as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = ["# lora-parity summary", "", _versions_line(), ""]
    failed = [r for r in rows if r["outcome"] != "passed"]
    lines.append(f"**{len(rows) - len(failed)} passed, {len(failed)} failed** (exit status {exitstatus})")
    for check in sorted({r["check"] for r in rows}):
        mine = sorted((r for r in rows if r["check"] == check), key=lambda r: -r["max_bound_ratio"])
        lines += ["", f"## {check}", "", "| case | dtype | max error (ULP) | bound used | outcome | detail |",
                  "|---|---|---:|---:|---|---|"]
        for r in mine:
            lines.append(
                f"| {r['case']} | {r['dtype']} | {r['max_ulps']:.2f} | {r['max_bound_ratio']:.2f} | "
                f"{r['outcome']} | {'; '.join(x for x in (r['detail'], r.get('timing', '')) if x)} |"
            )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _versions_line() -> str:
    from parity.versions import library_versions

    return ", ".join(f"{name} {version}" for name, version in library_versions().items())
