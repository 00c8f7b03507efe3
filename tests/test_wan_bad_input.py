"""Bad input for --family wan: a Wan file holding NaN, and a file of another model's keys (a kohya FLUX.1
file), are refused with one line naming the file (exit 2, no traceback). A negative control for the Wan
writers' name table: a musubi file written with ffn.0 and ffn.2 swapped is not a passing file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity.cli import main
from tests.support import trainer_wan as tw
from tests.support.cli import assert_one_line_error
from tests.support.trainer_flux import kohya_flux


def check(path) -> int:
    return main(["check", "--family", "wan", "--dtype", "float32", "--lora", str(path)])


def test_nan_in_a_wan_file_is_bad_input_naming_file_and_key(tmp_path, capsys):
    path = tw.musubi_wan(tmp_path / "musubi_nan.safetensors", dtype=torch.float32)
    sd = load_file(str(path))
    key = "lora_unet_blocks_0_self_attn_q.lora_up.weight"
    sd[key][0, 0] = float("nan")
    save_file(sd, str(path))
    line = assert_one_line_error(capsys, check(path), path.name, "NaN")
    assert "blocks_0_self_attn_q" in line or "attn1.to_q" in line, line


def test_a_flux_file_given_to_wan_is_bad_input_naming_the_file(tmp_path, capsys):
    path = kohya_flux(tmp_path / "kohya_flux_for_wan.safetensors")
    assert_one_line_error(capsys, check(path), path.name)


@pytest.mark.slow  # ~3 s: a full check run that must not pass
def test_control_swapped_ffn_names_do_not_pass(tmp_path, capsys, monkeypatch):
    """The writers' name table, wrong on purpose: ffn.0 (32x16) and ffn.2 (16x32) swapped put each
    factor pair on the other Linear; the check must refuse or fail it, never pass it."""
    monkeypatch.setitem(tw.BLOCK_NAMES, "ffn.net.0.proj", "ffn.2")
    monkeypatch.setitem(tw.BLOCK_NAMES, "ffn.net.2", "ffn.0")
    path = tw.musubi_wan(tmp_path / "musubi_swapped.safetensors")
    code = check(path)
    out, err = capsys.readouterr()
    assert code != 0, out + err
    assert "Traceback" not in out + err
