"""Bad input for the FLUX.2 families: a FLUX.2 file holding NaN is refused with one line naming the file and
the key; a FLUX.2 file given to FLUX.1 or Qwen-Image is refused naming flux2 (BFL names FLUX.1's and
FLUX.2's blocks alike: the feed-forward's width tells them apart), and a FLUX.1 file given to flux2-klein
names flux (parity/lora/familyguess.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity.cli import main
from tests.support import trainer_flux2 as tf
from tests.support.cli import assert_one_line_error
from tests.support.trainer_flux import kohya_flux
from tests.support.families import needs

pytestmark = needs("flux2", "flux2-klein")


def check(family: str, path) -> int:
    return main(["check", "--family", family, "--dtype", "float32", "--lora", str(path)])


def test_nan_in_a_fused_qkv_of_a_flux2_file_is_bad_input_naming_file_and_key(tmp_path, capsys):
    path = tf.musubi_flux2(tmp_path / "musubi_flux2_nan.safetensors", dtype=torch.float32)
    sd = load_file(str(path))
    key = "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"
    sd[key][0, 0] = float("nan")
    save_file(sd, str(path))
    line = assert_one_line_error(capsys, check("flux2-klein", path), path.name, "NaN")
    assert "lora_unet_double_blocks_0_img_attn_qkv" in line, line


@pytest.mark.parametrize("family", ["flux", "qwenimage"])
@pytest.mark.parametrize("write", [tf.musubi_flux2, tf.aitoolkit_flux2], ids=["musubi", "aitoolkit"])
def test_a_flux2_bfl_file_given_to_flux_or_qwenimage_names_flux2(write, family, tmp_path, capsys):
    path = write(tmp_path / "flux2_file.safetensors")
    line = assert_one_line_error(capsys, check(family, path), path.name)
    assert "made for flux2" in line and "--family flux2" in line, line


def test_a_diffusers_flux2_file_given_to_flux_names_flux2(tmp_path, capsys):
    path = tf.diffusers_flux2(tmp_path)
    line = assert_one_line_error(capsys, check("flux", path), path.name)
    assert "made for flux2" in line, line


def test_control_a_flux1_file_given_to_flux2_names_flux_not_flux2(tmp_path, capsys):
    path = kohya_flux(tmp_path / "kohya_flux1.safetensors")
    line = assert_one_line_error(capsys, check("flux2-klein", path), path.name)
    assert "made for flux " in line or "made for flux (" in line, line
    assert "flux2" not in line.replace(str(tmp_path), ""), line
