"""--model-path on Wan folders as users hold them: a Wan 2.2 A14B-shaped folder (two experts,
boundary_ratio) written by save_pretrained, and a Wan 2.1-shaped one as Wan-AI's Diffusers repos publish
it (model_index.json with no transformer_2 and no boundary_ratio: written before diffusers had them), both
load and check; a folder whose second expert does not fit the rest is one line of bad input naming it."""

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
def wan22(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wan22")
    get_family("wan").build_tiny(0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> str:
    fam = get_family("wan")
    path = tmp_path_factory.mktemp("lora") / "wan.safetensors"
    return write_lora(fam.components(fam.build_tiny(0)), fam.default_targets, path, rank=4, alpha=2.0)


def wan21(wan22: Path, folder: Path) -> Path:
    """The Wan 2.2 folder as Wan 2.1's: its model_index.json without transformer_2 and boundary_ratio, and
    no transformer_2 folder."""
    shutil.copytree(wan22, folder, ignore=shutil.ignore_patterns("transformer_2"))
    index = json.loads((folder / "model_index.json").read_text())
    del index["transformer_2"], index["boundary_ratio"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def test_a_wan_2_1_folder_loads_with_one_transformer(wan22, tmp_path):
    pipe = build_pipeline(get_family("wan"), model_path=str(wan21(wan22, tmp_path / "wan21")))
    assert pipe.transformer is not None and getattr(pipe, "transformer_2", None) is None
    assert pipe.config.boundary_ratio is None
    assert list(get_family("wan").components(pipe)) == ["transformer"]


@pytest.mark.parametrize("shape, expert", [("2.2", "both"), ("2.1", "high")])
def test_a_wan_folder_checks(wan22, lora, tmp_path, capsys, shape, expert):
    folder = wan22 if shape == "2.2" else wan21(wan22, tmp_path / "wan21")
    code = main(["check", "--family", "wan", "--model-path", str(folder), "--lora", lora, "--expert", expert, "-q"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]


def test_a_second_expert_of_another_text_width_is_bad_input_naming_the_folder(wan22, lora, tmp_path, capsys):
    # negative control of the folder fit: transformer_2 attends to 32-wide text, the UMT5 gives 16
    folder = tmp_path / "misfit"
    shutil.copytree(wan22, folder)
    config_path = folder / "transformer_2" / "config.json"
    config = json.loads(config_path.read_text())
    wider = type(get_family("wan").build_tiny(0).transformer_2).from_config({**config, "text_dim": 32})
    shutil.rmtree(folder / "transformer_2")
    wider.save_pretrained(folder / "transformer_2")
    code = main(["check", "--family", "wan", "--model-path", str(folder), "--lora", lora, "-q"])
    assert_one_line_error(capsys, code, str(folder), "transformer_2 text_dim is 32")


def test_a_bfloat16_check_on_a_wan_folder_measures_each_weight_in_its_own_dtype(wan22, lora, capsys):
    # from_pretrained(torch_dtype=bfloat16) keeps Wan's _keep_in_fp32_modules (norms, time embedder,
    # modulation tables) in float32, and the first parameter is one of them: the check took the model's
    # dtype from it and held every bfloat16 weight to float32's bound (28007x over, on a correct fuse)
    pipe = build_pipeline(get_family("wan"), dtype=torch.bfloat16, model_path=str(wan22))
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.float32, torch.bfloat16}
    assert next(pipe.transformer.parameters()).dtype == torch.float32

    code = main(["check", "--family", "wan", "--model-path", str(wan22), "--lora", lora, "--dtype", "bfloat16", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
