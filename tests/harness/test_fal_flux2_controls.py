"""Negative controls for fal's FLUX.2 layout (tests/test_fal_flux2.py): a lone ``base_model.model.`` file is read at
α = r only where its names are BFL's FLUX.2 names. The same keys on diffusers' names, or BFL names on a FLUX.1
model, keep PEFT's refusal (the α is in the adapter_config.json the file lacks): one line naming the file."""

from __future__ import annotations

from safetensors.torch import load_file, save_file

from parity.cli import main
from tests.support import trainer_flux2
from tests.support.cli import assert_one_line_error
from tests.support.families import needs

pytestmark = needs("flux2-klein")

MISSING = "keeps its rank and alpha in the adapter_config.json beside it, and there is none in"


def test_control_a_lone_peft_file_on_diffusers_flux2_names_is_still_refused(tmp_path, capsys):
    """PEFT's save_pretrained of diffusers' Flux2Transformer2DModel, its config lost: not fal's, so not α = r."""
    path = trainer_flux2.diffsynth_flux2(tmp_path / "diffsynth.safetensors")
    peft = tmp_path / "adapter_model.safetensors"
    save_file({"base_model.model." + k.replace(".default.", "."): v for k, v in load_file(str(path)).items()},
              str(peft))
    code = main(["check", "--family", "flux2-klein", "--dtype", "float32", "--lora", str(peft)])
    assert_one_line_error(capsys, code, f"{peft}:", MISSING)


def test_control_bfl_names_on_a_flux1_model_are_not_read_as_fal_flux2(tmp_path, capsys):
    """FLUX.1's BFL names spell double_blocks.0.img_attn.qkv too; only FLUX.2's tree makes the file fal's."""
    path = trainer_flux2.fal_flux2(tmp_path / "flux-spritesheet-lora.safetensors")
    code = main(["check", "--family", "flux", "--dtype", "float32", "--lora", str(path)])
    assert_one_line_error(capsys, code, f"{path}:", MISSING)
