"""Dtype-aware tensor comparison: ULPs, and the one table of tolerances.

Every bound here is derived from the floating-point arithmetic the library under test performs,
never fitted to observed errors. Each entry of ``TOLERANCES`` says where its numbers come from.

Notation (all per element, evaluated in float64 from the raw LoRA tensors):
  d       the model dtype (float32, float16, bfloat16)
  u_d     unit roundoff of d = eps_d / 2   (float32 2^-24, float16 2^-11, bfloat16 2^-8)
  ulp_d(x) spacing of d's grid at |x|
  δ       one adapter's exact delta  s·(α/r)·B@A  (s folds adapter weight and lora_scale)
  P       s·(|B|@|A|): the sum of absolute products, which bounds every summation error of B@A

Over 500 lines because the table and every bound derived from its entries (merge, unfuse, DoRA's norm and
division, outputs, golden images) stay together: each number's derivation sits beside the formula that uses
it, and a new bound is reviewed against the ones it must agree with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from parity.reference.variants import norm_of

if TYPE_CHECKING:
    from parity.reference.merge import MergeStep

FLOAT_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return FLOAT_DTYPES[name]
    except KeyError:
        from parity.errors import ParityInputError

        raise ParityInputError(f"unsupported dtype {name!r}; choose from {', '.join(FLOAT_DTYPES)}") from None


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


_FLOAT64_EXPONENT = 0x7FF0000000000000


def ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of ``dtype``'s grid at |x| (float64). Subnormals get the fixed subnormal spacing.

    2^floor(log2|x|) is |x| with its float64 mantissa bits cleared: exact, and a few integer passes
    where log2/floor/exp2 were most of a full-size check's comparison time (log2 also rounds a value
    a float64 step below a power of two up to it, doubling the spacing there).
    """
    info = torch.finfo(dtype)
    mag = x.detach().double().abs().clamp_min_(info.tiny)  # a fresh tensor: abs() never aliases x
    nan = mag.isnan() if mag.numel() and math.isnan(float(mag.max())) else None  # max propagates NaN
    out = mag.view(torch.int64).bitwise_and_(_FLOAT64_EXPONENT).view(torch.float64).mul_(info.eps)
    return out if nan is None else out.masked_fill_(nan, math.nan)


@dataclass(frozen=True)
class Tolerance:
    """How many rounding steps of each kind a computation is allowed, and why."""

    result_roundings: float  # multiples of 0.5 ulp_d of the result
    delta_roundings: float  # multiples of 0.5 ulp_d of each adapter's delta
    accumulation: str  # "fp32": delta summed in float32 (≤ (r+2)·u_fp32·P); "model": in the model dtype
    input_cast: bool  # LoRA tensors wider than d were rounded to d on load (≤ 2·u_d·P)
    why: str
    # unfuse: δ̂ is computed twice, at the merge and again at the unmerge, maybe reduced in another order
    delta_recomputed: bool = False


