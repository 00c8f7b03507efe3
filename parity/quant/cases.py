"""The quantized-base cases, declared once as data (as parity/checks/cases.py's): a tiny-zoo family, a
quantizer, and the findings each check on it is known to show. tests/test_quantized_bases.py runs every
generic check over them; a finding is a strict xfail, so a release that changes the behaviour shows.

Families are chosen for their Linear widths: GGUF quantizes only weights whose rows are whole 32-blocks,
which most of Z-Image's and FLUX.2's tiny Linears are (FLUX.1's tiny model has 4 of 30).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parity.checks.findings import Known
from parity.quant.findings import (
    GGUF_DEQUANT_FLOAT16,
    GGUF_FUSE_RAISES,
    LAYERWISE_LORA_CAST_TO_STORAGE,
    QUANTO_FLUX_STATE_DICT_NAMES,
    QUANTO_FUSE_MERGES_NOTHING,
)

CHECKS = ("base-forward", "contribution", "output", "fuse", "unfuse")


@dataclass(frozen=True)
class QuantCase:
    family: str
    quantization: str
    known: dict[str, Known] = field(default_factory=dict)  # check → the finding it shows
    slow: str = ""  # why it is too slow for the default run
    layout: str = "diffusers"
    cycles: int = 2

    @property
    def id(self) -> str:
        return f"{self.family}-{self.quantization}"


def _all(known: Known) -> dict[str, Known]:
    return dict.fromkeys(CHECKS, known)


_GGUF = {"base-forward": GGUF_DEQUANT_FLOAT16, "output": GGUF_DEQUANT_FLOAT16, "fuse": GGUF_FUSE_RAISES,
         "unfuse": GGUF_FUSE_RAISES}
_LAYERWISE = {"contribution": LAYERWISE_LORA_CAST_TO_STORAGE, "output": LAYERWISE_LORA_CAST_TO_STORAGE,
              "fuse": LAYERWISE_LORA_CAST_TO_STORAGE, "unfuse": LAYERWISE_LORA_CAST_TO_STORAGE}
_QUANTO = {"fuse": QUANTO_FUSE_MERGES_NOTHING}

QUANT_CASES: tuple[QuantCase, ...] = (
    QuantCase("zimage", "torchao-int8wo"),
    QuantCase("flux", "torchao-int8wo"),
    QuantCase("zimage", "torchao-int8dq"),
    QuantCase("zimage", "torchao-float8wo"),
    QuantCase("zimage", "quanto-int8", _QUANTO),
    QuantCase("flux", "quanto-int8", _all(QUANTO_FLUX_STATE_DICT_NAMES)),
    QuantCase("zimage", "gguf-q8_0", _GGUF),
    QuantCase("flux2-klein", "gguf-q4_0", _GGUF),
    QuantCase("zimage", "fp8-e4m3", _LAYERWISE),
    QuantCase("sd15", "torchao-int8wo", slow="a UNet: 50 Linears and the convolutions, ~10 s"),
    QuantCase("wan", "torchao-int8wo", slow="representative of the default cases on another transformer"),
    QuantCase("qwenimage", "torchao-float8wo", slow="representative of the default cases on another transformer"),
    QuantCase("zimage", "quanto-float8", _QUANTO, slow="quanto-int8's behaviour on float8 storage"),
    QuantCase("zimage", "quanto-int4", _QUANTO, slow="quanto's first int4 forward builds its kernels (~25 s)"),
    QuantCase("zimage", "gguf-q4_0", _GGUF, slow="gguf-q8_0's behaviour at 4 bits"),
    QuantCase("zimage", "fp8-e5m2", _LAYERWISE, slow="fp8-e4m3's behaviour in the other float8"),
    QuantCase("zimage", "bnb-nf4"),
    QuantCase("zimage", "bnb-fp4"),
    QuantCase("zimage", "bnb-int8"),
    QuantCase("zimage", "torchao-float8dq"),
)
