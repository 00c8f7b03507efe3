"""A test of quantized bases is skipped, with the reason, where the quantizer packages are not installed: the
gate's old env runs without them (diffusers 0.35.2 cannot import its single-file loader beside torchao 0.18,
docs/gate.md), and `pip install lora-parity` without the `quant` extra has none."""

from __future__ import annotations

import pytest

from parity.quant.registry import get_quantizer

CPU_QUANTIZERS = ("torchao-int8wo", "quanto-int8", "gguf-q8_0")  # one per package the CPU tests use


def needs_quantizers(*names: str) -> pytest.MarkDecorator:
    reasons = [r for r in (get_quantizer(n).unavailable("cpu") for n in names or CPU_QUANTIZERS) if r]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) + " (pip install -e '.[quant]')")
