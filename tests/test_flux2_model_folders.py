"""--model-path on FLUX.2 folders as users hold them: the tiny pipelines written by save_pretrained in bfloat16
(as black-forest-labs ship FLUX.2 [dev] and [klein]), checked with a LoRA in bfloat16; a klein folder whose
Qwen3 is not a third of the transformer's joint_attention_dim is one line of bad input naming it."""

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

FAMILIES = ["flux2-klein", pytest.param("flux2", marks=pytest.mark.slow)]  # dev: the same transformer class


def saved(root: Path, family: str) -> tuple[Path, str]:
    fam = get_family(family)
    pipe = fam.build_tiny(0)
    folder = root / family
    pipe.to(dtype=torch.bfloat16).save_pretrained(folder)
    lora = write_lora(fam.components(fam.build_tiny(0)), fam.default_targets, root / f"{family}.safetensors",
                      rank=4, alpha=2.0)
    return folder, str(lora)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bfloat16_flux2_folder_checks(tmp_path, capsys, family):
    folder, lora = saved(tmp_path, family)
    pipe = build_pipeline(get_family(family), dtype=torch.bfloat16, model_path=str(folder))
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    code = main(["check", "--family", family, "--model-path", str(folder), "--lora", lora, "--dtype", "bfloat16",
                 "-q"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]


def test_a_qwen3_of_another_width_is_bad_input_naming_the_folder(tmp_path, capsys):
    # negative control of the folder fit: a 32-wide Qwen3 beside a transformer reading 3 x 16-wide text
    from transformers import Qwen3ForCausalLM

    folder, lora = saved(tmp_path, "flux2-klein")
    config = json.loads((folder / "text_encoder" / "config.json").read_text())
    wider = Qwen3ForCausalLM(type(get_family("flux2-klein").build_tiny(0).text_encoder.config).from_dict(
        {**config, "hidden_size": 32}))
    shutil.rmtree(folder / "text_encoder")
    wider.to(torch.bfloat16).save_pretrained(folder / "text_encoder")
    code = main(["check", "--family", "flux2-klein", "--model-path", str(folder), "--lora", lora, "-q"])
    assert_one_line_error(capsys, code, str(folder), "text_encoder hidden_size x 3 is 96")
