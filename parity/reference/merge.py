"""The reference merge: W' = W + Σ wᵢ · lora_scale · (αᵢ/rᵢ) · Bᵢ@Aᵢ, in float64, from raw file tensors;
a full difference (``.diff``/``.diff_b``) adds wᵢ · lora_scale · ΔW (or Δb) itself, a LyCORIS module its
ΔW by its own formula, and a DoRA module renormalises: W' = m ⊙ V / ‖V‖ (parity/reference/variants.py).

Independent of PEFT on purpose: it reads only ``LoraModule`` tensors parsed from the file and the
base weights captured before loading, so a bug shared by PEFT's layers and a reference built from
them could not cancel out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields

import torch

from parity.errors import ParityInputError
from parity.lora.neutral import (
    DiffModule,
    DoraModule,
    Factored,
    LohaModule,
    LokrModule,
    LoraFile,
    LoraModule,
    Module,
    RowsOf,
    TuckerModule,
    with_tensors,
)
from parity.reference.variants import delta_from_factors, dora_merged, factored_delta


def abs_product(m: LoraModule, scale: float = 1.0) -> torch.Tensor:
    """|scale·α/r| · (|B| ∘ |A|): bounds |δ| and every summation error in forming it."""
    absm = LoraModule(m.component, m.module, m.down.abs(), m.up.abs(), m.alpha)
    return delta_from_factors(absm, abs(scale)).abs_()


@dataclass
class MergeStep:
    """One adapter's contribution to one weight."""

    delta: torch.Tensor  # exact δ, float64
    abs_product: torch.Tensor  # P, float64
    rank: int
    file_dtype: torch.dtype
    alpha_over_rank: float | None = None  # a pair's α/r, for the diagnosis of a failing weight


@dataclass
class MergeReference:
    component: str
    module: str
    base: torch.Tensor  # float64
    merged: torch.Tensor | None  # float64: base + Σ δ (None only while it is being formed)
    steps: list[MergeStep]
    param: str = "weight"  # "bias" for a .diff_b
    dora: DoraModule | None = None  # merged is the DoRA merge of this module, not base + Σ δ
    bare: bool = False  # ``module`` is a bare parameter (a .diff_m): its name is the parameter's

    @property
    def param_name(self) -> str:
        return self.module if self.bare else f"{self.module}.{self.param}"

    @property
    def key(self) -> str:
        return f"{self.component}.{self.param_name}"


def contributions(m: Module, scale: float, shape: tuple[int, ...] | None = None) -> list[tuple[str, MergeStep]]:
    """(parameter, step) for each tensor ``m`` changes: a pair its weight; a difference its weight
    and/or bias, each one addition (rank 1 in the rounding bound: no sum is formed); a LyCORIS module
    its weight (``shape``), by its own formula (parity/reference/variants.py). A DoRA module is not an
    addition: its merge is ``variants.dora_merged``, and its step here is its inner module's."""
    if isinstance(m, LoraModule):
        delta = delta_from_factors(m, scale)
        return [("weight", MergeStep(delta, abs_product(m, scale), m.rank, m.down.dtype, m.effective_alpha / m.rank))]
    if isinstance(m, DoraModule):
        return contributions(m.inner, scale, shape)
    if isinstance(m, (TuckerModule, LohaModule, LokrModule, RowsOf)):
        if shape is None:
            raise ValueError(f"{m.component}.{m.module}: a {type(m).__name__}'s ΔW needs the weight's shape")
        delta = factored_delta(m, shape).mul_(scale)
        return [("weight", MergeStep(delta, variant_abs_product(m, shape).mul_(abs(scale)), max(m.rank, 1),
                                     file_dtype(m)))]
    assert isinstance(m, DiffModule)
    out = []
    for param, t in (("weight", m.diff), ("bias", m.bias)):
        if t is not None:
            delta = scale * t.double()
            out.append((param, MergeStep(delta, delta.abs(), 1, t.dtype)))
    return out


def variant_abs_product(m: Factored, shape: tuple[int, ...]) -> torch.Tensor:
    """The module's formula on the absolute values of its tensors: it bounds |ΔW| and every summation
    error in forming it, as |B|∘|A| does for a pair."""
    return factored_delta(with_tensors(m, torch.abs), shape).abs_()


def file_dtype(m: Module) -> torch.dtype:
    """The dtype the file stores ``m``'s factors in."""
    if isinstance(m, DoraModule):
        return file_dtype(m.inner)
    if isinstance(m, RowsOf):
        return file_dtype(m.whole)
    if isinstance(m, DiffModule):
        return (m.diff if m.diff is not None else m.bias).dtype
    return next(getattr(m, f.name) for f in fields(m) if isinstance(getattr(m, f.name), torch.Tensor)).dtype


