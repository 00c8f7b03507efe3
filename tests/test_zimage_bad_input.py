"""Bad input for --family zimage: a Z-Image file holding NaN is refused with one line naming the file and
the key; a Z-Image file given to another family, and another family's file given to zimage, are refused
with one line naming the file and the family its keys look made for (parity/lora/familyguess.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity.cli import main
from tests.support import trainer_wan as tw
from tests.support import trainer_zimage as tz
from tests.support.cli import assert_one_line_error
from tests.support.families import needs

pytestmark = needs("zimage")


def check(family: str, path) -> int:
    return main(["check", "--family", family, "--dtype", "float32", "--lora", str(path)])


@pytest.mark.parametrize("write, key", [
    (lambda p: tz.musubi_zimage(p / "musubi_zimage_nan.safetensors", dtype=torch.float32),
     "lora_unet_layers_0_attention_to_q.lora_up.weight"),
    (lambda p: tz.musubi_comfy_zimage(p / "musubi_comfy_zimage_nan.safetensors", dtype=torch.float32),
     "lora_unet_layers_0_attention_qkv.lora_up.weight"),  # a fused file: NaN named before any split
], ids=["musubi", "musubi-comfy"])
def test_nan_in_a_zimage_file_is_bad_input_naming_file_and_key(write, key, tmp_path, capsys):
    path = write(tmp_path)
    sd = load_file(str(path))
    sd[key][0, 0] = float("nan")
    save_file(sd, str(path))
    line = assert_one_line_error(capsys, check("zimage", path), path.name, "NaN")
    assert key.split(".")[0] in line, line


@pytest.mark.parametrize("family", ["qwenimage", "flux"])
def test_a_zimage_file_given_to_another_family_names_zimage(family, tmp_path, capsys):
    path = tz.musubi_comfy_zimage(tmp_path / "musubi_comfy_zimage.safetensors")
    line = assert_one_line_error(capsys, check(family, path), path.name)
    assert "look like a LoRA made for zimage" in line and "--family zimage" in line, line


def test_a_wan_file_given_to_zimage_names_wan(tmp_path, capsys):
    path = tw.musubi_wan(tmp_path / "musubi_wan_for_zimage.safetensors")
    line = assert_one_line_error(capsys, check("zimage", path), path.name)
    assert "look like a LoRA made for wan" in line, line
