"""The doctor must not call a quantizer available when its package is missing: with the gguf package
hidden (importlib.util.find_spec answering None, as for a package never installed) the gguf quantizers
are reported as not running on cpu, with the pip hint, in the table, the reasons and the JSON; with
nothing hidden the same rows say yes."""

from __future__ import annotations

import importlib.util
import re

import pytest

import parity.doctor

GGUF = ("gguf-q8_0", "gguf-q4_0", "gguf")


def quantizer_rows(text: str) -> dict[str, str]:
    block = next(b for b in text.split("\n\n") if b.startswith("Quantizers (--quantization)\n"))
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (\S+) +\S+ +\S+ +(yes|no)\b", block, re.M)}


def report_and_text() -> tuple[dict, str]:
    report = {"device": parity.doctor.device_info()}
    report["quantizers"] = parity.doctor.quantizers(["cpu"])
    report.update(versions={}, families=[], golden=[])
    return report, parity.doctor.format_text(report)


def test_a_hidden_quantizer_package_is_reported_unavailable_with_the_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def hide_gguf(name: str, *args, **kwargs):
        return None if name.split(".")[0] == "gguf" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide_gguf)
    report, text = report_and_text()
    rows = quantizer_rows(text)
    for name in GGUF:
        assert rows[name] == "no", text
        why = next(q for q in report["quantizers"] if q["name"] == name)["unavailable"]["cpu"]
        assert why == f"{name} needs the gguf package, which is not installed (pip install gguf)"
        assert f"  - on cpu: {why}" in text
    assert rows["fp8-e4m3"] == "yes"  # only the hidden package's quantizers moved


def test_the_same_rows_say_yes_with_the_package_installed() -> None:
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed here (pip install gguf), so there is no yes to lose")
    _, text = report_and_text()
    assert {name: quantizer_rows(text)[name] for name in GGUF} == dict.fromkeys(GGUF, "yes")
