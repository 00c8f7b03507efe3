"""Negative controls for the legacy layouts (tests/test_legacy_layouts.py): the refusal of a diffusers <= 0.14
file is its missing prefix (the same pairs under unet. pass), and a cloneofsimo file whose numbering does not
fit the model is one line of bad input naming the file's own key (exit 2), never read into the wrong modules."""

from __future__ import annotations

from parity.cli import main
from tests.support.cli import assert_one_line_error
from tests.support.legacy_files import attn_procs_014, cloneofsimo

CHECK = ["check", "--family", "sd15", "--dtype", "float32", "--lora"]


def test_control_the_same_attn_procs_pairs_under_unet_pass(tmp_path, capsys):
    path = attn_procs_014(tmp_path / "prefixed.safetensors", prefix="unet.")
    code = main([*CHECK, str(path)])
    out, err = capsys.readouterr()
    assert code == 0 and "PASS" in out.splitlines()[-1], out + err


def test_control_a_cloneofsimo_file_with_a_layer_fewer_is_bad_input(tmp_path, capsys):
    path = cloneofsimo(tmp_path / "fewer.safetensors", drop_last=True)
    code = main([*CHECK, str(path)])
    assert_one_line_error(capsys, code, "fewer.safetensors [key unet:", "numbered 0..34", "has 36 layers",
                          "made for another model")


def test_control_a_cloneofsimo_file_in_another_module_order_names_the_misfit_key(tmp_path, capsys):
    """Numbers 0 and 8 exchanged (the first attention's to_q and the GEGLU projection after it, of other
    widths): the file's factors do not fit, and the error names the file's key, not a rebuilt name."""
    path = cloneofsimo(tmp_path / "swapped.safetensors", swap=(0, 8))
    code = main([*CHECK, str(path)])
    line = assert_one_line_error(capsys, code, "swapped.safetensors [key unet:")
    assert "shape" in line and ".lora_" not in line.split("]")[0], line


def test_control_a_cloneofsimo_file_without_its_header_is_bad_input(tmp_path, capsys):
    path = cloneofsimo(tmp_path / "bare.safetensors", header=False, token=None)
    code = main([*CHECK, str(path)])
    assert_one_line_error(capsys, code, "bare.safetensors [key ", "without the header entry",
                          "cannot be rebuilt without it")