# The one table. Keys: (check, device type, dtype name).
TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    ("merge", "cpu", "float32"): Tolerance(
        result_roundings=1,
        delta_roundings=0,
        accumulation="fp32",
        input_cast=False,
        why=(
            "peft LoraLayer.get_delta_weight computes (B@A)*scaling in float32: r products summed "
            "(γ_r ≤ r·u) then one multiply by the scaling (one more u) and the Python-float scaling "
            "rounded to float32 (one more u): ≤ (r+2)·u_fp32·P. merge() then adds in float32: one "
            "rounding of the result, 0.5 ulp(W')."
        ),
    ),
    ("merge", "cpu", "float16"): Tolerance(
        result_roundings=1,
        delta_roundings=1,
        accumulation="fp32",
        input_cast=True,
        why=(
            "On CPU peft upcasts A and B to float32 for (b)float16 (cast_to_fp32 in get_delta_weight), "
            "so the product carries (r+2)·u_fp32·P; the delta is then cast to float16 (0.5 ulp(δ)) and "
            "added in float16 (0.5 ulp(W')). A and B were rounded to float16 when loaded "
            "(_move_adapter_to_device_of_base_layer): |ÂB̂−AB| ≤ (2u+u²)·P ≈ 2·u_fp16·P."
        ),
    ),
    ("merge", "cpu", "bfloat16"): Tolerance(
        result_roundings=1,
        delta_roundings=1,
        accumulation="fp32",
        input_cast=True,
        why="As float16 on CPU, with u_bf16 = 2^-8: float32 product, one cast of δ, one add, A/B rounded on load.",
    ),
    ("merge", "cuda", "float32"): Tolerance(
        result_roundings=1,
        delta_roundings=0,
        accumulation="fp32",
        input_cast=False,
        why=(
            "As CPU float32. The suite sets torch.backends.cuda.matmul.allow_tf32=False for merge checks; "
            "with TF32 the product would carry u_tf32 = 2^-11 instead."
        ),
    ),
    ("merge", "cuda", "float16"): Tolerance(
        result_roundings=1,
        delta_roundings=2,
        accumulation="fp32",
        input_cast=True,
        why=(
            "On CUDA peft multiplies in float16 (no upcast): cuBLAS accumulates in float32 (r·u_fp32·P) "
            "and rounds B@A to float16 (0.5 ulp), the multiply by scaling rounds again (0.5 ulp), the add "
            "rounds the result (0.5 ulp(W')); A/B rounded on load (2·u_d·P)."
        ),
    ),
    ("merge", "cuda", "bfloat16"): Tolerance(
        result_roundings=1,
        delta_roundings=2,
        accumulation="fp32",
        input_cast=True,
        why="As CUDA float16 with u_bf16 = 2^-8: float32 accumulation, two bfloat16 roundings of δ, one of W'.",
    ),
    ("unfuse", "cpu", "float32"): Tolerance(
        result_roundings=2,
        delta_roundings=0,
        accumulation="fp32",
        input_cast=False,
        delta_recomputed=True,
        why=(
            "peft's unmerge does not keep the merge's δ̂: it calls get_delta_weight again (Linear: B@A·scaling; "
            "Conv: a 1x1-kernel convolution of A's transpose by B for a k×k LoRA, B@A for 1x1) and subtracts "
            "it in the model dtype (weight.data -= δ̂₂). The two computations take the same loaded A, B "
            "and scaling, but may reduce the r products in another order: ATen picks a convolution's "
            "algorithm by input size and thread count (its own 1x1 convolution on one thread for a batch "
            "under 16, oneDNN otherwise), a matmul's blocking follows the threads, and the caller may "
            "change the threads between fuse and unfuse. Each is within (r+2)·u_fp32·P of the exact δ "
            "(the merge row), so |δ̂₁ − δ̂₂| ≤ 2·(r+2)·u_fp32·P. Then W'' = fl(fl(W + δ̂₁) − δ̂₂) = "
            "W + (δ̂₁ − δ̂₂) + e₁ + e₂, the add's rounding |e₁| ≤ 0.5 ulp(W + δ̂₁) and the subtraction's "
            "|e₂| ≤ 0.5 ulp(W''), both at most 0.5 ulp(|W| + P): per cycle ulp(|W| + P) + 2·(r+2)·u_fp32·P. "
            "It is not bit-exact because peft restores by subtraction, not by copying a backup (A1111 "
            "copies). Derived for one reduction order only (δ̂₂ = δ̂₁), a kohya SDXL LoCon file failed "
            "at 1.50-1.88x with the merge on one thread and the unmerge on two (issue 30)."
        ),
    ),
    ("unfuse", "cpu", "float16"): Tolerance(
        result_roundings=2,
        delta_roundings=1,
        accumulation="fp32",
        input_cast=False,
        delta_recomputed=True,
        why=(
            "As float32, in float16: each δ̂ is a float32 product (peft upcasts on CPU) cast to float16 "
            "(0.5 ulp(P) each), so |δ̃₁ − δ̃₂| ≤ 2·(r+2)·u_fp32·P + ulp(P); plus the add's and the "
            "subtraction's float16 roundings. The factors were rounded to float16 once, on load: both "
            "computations see the same rounded A and B, so that cast cancels."
        ),
    ),
    ("unfuse", "cpu", "bfloat16"): Tolerance(
        result_roundings=2,
        delta_roundings=1,
        accumulation="fp32",
        input_cast=False,
        delta_recomputed=True,
        why="As float16, in bfloat16 (u = 2^-8): two float32 products cast to bfloat16, two roundings of W.",
    ),
}
_CUDA_UNFUSE_WHY = (
    "As on CPU, with each δ̂ computed as peft's CUDA merge computes it (the merge rows): float16/bfloat16 "
    "factors multiplied in the model dtype, B@A and the scaling each rounded there (two roundings of δ̂, "
    "so |δ̃₁ − δ̃₂| ≤ 2·(r+2)·u_fp32·P + 2·ulp(P)); cuBLAS and cuDNN choose their algorithms per call."
)
for _dt in ("float32", "float16", "bfloat16"):
    TOLERANCES[("unfuse", "cuda", _dt)] = Tolerance(
        result_roundings=2, delta_roundings=TOLERANCES[("merge", "cuda", _dt)].delta_roundings, accumulation="fp32",
        input_cast=False, delta_recomputed=True, why=_CUDA_UNFUSE_WHY)


