"""Golden images on a quantized denoiser (issue 33): the same cases rendered after the denoiser is
quantized as users quantize it (parity/quant/apply.py), each stored under its own key.

A quantized case is a ``GoldenCase`` with its quantization: its id is ``<family>-<quantization>-<name>``
(``zimage-torchao-int8wo-lora-1.0``), so a float baseline and a torchao-int8wo baseline of one case are
separate files and manifest entries, and an upgrade of torchao or gguf that changes the render shows as
that case's moved image. Its manifest entry records the quantization and the quantizer packages'
versions beside the usual ones.

Its float64 twin (the e_A of parity/tolerances.py's golden derivation) is the same render in float64 on
our own float64 dequantization of the quantized weights (parity/quant/dequant.py: W_q, the reference the
quantized check starts from), every other tensor as the float64 twin of a float render takes it; the LoRA
files are written from the float model (a GGUF weight's shape is its packed bytes). The thresholds are
the golden table's, unchanged: e_A is measured on the very computation.

What a quantizer cannot render is measured, never assumed: a fused case whose ``fuse_lora`` raises (GGUF,
fp8 layerwise casting) raises ``FuseRefused``; with no baseline stored it is a skip with diffusers' error,
with one stored (the fuse worked when it was made) a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from parity.checks.cases import GoldenCase

# The committed quantized baselines: Z-Image's base image and its unfused LoRA at 1.0 on an int8
# weight-only torchao transformer and on a Q8_0 GGUF of it (GGUF cannot fuse).
QUANTIZED_GOLDEN = {"zimage": {"torchao-int8wo": ("base", "lora-1.0"), "gguf-q8_0": ("base", "lora-1.0")}}


class FuseRefused(Exception):
    """``fuse_lora`` raised on a quantized denoiser: the fused case has no image on it."""


@dataclass(frozen=True)
class QuantizedGoldenCase(GoldenCase):
    """A golden case rendered on a denoiser quantized by ``quantization`` (a parity/quant/registry.py name)."""

    quantization: str = ""

    @property
    def id(self) -> str:
        return f"{self.family}-{self.quantization}-{self.name}"


def quantization_of(case: GoldenCase) -> str | None:
    return getattr(case, "quantization", None) or None


def quantized(case: GoldenCase, quantization: str | None) -> GoldenCase:
    """``case`` on a denoiser quantized by ``quantization`` (None: the case itself).

    A fused case loses its relation to the unfused one: a fuse on a quantized base requantizes W_q + δ
    (torchao, bitsandbytes) or raises, so the fused image is not the unfused one within the float fuse's
    budget; the fused weights are checked against W_q + δ within half a step by parity/quant/check.py.
    The other relations (a kohya file = the diffusers file, both unfused) hold on any base and stay."""
    if quantization is None:
        return case
    if isinstance(case, QuantizedGoldenCase):
        return replace(case, quantization=quantization)
    values = {f.name: getattr(case, f.name) for f in fields(case)}
    if case.op == "fused":
        values.update(same_as=None, relation=None)
    return QuantizedGoldenCase(**values, quantization=quantization)


def sibling(case: GoldenCase, name: str) -> GoldenCase:
    """The case ``name`` of ``case``'s family, on the same quantization (a relation's other case)."""
    from parity.checks.cases import golden_case

    return quantized(golden_case(f"{case.family}-{name}"), quantization_of(case))


def quantized_golden_cases(families: Any = None) -> list[GoldenCase]:
    """The committed quantized cases (QUANTIZED_GOLDEN), for the families asked (default: all listed)."""
    from parity.checks.cases import golden_case

    wanted = None if families is None else set(families)
    return [quantized(golden_case(f"{family}-{name}"), quantization)
            for family, by_quantization in QUANTIZED_GOLDEN.items() if wanted is None or family in wanted
            for quantization, names in by_quantization.items() for name in names]


def quantization_metadata(case: GoldenCase) -> dict[str, Any]:
    """What a quantized case's definition adds (compared before pixels, as every definition field is):
    its quantization's name. The quantizer packages' versions go into the entry's ``versions``
    (parity/golden/verify.py), which are recorded, not compared: an upgrade shows as a moved image."""
    quantization = quantization_of(case)
    return {} if quantization is None else {"quantization": quantization}
