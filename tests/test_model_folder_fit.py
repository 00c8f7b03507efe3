"""A model folder whose components do not fit each other is bad input: one line naming the folder and
the two sizes, exit 2, for `check` and `hotswap` alike (before, hotswap died in a forward with a torch
traceback). The folder is the tiny sd15 pipeline saved with a text encoder 8 wider than the UNet's
cross-attention."""

from __future__ import annotations

import pytest

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
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