def detectable_ulps(dtype: torch.dtype, rank: int) -> int:
    """The smallest error (in ULPs at |W|+ΣP) the merge bound is guaranteed to reject.

    In float32 the delta is summed in the model's own precision, so (r+2)·u·P can reach (r+2)/2 ULPs
    on top of the 0.5 ULP result rounding; in (b)float16 the float32 sum is negligible and the bound
    stays under 2 ULPs.
    """
    return rank + 4 if dtype == torch.float32 else 4


@dataclass(frozen=True)
class OutputTolerance:
    """Outputs of a whole forward: budget = factor · (the reference run's own error vs float64) + 1 ULP."""

    factor: float
    why: str


# Output comparisons (hotswap, fused vs unfused): the second half of the one table. A whole
# network's output has no closed-form rounding bound, so the dtype's forward rounding is measured
# on the very computation: e_fwd = max|y_dtype − y_float64| for a fresh eager load, same inputs.
OUTPUT_TOLERANCES: dict[str, OutputTolerance] = {
    "same-arithmetic": OutputTolerance(
        factor=0.0,
        why=(
            "A model compiled with the eager backend after a hotswap, and a fresh eager model prepared "
            "the same way (enable_lora_hotswap(target_rank) then a plain load of the same file), run the "
            "same aten ops on the same shapes in the same order: the outputs must be bit-identical. "
            "Held for every zoo family at model level; not at pipeline level, where dynamo's traced "
            "graph moved the tiny Flux image by 7e-7 even with the eager backend."
        ),
    ),
    "reordered": OutputTolerance(
        factor=2.0,
        why=(
            "Two correct computations of the same function in the same dtype that round in another "
            "order (rank padded to target_rank, dynamo's traced graph, inductor's fused kernels) each "
            "land about e_fwd from the float64 result, so |a − b| ≤ |a − y64| + |y64 − b| ≤ 2·e_fwd, "
            "plus one ULP of the output's largest value."
        ),
    ),
    "unfused": OutputTolerance(
        factor=2.0,
        why=(
            "The unfused pipeline against the loaded one: each forward lands about e_fwd from the "
            "float64 result (2·e_fwd, as 'reordered'), and the unfuse left the weights up to d ULPs off "
            "(d measured by the drift check, which bounds it): d roundings of each weight, which move "
            "each output about d·e_fwd, as the merge's own rounding does in 'float64-reference'. Budget "
            "(2 + d)·e_fwd + 1 ULP. A tiny sdxl in bfloat16, d = 1, measured 0.0859 against 2·e_fwd = "
            "0.0858. A scaling left behind moves the output by the adapter's whole effect."
        ),
    ),
    "fused": OutputTolerance(
        factor=3.0,
        why=(
            "A fused pipeline against the same pipeline running the adapter unfused (base layer + "
            "scaled B(Ax)): each forward lands about e_fwd from the float64 result (2·e_fwd, as "
            "'reordered'), and the fuse rounds every merged weight once more in the pipeline's dtype "
            "(W' = fl(W + δ)), which moves each output about one e_fwd more, as d roundings do in "
            "'unfused'. Budget 3·e_fwd + 1 ULP, e_fwd measured on the unfused image against its float64 "
            "twin. A dropped alpha or a lost adapter moves the image by the adapter's whole effect, "
            "which the edit check requires to exceed this budget."
        ),
    ),
    "float64-reference": OutputTolerance(
        factor=3.0,
        why=(
            "diffusers' LoRA forward (base layer + scaled B(Ax)) and our merged weights (W + s·BA) run "
            "in float64 compute the same function up to float64 rounding: each forward lands about e64 "
            "from the exact result, e64 being e_fwd rescaled to float64 (rounding errors are linear in "
            "the unit roundoff); and our merge rounds every merged weight once more before its forward "
            "(W' = fl(W + δ), a perturbation of u64·|W'| per weight, which moves each output about as "
            "much as the rounding of the products it feeds: another e64). Hence 3·e64, plus one "
            "float64 ULP. Without that third term a tiny sd15 at an 8x8 latent measured 1.67e-14 against "
            "2·e64 = 1.55e-14. A dropped alpha or a stale weight is off by orders of magnitude more."
        ),
    ),
}


