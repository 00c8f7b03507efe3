"""The merge and unfuse comparisons of one weight, evaluated in one compiled pass (numba).

Why a kernel: a check at full size compares hundreds of millions of elements, and the same formulas as
torch operations (``delta_from_factors`` in parity/reference/variants.py, ``abs_product`` in
parity/reference/merge.py, ``merge_bound``, ``operand_magnitude``, ``report_against_bound`` and
``unfuse_bound`` in parity/tolerances.py)
make some thirty passes over float64 temporaries per block of rows: 12.3 s of a 28 s full-size SD1.5
check whose floor (diffusers' own load + fuse + unfuse) is 6.5 s. Here each element of the fused and
base weights is read once, and the reference δ = Σ f·B@A, P = |f|·|B|@|A|, the bound and the comparison
are formed a row at a time in buffers that stay in cache. The torch formulas remain the specification
this pass is held to, element for element (tests/harness/test_fused_comparison.py); they and this are
the one reference, not two checks: the check runs only this.

Everything is float64; the weights come in as float32 (every model dtype is exact in it). A step is one
adapter's contribution to the weight: a low-rank pair (its B rows, A, f = scale·α/r), or a full
difference (``.diff``/``.diff_b``: δ itself, rank 1 in the bound).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch

from parity.lora.neutral import LoraModule
from parity.reference.merge import Step
from parity.tolerances import (
    TensorReport,
    Tolerance,
    input_cast_is_inexact,
    rounding_factor,
    unit_roundoff,
)

_EXPONENT = np.int64(0x7FF0000000000000)
_MAGNITUDE = np.int64(0x7FFFFFFFFFFFFFFF)  # every bit but the sign
_NAN_ABOVE = np.int64(0x7FF0000000000000)  # |x|'s bits above this are a NaN's
_ROWS_PER_TASK = 8  # rows a thread takes at once, so a step's factors are read once per tile for all of them
_TILE = 2048  # columns of a row formed at once: its buffers and a tile of each A row stay in the L1 cache
CHUNK_ELEMENTS = 1 << 22  # a weight's elements converted to float32 on the host at once (16 MiB)
# compiled once per machine and kept (numba's cache, beside this file or in the user cache); IEEE
# division (x/0 is inf, not ZeroDivisionError)
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}

# The loops are small functions over one tile of one row, each simple enough for LLVM to vectorize
# (written as one loop nest, the pass ran at 6 ns an element, now at about 1.5). Maxima are taken on the
# bits: for values ≥ 0 (errors, ratios, ULPs) the order of the bits as integers is the order of the
# values, with a NaN above inf, as torch's NaN-propagating max; an integer maximum vectorizes, a
# floating one does not.


@numba.njit(inline="always", **_JIT)
def _ulp(mag: float, eps: float, tiny: float) -> float:
    # as parity.tolerances.ulp: the spacing at |x| is |x| with its mantissa cleared, times eps
    m = mag if mag >= tiny else tiny
    u = np.int64(np.float64(m).view(np.int64) & _EXPONENT).view(np.float64) * eps
    return u if mag == mag else mag


@numba.njit(**_JIT)
def _bits_max(values: np.ndarray) -> float:
    """max of values ≥ 0, NaN if any is NaN."""
    bits = values.view(np.int64)
    top = np.int64(0)
    for j in range(bits.shape[0]):
        top = max(top, bits[j] & _MAGNITUDE)
    return np.int64(top).view(np.float64)


@numba.njit(**_JIT)
def _first_at_least(values: np.ndarray, top: float) -> int:
    """The first index holding ``top`` (``_bits_max`` of ``values``), the first NaN if it is NaN."""
    bits = values.view(np.int64)
    nan = top != top
    want = np.float64(top).view(np.int64)
    for j in range(bits.shape[0]):
        b = bits[j] & _MAGNITUDE
        if (nan and b > _NAN_ABOVE) or b == want:
            return j
    return 0


@numba.njit(**_JIT)
def _count_over_one(values: np.ndarray) -> int:
    n = 0
    for j in range(values.shape[0]):
        n += values[j] > 1.0
    return n


@numba.njit(**_JIT)
def _zero(d: np.ndarray, p: np.ndarray) -> None:
    for j in range(d.shape[0]):
        d[j] = 0.0
        p[j] = 0.0


@numba.njit(**_JIT)
def _add_product(d: np.ndarray, p: np.ndarray, a: float, down: np.ndarray) -> None:
    aa = abs(a)
    for j in range(d.shape[0]):
        x = down[j]
        d[j] += a * x
        p[j] += aa * abs(x)


@numba.njit(**_JIT)
def _add_products4(d: np.ndarray, p: np.ndarray, a: np.ndarray, x0: np.ndarray, x1: np.ndarray, x2: np.ndarray,
                   x3: np.ndarray) -> None:
    # four rank terms per pass over the tile: a quarter of the loads and stores of d and p, and the same
    # additions in the same order as four _add_product calls
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    b0, b1, b2, b3 = abs(a0), abs(a1), abs(a2), abs(a3)
    for j in range(d.shape[0]):
        d[j] = d[j] + a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]
        p[j] = p[j] + b0 * abs(x0[j]) + b1 * abs(x1[j]) + b2 * abs(x2[j]) + b3 * abs(x3[j])


@numba.njit(**_JIT)
def _add_abs_products4(p: np.ndarray, a: np.ndarray, x0: np.ndarray, x1: np.ndarray, x2: np.ndarray,
                       x3: np.ndarray) -> None:
    b0, b1, b2, b3 = abs(a[0]), abs(a[1]), abs(a[2]), abs(a[3])
    for j in range(p.shape[0]):
        p[j] = p[j] + b0 * abs(x0[j]) + b1 * abs(x1[j]) + b2 * abs(x2[j]) + b3 * abs(x3[j])


@numba.njit(**_JIT)
def _add_abs_product(p: np.ndarray, a: float, down: np.ndarray) -> None:
    aa = abs(a)
    for j in range(p.shape[0]):
        p[j] += aa * abs(down[j])


@numba.njit(**_JIT)
def _copy_full(d: np.ndarray, p: np.ndarray, full: np.ndarray) -> None:
    for j in range(d.shape[0]):
        d[j] = full[j]
        p[j] = full[j]


@numba.njit(**_JIT)
def _step(i: int, s: int, c0: int, c1: int, kinds: np.ndarray, ranks: np.ndarray, ups: np.ndarray,
          downs: np.ndarray, dfac: np.ndarray, pfac: np.ndarray, fulls: np.ndarray, d: np.ndarray, p: np.ndarray,
          with_delta: bool) -> tuple[float, float]:
    """Tile [c0, c1) of row i of step s: Σ_q B[i,q]·A[q] into ``d`` (when asked), Σ_q |B[i,q]|·|A[q]| into
    ``p``, and the factors that make them δ and P: f = scale·α/r and |scale|·α/r (P = |p·that|)."""
    k = kinds[s]
    if k < 0:  # a full difference: δ itself, P = |δ|
        _copy_full(d, p, fulls[-k - 1, i, c0:c1])
        return 1.0, 1.0
    _zero(d, p)
    rank = ranks[k]
    q = 0
    while q + 4 <= rank:
        a = ups[k, i, q:q + 4]
        x0, x1, x2, x3 = downs[k, q, c0:c1], downs[k, q + 1, c0:c1], downs[k, q + 2, c0:c1], downs[k, q + 3, c0:c1]
        if with_delta:
            _add_products4(d, p, a, x0, x1, x2, x3)
        else:
            _add_abs_products4(p, a, x0, x1, x2, x3)
        q += 4
    for q in range(q, rank):
        if with_delta:
            _add_product(d, p, ups[k, i, q], downs[k, q, c0:c1])
        else:
            _add_abs_product(p, ups[k, i, q], downs[k, q, c0:c1])
    return dfac[k], pfac[k]


@numba.njit(**_JIT)
def _load_base(base: np.ndarray, merged: np.ndarray, running: np.ndarray, bound: np.ndarray) -> None:
    for j in range(base.shape[0]):
        x = np.float64(base[j])
        merged[j] = x
        running[j] = abs(x)
        bound[j] = 0.0


@numba.njit(**_JIT)
def _accumulate(d: np.ndarray, p: np.ndarray, df: float, pf: float, rf: float, linear: float, half_result: float,
                half_delta: float, eps: float, tiny: float, merged: np.ndarray, running: np.ndarray,
                bound: np.ndarray) -> None:
    """One step merged: base + δ₁ + δ₂ …, |W| + Σ P, and the bound's terms, as merge_bound."""
    for j in range(d.shape[0]):
        pp = abs(p[j] * pf)
        merged[j] += d[j] * df
        r = running[j] + pp
        running[j] = r
        b = bound[j]
        if half_result != 0.0:
            b += half_result * _ulp(r * rf, eps, tiny)
        if half_delta != 0.0:
            b += half_delta * _ulp(pp * rf, eps, tiny)
        bound[j] = b + linear * pp


