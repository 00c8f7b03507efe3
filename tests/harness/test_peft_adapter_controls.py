"""Negative controls for PEFT adapter folders (tests/test_peft_adapters.py): the scale comparison fails
on a reader that ignores adapter_config.json's alpha; a config whose rank is not the tensors', or no
config at all, is one line of bad input naming the file and key (exit 2), never a guess."""

from __future__ import annotations

import json

from parity.cli import main
from parity.lora.peftadapter import AdapterConfig
from parity.lora.reader import read_lora
from tests.support.cli import assert_one_line_error
from tests.support.peft_adapters import peft_adapter, peft_scales, scale_mismatches, scales_of
from tests.support.trainer_common import tiny_components

PATTERNS = dict(rank_pattern={"attn2.to_q": 2}, alpha_pattern={r"down_blocks\.1\..*to_k": 8.0})


def test_control_a_reader_ignoring_the_configs_alpha_fails_the_scale_comparison(tmp_path, monkeypatch):
    """α = r, as diffusers' load_lora_adapter loads such a file: every module's scale is 1, not PEFT's."""
    folder = peft_adapter(tmp_path / "unet_adapter", **PATTERNS)
    monkeypatch.setattr(AdapterConfig, "stored_alpha", lambda self, module: float(self.rank_of(module)[0]))

    wrong = scale_mismatches(scales_of(read_lora(folder, tiny_components("sd15"))), peft_scales(folder))
    # every module but the four attn2.to_q, whose rank_pattern 2 meets lora_alpha 2 (α = r by chance)
    assert len(wrong) == 28 and not any(".attn2.to_q:" in w for w in wrong), wrong


def test_control_a_reader_ignoring_rslora_fails_the_scale_comparison(tmp_path, monkeypatch):
    folder = peft_adapter(tmp_path / "rslora", r=4, lora_alpha=6.0, use_rslora=True)
    monkeypatch.setattr(AdapterConfig, "stored_alpha", lambda self, module: self.alpha_of(module))

    wrong = scale_mismatches(scales_of(read_lora(folder, tiny_components("sd15"))), peft_scales(folder))
    assert len(wrong) == 32 and "1.5 vs PEFT's 3.0" in wrong[0], wrong


def test_control_a_config_rank_that_is_not_the_tensors_is_bad_input(tmp_path, capsys):
    folder = peft_adapter(tmp_path / "unet_adapter", **PATTERNS)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["rank_pattern"] = {}  # attn2.to_q's tensors stay at rank 2, the config now says r = 4
    (folder / "adapter_config.json").write_text(json.dumps(config))

    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(folder)])
    assert_one_line_error(capsys, code, "adapter_model.safetensors [key base_model.model.", "attn2.to_q.lora_A.weight",
                          "has rank 2, but adapter_config.json gives", "rank 4 (r)")


def test_control_a_peft_file_without_its_config_is_bad_input_naming_it(tmp_path, capsys):
    folder = peft_adapter(tmp_path / "unet_adapter")
    (folder / "adapter_config.json").unlink()

    path = folder / "adapter_model.safetensors"
    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(path)])
    assert_one_line_error(capsys, code, "adapter_model.safetensors:", "keeps its rank and alpha in the "
                          "adapter_config.json beside it, and there is none in")


def test_control_a_folder_without_an_adapter_file_is_bad_input(tmp_path, capsys):
    folder = peft_adapter(tmp_path / "unet_adapter")
    (folder / "adapter_model.safetensors").unlink()

    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(folder)])
    assert_one_line_error(capsys, code, "unet_adapter: is a directory without adapter_model.safetensors")


def test_control_an_adapter_made_on_another_model_names_a_key(tmp_path, capsys):
    """A FLUX.1 transformer's adapter checked against SD1.5: no component's module tree fits its keys."""
    folder = peft_adapter(tmp_path / "flux_adapter", family="flux", component="transformer")

    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(folder)])
    assert_one_line_error(capsys, code, "adapter_model.safetensors [key base_model.model.", "match")


def test_the_peft_layout_writer_round_trips_rank_and_alpha_per_module(tmp_path):
    """The registry's writer (layouts.save_lora) stores mixed ranks and alphas as PEFT does, by pattern,
    and the reader gives every module back bit-exact; a two-component adapter has no PEFT spelling."""
    import pytest
    import torch

    from parity.lora.layouts import save_lora
    from parity.lora.synth import mixed_rank, synth_lora

    sd15 = tiny_components("sd15")
    unet_only = synth_lora({"unet": sd15["unet"]}, {"unet": ("to_q", "to_out.0", "proj_in")}, seed=5,
                           rank=mixed_rank(2, 6), alpha=lambda r: float(r) / 2 + 1)
    path = save_lora(unet_only, tmp_path / "adapter_model.safetensors", "peft", sd15)
    back = read_lora(path, sd15)

    assert back.layout == "peft" and set(back.modules) == set(unet_only.modules)
    for key, m in unet_only.modules.items():
        got = back.modules[key]
        assert torch.equal(got.down, m.down) and torch.equal(got.up, m.up)
        assert got.effective_alpha == m.effective_alpha
    both = synth_lora(sd15, {"unet": ("to_q",), "text_encoder": ("q_proj",)}, seed=5)
    with pytest.raises(ValueError, match="one model's modules"):
        save_lora(both, tmp_path / "both.safetensors", "peft", sd15)


def test_control_an_adapter_whose_keys_fit_two_components_without_a_base_class_is_refused(tmp_path, capsys):
    folder = peft_adapter(tmp_path / "te2_adapter", family="sdxl", component="text_encoder_2")
    config = json.loads((folder / "adapter_config.json").read_text())
    del config["auto_mapping"]
    (folder / "adapter_config.json").write_text(json.dumps(config))

    code = main(["check", "--family", "sdxl", "--dtype", "float32", "--lora", str(folder)])
    assert_one_line_error(capsys, code, "adapter_model.safetensors [key base_model.model.",
                          "fit text_encoder and text_encoder_2 alike", "does not say which model")
