"""Negative controls for the Z-Image names (parity/lora/names/zimage.py): the merge check must catch a
fused attention.qkv split wrong, and a file whose keys are Z-Image's must be named as such when it is
given to another family.

The file is musubi-tuner's ComfyUI conversion (kohya-zimage: lora_unet_layers_0_attention_qkv at rank
3r), which diffusers splits right on the tiny model (the first test), so a failure below is the control's.
"""

from __future__ import annotations

import pytest

from parity.checks.cases import LayoutCase, LoraSpec
from parity.checks.fuse import fuse_and_measure, load_files
from parity.checks.prepare import prepare
from parity.lora.names import zimage
from parity.lora.reader import read_lora
from parity.zoo import get_family
from tests.support.families import needs

pytestmark = needs("zimage")

SPEC = (LoraSpec(seed=1, rank=4, alpha=2.0),)
CASE = LayoutCase("zimage", "kohya-zimage")


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    return prepare(CASE, SPEC, "float32", "cpu", str(tmp_path_factory.mktemp("zimage")))


def _fused(prep, loras):
    loaded = load_files(prep.pipe, get_family("zimage"), [prep.loras[0]], [1.0])
    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras, [1.0], 1.0)
    loaded.pipe.unfuse_lora()
    loaded.pipe.unload_lora_weights()
    return result


def test_the_fused_qkv_file_fuses_to_the_reference_untouched(prep):
    assert prep.loras[0].layout == "kohya-zimage"
    assert "layers.0.attention.to_q" in " ".join(prep.loras[0].placement.get("lora_unet_layers_0_attention_qkv", ()))
    result = _fused(prep, prep.loras)
    assert result.ok, result.failures()


def test_a_qkv_read_k_q_v_fails_naming_the_wrong_split(prep, monkeypatch):
    # our reference reads k|q|v where the file (and diffusers) mean q|k|v
    monkeypatch.setattr(zimage, "QKV", ("attention.to_k", "attention.to_q", "attention.to_v"))
    wrong = read_lora(prep.paths[0], prep.components)
    monkeypatch.undo()

    result = _fused(prep, [wrong])

    text = "\n".join(result.failures(limit=50))
    assert not result.ok and "layers.0.attention.to_q.weight" in text
    assert "wrong split" in text and "to_k.weight" in text
