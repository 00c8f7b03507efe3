"""A model folder whose components do not fit each other is bad input: one line naming the folder and
the two sizes, exit 2, for `check` and `hotswap` alike (before, hotswap died in a forward with a torch
traceback). The folder is the tiny sd15 pipeline saved with a text encoder 8 wider than the UNet's
cross-attention."""

from __future__ import annotations

import json

import pytest

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from parity.zoo.loading import size_mismatch
from parity.zoo.sd15 import TEXT_DIM, tiny_clip_text
from parity.zoo.weights import fill_deterministic
from tests.support.cli import assert_one_line_error

WIDER = TEXT_DIM + 8


@pytest.fixture(scope="module")
def misfit(tmp_path_factory):
    """(folder, LoRA file): the LoRA fits the UNet, the folder's text encoder does not fit the UNet."""
    root = tmp_path_factory.mktemp("misfit")
    pipe = build_pipeline("sd15")
    lora = write_lora(get_family("sd15").components(pipe), {"unet": ("to_q",)}, root / "unet.safetensors")
    pipe.text_encoder = fill_deterministic(tiny_clip_text(hidden=WIDER), 0, "misfit/text_encoder")
    pipe.save_pretrained(root / "model")
    return root / "model", lora


NEEDLES = (f"text_encoder hidden_size is {WIDER} but unet cross_attention_dim is {TEXT_DIM}",
           "components do not fit")


def test_check_refuses_a_folder_whose_text_encoder_does_not_fit_the_unet(misfit, capsys):
    folder, lora = misfit
    code = main(["check", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora), "-q"])
    assert_one_line_error(capsys, code, str(folder), *NEEDLES)


def test_hotswap_refuses_it_with_the_same_line_not_a_traceback(misfit, capsys):
    folder, lora = misfit
    code = main(["hotswap", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora),
                 "--lora", str(lora), "-q"])
    assert_one_line_error(capsys, code, str(folder), *NEEDLES)


@pytest.fixture(scope="module")
def config_misfit(tmp_path_factory):
    """(folder, LoRA file): the folder's text_encoder/config.json says 8 wider than its weights are."""
    root = tmp_path_factory.mktemp("config-misfit")
    pipe = build_pipeline("sd15")
    lora = write_lora(get_family("sd15").components(pipe), {"unet": ("to_q",)}, root / "unet.safetensors")
    pipe.save_pretrained(root / "model")
    config = root / "model" / "text_encoder" / "config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "hidden_size": WIDER}))
    return root / "model", lora


def test_a_component_whose_config_does_not_fit_its_weights_is_one_line_naming_it(config_misfit, capsys):
    # transformers raises "You set `ignore_mismatched_sizes` to `False` ... look at the above report"
    # after logging a table; the line names the component's folder and its first mismatched key instead.
    folder, lora = config_misfit
    code = main(["check", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora), "-q"])
    assert_one_line_error(capsys, code, str(folder / "text_encoder"), "CLIPTextModel",
                          "weights do not fit its config.json", "size mismatch")


def test_a_load_failure_of_another_kind_is_not_called_a_size_mismatch():
    assert size_mismatch(RuntimeError("CUDA out of memory"), []) is None
