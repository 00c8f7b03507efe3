"""--model-path on Z-Image and FLUX.2 folders as users hold them: the tiny pipelines written by save_pretrained in
bfloat16 (as Tongyi-MAI ship Z-Image and black-forest-labs FLUX.2 [dev] and [klein]: transformer and encoder in
bfloat16), checked with a LoRA in bfloat16; a folder whose Qwen3 does not fit the transformer's text width is one
line of bad input naming it (the folder fit's negative control)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline, get_family
from tests.support.cli import assert_one_line_error

# flux2 ([dev]) is the same transformer class as [klein], its folder differs by the encoder: make slow
CHECKED = [f for f in ("zimage", "flux2-klein") if f in FAMILIES] + [
    pytest.param("flux2", marks=pytest.mark.slow)] * ("flux2" in FAMILIES)
# family → what the one line says of a Qwen3 32 wide beside the tiny transformer
MISFITS = {"zimage": "text_encoder hidden_size is 32", "flux2-klein": "text_encoder hidden_size x 3 is 96"}


def saved(root: Path, family: str) -> tuple[Path, str]:
    fam = get_family(family)
    folder = root / family
    fam.build_tiny(0).to(dtype=torch.bfloat16).save_pretrained(folder)
    lora = write_lora(fam.components(fam.build_tiny(0)), fam.default_targets, root / f"{family}.safetensors",
                      rank=4, alpha=2.0)
    return folder, str(lora)


@pytest.mark.parametrize("family", CHECKED)
def test_a_bfloat16_folder_is_stored_loaded_and_checked_in_bfloat16(tmp_path, capsys, family):
    from safetensors import safe_open

    folder, lora = saved(tmp_path, family)
    for part in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        with safe_open(str(folder / part), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}, part
    pipe = build_pipeline(get_family(family), dtype=torch.bfloat16, model_path=str(folder))
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    code = main(["check", "--family", family, "--model-path", str(folder), "--lora", lora, "--dtype", "bfloat16",
                 "-q"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]


@pytest.mark.parametrize("family", [f for f in MISFITS if f in FAMILIES])
def test_a_qwen3_of_another_width_is_bad_input_naming_the_folder(tmp_path, capsys, family):
    folder, lora = saved(tmp_path, family)
    encoder = get_family(family).build_tiny(0).text_encoder
    config = json.loads((folder / "text_encoder" / "config.json").read_text())
    wider = type(encoder)(type(encoder.config).from_dict({**config, "hidden_size": 32}))
    shutil.rmtree(folder / "text_encoder")
    wider.to(torch.bfloat16).save_pretrained(folder / "text_encoder")
    code = main(["check", "--family", family, "--model-path", str(folder), "--lora", lora, "-q"])
    assert_one_line_error(capsys, code, str(folder), MISFITS[family])
