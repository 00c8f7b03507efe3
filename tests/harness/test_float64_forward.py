"""The float64 forward computed module by module on a float32 pipeline is bit for bit the forward of a
float64 pipeline, for every family with a LoRA loaded, and leaves the float32 weights untouched; the
control: the same forward without it is float32, and differs."""

from __future__ import annotations

import os

import pytest
import torch

from parity.checks.cases import family_cases
from parity.checks.unfused_state import denoiser_output
from parity.lora.synth import write_lora
from parity.pytest.cases import family_params
from parity.zoo import FAMILIES, build_pipeline


@pytest.mark.parametrize("family", family_params(family_cases()))
def test_streamed_float64_forward_equals_a_float64_pipeline(family, tmp_path):
    fam = FAMILIES[family]
    float32 = build_pipeline(fam)
    path = write_lora(fam.components(float32), fam.default_targets, os.path.join(tmp_path, "a.safetensors"),
                      seed=1, rank=4, alpha=2.0)
    float32.load_lora_weights(path, adapter_name="a")
    float64 = build_pipeline(fam, dtype=torch.float64)
    float64.load_lora_weights(path, adapter_name="a")
    weights = {k: v.clone() for k, v in getattr(float32, fam.denoiser).state_dict().items()}

    streamed = denoiser_output(fam, float32, float64=True)

    assert streamed.dtype == torch.float64
    assert torch.equal(streamed, denoiser_output(fam, float64))
    after = getattr(float32, fam.denoiser).state_dict()
    assert all(torch.equal(weights[k], after[k]) and after[k].dtype == weights[k].dtype for k in weights)
    plain = denoiser_output(fam, float32)
    assert plain.dtype == torch.float32 and not torch.equal(plain.double(), streamed)
