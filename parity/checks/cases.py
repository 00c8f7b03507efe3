"""The case matrix, declared once as data (PyTorch OpInfo style); checks are generic over it.

A case is family × layout × target set × dtype × device (× lora_scale × adapter count for merges).
Adding a family or a layout is one registry entry in parity/zoo; no test file changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from parity.zoo import FAMILIES

DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
LORA_SCALES = (0.0, 0.5, 1.0, 1.3)
ADAPTER_WEIGHTS = {1: (1.0,), 2: (0.7, 0.8)}  # the two-adapter weights the issue names


@dataclass(frozen=True)
class LoraSpec:
    """How one synthesised adapter of a case is shaped."""

    seed: int
    rank: int | tuple[int, int]  # an int, or (low, high) alternating per module
    alpha: float | None  # None: the file carries no alpha (α = r)


# Adapter 1 carries an explicit alpha (kohya .alpha keys / diffusers header metadata); adapter 2 has
# mixed ranks and no alpha, the combination diffusers PR #14409 fixed.
ADAPTER_SPECS = (LoraSpec(seed=1, rank=4, alpha=2.0), LoraSpec(seed=2, rank=(2, 8), alpha=None))


@dataclass(frozen=True)
class LayoutCase:
    family: str
    layout: str
    targets: str  # "default" or "locon" (default + Conv2d targets)

    @property
    def id(self) -> str:
        return f"{self.family}-{self.layout}" + ("" if self.targets == "default" else f"-{self.targets}")


@dataclass(frozen=True)
class MergeCase:
    layout: LayoutCase
    dtype: str
    device: str
    lora_scale: float
    adapters: int

    @property
    def id(self) -> str:
        return f"{self.layout.id}-{self.dtype}-{self.device}-s{self.lora_scale:g}-x{self.adapters}"

    @property
    def weights(self) -> tuple[float, ...]:
        return ADAPTER_WEIGHTS[self.adapters]

    @property
    def specs(self) -> tuple[LoraSpec, ...]:
        return ADAPTER_SPECS[: self.adapters]


def layout_cases(families: Iterable[str] | None = None) -> list[LayoutCase]:
    out = []
    for name, fam in FAMILIES.items():
        if families is not None and name not in families:
            continue
        for layout in fam.layouts:
            out.append(LayoutCase(name, layout, "default"))
            # LoCon files are kohya files with conv modules; one layout carrying them is enough.
            if layout == "kohya" and fam.conv_targets:
                out.append(LayoutCase(name, layout, "locon"))
    return out


def merge_cases(
    families: Iterable[str] | None = None,
    dtypes: Iterable[str] = DTYPES,
    devices: Iterable[str] = DEVICES,
) -> list[MergeCase]:
    return [
        MergeCase(lc, dtype, device, scale, n)
        for lc in layout_cases(families)
        for device in devices
        for dtype in dtypes
        for scale in LORA_SCALES
        for n in ADAPTER_WEIGHTS
    ]
