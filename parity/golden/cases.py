"""The golden cases: seeded renders, declared once as data (tests/test_golden.py and `lora-parity golden`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


LORA_RANK, LORA_ALPHA = 4, 2.0  # α/r = 0.5: a file whose alpha is dropped renders visibly differently


LORA_SEEDS = {"a": 1, "b": 2}


@dataclass(frozen=True)
class GoldenCase:
    """One seeded render. ``op``: base | lora (unfused, scale via the attention kwargs) | fused |
    two (adapters a, b at weights 0.5, 1.0) | schedule (a at 1.0, set to 0.5 after step 0)."""

    family: str
    name: str
    op: str
    scale: float = 1.0
    layout: str = "diffusers"
    conv: bool = False  # LoCon: also target the family's Conv2d modules
    seed: int = 0
    dtype: str = "float32"
    steps: int | None = None  # None: the family's default (2)
    same_as: str | None = None  # another case's name this one must reproduce …
    relation: str | None = None  # … within OUTPUT_TOLERANCES[relation] ("same-arithmetic", "reordered")

    @property
    def id(self) -> str:
        return f"{self.family}-{self.name}"


def _family_cases(family: str, kohya: bool) -> list[GoldenCase]:
    cases = [
        GoldenCase(family, "base", "base"),
        GoldenCase(family, "lora-0.5", "lora", scale=0.5),
        GoldenCase(family, "lora-1.0", "lora", scale=1.0),
        GoldenCase(family, "fused-1.0", "fused", scale=1.0, same_as="lora-1.0", relation="reordered"),
        GoldenCase(family, "two-adapters", "two"),
        # 3 steps: with 2, the step after the switch is DDIM's last (t=1) and moves sd15 by < 1/255.
        GoldenCase(family, "schedule", "schedule", steps=3),
    ]
    if kohya:
        cases += [
            GoldenCase(family, "kohya-1.0", "lora", layout="kohya", same_as="lora-1.0", relation="same-arithmetic"),
            GoldenCase(family, "locon-kohya", "lora", layout="kohya", conv=True),
        ]
    return cases


# The one list of golden cases: tests/test_golden.py and `lora-parity golden` both run it.
CASES: tuple[GoldenCase, ...] = tuple(
    c
    for fam, kohya in (("sd15", True), ("sdxl", True), ("flux", False), ("qwenimage", False))
    for c in _family_cases(fam, kohya)
)


CASES_BY_ID = {c.id: c for c in CASES}


def cases_for(families: Sequence[str] | None = None) -> list[GoldenCase]:
    return [c for c in CASES if not families or c.family in families]


def variant(case: GoldenCase, **changes: Any) -> GoldenCase:
    """The same case with fields changed (negative controls: another seed, scale 1.05)."""
    return replace(case, **changes)
