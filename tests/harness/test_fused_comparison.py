"""The one-pass comparison (parity/fused_comparison.py) must report exactly what the torch formulas
of the reference and the bounds report: the merge's report field for field, the unfuse drift's maxima
and counts. The cases mix what real files hold: several adapters on one weight with other ranks and
alphas and factors in bfloat16, conv kernels, a full difference and a bias, and the values that make
the arithmetic's edge cases (zeros, subnormals, binade edges, NaN and inf in the fused weight)."""

from __future__ import annotations

import math

import pytest
import torch

from parity.fused_comparison import merge_report, unfuse_drift
from parity.lora.neutral import DiffModule, LoraFile, LoraModule
from parity.reference.merge import Step, reference_merge
from parity.tolerances import (
    FLOAT_DTYPES,
    merge_bound,
    operand_magnitude,
    report_against_bound,
    tolerance,
    ulp,
    unfuse_bound,
)

SHAPES = {"linear": (37, 53), "conv": (16, 8, 3, 3), "bias": (29,)}
SCALES = (0.7, -1.3, 0.5)


def case(shape_name: str, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[shape_name]
    base = (torch.randn(shape, generator=g) * 0.1).to(dtype)
    flat = base.view(-1)
    flat[:3] = 0.0
    flat[3] = torch.finfo(dtype).tiny / 4  # subnormal
    flat[4] = 2.0**-6  # a binade edge
    if shape_name == "bias":
        modules = [DiffModule("c", "m", bias=torch.randn(shape, generator=g) * 1e-3)]
    else:
        rows, rest = shape[0], shape[1:]
        kernel = (1, 1) if shape_name == "conv" else ()

        def pair(rank: int, alpha: float | None, factors: torch.dtype) -> LoraModule:
            down = torch.randn((rank, *rest), generator=g).to(factors)
            up = (torch.randn((rows, rank, *kernel), generator=g) * 0.01).to(factors)
            return LoraModule("c", "m", down, up, alpha)

        modules = [pair(4, 3.0, torch.bfloat16), pair(7, None, torch.float32)]
        if shape_name == "linear":
            modules.append(DiffModule("c", "m", diff=torch.randn(shape, generator=g) * 1e-3))
    param = "bias" if shape_name == "bias" else "weight"
    files = [LoraFile({("c", "m"): m}, "x") for m in modules]
    key = "m.bias" if param == "bias" else "m.weight"
    refs = reference_merge({"c": {key: base}}, list(zip(files, SCALES)), 0.9)
    steps = [Step(m, w * 0.9, param) for m, w in zip(modules, SCALES)]
    return base, refs[next(iter(refs))], steps


def close(a: float, b: float) -> bool:
    # the bound's sums may round once differently (torch fuses a multiply-add, the kernel does not)
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))