def finest_roundoff(dtype: torch.dtype) -> float:
    """The smallest unit roundoff a forward in ``dtype`` rounds at: float16 and bfloat16 matmuls and
    convolutions accumulate in float32 (ATen/oneDNN on CPU, cuBLAS/cuDNN on CUDA)."""
    return min(unit_roundoff(dtype), unit_roundoff(torch.float32))


def output_budget(
    forward_error: float,
    reference: torch.Tensor,
    dtype: torch.dtype,
    kind: str,
    measured_in: torch.dtype | None = None,
    weight_roundings: float = 0.0,
) -> float:
    """Largest max-abs difference a correct output may have against ``reference``; ``weight_roundings``
    more e_fwd where one run's weights are that many roundings off the other's ("unfused").

    ``forward_error`` is e_fwd measured in ``measured_in`` (default ``dtype``); it is rescaled to
    ``dtype`` by the ratio of unit roundoffs, the measured run's taken at the finest it rounds at: a
    float16/bfloat16 forward accumulates its matmuls and convolutions in float32, and those roundings
    shrink by u_dtype/u_fp32, not by u_dtype/u_bf16 (2^16 times less). Rescaled by bfloat16's own unit
    roundoff, a full-size SD1.5 bfloat16 hotswap measured 1.6e-14 against a float64 budget of 2.2e-15.
    """
    tol = OUTPUT_TOLERANCES[kind]
    if tol.factor == 0.0:
        return 0.0
    scale = 1.0 if measured_in in (None, dtype) else unit_roundoff(dtype) / finest_roundoff(measured_in)
    top = reference.double().abs().max().reshape(1)
    return (tol.factor + weight_roundings) * forward_error * scale + float(ulp(top, dtype).item())


def tolerance(check: str, device: str | torch.device, dtype: torch.dtype) -> Tolerance:
    dev = torch.device(device).type
    name = {v: k for k, v in FLOAT_DTYPES.items()}[dtype]
    return TOLERANCES[(check, dev, name)]


def weight_tolerance(check: str, device: torch.device | str, actual: torch.Tensor, tols: dict) -> tuple[torch.dtype, Tolerance]:
    """(dtype, tolerance) of one weight: its own dtype, which is the model's except where the loader kept a
    module in float32, and what PEFT casts its LoRA factors to there."""
    dtype = actual.dtype
    if dtype not in tols:
        tols[dtype] = tolerance(check, device, dtype)
    return dtype, tols[dtype]


@dataclass
class TensorReport:
    """How far one actual tensor is from its float64 reference, against its element-wise bound."""

    name: str
    numel: int
    max_abs: float
    max_ulps: float  # max |actual−ref| / ulp_d(magnitude): ULPs at the operands' scale, not the result's
    max_bound_ratio: float  # max |actual−ref| / bound; ≤ 1 passes
    n_over: int  # elements over the bound
    worst_index: tuple[int, ...] = field(default=())
    diagnosis: str = ""  # for a failing weight: what is off (parity/checks/diagnosis.py)

    @property
    def ok(self) -> bool:
        return self.n_over == 0


def report_against_bound(
    name: str,
    actual: torch.Tensor,
    reference: torch.Tensor,
    bound: torch.Tensor,
    dtype: torch.dtype,
    magnitude: torch.Tensor | None = None,
) -> TensorReport:
    """Compare ``actual`` with a float64 ``reference`` element-wise against a float64 ``bound``.

    ULPs are counted at ``magnitude`` (default |reference|). Where W + δ cancels to near zero the
    result's own ULP is tiny and a correct merge would read as thousands of ULPs off, so merge
    checks pass |W| + Σ P, the scale at which the roundings happened.
    """
    ref = reference.double()
    act = actual.detach().cpu().double()
    finite = torch.isfinite(act)
    err = (act - ref).abs_()
    # Non-finite actual values are infinitely wrong, never silently equal.
    err.masked_fill_(~finite, math.inf)
    if bound.numel() and bool(bound.min() > 0):
        ratio = err / bound
    else:
        ratio = torch.where(bound > 0, err / bound, torch.where(err > 0, math.inf, 0.0))
    ulps = err / ulp(ref if magnitude is None else magnitude, dtype)
    flat = int(torch.argmax(ratio).item()) if ratio.numel() else 0
    worst = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), ratio.shape)) if ratio.numel() else ()
    return TensorReport(
        name=name,
        numel=err.numel(),
        max_abs=float(err.max()) if err.numel() else 0.0,
        max_ulps=float(ulps.max()) if ulps.numel() else 0.0,
        max_bound_ratio=float(ratio.max()) if ratio.numel() else 0.0,
        n_over=int((ratio > 1).sum()),
        worst_index=worst,
    )