@numba.njit(**_JIT)
def _compare(actual: np.ndarray, merged: np.ndarray, running: np.ndarray, bound: np.ndarray, eps: float,
             tiny: float, err: np.ndarray, ratio: np.ndarray, ulps: np.ndarray) -> None:
    """As report_against_bound: a non-finite fused value is infinitely wrong; a zero bound allows nothing."""
    for j in range(actual.shape[0]):
        e = abs(np.float64(actual[j]) - merged[j])
        e = e if e <= 1.7976931348623157e308 else np.inf
        b = bound[j]
        ratio[j] = e / b if b > 0.0 else (np.inf if e > 0.0 else 0.0)
        ulps[j] = e / _ulp(running[j], eps, tiny)
        err[j] = e


@numba.njit(inline="always", **_JIT)
def _nan_max(a: float, b: float) -> float:
    return a if a != a else (b if b != b else max(a, b))


@numba.njit(parallel=True, **_JIT)
def _merge_rows(actual, base, kinds, ranks, ups, downs, dfac, pfac, fulls, rfac, linear,  # noqa: ANN001
                half_result, half_delta, eps, tiny, out_f, out_i):  # noqa: ANN001
    """Per row: max err, max ULPs, max bound ratio (NaN counts as the largest) and its column, elements
    over the bound. ``out_f`` (rows, 3), ``out_i`` (rows, 2)."""
    rows, cols = actual.shape
    tasks = (rows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for t in numba.prange(tasks):
        d, p, merged, running = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
        bound, err, ratio, ulps = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
        r0, r1 = t * _ROWS_PER_TASK, min(rows, (t + 1) * _ROWS_PER_TASK)
        for i in range(r0, r1):
            out_f[i, 0], out_f[i, 1], out_f[i, 2] = 0.0, 0.0, -1.0
            out_i[i, 0], out_i[i, 1] = 0, 0
        for c0 in range(0, cols, _TILE):
            c1 = min(cols, c0 + _TILE)
            n = c1 - c0
            for i in range(r0, r1):
                _load_base(base[i, c0:c1], merged[:n], running[:n], bound[:n])
                for s in range(kinds.shape[0]):
                    df, pf = _step(i, s, c0, c1, kinds, ranks, ups, downs, dfac, pfac, fulls, d[:n], p[:n], True)
                    _accumulate(d[:n], p[:n], df, pf, rfac[s], linear[s], half_result, half_delta, eps, tiny,
                                merged[:n], running[:n], bound[:n])
                _compare(actual[i, c0:c1], merged[:n], running[:n], bound[:n], eps, tiny, err[:n], ratio[:n],
                         ulps[:n])
                out_f[i, 0] = max(out_f[i, 0], _bits_max(err[:n]))
                out_f[i, 1] = _nan_max(out_f[i, 1], _bits_max(ulps[:n]))
                worst = out_f[i, 2]
                if worst == worst:  # a NaN ratio already found in this row stays its worst
                    top = _bits_max(ratio[:n])
                    if top != top or top > worst:
                        out_f[i, 2] = top
                        out_i[i, 0] = c0 + _first_at_least(ratio[:n], top)
                out_i[i, 1] += _count_over_one(ratio[:n])


@numba.njit(**_JIT)
def _drift(now: np.ndarray, base: np.ndarray, mag: np.ndarray, recomputed: np.ndarray, rfac_max: float, coef: float,
           cycles: float, eps: float, tiny: float, ulps: np.ndarray, base_ulps: np.ndarray, ratio: np.ndarray) -> int:
    """|now − base| in ULPs at |W| + Σ P, in ULPs of W, and over ``unfuse_bound``; how many moved."""
    moved = 0
    for j in range(now.shape[0]):
        b = np.float64(base[j])
        drift = abs(np.float64(now[j]) - b)
        ulps[j] = drift / _ulp(mag[j], eps, tiny)
        base_ulps[j] = drift / _ulp(abs(b), eps, tiny)
        ratio[j] = drift / (cycles * (coef * _ulp(mag[j] * rfac_max, eps, tiny) + recomputed[j]))
        moved += drift > 0.0
    return moved


@numba.njit(**_JIT)
def _add_scaled_abs(mag: np.ndarray, recomputed: np.ndarray, p: np.ndarray, pf: float, rf: float, linear: float,
                    half_delta: float, eps: float, tiny: float) -> None:
    """One step's P into |W| + Σ P, and its two computations' difference into ``recomputed``, as
    recompute_bound: linear·P + half_delta·ulp(P·rf) with both factors already doubled."""
    for j in range(mag.shape[0]):
        pp = abs(p[j] * pf)
        mag[j] += pp
        r = recomputed[j] + linear * pp
        if half_delta != 0.0:
            r += half_delta * _ulp(pp * rf, eps, tiny)
        recomputed[j] = r


@numba.njit(parallel=True, **_JIT)
def _unfuse_rows(now, base, kinds, ranks, ups, downs, dfac, pfac, fulls, rfac_max, coef, cycles,  # noqa: ANN001
                 rfac, linear, half_delta, eps, tiny, out_f, out_i):  # noqa: ANN001
    """Per row: max ULPs at |W| + Σ P, max ULPs of W, max drift/bound, elements not bit-exact."""
    rows, cols = now.shape
    tasks = (rows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for t in numba.prange(tasks):
        d, p, mag, recomputed = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
        ulps, base_ulps, ratio = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
        r0, r1 = t * _ROWS_PER_TASK, min(rows, (t + 1) * _ROWS_PER_TASK)
        for i in range(r0, r1):
            out_f[i, 0], out_f[i, 1], out_f[i, 2] = 0.0, 0.0, 0.0
            out_i[i, 0] = 0
        for c0 in range(0, cols, _TILE):
            c1 = min(cols, c0 + _TILE)
            n = c1 - c0
            for i in range(r0, r1):
                _load_base(base[i, c0:c1], d[:n], mag[:n], recomputed[:n])  # d: scratch; mag = |W|, 0
                for s in range(kinds.shape[0]):
                    _, pf = _step(i, s, c0, c1, kinds, ranks, ups, downs, dfac, pfac, fulls, d[:n], p[:n], False)
                    _add_scaled_abs(mag[:n], recomputed[:n], p[:n], pf, rfac[s], linear[s], half_delta, eps, tiny)
                out_i[i, 0] += _drift(now[i, c0:c1], base[i, c0:c1], mag[:n], recomputed[:n], rfac_max, coef, cycles,
                                      eps, tiny, ulps[:n], base_ulps[:n], ratio[:n])
                out_f[i, 0] = _nan_max(out_f[i, 0], _bits_max(ulps[:n]))
                out_f[i, 1] = _nan_max(out_f[i, 1], _bits_max(base_ulps[:n]))
                out_f[i, 2] = _nan_max(out_f[i, 2], _bits_max(ratio[:n]))


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """The kernels run on as many threads as torch does, and leave torch's count as it was. numba's
    OpenMP layer shares torch's OpenMP runtime and sets its thread count to NUMBA_NUM_THREADS (every
    core) on each parallel launch: after the first comparison a run started with OMP_NUM_THREADS=1 ran
    torch on two threads, so PEFT computed a LoCon conv's delta at the merge on one thread (ATen's own
    1x1 convolution, the input batch under 16) and at the unmerge on two (oneDNN), in another order
    (issue 30: an unfuse verdict that changed with the thread count)."""
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    """A weight as (output rows, everything else): a Linear's as it is, a conv's flattened, a bias a column."""
    return t.reshape(t.shape[0], -1) if t.ndim != 1 else t.reshape(-1, 1)


class _Packed:
    """The steps of one weight as the kernels' arrays: A, the ranks and factors once per weight, B's rows
    and a full difference's rows per block of rows (a difference in float64 is 8 bytes per element)."""

    def __init__(self, name: str, steps: Sequence[Step], shape: tuple[int, int]) -> None:
        pairs = [s for s in steps if isinstance(s.module, LoraModule)]
        self.fulls_steps = [s for s in steps if not isinstance(s.module, LoraModule)]
        self.shape = shape
        r_max = max((s.rank for s in pairs), default=1)
        self.ups: list[torch.Tensor] = []  # each pair's B as (out, r)
        self.r_max = r_max
        self.downs = np.zeros((len(pairs), r_max, shape[1]))
        self.ranks = np.array([s.rank for s in pairs] or [0], dtype=np.int64)
        self.dfac = np.array([s.scale * s.module.effective_alpha / s.module.rank for s in pairs] or [0.0])
        self.pfac = np.array([abs(s.scale) * s.module.effective_alpha / s.module.rank for s in pairs] or [0.0])
        for k, s in enumerate(pairs):
            m = s.module
            if m.is_conv and tuple(m.up.shape[2:]) != (1, 1):
                raise ValueError(f"{m.component}.{m.module}: LoRA up must be 1x1 for conv, got {tuple(m.up.shape)}")
            up, down = m.up.reshape(m.up.shape[0], -1), m.down.reshape(m.rank, -1)
            if (up.shape[0], down.shape[1]) != shape:
                raise ValueError(f"{name}: delta {(up.shape[0], down.shape[1])} vs {shape}")
            self.ups.append(up)
            self.downs[k, : m.rank] = down.double().numpy()
        self.full_rows: list[torch.Tensor] = []  # each full difference as (out, everything else)
        for s in self.fulls_steps:
            t = _as_rows(getattr(s.module, "diff" if s.param == "weight" else "bias"))
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}: delta {tuple(t.shape)} vs {shape}")
            self.full_rows.append(t)
        index = {id(s): k for k, s in enumerate(pairs)} | {id(s): -1 - f for f, s in enumerate(self.fulls_steps)}
        self.kinds = np.array([index[id(s)] for s in steps], dtype=np.int64)

    def block(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(B's rows of every pair, δ's rows of every full difference) for ``rows``, float64."""
        n_rows = len(range(*rows.indices(self.shape[0])))
        ups = np.zeros((len(self.ups), n_rows, self.r_max))
        for k, up in enumerate(self.ups):
            ups[k, :, : up.shape[1]] = up[rows].double().numpy()
        fulls = np.zeros((len(self.full_rows) or 1, n_rows if self.full_rows else 1,
                          self.shape[1] if self.full_rows else 1))
        for f, (s, t) in enumerate(zip(self.fulls_steps, self.full_rows)):
            fulls[f] = (s.scale * t[rows].double()).numpy()
        return ups, fulls


def _float32_rows(t: torch.Tensor, rows: slice) -> np.ndarray:
    # every model dtype (float32, float16, bfloat16) is exact in float32: no rounding here
    return _as_rows(t)[rows].detach().to("cpu", torch.float32).contiguous().numpy()


def row_blocks(n_rows: int, per_row: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(1, per_row))
    return [slice(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]


def _kernel_inputs(name: str, steps: Sequence[Step], shape: tuple[int, int], weight: torch.Tensor,
                   base: torch.Tensor) -> Iterator[tuple[slice, tuple]]:
    """Per block of rows: the rows, and the arguments both kernels take first (the weight and its base
    as float32, then the steps' arrays)."""
    packed = _Packed(name, steps, shape)
    for rows in row_blocks(shape[0], shape[1]):
        ups, fulls = packed.block(rows)
        yield rows, (_float32_rows(weight, rows), _float32_rows(base, rows), packed.kinds, packed.ranks, ups,
                     packed.downs, packed.dfac, packed.pfac, fulls)


def _first_max(values: np.ndarray) -> int:
    """The first NaN, else the first maximum: torch.argmax's choice."""
    nan = np.flatnonzero(np.isnan(values))
    return int(nan[0]) if nan.size else int(np.argmax(values))


def _nanmax(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0  # numpy's max propagates NaN, as torch's


def merge_report(name: str, actual: torch.Tensor, base: torch.Tensor, steps: Sequence[Step], dtype: torch.dtype,
                 tol: Tolerance) -> TensorReport:
    """``actual`` (the fused weight) against base + Σ δ, element-wise within the merge bound: the report
    ``report_against_bound(name, actual, merged, merge_bound, dtype, operand_magnitude)`` gives."""
    shape = tuple(_as_rows(base).shape)
    if not base.numel():
        return TensorReport(name, 0, 0.0, 0.0, 0.0, 0, ())
    u = unit_roundoff(dtype)
    u_acc = unit_roundoff(torch.float32) if tol.accumulation == "fp32" else u
    rfac = np.array([rounding_factor(dtype, s.rank) for s in steps])
    linear = np.array([(s.rank + 2) * u_acc + (2 * u + u * u if tol.input_cast
                                                and input_cast_is_inexact(s.file_dtype, dtype) else 0.0)
                       for s in steps])
    info = torch.finfo(dtype)
    out_f, out_i = np.empty((shape[0], 3)), np.empty((shape[0], 2), dtype=np.int64)
    with _torch_threads_kept():
        for rows, inputs in _kernel_inputs(name, steps, shape, actual, base):
            _merge_rows(*inputs, rfac, linear, tol.result_roundings * 0.5, tol.delta_roundings * 0.5, info.eps,
                        info.tiny, out_f[rows], out_i[rows])
    row = _first_max(out_f[:, 2])
    flat = row * shape[1] + int(out_i[row, 0])
    worst = tuple(int(i) for i in np.unravel_index(flat, tuple(base.shape)))
    return TensorReport(name=name, numel=base.numel(), max_abs=_nanmax(out_f[:, 0]), max_ulps=_nanmax(out_f[:, 1]),
                        max_bound_ratio=float(out_f[row, 2]), n_over=int(out_i[:, 1].sum()), worst_index=worst)


@dataclass(frozen=True)
class UnfuseDrift:
    """One weight after fuse/unfuse cycles against its base: what ``measure_unfuse`` reports of it."""

    max_ulps: float  # at |W| + Σ P
    max_base_ulps: float  # in ULPs of W
    max_bound_ratio: float
    n_changed: int
    numel: int


def unfuse_drift(name: str, now: torch.Tensor, base: torch.Tensor, steps: Sequence[Step], dtype: torch.dtype,
                 tol: Tolerance, cycles: int) -> UnfuseDrift:
    """|now − base| against ``unfuse_bound``, in ULPs at the operands' magnitude and at W's own."""
    shape = tuple(_as_rows(base).shape)
    if not base.numel():
        return UnfuseDrift(0.0, 0.0, 0.0, 0, 0)
    rank = max(s.rank for s in steps)
    coef = len(steps) * tol.result_roundings * 0.5
    # recompute_bound's terms per step, doubled: two computations of δ̂, each within one's error
    u_acc = unit_roundoff(torch.float32) if tol.accumulation == "fp32" else unit_roundoff(dtype)
    twice = 2.0 if tol.delta_recomputed else 0.0
    rfac = np.array([rounding_factor(dtype, s.rank) for s in steps])
    linear = np.array([twice * (s.rank + 2) * u_acc for s in steps])
    info = torch.finfo(dtype)
    out_f, out_i = np.empty((shape[0], 3)), np.empty((shape[0], 1), dtype=np.int64)
    with _torch_threads_kept():
        for rows, inputs in _kernel_inputs(name, steps, shape, now, base):
            _unfuse_rows(*inputs, rounding_factor(dtype, rank), coef, float(cycles), rfac, linear,
                         twice * tol.delta_roundings * 0.5, info.eps, info.tiny, out_f[rows], out_i[rows])
    return UnfuseDrift(_nanmax(out_f[:, 0]), _nanmax(out_f[:, 1]), _nanmax(out_f[:, 2]), int(out_i[:, 0].sum()),
                       base.numel())