@pytest.mark.parametrize("dtype_name", list(FLOAT_DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("seed", [0, 1])
def test_merge_report_is_the_torch_formulas_report(dtype_name, shape_name, seed):
    dtype = FLOAT_DTYPES[dtype_name]
    base, ref, steps = case(shape_name, dtype, seed)
    actual = ref.merged.to(dtype)
    flat = actual.view(-1)
    flat[5] = flat[5] * 2 + 0.01  # far over the bound
    flat[6] = (ref.merged.view(-1)[6] + 0.9 * ulp(operand_magnitude(ref.steps, ref.base), dtype).view(-1)[6]).to(dtype)
    if seed == 1:
        flat[8], flat[9] = math.nan, -math.inf
    tol = tolerance("merge", "cpu", dtype)
    bound, magnitude = merge_bound(ref.steps, ref.base, dtype, tol), operand_magnitude(ref.steps, ref.base)
    want = report_against_bound(ref.key, actual, ref.merged, bound, dtype, magnitude)

    got = merge_report(ref.key, actual, base, steps, dtype, tol)

    assert (got.name, got.numel, got.n_over, got.worst_index) == (want.name, want.numel, want.n_over, want.worst_index)
    assert close(got.max_abs, want.max_abs) and close(got.max_ulps, want.max_ulps)
    assert close(got.max_bound_ratio, want.max_bound_ratio)
    assert got.n_over >= 1


@pytest.mark.parametrize("dtype_name", list(FLOAT_DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_unfuse_drift_is_the_torch_formulas_drift(dtype_name, shape_name):
    dtype = FLOAT_DTYPES[dtype_name]
    base, ref, steps = case(shape_name, dtype, 0)
    now = base.clone()
    now.view(-1)[3:20] = (now.view(-1)[3:20].double() * (1 + 2e-3)).to(dtype)
    tol = tolerance("unfuse", "cpu", dtype)
    magnitude = operand_magnitude(ref.steps, ref.base)
    drift = (now.double() - ref.base).abs()
    bound = unfuse_bound(ref.steps, ref.base, dtype, tol, 3, magnitude)
    want = (float((drift / ulp(magnitude, dtype)).max()), float((drift / ulp(base, dtype)).max()),
            float((drift / bound).max()), int((drift > 0).sum()))

    got = unfuse_drift(ref.key, now, base, steps, dtype, tol, 3)

    assert got.n_changed == want[3] > 0 and got.numel == base.numel()
    assert all(close(a, b) for a, b in zip((got.max_ulps, got.max_base_ulps, got.max_bound_ratio), want[:3]))


# numba's OpenMP layer shares torch's OpenMP runtime and, when its pool starts (the first parallel
# launch of a process), sets the thread count to every core: each run below is a fresh process started
# as the user started theirs, with OMP_NUM_THREADS=1.
_GUARDED = """
import torch
from parity.fused_comparison import merge_report
from parity.lora.neutral import LoraModule
from parity.reference.merge import Step
from parity.tolerances import tolerance
base = torch.randn(16, 8, 3, 3)
module = LoraModule("c", "m", torch.randn(4, 8, 3, 3), torch.randn(16, 4, 1, 1) * 0.01, None)
merge_report("m.weight", base, base, [Step(module, 1.0, "weight")], torch.float32, tolerance("merge", "cpu", torch.float32))
"""
_UNGUARDED = """
import numba, numpy as np
@numba.njit(parallel=True)
def total(a):
    s = 0.0
    for i in numba.prange(a.size):
        s += a[i]
    return s
total(np.ones(64))
if numba.threading_layer() != "omp" or numba.config.NUMBA_NUM_THREADS < 2:
    print("skip:", numba.threading_layer(), numba.config.NUMBA_NUM_THREADS)
"""


def _threads_after(launch: str) -> str:
    """torch's thread count after ``launch`` ran in a fresh process started with OMP_NUM_THREADS=1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    code = f"import torch\n{launch}\nprint(torch.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_comparison_leaves_torchs_thread_count_as_it_was():
    """A check started on one thread ran PEFT's unmerge on two after its first comparison (issue 30)."""
    assert _threads_after(_GUARDED).split()[-1] == "1"


def test_control_an_unguarded_parallel_launch_moves_torchs_thread_count():
    """The control: the same kind of kernel launched without the guard does change it, where numba runs
    on OpenMP with more than one thread; so the test above can fail."""
    import numba

    out = _threads_after(_UNGUARDED)
    if out.startswith("skip:"):
        pytest.skip(f"numba runs on {out.split()[1]} with {out.split()[2]} threads")
    assert out.split()[-1] == str(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("dtype_name", list(FLOAT_DTYPES))
def test_unfuse_bound_rejects_a_drift_just_beyond_it(dtype_name):
    """The recompute term widened the unfuse bound by a derived amount, not to anything: a drift of 1.5x
    the bound at one element fails, 0.5x passes. The kernel reads the weight as float32, which rounds
    the drift by at most half an ULP of the weight, and the bound is at least one: neither side moves
    across it."""
    dtype = FLOAT_DTYPES[dtype_name]
    base, ref, steps = case("conv", dtype, 0)
    tol = tolerance("unfuse", "cpu", dtype)
    bound = unfuse_bound(ref.steps, ref.base, dtype, tol, 1)
    i = 40  # an ordinary element, away from the zeros and the subnormal at the start
    for factor, fails in ((1.5, True), (0.5, False)):
        now = base.double().clone()
        now.view(-1)[i] += factor * bound.view(-1)[i]
        # kept in float64 where the model dtype cannot hold base + that: the kernel reads any float tensor
        got = unfuse_drift(ref.key, now, base, steps, dtype, tol, 1)
        assert (got.max_bound_ratio > 1) == fails, (factor, got.max_bound_ratio)
