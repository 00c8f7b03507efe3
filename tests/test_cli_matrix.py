"""``lora-parity matrix`` as a user types it: the default version sets and their rule, and bad input as one line
(exit 2) before any environment is built. The matrix's run is tested in tests/harness/test_matrix_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.cli import main
from tests.support.cli import assert_one_line_error


def test_list_sets_prints_the_last_eight_diffusers_minors_with_the_rule_for_each_pin(capsys):
    code = main(["matrix", "--list-sets"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 8, out
    for line in out:
        assert line.startswith("diffusers 0.") and "peft==" in line and "transformers==" in line and "torch==" in line
        assert "newest released on or before that day" in line, line


def test_a_named_set_and_the_torch_axis_multiply(capsys):
    code = main(["matrix", "--list-sets", "--set", "old=diffusers==0.35.2,peft==0.17.1,transformers==4.57.1",
                 "--torch", "2.13.0,2.14.1"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 2, out
    assert all(line.startswith("old") for line in out) and "torch==2.14.1" in out[1]


@pytest.mark.parametrize("argv, needles", [
    (["--set", "diffusers>=0.35"], ["diffusers>=0.35"]),
    (["--set", "a=diffusers==0.35.2,peft==0.17.1,transformers==4.57.1",
      "--set", "a=diffusers==0.36.0,peft==0.18.0,transformers==4.57.3"], ["share a name"]),
    (["--check", "merge,fusion"], ["unknown check 'fusion'"]),
    (["--family", "sd16"], ["sd16"]),
    (["--lora", "x.safetensors"], ["--lora needs exactly one --family"]),
    (["--lora", "no-such-file.safetensors", "--family", "sd15"], ["no-such-file.safetensors", "no such file"]),
    (["--model-path", "/models/sd15"], ["--model-path is for --lora files"]),
], ids=["range-pin", "same-name", "unknown-check", "unknown-family", "lora-without-family", "missing-file",
        "model-path-without-lora"])
def test_bad_input_is_one_line_before_anything_is_built(argv, needles, capsys, tmp_path: Path):
    code = main(["matrix", *argv, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])

    assert_one_line_error(capsys, code, *needles)
    assert not (tmp_path / "cache").exists(), "nothing may be built for bad input"