@dataclass(frozen=True)
class Step:
    """One adapter's contribution to one weight (or bias), as the file holds it: a low-rank pair with
    its factor f = scale·α/r, or a full difference times its scale."""

    module: Module
    scale: float  # set_adapters weight × lora_scale
    param: str  # "weight" or "bias"

    @property
    def rank(self) -> int:
        return 1 if isinstance(self.module, DiffModule) else max(self.module.rank, 1)

    @property
    def file_dtype(self) -> torch.dtype:
        m = self.module
        return getattr(m, "diff" if self.param == "weight" else "bias").dtype if isinstance(m, DiffModule) \
            else file_dtype(m)

    @property
    def formula(self) -> bool:
        """Whether this step is compared by its dense float64 reference (a LyCORIS algorithm or DoRA)
        rather than by the pair and difference kernels of parity/fused_comparison.py."""
        return not isinstance(self.module, (LoraModule, DiffModule))


def parameter_name(m: Module, param: str) -> str:
    """The parameter of the model that ``param`` of ``m`` changes."""
    return m.parameter(param) if isinstance(m, DiffModule) else f"{m.module}.{param}"


class LazyReferences(Mapping[tuple[str, str], MergeReference]):
    """The reference merge of every targeted weight, computed when asked for and not kept: a check
    that walks it holds one weight's float64 reference at a time, not the whole model's. The checks
    themselves compare each weight in one pass from its ``steps`` (parity/fused_comparison.py) and
    form a whole ``MergeReference`` only to diagnose a failing one. Keys as ``reference_merge``'s."""

    def __init__(self, base_weights: Mapping[str, Mapping[str, torch.Tensor]],
                 adapters: Sequence[tuple[LoraFile, float]], lora_scale: float = 1.0) -> None:
        self.base_weights, self.lora_scale = base_weights, lora_scale
        self.adapters = list(adapters)
        self.contributors: dict[tuple[str, str], list[tuple[Module, float, str]]] = {}
        for lora, weight in self.adapters:
            for (component, module), m in lora.modules.items():
                params = ["weight"] if not isinstance(m, DiffModule) else [
                    p for p, t in (("weight", m.diff), ("bias", m.bias)) if t is not None]
                for param in params:
                    key = (component, module if param == "weight" else f"{module}.{param}")
                    others = self.contributors.setdefault(key, [])
                    if others and (isinstance(m, DoraModule) or any(isinstance(o, DoraModule) for o, _, _ in others)):
                        # PEFT merges each DoRA adapter against the unmerged base: no reference for a stack yet
                        raise ParityInputError(f"DoRA and another adapter on {component}.{module}: a stack with "
                                               "DoRA in it has no reference yet (not supported)", path=lora.path,
                                               key=next(iter(lora.sources.get((component, module), ())), None))
                    others.append((m, weight, param))

    def parameter(self, key: tuple[str, str]) -> tuple[str, str]:
        """(component, parameter name) of what ``key`` changes: a module's weight or bias, or a bare
        parameter (parity/lora/neutral.py: DiffModule.bare)."""
        m, _, param = self.contributors[key][0]
        return key[0], parameter_name(m, param)

    def base(self, key: tuple[str, str]) -> torch.Tensor:
        """The base weight (or bias) ``key`` changes, as the snapshot holds it (a disk entry is read now)."""
        component, name = self.parameter(key)
        return self.base_weights[component][name]

    def name(self, key: tuple[str, str]) -> str:
        """"component.module.weight" (or ".bias"): the parameter ``key`` changes."""
        return ".".join(self.parameter(key))

    def steps(self, key: tuple[str, str]) -> list[Step]:
        """Each adapter's contribution to ``key``, in merge order, as the file holds it."""
        return [Step(m, weight * self.lora_scale, param) for m, weight, param in self.contributors[key]]

    def __getitem__(self, key: tuple[str, str]) -> MergeReference:
        base = self.base(key)
        ref = None
        contributors = self.contributors[key]
        if any(isinstance(m, DoraModule) for m, _, _ in contributors):
            [(m, weight, param)] = contributors  # a stack with DoRA in it is refused in __init__
            step = dict(contributions(m, weight * self.lora_scale, tuple(base.shape)))[param]
            merged = dora_merged(base, m, weight * self.lora_scale)
            return MergeReference(key[0], m.module, base.double(), merged, [step], param, dora=m)
        for m, weight, param in contributors:
            if ref is None:
                ref = MergeReference(key[0], m.module, base.double(), None, [], param,
                                     bare=getattr(m, "bare", False))
            step = dict(contributions(m, weight * self.lora_scale, tuple(base.shape)))[param]
            if step.abs_product.shape != ref.base.shape:
                raise ValueError(f"{ref.key}: delta {tuple(step.abs_product.shape)} vs {tuple(ref.base.shape)}")
            # the same float64 additions, in order, as base + δ₁ + δ₂ …, without a copy of base first
            ref.merged = ref.base + step.delta if ref.merged is None else ref.merged.add_(step.delta)
            ref.steps.append(step)
        assert ref is not None
        return ref

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
