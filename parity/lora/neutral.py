"""The format-neutral form of a LoRA file: what each diffusers module receives, keyed by (component,
module), whatever layout the file was written in and however it named or fused the module. Readers
produce it, writers and the reference merge consume it.

Kinds of module: a low-rank pair (``LoraModule``), a full difference (``DiffModule``, the
``.diff``/``.diff_b`` keys ComfyUI and kohya write for layers trained in full), and LyCORIS's other
algorithms (``TuckerModule``, ``LohaModule``, ``LokrModule``), each with an optional DoRA magnitude
(``DoraModule``). Each kind's ΔW is computed by its own formula in parity/reference/variants.py. A file module that
fuses several diffusers modules (BFL's q|k|v) becomes one neutral module per diffusers module, each
with the shared ``down`` and its own rows of ``up``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

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
    # ``module`` is a bare parameter (Wan's ``scale_shift_table``, from a ``.diff_m``), not a module
    # holding a ``weight``: its parameter is named ``module`` itself
    bare: bool = False

    @property
    def rank(self) -> int:
        return 0  # full rank: no low-rank factors for a writer or a hotswap to pad

    def parameter(self, param: str) -> str:
        """The name of the parameter that ``param`` ("weight" or "bias") of this difference changes."""
        return self.module if self.bare else f"{self.module}.{param}"


@dataclass(frozen=True)
class TuckerModule:
    """LyCORIS LoCon with a tucker core on a k×k conv: ``lora_down`` (r, in, 1, 1), ``lora_mid``
    (r, r, k, k), ``lora_up`` (out, r, 1, 1); ΔW = (α/r) · up ∘ mid ∘ down (lycoris/modules/locon.py)."""

    component: str
    module: str
    down: torch.Tensor
    mid: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


@dataclass(frozen=True)
class LohaModule:
    """LyCORIS LoHa: ΔW = (α/r) · (w1a @ w1b) ⊙ (w2a @ w2b), or with tucker cores t1, t2 on a k×k conv,
    where w1a/w2a are (r, out) instead of (out, r) (lycoris/modules/loha.py)."""

    component: str
    module: str
    w1a: torch.Tensor
    w1b: torch.Tensor
    w2a: torch.Tensor
    w2b: torch.Tensor
    t1: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.w1b.shape[0])


@dataclass(frozen=True)
class LokrModule:
    """LyCORIS LoKr: ΔW = scale · kron(w1, w2), each factor full or a product of two (w2 also with a
    tucker core t2 on a k×k conv); scale = α/r, except 1 where both factors are full, as LyCORIS
    sets α = r then (lycoris/modules/lokr.py)."""

    component: str
    module: str
    w1: torch.Tensor | None = None
    w1a: torch.Tensor | None = None
    w1b: torch.Tensor | None = None
    w2: torch.Tensor | None = None
    w2a: torch.Tensor | None = None
    w2b: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    alpha: float | None = None

    @property
    def rank(self) -> int:
        """The decomposed factors' rank (LyCORIS reads it from w1_a, else w2_a); 0 with both full."""
        if self.w1a is not None:
            return int(self.w1a.shape[1])
        if self.w2a is not None:
            return int(self.w2a.shape[0] if self.t2 is not None else self.w2a.shape[1])
        return 0


@dataclass(frozen=True)
class Magnitude:
    """DoRA's magnitude: W' = m ⊙ V / (‖V‖ + eps), V = W + ΔW, the norm taken per output row over all
    other axes (``axis`` "out": PEFT, LyCORIS from 3.2) or per input channel over all other axes ("in":
    LyCORIS before 3.2, whose files are (1, in)). PEFT adds no eps; LyCORIS adds
    finfo(dora_scale.dtype).eps (peft/tuners/lora/dora.py, lycoris/modules/locon.py)."""

    value: torch.Tensor  # as the file stores it
    axis: str  # "out" | "in"
    eps: float
    key: str  # the file key it came from


@dataclass(frozen=True)
class RowsOf:
    """One diffusers module's share of a LoHa or LoKr module a file sets on a fused module (BFL's qkv):
    its ΔW is rows of the whole module's, which no factor's rows give alone (a Hadamard or Kronecker
    product mixes them), so the whole module is kept and cut when its ΔW is formed."""

    component: str
    module: str
    whole: LohaModule | LokrModule  # the file's module, as the file holds it
    pieces: tuple[tuple[int, int, int], ...]  # (first row in the whole ΔW, rows, first row in this module)
    rows: int  # this module's output rows

    @property
    def rank(self) -> int:
        return self.whole.rank


Factored = LoraModule | TuckerModule | LohaModule | LokrModule | RowsOf


def with_tensors(m: Factored, fn: Callable[[torch.Tensor], torch.Tensor]) -> Factored:
    """``m`` with ``fn`` of each of its tensors (a RowsOf's, its whole module's) in their place."""
    if isinstance(m, RowsOf):
        return replace(m, whole=with_tensors(m.whole, fn))
    return replace(m, **{f.name: fn(getattr(m, f.name)) for f in fields(m)
                         if isinstance(getattr(m, f.name), torch.Tensor)})


@dataclass(frozen=True)
class DoraModule:
    """A factored module with a DoRA magnitude: W' = m ⊙ (W + ΔW) / (‖W + ΔW‖ + eps)."""

    inner: Factored
    magnitude: Magnitude

    @property
    def component(self) -> str:
        return self.inner.component

    @property
    def module(self) -> str:
        return self.inner.module

    @property
    def rank(self) -> int:
        return self.inner.rank


Module = LoraModule | DiffModule | TuckerModule | LohaModule | LokrModule | RowsOf | DoraModule
# What each kind of module is called in messages: the algorithm a trainer names it by.
ALGORITHMS = {LoraModule: "LoRA", DiffModule: "full difference", TuckerModule: "LoCon (tucker)",
              LohaModule: "LoHa", LokrModule: "LoKr", DoraModule: "DoRA"}
PLAIN = (ALGORITHMS[LoraModule], ALGORITHMS[DiffModule])  # what every loader of these families reads


def algorithm(m: Module) -> str:
    """The module's algorithm; DoRA on another kind names both (``DoRA (LoHa)``)."""
    if isinstance(m, RowsOf):
        return algorithm(m.whole)
    if isinstance(m, DoraModule) and not isinstance(m.inner, LoraModule):
        return f"DoRA ({algorithm(m.inner)})"
    return ALGORITHMS[type(m)]


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
    # the expert the file was placed in (parity/zoo/experts.py), "" for a family of one denoiser
    expert: str = ""
    # the safetensors header's metadata as read (trainers' ss_*/modelspec.* keys say which expert)
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    def components(self) -> list[str]:
        return sorted({c for c, _ in self.modules})

    def low_rank(self) -> dict[tuple[str, str], LoraModule]:
        return {k: m for k, m in self.modules.items() if isinstance(m, LoraModule)}

    def algorithms(self) -> list[str]:
        """The algorithms of the file's modules, plain LoRA and full differences first."""
        return sorted({algorithm(m) for m in self.modules.values()}, key=lambda a: (a not in PLAIN, a))

    def variants(self) -> list[str]:
        """The algorithms that are not plain pairs or differences (what diffusers may not load)."""
        return [a for a in self.algorithms() if a not in PLAIN]