def input_cast_is_inexact(file_dtype: torch.dtype, model_dtype: torch.dtype) -> bool:
    # float16 and bfloat16 values are exact in float32; any other change of dtype may round.
    return not (file_dtype == model_dtype or model_dtype == torch.float32)


def operand_magnitude(steps: "list[MergeStep]", base: torch.Tensor) -> torch.Tensor:
    """|W| + Σ P_i: no intermediate of the merge is larger, so every rounding is at most ulp of this."""
    mag = base.double().abs()
    for step in steps:
        mag.add_(step.abs_product)
    return mag


def rounding_factor(dtype: torch.dtype, rank: int) -> float:
    """How far a computed intermediate may exceed its exact magnitude bound: δ̂ is a float32 sum of r
    products (≤ (1 + (r+2)·u_fp32)·P) rounded to d (another 1 + u_d)."""
    return (1 + 2 * unit_roundoff(dtype)) * (1 + (rank + 2) * unit_roundoff(torch.float32))


def rounding_ulp(magnitude: torch.Tensor, dtype: torch.dtype, rank: int) -> torch.Tensor:
    """ulp_d at a magnitude that a computed intermediate may exceed by ``rounding_factor``: at a binade
    edge that excess doubles the ULP, so the ULP is taken at the magnitude times that factor."""
    return ulp(magnitude * rounding_factor(dtype, rank), dtype)


def merge_bound(
    steps: "list[MergeStep]", base: torch.Tensor, dtype: torch.dtype, tol: Tolerance
) -> torch.Tensor:
    """Element-wise bound on |fused − reference| for adapters merged one after another (float64).

    Each rounding is bounded at a magnitude no smaller than where it happens: the add rounds at
    |fl(W_{i-1} + δ̂_i)| ≤ |W_{i-1}| + P_i, the delta at |δ̂_i| ≤ P_i (|δ| ≤ P by the triangle inequality).
    """
    u = unit_roundoff(dtype)
    u_acc = unit_roundoff(torch.float32) if tol.accumulation == "fp32" else u
    bound = torch.zeros_like(base, dtype=torch.float64)
    running = base.double().abs()
    for step in steps:
        p = step.abs_product
        running.add_(p)
        bound += tol.result_roundings * 0.5 * rounding_ulp(running, dtype, step.rank)
        bound += tol.delta_roundings * 0.5 * rounding_ulp(p, dtype, step.rank)
        bound += (step.rank + 2) * u_acc * p
        if tol.input_cast and input_cast_is_inexact(step.file_dtype, dtype):
            bound += (2 * u + u * u) * p
    return bound


def dora_bound(step: "MergeStep", base: torch.Tensor, magnitude: torch.Tensor, axis: str, eps: float,
               magnitude_dtype: torch.dtype, dtype: torch.dtype, tol: Tolerance) -> torch.Tensor:
    """Element-wise bound on |fused − reference| for a DoRA merge (float64): W' = f ⊙ V with
    f = m / ‖V‖ and V = W + δ, as PEFT computes it (peft/tuners/lora/variants.py merge): V̂ = fl(W + δ̂),
    n̂ = fl(‖V̂‖), f̂ = fl(m̂ / n̂), Ŵ' = fl(f̂ · V̂).

    - |V̂ − V| ≤ E, the merge bound of the addition (``merge_bound``);
    - n̂: ‖V̂‖ is within ‖E‖ of ‖V‖ (triangle inequality, norms over the same axis); the sum of
      squares of ℓ terms carries ≤ ℓ·u_fp32 relative (torch reduces in float32 for every model
      dtype), its square root halves that and adds u_fp32, the cast to the model dtype adds u;
    - m̂: the magnitude rounded to the model dtype on load (u where that cast is inexact);
    - f̂: the division adds u; the writer's eps (LyCORIS adds finfo(dtype).eps to ‖V‖, PEFT nothing)
      moves f by at most eps/‖V‖ relative, allowed so either loader's reading passes;
    - Ŵ': |f̂V̂ − fV| ≤ |f̂|·E + |f|·|V̂|·ρ with ρ the relative error of f̂, then one rounding of the
      result.
    ρ is first-order; (1 + 2ρ) covers the products of the terms."""
    u = unit_roundoff(dtype)
    u32 = unit_roundoff(torch.float32)
    e = merge_bound([step], base, dtype, tol)
    v = base.double() + step.delta
    norm = norm_of(v, axis)
    length = v.numel() // norm.numel()
    rel_norm = norm_of(e, axis) / norm + (length / 2 + 1) * u32 + u
    rel_mag = u if input_cast_is_inexact(magnitude_dtype, dtype) else 0.0
    rho = rel_norm + rel_mag + u + eps / norm
    rho = rho * (1 + 2 * rho)
    f = magnitude.abs() / norm
    product = f * (1 + rho) * e + f * (v.abs() + e) * rho
    return product + 0.5 * ulp(f * (1 + rho) * (v.abs() + e), dtype)


