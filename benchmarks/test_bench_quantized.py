"""Benchmarks on a quantized base (``--quantization NAME``; parity/bench/quantized.py): the group's
base / unfused / fused timed together on the quantized denoiser, the load+quantize, and fuse_lora on the
quantized weights. With ``--quantization`` the float benchmarks are deselected (benchmarks/conftest.py):
``make bench ARGS="-k zimage --quantization torchao-int8wo"`` times these only. Where fuse_lora raises on
the quantizer (GGUF, fp8 layerwise casting) the fused mode and the fuse are skipped with its error.

Without ``--quantization`` only the smoke test runs (`make test`, benchmarks untimed): one quantized group,
torchao-int8wo on the cheapest family, once, and the fused skip on a GGUF subject.
"""

from __future__ import annotations

import pytest

from parity.bench import record as rec
from parity.bench.groups import build_group, time_group
from parity.bench.modes import BENCH_RANK, DENOISER_ONLY, DENOISER_ONLY_SKIP, MODES_BY_NAME, enter, info
from parity.bench.quantized import (build_quantized_subject, fuse, fuse_refusal, load_quantize, unfuse_if_fused)
from parity.bench.run import rounds_for, time_target
from parity.checks.cases import SMOKE_DTYPE, SMOKE_FAMILY, BenchCase, bench_cases
from parity.errors import ParityInputError
from parity.pytest.cases import params
from parity.quant.registry import get_quantizer

# the gate's old env has no quantizer packages (README "Gating an upgrade"): skipped there with the reason
_MISSING = [r for r in (get_quantizer(n).unavailable("cpu") for n in ("torchao-int8wo", "gguf-q8_0")) if r]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING))
from parity.tolerances import dtype_from_name
from parity.zoo import get_family

GROUP_CASES = params(bench_cases({rec.INTERLEAVED: False}))
OPERATION_CASES = params(bench_cases({rec.LOAD_QUANTIZE: False, "fuse_lora": False}))
SMOKE_QUANTIZATIONS = ("torchao-int8wo", "gguf-q8_0")  # one that fuses (requantizes), one whose fuse raises


@pytest.fixture
def quantization(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("--quantization")
    if name is None:  # deselected by benchmarks/conftest.py; here for a run by node id
        pytest.skip("no --quantization given")
    return name


def _group(benchmark, family: str, dtype: str, call: str, quantization: str, request, device, model_path,
           bench_rounds, tmp_path_factory) -> dict:
    size = request.config.getoption("--bench-size")
    if call == rec.PIPELINE and size in DENOISER_ONLY and model_path is None:
        pytest.skip(DENOISER_ONLY_SKIP.format(size=size))
    try:
        subjects = build_group(get_family(family), size, dtype_from_name(dtype), device,
                               str(tmp_path_factory.mktemp(f"qgroup-{family}")), call, model_path=model_path,
                               blocks=request.config.getoption("--bench-blocks"), quantization=quantization)
    except ParityInputError as exc:  # the quantizer cannot run here (its package, or a CUDA device)
        pytest.skip(str(exc))
    robin = time_group(benchmark, subjects, call, rounds_for(subjects[rec.BASE].size, call, bench_rounds))
    assert robin.calls >= 1
    return subjects


@pytest.mark.benchmark
@pytest.mark.parametrize("case", GROUP_CASES)
@pytest.mark.parametrize("call", [rec.FORWARD, rec.PIPELINE])
def test_quantized_modes_timed_together(benchmark, case: BenchCase, call: str, quantization: str, request, device,
                                        model_path, bench_rounds, tmp_path_factory) -> None:
    subjects = _group(benchmark, case.family, case.dtype, call, quantization, request, device, model_path,
                      bench_rounds, tmp_path_factory)
    skipped = subjects[rec.BASE].scratch.get("skipped_modes")
    if skipped:  # timed without it (the record's skipped_modes and the report's heading say why); and here
        import warnings

        warnings.warn(f"{case.family} on {quantization}: " + "; ".join(f"{m} skipped: {w}" for m, w in skipped.items()),
                      stacklevel=1)


@pytest.mark.benchmark
@pytest.mark.parametrize("case", OPERATION_CASES)
def test_quantized_operation_latency(benchmark, case: BenchCase, quantization: str, request, device, model_path,
                                     bench_rounds, tmp_path_factory) -> None:
    size = request.config.getoption("--bench-size")
    directory = str(tmp_path_factory.mktemp(f"qop-{case.family}"))
    family = get_family(case.family)
    try:
        subject = build_quantized_subject(family, size, dtype_from_name(case.dtype), device, directory, quantization,
                                          model_path=model_path, blocks=request.config.getoption("--bench-blocks"))
    except ParityInputError as exc:
        pytest.skip(str(exc))
    rounds = rounds_for(subject.size, rec.OPERATION, bench_rounds)
    if case.name == rec.LOAD_QUANTIZE:
        from parity.bench.modes import build_subject

        float_denoiser = build_subject(family, size, dtype_from_name(case.dtype), device, directory,
                                       model_path=model_path, blocks=request.config.getoption("--bench-blocks"),
                                       snapshot=False).denoiser
        op = load_quantize(subject, float_denoiser, directory)
        record = info(subject, rec.OPERATION, rec.LOAD_QUANTIZE, rank=0, adapters=0)
        time_target(benchmark, record, op.load, subject.device, rounds, op.setup)
        return
    enter(subject, MODES_BY_NAME[rec.unfused_mode(1)])
    refusal = fuse_refusal(subject)
    if refusal is not None:
        pytest.skip(f"fuse_lora raises on the {quantization} denoiser: {refusal}")
    record = info(subject, rec.OPERATION, "fuse_lora", rank=BENCH_RANK, adapters=1)
    time_target(benchmark, record, lambda: fuse(subject), subject.device, rounds, lambda: unfuse_if_fused(subject))


@pytest.mark.benchmark
@pytest.mark.parametrize("name", SMOKE_QUANTIZATIONS)
def test_quantized_group_smoke(benchmark, name: str, request, device, model_path, tmp_path_factory) -> None:
    """The default run's one quantized group (forward, once): torchao-int8wo enters every mode; on a GGUF the
    fused mode is left out with fuse_lora's error, not failed."""
    subjects = _group(benchmark, SMOKE_FAMILY, SMOKE_DTYPE, rec.FORWARD, name, request, device, None, None,
                      tmp_path_factory)
    skipped = subjects[rec.BASE].scratch.get("skipped_modes") or {}
    if name == "torchao-int8wo":
        assert set(subjects) == {rec.BASE, rec.BASE_AGAIN, rec.unfused_mode(1), rec.FUSED}, skipped
    else:
        assert rec.FUSED not in subjects and "size of tensor" in skipped.get(rec.FUSED, ""), skipped
