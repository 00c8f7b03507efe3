"""Negative controls for parity/lora/expertguess.py: names and metadata that mention high/low noise
(or only look like it) without saying which expert a file is for must give None."""

from __future__ import annotations

import pytest

from parity.lora.expertguess import guess_expert


@pytest.mark.parametrize("name", [
    "my_lowres_lora.safetensors", "highlights_v2.safetensors", "low_light_wan.safetensors",
    "noise_high.safetensors", "high_noise_model_v2_extra_low.safetensors.bak", "wan_high_noiseless.safetensors",
    "lownoise.safetensors", "/data/high_noise/lora.safetensors",
])
def test_names_that_do_not_say_an_expert(name):
    assert guess_expert(name, {}) is None


@pytest.mark.parametrize("metadata", [
    {"modelspec.timestep_range": "0,1000"},  # the whole range: both experts
    {"modelspec.timestep_range": "500,950"},  # straddles the boundary
    {"modelspec.timestep_range": "1000,875"},  # reversed: not a range
    {"modelspec.timestep_range": "high"},
    {"ss_sd_model_name": "wan2.2_t2v_low_noise_14B_fp16.safetensors"},  # may be a two-expert run
    {"ss_sd_model_name": "wan2.1_t2v_14B_bf16.safetensors"},
    {"ss_sd_model_name": "highnoise_finetune.safetensors"},
    {"ss_output_name": "my_high_noise_run", "ss_training_comment": "low noise"},  # fields no trainer uses for it
])
def test_metadata_that_does_not_say_an_expert(metadata):
    assert guess_expert("lora.safetensors", metadata) is None


def test_a_positive_next_to_each_control():
    """The controls fail for the right reason: one edit away, each rule does fire."""
    assert guess_expert("my_lora_low_noise.safetensors", {})[0] == "low"
    assert guess_expert("lora.safetensors", {"modelspec.timestep_range": "875,1000"})[0] == "high"
    assert guess_expert("lora.safetensors", {"ss_sd_model_name": "wan2.2_t2v_high_noise_14B_fp16.safetensors"})[0] == "high"