def dora_unfuse_bound(step: "MergeStep", base: torch.Tensor, dtype: torch.dtype, tol: Tolerance,
                      cycles: int = 1) -> torch.Tensor:
    """Element-wise bound on |W after ``cycles`` DoRA fuse/unfuse cycles − W| (float64). PEFT's unmerge
    divides the fused weight by the factor it cached at the merge and subtracts δ̂ computed again
    (peft/tuners/lora/variants.py: get_delta_weight at unmerge): fl(fl(f̂·V̂)/f̂) = V̂·(1 + θ),
    |θ| ≤ 2u + u²; V̂ − δ̂₂ = W + (δ̂₁ − δ̂₂, ``recompute_bound``) + (the add's rounding, ≤ 0.5 ulp(|V̂|));
    the subtraction rounds once more (≤ 0.5 ulp). Every intermediate is within M = |W| + P, the
    operands' magnitude, so per cycle (2u + u²)·M + ulp(M·(1 + 3u)) + |δ̂₁ − δ̂₂|."""
    u = unit_roundoff(dtype)
    magnitude = base.double().abs() + step.abs_product
    return cycles * ((2 * u + u * u) * magnitude + ulp(magnitude * (1 + 3 * u), dtype)
                     + recompute_bound(step, dtype, tol))


def recompute_bound(step: "MergeStep", dtype: torch.dtype, tol: Tolerance) -> torch.Tensor:
    """Element-wise bound on |δ̂₁ − δ̂₂|, two computations of one adapter's delta from the same loaded
    factors that may reduce in different orders (peft's merge and its unmerge): each is within one
    computation's error of δ, (r+2)·u_acc·P plus ``delta_roundings`` roundings of δ̂ in the model dtype,
    so they differ by at most twice that. Zero where the tolerance has the same δ̂ subtracted."""
    if not tol.delta_recomputed:
        return torch.zeros_like(step.abs_product)
    u_acc = unit_roundoff(torch.float32) if tol.accumulation == "fp32" else unit_roundoff(dtype)
    p = step.abs_product
    return 2 * ((step.rank + 2) * u_acc * p + tol.delta_roundings * 0.5 * rounding_ulp(p, dtype, step.rank))


