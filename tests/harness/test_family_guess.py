"""A file given with the wrong --family says which family it looks made for. SD1.5 and SD2.x files name
every module alike (diffusers and kohya), so the guess reads the widths the file's tensors carry: the
cross-attention's (attn2.to_k's input: 768 SD1.x, 1024 SD2.x, 2048 SDXL) and the text encoder's.

Files are written by tests/support/trainer_files.py (kohya's networks/lora.py naming, with and without
--v2), on the tiny models and on the published shapes (tests/support/published_sd.py, built from the hub
configs on the meta device). Controls: a file of the family checked gets no guess, even when one of
its tensors does not fit; widths the table does not know name nothing.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity.cli import main
from parity.errors import ParityInputError
from parity.lora import familyguess as fg
from parity.lora.reader import read_lora
from parity.zoo import published as pub
from parity.zoo import sd2, sd15, sdxl
from tests.support.published_sd import published_sd2_on_meta, published_sd15_on_meta
from tests.support.trainer_common import tiny_components
from tests.support.trainer_files import kohya_sd15


def _check(family: str, path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", "--family", family, "--lora", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


# ---------------------------------------------------------------- the table is the zoo's


def test_the_tiny_widths_in_the_table_are_the_zoo_s():
    assert (fg.TINY_SD15, fg.TINY_SD2, fg.TINY_SDXL) == (sd15.TEXT_DIM, sd2.TEXT_DIM, 2 * sdxl.TEXT_DIM)
    for family in ("sd15", "sd2", "sdxl"):
        unet = tiny_components(family)["unet"]
        assert fg.CROSS_ATTENTION[unet.config.cross_attention_dim][0] == family
    for family in ("sd15", "sd2"):
        assert fg.TEXT_ENCODER[tiny_components(family)["text_encoder"].config.hidden_size][0] == family


def test_the_published_widths_in_the_table_are_the_published_configs():
    for family in ("sd15", "sd2", "sdxl"):
        with torch.device("meta"):
            unet = pub.PUBLISHED[family]["unet"](None)
        assert fg.CROSS_ATTENTION[unet.config.cross_attention_dim][0] == family
    for family, components in (("sd15", published_sd15_on_meta()), ("sd2", published_sd2_on_meta())):
        assert fg.TEXT_ENCODER[components["text_encoder"].config.hidden_size][0] == family
        assert fg.CROSS_ATTENTION[components["unet"].config.cross_attention_dim][0] == family


# ---------------------------------------------------------------- a file for the other SD family


@pytest.mark.parametrize(("made_for", "given", "said"), [
    ("sd2", "sd15", "cross-attention width 24: a file for the tiny sd2 model; try --family sd2"),
    ("sd15", "sd2", "cross-attention width 16: a file for the tiny sd15 model; try --family sd15"),
])
def test_a_kohya_file_given_with_the_other_sd_family_names_the_family_it_is_for(made_for, given, said, tmp_path,
                                                                                capsys):
    path = kohya_sd15(tmp_path / f"kohya_{made_for}.safetensors", family=made_for)

    code, err = _check(given, path, capsys)

    assert code == 2, err
    [line] = err.splitlines()
    assert str(path) in line and "[key " in line and said in line, line


def test_a_text_encoder_only_sd2_file_given_as_sd15_names_sd2_by_its_text_width(tmp_path):
    full = load_file(kohya_sd15(tmp_path / "full.safetensors", family="sd2"))
    te_only = {k: v for k, v in full.items() if k.startswith("lora_te_")}
    save_file(te_only, tmp_path / "te_only.safetensors")

    with pytest.raises(ParityInputError) as err:
        read_lora(tmp_path / "te_only.safetensors", tiny_components("sd15"))

    assert "text encoder width 24: a file for the tiny sd2 model; try --family sd2" in str(err.value)


def test_a_real_size_sd2_file_given_as_sd15_says_an_sd2_file(tmp_path, monkeypatch, capsys):
    """The published route (no --model-path) reads the file against the published SD1.5 shapes, on the
    meta device, before anything is built: the refusal names SD 2.x, and no folder is built."""
    monkeypatch.setenv(pub.CACHE_ENV, str(tmp_path / "cache"))
    path = kohya_sd15(tmp_path / "real_sd2.safetensors", comps=published_sd2_on_meta(), family="sd2")

    code, err = _check("sd15", path, capsys)

    assert code == 2, err
    assert "cross-attention width 1024: an SD 2.x file; try --family sd2" in err.splitlines()[-1]
    assert not (tmp_path / "cache").exists()


def test_a_real_size_sd15_file_given_as_sd2_says_an_sd1_file(tmp_path):
    path = kohya_sd15(tmp_path / "real_sd15.safetensors", comps=published_sd15_on_meta())

    with pytest.raises(ParityInputError) as err:
        read_lora(path, published_sd2_on_meta())

    assert "cross-attention width 768: an SD 1.x file; try --family sd15" in str(err.value)


# ---------------------------------------------------------------- controls


def test_control_a_file_of_the_family_checked_gets_no_guess_even_with_a_bad_tensor(tmp_path, capsys):
    """An sd15 file on sd15 reads; with one tensor of the wrong width it is refused for that tensor
    alone, and names no family: its cross-attention and text widths are the model's."""
    path = kohya_sd15(tmp_path / "kohya_sd15.safetensors")
    assert read_lora(path, tiny_components("sd15")).modules
    sd = load_file(path)
    key = next(k for k in sd if "attn1_to_q.lora_down" in k)
    sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] + 1)
    save_file(sd, tmp_path / "bad.safetensors")

    code, err = _check("sd15", tmp_path / "bad.safetensors", capsys)

    assert code == 2 and "shape mismatch" in err and key in err, err
    assert "try --family" not in err and "width" not in err, err


def test_control_widths_no_family_has_name_nothing():
    down = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    components = tiny_components("sd15")
    assert fg.width_guess({down: torch.zeros(4, 24)}, components)[0] == "sd2"
    assert fg.width_guess({down: torch.zeros(4, 40)}, components) is None  # no family's width
    assert fg.width_guess({down: torch.zeros(4, 16)}, components) is None  # the model's own width
    assert fg.describe_guess([down], {down: torch.zeros(4, 16)}, components) == ""
