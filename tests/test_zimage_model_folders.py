"""--model-path on a Z-Image folder as users hold one: the tiny pipeline written by save_pretrained in
bfloat16 (as Tongyi-MAI's Z-Image folders ship their transformer and Qwen3), checked with a LoRA in
bfloat16; a folder whose Qwen3 is not the transformer's caption width is one line of bad input
naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zimage")
    get_family("zimage").build_tiny(0).to(dtype=torch.bfloat16).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> str:
    fam = get_family("zimage")
    path = tmp_path_factory.mktemp("lora") / "zimage.safetensors"
    return write_lora(fam.components(fam.build_tiny(0)), fam.default_targets, path, rank=4, alpha=2.0)


def test_the_folder_is_stored_in_bfloat16(folder):
    from safetensors import safe_open

    for part in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        with safe_open(str(folder / part), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}, part
    pipe = build_pipeline(get_family("zimage"), dtype=torch.bfloat16, model_path=str(folder))
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}


def test_a_zimage_folder_checks_in_bfloat16(folder, lora, capsys):
    code = main(["check", "--family", "zimage", "--model-path", str(folder), "--lora", lora, "--dtype", "bfloat16",
                 "-q"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]


def test_a_qwen3_of_another_width_is_bad_input_naming_the_folder(folder, lora, tmp_path, capsys):
    # negative control of the folder fit: a 32-wide Qwen3 beside a transformer reading 16-wide captions
    from transformers import Qwen3Model

    misfit = tmp_path / "misfit"
    shutil.copytree(folder, misfit)
    config = json.loads((misfit / "text_encoder" / "config.json").read_text())
    wider = Qwen3Model(type(get_family("zimage").build_tiny(0).text_encoder.config).from_dict(
        {**config, "hidden_size": 32}))
    shutil.rmtree(misfit / "text_encoder")
    wider.to(torch.bfloat16).save_pretrained(misfit / "text_encoder")
    code = main(["check", "--family", "zimage", "--model-path", str(misfit), "--lora", lora, "-q"])
    assert_one_line_error(capsys, code, str(misfit), "text_encoder hidden_size is 32")
