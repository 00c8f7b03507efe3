"""The reference merge: W' = W + Σ wᵢ · lora_scale · (αᵢ/rᵢ) · Bᵢ@Aᵢ, in float64, from raw file tensors;
a full difference (``.diff``/``.diff_b``) adds wᵢ · lora_scale · ΔW (or Δb) itself.

Independent of PEFT on purpose: it reads only ``LoraModule`` tensors parsed from the file and the
base weights captured before loading, so a bug shared by PEFT's layers and a reference built from
them could not cancel out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from parity.lora.neutral import DiffModule, LoraFile, LoraModule, Module


def delta_from_factors(m: LoraModule, scale: float = 1.0) -> torch.Tensor:
    """scale · (α/r) · up ∘ down in float64, shaped like the target weight.

    Linear: B@A. Conv: a k×k ``down`` followed by a 1×1 ``up`` composes to the k×k kernel
    Σ_r B[:, r] · A[r] (kohya's conv2d(down.permute(1,0,2,3), up) is the same sum).
    """
    down = m.down.double()
    up = m.up.double()
    factor = scale * m.effective_alpha / m.rank
    if m.is_conv:
        if up.shape[2:] != (1, 1):
            raise ValueError(f"{m.component}.{m.module}: LoRA up must be 1x1 for conv, got {tuple(up.shape)}")
        delta = F.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
    else:
        delta = up @ down
    return delta.mul_(factor)  # in place: a full-size weight's float64 delta is hundreds of MB


def abs_product(m: LoraModule, scale: float = 1.0) -> torch.Tensor:
    """|scale·α/r| · (|B| ∘ |A|): bounds |δ| and every summation error in forming it."""
    absm = LoraModule(m.component, m.module, m.down.abs(), m.up.abs(), m.alpha)
    return delta_from_factors(absm, abs(scale)).abs_()


@dataclass
class MergeStep:
    """One adapter's contribution to one weight."""

    delta: torch.Tensor | None  # exact δ, float64; None where only the bounds were asked for (chunks)
    abs_product: torch.Tensor  # P, float64
    rank: int
    file_dtype: torch.dtype
    alpha_over_rank: float | None = None  # a pair's α/r, for the diagnosis of a failing weight


@dataclass
class MergeReference:
    component: str
    module: str
    base: torch.Tensor  # float64
    merged: torch.Tensor | None  # float64: base + Σ δ; None where only the bounds were asked for (chunks)
    steps: list[MergeStep]
    param: str = "weight"  # "bias" for a .diff_b
    rows: slice = field(default_factory=lambda: slice(None))  # the weight's rows (output features) this reference covers

    @property
    def param_name(self) -> str:
        return f"{self.module}.{self.param}"

    @property
    def key(self) -> str:
        return f"{self.component}.{self.param_name}"


def contributions(m: Module, scale: float, deltas: bool = True) -> list[tuple[str, MergeStep]]:
    """(parameter, step) for each tensor ``m`` changes: a pair its weight; a difference its weight
    and/or bias, each one addition (rank 1 in the rounding bound: no sum is formed). Without
    ``deltas``, a pair's δ is not formed (its bounds need only P)."""
    if isinstance(m, LoraModule):
        delta = delta_from_factors(m, scale) if deltas else None
        return [("weight", MergeStep(delta, abs_product(m, scale), m.rank, m.down.dtype, m.effective_alpha / m.rank))]
    assert isinstance(m, DiffModule)
    out = []
    for param, t in (("weight", m.diff), ("bias", m.bias)):
        if t is not None:
            delta = scale * t.double()
            out.append((param, MergeStep(delta, delta.abs(), 1, t.dtype)))
    return out


CHUNK_ELEMENTS = 1 << 22  # a weight's elements compared at once: 32 MiB per float64 array


def _rows(m: Module, rows: slice) -> Module:
    """``m`` restricted to output rows ``rows``: a pair's up rows (δ's rows are B's), a difference's rows."""
    if rows == slice(None):
        return m
    if isinstance(m, LoraModule):
        return replace(m, up=m.up[rows])
    return replace(m, diff=None if m.diff is None else m.diff[rows], bias=None if m.bias is None else m.bias[rows])


class LazyReferences(Mapping[tuple[str, str], MergeReference]):
    """The reference merge of every targeted weight, computed when asked for and not kept: a check
    that walks it holds one weight's float64 reference at a time (4 × 8 bytes per element of that
    weight), not the whole model's; ``chunks`` holds a block of rows of it at a time, so a FLUX.1
    proj_out (47 M elements) costs 32 MiB per float64 array instead of 377 MiB. Keys as
    ``reference_merge``'s."""

    def __init__(self, base_weights: Mapping[str, Mapping[str, torch.Tensor]],
                 adapters: Sequence[tuple[LoraFile, float]], lora_scale: float = 1.0) -> None:
        self.base_weights, self.lora_scale = base_weights, lora_scale
        self.adapters = list(adapters)
        self.contributors: dict[tuple[str, str], list[tuple[Module, float, str]]] = {}
        for lora, weight in self.adapters:
            for (component, module), m in lora.modules.items():
                params = ["weight"] if isinstance(m, LoraModule) else [
                    p for p, t in (("weight", m.diff), ("bias", m.bias)) if t is not None]
                for param in params:
                    key = (component, module if param == "weight" else f"{module}.{param}")
                    self.contributors.setdefault(key, []).append((m, weight, param))

    def _base(self, key: tuple[str, str]) -> torch.Tensor:
        m, _, param = self.contributors[key][0]
        return self.base_weights[key[0]][f"{m.module}.{param}"]

    def _reference(self, key: tuple[str, str], base_weight: torch.Tensor, rows: slice,
                   merged: bool = True) -> MergeReference:
        component = key[0]
        ref = None
        for m, weight, param in self.contributors[key]:
            if ref is None:
                ref = MergeReference(component, m.module, base_weight[rows].double(), None, [], param, rows)
            step = dict(contributions(_rows(m, rows), weight * self.lora_scale, merged))[param]
            if step.abs_product.shape != ref.base.shape:
                raise ValueError(f"{ref.key}: delta {tuple(step.abs_product.shape)} vs {tuple(ref.base.shape)}")
            if step.delta is not None:
                # the same float64 additions, in order, as base + δ₁ + δ₂ …, without a copy of base first
                ref.merged = ref.base + step.delta if ref.merged is None else ref.merged.add_(step.delta)
            ref.steps.append(step)
        assert ref is not None
        return ref

    def __getitem__(self, key: tuple[str, str]) -> MergeReference:
        return self._reference(key, self._base(key), slice(None))

    def chunks(self, key: tuple[str, str], merged: bool = True) -> Iterator[MergeReference]:
        """The reference of ``key`` block of rows by block of rows, each of at most CHUNK_ELEMENTS
        elements (one row at least), covering the weight once, in order. Without ``merged`` only what
        the bounds need (base and each step's P): no δ and no merged weight, for the unfuse check."""
        base = self._base(key)  # a weight or a bias: at least one dimension
        per_row = max(1, base[0].numel())
        step = max(1, CHUNK_ELEMENTS // per_row)
        for start in range(0, base.shape[0], step):
            yield self._reference(key, base, slice(start, min(base.shape[0], start + step)), merged)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.contributors)

    def __len__(self) -> int:
        return len(self.contributors)


def reference_merge(
    base_weights: Mapping[str, Mapping[str, torch.Tensor]],
    adapters: Sequence[tuple[LoraFile, float]],
    lora_scale: float = 1.0,
) -> LazyReferences:
    """Merge ``adapters`` (each with its set_adapters weight) into ``base_weights``.

    ``base_weights`` maps component → canonical parameter name → tensor (see parity.modules.base_weights).
    Adapters are applied in order, as PEFT merges them one after another. Weights are keyed
    (component, module); a bias a file changes, (component, "<module>.bias"). Each reference is computed
    when it is read (``LazyReferences``): read it once and let it go.
    """
    return LazyReferences(base_weights, adapters, lora_scale)