def unfuse_bound(
    steps: "list[MergeStep]", base: torch.Tensor, dtype: torch.dtype, tol: Tolerance, cycles: int = 1,
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Element-wise bound on |W after `cycles` fuse/unfuse cycles − W| (float64).

    Per adapter and cycle: one rounding on the add and one on the subtract, each at a magnitude
    ≤ |W| + Σ P_i (``magnitude``, where the caller has it already), and the difference between the
    delta added and the delta peft recomputes to subtract (``recompute_bound``). Errors of successive
    cycles add at worst linearly.
    """
    rank = max(step.rank for step in steps)
    magnitude = operand_magnitude(steps, base) if magnitude is None else magnitude
    per_cycle = len(steps) * tol.result_roundings * 0.5 * rounding_ulp(magnitude, dtype, rank)
    for step in steps:
        per_cycle += recompute_bound(step, dtype, tol)
    return cycles * per_cycle



# ---------------------------------------------------------------- quantized bases
#
# The fourth part of the one table: a LoRA on a quantized denoiser (parity/quant/check.py). The reference
# starts from our own float64 dequantization W_q of the stored weights (parity/quant/dequant.py), so the
# quantizer's own rounding of the base never enters a bound; what remains is arithmetic, and for a fuse
# that requantizes, one more rounding to the quantizer's grid. step(x) is the gap between the grid points
# around x (int8: the row's absmax/127; float8: scale · float8's spacing; 4-bit codebook: block absmax ·
# widest gap), recomputed from the reference's own absmax, never read from the tensor under test.


@dataclass(frozen=True)
class QuantTolerance:
    steps: float  # multiples of the element's quantization step
    roundings: float  # multiples of u_d · (the magnitude the computation sums), d the compute dtype
    why: str


QUANT_TOLERANCES: dict[str, QuantTolerance] = {
    "base-forward": QuantTolerance(0.0, 1.0, (
        "a quantized layer's forward against x @ W_qᵀ + b in float64: a dot product of n terms in d is within "
        "(n + 2)·u_d·(|x| @ |W_q|ᵀ + |b|) of exact (n products and additions, the dequantized weight's own "
        "rounding to d, the bias add). Weight-only quantizers compute exactly this; a dequantization applied "
        "twice (scale²) is off by |W_q|·(scale − 1), orders above it. Activation-quantizing modes add half an "
        "activation step per input: ½·(max|x_row|/127)·Σ|W_q| for int8 (int8 dynamic, LLM.int8's int8 part); "
        "for float8 e4m3 2^-4·(|x| @ |W_q|ᵀ) plus half its subnormal spacing (max|x_row|/448)·2^-9·Σ|W_q|")),
    "contribution": QuantTolerance(0.0, 1.0, (
        "the LoRA's contribution, layer(x) − base_layer(x), against x @ δᵀ in float64: PEFT's lora_B(lora_A(x)) "
        "in d is within (n + r + 2)·u_d·(|x| @ Pᵀ) (two chained dot products, n then r terms, and the scale), "
        "plus one rounding each of the sum and the difference: 2·u_d·|layer(x)|. A LoRA a quantized layer "
        "ignores is off by the whole |x @ δᵀ|")),
    "requantize": QuantTolerance(0.5, 1.0, (
        "a fuse that dequantizes, adds δ in d and requantizes (bitsandbytes, torchao): round-to-nearest moves "
        "each element by at most half its step at W_q + δ, after the merge's own roundings (the merge "
        "table's bound for d) and the requantization's own x / scale and q · scale in d (2·u_d·|x|: torchao "
        "keeps its scale in the weight's dtype, so in bfloat16 this is about one int8 step at the row's absmax; "
        "measured 0.935 steps on a bfloat16 Z-Image folder). In float32 one step off is twice the bound, so a "
        "weight rounded the wrong way shows")),
    "unfuse-requantize": QuantTolerance(1.0, 1.0, (
        "per fuse/unfuse cycle: half a step at W_q + δ (the fuse) and half a step on the grid at "
        "|W_q| + ½·that step (the unfuse requantizes W_q plus the fuse's error, whose row absmax or float8 "
        "binade can be that much larger), each after the merge table's roundings and the requantization's "
        "own 2·u_d·|x|; cycles add at worst linearly. Reported in steps of each row's coarsest grid point")),
}


# ---------------------------------------------------------------- golden images
#
# The third part of the one table: stored 8-bit golden images (parity/golden/) against a fresh
# render. Pixel values are floats in [0, 1] (the pipeline's clamp((x+1)/2, 0, 1), output_type="np").
#
# Notation: x_A the float image that made the baseline, q_A = round(255·x_A) the stored PNG, x_B the
# rerun, y64 the same render in float64, e_A = max|x_A − y64| measured when the baseline was made
# (manifest "float64_error"), Δ = 1/255 the 8-bit step.
#
# max-abs. Per pixel: |x_B − q_A/255| ≤ |x_B − y64| + |y64 − x_A| + |x_A − q_A/255|.
#   - The last term is the quantisation: round-to-nearest is off by at most Δ/2 = 0.5/255, and by
#     exactly that bound only when x_A sits on a half step; an identical float rerun (x_B = x_A) can
#     never exceed 0.5/255.
#   - |y64 − x_A| ≤ e_A, measured on the very computation.
#   - |x_B − y64| is the rerun's own rounding. It is NOT measured in the rerun (a float32-only kernel
#     bug would inflate its own allowance); as in OUTPUT_TOLERANCES["reordered"], a correct rerun that
#     rounds in another order (another torch, BLAS, CPU) is taken to land about as far from y64 as the
#     baseline did: ≤ e_A. Hence forward_factor = 2 (e_A + e_B ≈ 2·e_A).
#   - plus one ULP of the dtype at 1.0 (the largest pixel) for the cast of the output, as output_budget.
#   Budget: max_abs ≤ Δ/2 + 2·e_A + ulp_d(1). On this CPU, float32, the same versions rerun bit-identical
#   (measured: max-abs = quantisation error only, < 0.5/255) and e_A is ~1e-7..1e-6, so the float32
#   budget is 0.5/255 plus a few float32 roundings: "identical after quantisation".
# PSNR and SSIM are not separate claims: they are the values every image within the max-abs budget m
#   is guaranteed to reach, so they add no looseness and fail only together with, or because of a
#   bug beside, max-abs. They are listed because people read SSIM.
#   - PSNR = 10·log10(1/MSE) with MSE ≤ m²  ⇒  PSNR ≥ −20·log10(m).
#   - SSIM (skimage, data_range 1, win 7x7, uniform window, sample covariance: N/(N−1) with N = 49,
#     C1 = (0.01)², C2 = (0.03)²) per window: 1 − l = (μx−μy)²/(μx²+μy²+C1) ≤ m²/C1 and
#     1 − cs = var_s(x−y)/(σx²+σy²+C2) ≤ (N/(N−1))·m²/C2, so SSIM ≥ (1 − m²/C1)(1 − (N/(N−1))·m²/C2),
#     and the mean over windows and channels too. For m = 0.5/255 that is ≈ 0.957: loose, because
#     a flat window with a half-step offset really does score that low.
# float16/bfloat16: the same derivation holds with e_A measured in that dtype (e_A scales with the unit
# roundoff: u_bf16 = 2^-8 is 2^16 times u_fp32); no half-precision baselines are committed (see
# GOLDEN_TOLERANCES entries).

GOLDEN_QUANTUM = 1.0 / 255.0
SSIM_K1, SSIM_K2, SSIM_WINDOW_N = 0.01, 0.03, 49  # skimage's defaults for a 7x7 uniform window


@dataclass(frozen=True)
class GoldenTolerance:
    quantisation: float  # multiples of the 8-bit step Δ = 1/255 (round to nearest: 0.5)
    forward_factor: float  # multiples of e_A, the baseline's measured error against float64
    why: str


@dataclass(frozen=True)
class GoldenThresholds:
    max_abs: float  # pass iff max |actual − expected| ≤ this
    psnr: float  # pass iff PSNR ≥ this (dB)
    ssim: float  # pass iff SSIM ≥ this


# Keys: (device kind "cpu"/"cuda", dtype name). The device class (cuda-sm90 …) picks the folder; the
# kind picks the row.
GOLDEN_TOLERANCES: dict[tuple[str, str], GoldenTolerance] = {
    ("cpu", "float32"): GoldenTolerance(
        quantisation=0.5,
        forward_factor=2.0,
        why=(
            "Stored PNG = round(255·x): an identical float rerun is within 0.5/255. A rerun with other "
            "rounding (new torch/BLAS/CPU) is within e_A + e_B ≤ 2·e_A of the baseline's float image, "
            "e_A measured against float64 when the baseline was made (~1e-6 here); + 1 ULP(1.0). Same "
            "machine and versions: measured bit-identical before quantisation."
        ),
    ),
    ("cuda", "float32"): GoldenTolerance(
        quantisation=0.5,
        forward_factor=2.0,
        why="As CPU float32, with TF32 off (restore_global_state); e_A measured on that GPU against float64.",
    ),
    ("cpu", "bfloat16"): GoldenTolerance(
        quantisation=0.5,
        forward_factor=2.0,
        why=(
            "Same derivation; e_A is bfloat16's measured forward error (u = 2^-8), typically 1e-2..1e-1 "
            "on these tiny 2-step pipelines, which dwarfs the quantisation. Not committed: see the report."
        ),
    ),
    ("cpu", "float16"): GoldenTolerance(
        quantisation=0.5,
        forward_factor=2.0,
        why="Same derivation with float16's measured forward error (u = 2^-11).",
    ),
}
for _dt in ("bfloat16", "float16"):
    GOLDEN_TOLERANCES[("cuda", _dt)] = GOLDEN_TOLERANCES[("cpu", _dt)]


def golden_thresholds(kind: str, dtype_name: str, forward_error: float) -> GoldenThresholds:
    """max-abs budget from the table; PSNR and SSIM floors implied by it (see the derivation above)."""
    tol = GOLDEN_TOLERANCES[(kind, dtype_name)]
    top_ulp = float(torch.finfo(FLOAT_DTYPES[dtype_name]).eps)  # spacing at 1.0, the largest pixel
    m = tol.quantisation * GOLDEN_QUANTUM + tol.forward_factor * forward_error + top_ulp
    psnr = -20.0 * math.log10(m)
    c1, c2, n = SSIM_K1**2, SSIM_K2**2, SSIM_WINDOW_N
    ssim = max(0.0, 1 - m * m / c1) * max(0.0, 1 - (n / (n - 1)) * m * m / c2)
    return GoldenThresholds(max_abs=m, psnr=psnr, ssim=ssim)
