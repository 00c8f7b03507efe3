"""`lora-parity edit`: the Qwen-Image-Edit workflow from the command line (parity/checks/edit.py does the
work): a verdict table, no-fuse | fused | difference images, JSON, exit codes 0/1/2."""

from __future__ import annotations

import json

import pytest


from parity.cli import main
from parity.zoo import FAMILIES, UNAVAILABLE
from tests.support.edit_files import edit_lora


# diffusers < 0.36 (the gate's old env) has no edit pipeline: the family is absent, with its reason
pytestmark = pytest.mark.skipif("qwenimage-edit" not in FAMILIES, reason=UNAVAILABLE.get("qwenimage-edit", ""))


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return edit_lora(tmp_path_factory.mktemp("cli-edit"))


def test_edit_passes_and_writes_its_images_and_json(lora_file, tmp_path, capsys):
    out, report = tmp_path / "edit-run", tmp_path / "edit.json"
    code = main(["edit", "--lora", lora_file, "--images", "1,2", "--out", str(out), "--json", str(report), "-q"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stdout + stderr
    assert stdout.rstrip().endswith("PASS: every fused edit within budget of the no-fuse edit")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["float32-1img-fresh.png", "float32-2img-fresh.png"]
    runs = json.loads(report.read_text())["runs"]
    assert [r["images"] for r in runs] == [1, 2] and all(r["ok"] and r["diff"] <= r["budget"] for r in runs)


def test_the_workflows_one_pipeline_sequence_fails_naming_the_known_behaviour(lora_file, tmp_path, capsys):
    code = main(["edit", "--lora", lora_file, "--sequence", "one-pipeline", "--out", str(tmp_path / "o"), "-q"])
    stdout, _ = capsys.readouterr()
    assert code == 1
    assert "known diffusers behaviour: the Qwen-Image-Edit workflow's fuse block" in stdout
    assert "already in use" in stdout


@pytest.mark.parametrize(("extra", "needle"), [
    (["--family", "sd15"], "needs a QwenImageEditPlusPipeline family"),
    (["--images", "0"], "--images 0"),
    (["--dtype", "float64"], "--dtype float64"),
])
def test_bad_options_are_one_line_and_exit_2(lora_file, tmp_path, capsys, extra, needle):
    code = main(["edit", "--lora", lora_file, "--out", str(tmp_path / "o"), *extra])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and needle in stderr and "Traceback" not in stdout + stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_missing_file_is_bad_input_naming_it(tmp_path, capsys):
    missing = str(tmp_path / "nope.safetensors")
    code = main(["edit", "--lora", missing, "--out", str(tmp_path / "o")])
    _, stderr = capsys.readouterr()
    assert code == 2 and missing in stderr


def test_too_little_memory_is_refused_up_front(lora_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LORA_PARITY_MEMORY_AVAILABLE", "0.01")
    code = main(["edit", "--lora", lora_file, "--out", str(tmp_path / "o"), "-q"])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and "too little memory" in stderr and "PASS" not in stdout
