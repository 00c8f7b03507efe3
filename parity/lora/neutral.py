"""The format-neutral form of a LoRA file: what each diffusers module receives, keyed by (component,
module), whatever layout the file was written in and however it named or fused the module. Readers
produce it, writers and the reference merge consume it.

Two kinds of module: a low-rank pair (``LoraModule``) and a full difference (``DiffModule``, the
``.diff``/``.diff_b`` keys ComfyUI and kohya write for layers trained in full). A file module that
fuses several diffusers modules (BFL's q|k|v) becomes one neutral module per diffusers module, each
with the shared ``down`` and its own rows of ``up``.
"""

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


@dataclass(frozen=True)
class DiffModule:
    """ΔW = diff (shaped like the weight) and Δb = bias (shaped like the bias); either may be None."""

    component: str
    module: str
    diff: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return 0  # full rank: no low-rank factors for a writer or a hotswap to pad


Module = LoraModule | DiffModule


@dataclass
class LoraFile:
    modules: dict[tuple[str, str], Module]
    layout: str
    path: str | None = None
    unmatched: list[str] = field(default_factory=list)
    # The tensors as torch.load(weights_only=True) returned them, for a pickle read with allow_pickle:
    # handed to diffusers instead of the path, so diffusers never unpickles the file itself.
    raw: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    # (component, module) → the file keys its contribution came from, to name a key diffusers dropped.
    sources: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # file module name → the diffusers modules it set (a fused qkv sets three), for the key listing.
    placement: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def components(self) -> list[str]:
        return sorted({c for c, _ in self.modules})

    def low_rank(self) -> dict[tuple[str, str], LoraModule]:
        return {k: m for k, m in self.modules.items() if isinstance(m, LoraModule)}
