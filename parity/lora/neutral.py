"""The format-neutral form of a LoRA file: one low-rank pair per module, keyed by (component, module),
whatever layout the file was written in. Readers produce it, writers and the reference merge consume it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LoraModule:
    """One LoRA pair on one module: ΔW = (alpha/rank) · up @ down."""

    component: str
    module: str  # canonical module name inside the component
    down: torch.Tensor  # A: (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # B: (out, r) or (out, r, 1, 1)
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def effective_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def is_conv(self) -> bool:
        return self.down.ndim == 4


@dataclass
class LoraFile:
    modules: dict[tuple[str, str], LoraModule]
    layout: str
    path: str | None = None
    unmatched: list[str] = field(default_factory=list)
    # The tensors as torch.load(weights_only=True) returned them, for a pickle read with allow_pickle:
    # handed to diffusers instead of the path, so diffusers never unpickles the file itself.
    raw: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def components(self) -> list[str]:
        return sorted({c for c, _ in self.modules})
