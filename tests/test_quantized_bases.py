"""A LoRA on a quantized denoiser, per quantizer (parity/quant/cases.py), against our reference built from
the dequantized base weights (parity/quant/check.py): the unfused base forward and LoRA contribution per
layer, the denoiser output, fuse_lora and the unfuse drift. A case's known findings are strict xfails."""

from __future__ import annotations

import math

import pytest

from parity.checks.cases import targets_for
from parity.errors import LoaderRefused
from parity.lora.synth import write_lora
from parity.quant.cases import QUANT_CASES, QuantCase
from parity.quant.check import QuantReport, QuantRequest, run_quant_check
from parity.quant.registry import get_quantizer
from parity.zoo import build_pipeline, get_family
from tests.support.families import needs

_REPORTS: dict[str, QuantReport | BaseException] = {}


def _params(check: str) -> list:
    out = []
    for case in QUANT_CASES:
        marks = [pytest.mark.xdist_group(f"quant-{case.id}"), needs(case.family)]
        if case.slow:
            marks.append(pytest.mark.slow)
        reason = get_quantizer(case.quantization).unavailable("cpu")
        if reason is not None:
            marks.append(pytest.mark.gpu if "CUDA" in reason else pytest.mark.skip(reason=reason))
        if check in case.known:
            known = case.known[check]
            marks.append(pytest.mark.xfail(reason=known.reason, strict=True, raises=known.raises))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def _report(case: QuantCase, device: str, tmp_path_factory: pytest.TempPathFactory) -> QuantReport:
    """One quantized check per case and worker (the cases' tests share an xdist group)."""
    key = f"{case.id}-{device}"
    if key not in _REPORTS:
        family = get_family(case.family)
        pipe = build_pipeline(family)
        den = family.denoiser
        path = str(tmp_path_factory.mktemp(key) / "lora.safetensors")
        write_lora({den: family.components(pipe)[den]}, {den: targets_for(family, "default")[den]}, path,
                   case.layout, seed=1, rank=4)
        try:
            _REPORTS[key] = run_quant_check(QuantRequest(case.family, (path,), case.quantization, cycles=case.cycles,
                                                         device=device))
        except LoaderRefused as exc:
            _REPORTS[key] = exc
    found = _REPORTS[key]
    if isinstance(found, BaseException):
        raise found
    return found


@pytest.mark.parametrize("case", _params("base-forward"))
def test_quantized_base_forward_is_x_times_our_dequantized_weight(case, device, tmp_path_factory):
    report = _report(case, device, tmp_path_factory)
    assert report.base_forward.layers, "no targeted Linear was checked"
    assert report.base_forward.ok, report.failures


@pytest.mark.parametrize("case", _params("contribution"))
def test_unfused_lora_contribution_on_quantized_layer_matches_reference(case, device, tmp_path_factory):
    report = _report(case, device, tmp_path_factory)
    assert report.contribution.layers and report.contribution.ok, report.failures


@pytest.mark.parametrize("case", _params("output"))
def test_unfused_denoiser_output_matches_float64_forward_of_dequantized_merge(case, device, tmp_path_factory):
    report = _report(case, device, tmp_path_factory)
    out = report.output
    if "skipped" in out:
        assert get_quantizer(case.quantization).activations, out
        return
    assert "error" in out, out
    assert out["error"] <= out["budget"], report.failures


@pytest.mark.parametrize("case", _params("fuse"))
def test_fuse_lora_on_quantized_base_is_within_half_a_requantization_step(case, device, tmp_path_factory):
    report = _report(case, device, tmp_path_factory)
    assert report.fuse in ("requantized", "merged"), report.failures
    assert report.fused.layers and report.fused.ok, report.failures
    assert report.fused.steps <= 0.5 + 1e-3 or report.fuse == "merged", report.fused


@pytest.mark.parametrize("case", _params("unfuse"))
def test_unfuse_lora_drift_on_quantized_base_is_within_its_steps(case, device, tmp_path_factory):
    report = _report(case, device, tmp_path_factory)
    assert len(report.unfuse) == case.cycles, report.failures
    assert all(d.ok and math.isfinite(d.steps) for d in report.unfuse), report.unfuse


def test_user_lora_on_quantized_base(request, device, model_path):
    """`pytest --family F --lora FILE --quantization NAME [--model-path …]`: the user's files on their
    quantized base, the check `lora-parity check --quantization` runs."""
    files = request.config.getoption("--lora")
    quantization = request.config.getoption("--quantization", default=None)
    if not files or quantization is None:
        pytest.skip("give --lora FILE and --quantization NAME to check a LoRA on a quantized base")
    family = (request.config.getoption("--family") or ["zimage"])[0]
    gguf = model_path if quantization == "gguf" else None
    report = run_quant_check(QuantRequest(family, tuple(files), quantization, device=device,
                                          model_path=None if gguf else model_path, gguf=gguf,
                                          allow_pickle=request.config.getoption("--allow-pickle")))
    assert report.ok, "\n".join(report.failures + report.known)
