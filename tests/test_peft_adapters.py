"""PEFT adapter folders (issue 30 item 5): what PEFT's save_pretrained writes for get_peft_model(<unet or
text encoder>, LoraConfig(...)), read with the α/r PEFT's own loader gives each module, and the verdict
diffusers 0.42.1 earns on them: load_lora_weights loads nothing from such a file (it keeps keys under
unet./text_encoder. only), so `check` reports that refusal naming the file (exit 1), never bad input.

The folders come from tests/support/peft_adapters.py (PEFT itself writes them). The negative controls
are in tests/harness/test_peft_adapter_controls.py.
"""

from __future__ import annotations

import math

import pytest

from parity.cli import main
from parity.lora.reader import read_lora
from tests.support.filesnap import differences, snapshot, watch_writes
from tests.support.peft_adapters import peft_adapter, peft_scales, scale_mismatches, scales_of
from tests.support.trainer_common import tiny_components

ATTN2_Q = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q"
ATTN1_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k"
MID_Q = "mid_block.attentions.0.transformer_blocks.0.attn1.to_q"

CONFIGS = {
    "plain": {},
    # a regex and a bare-suffix key, as users write them: PEFT matches (.*\.)?(<key>)$, first key first
    "patterns": dict(rank_pattern={"attn2.to_q": 2}, alpha_pattern={r"down_blocks\.1\..*to_k": 8.0}),
    "rslora": dict(r=4, lora_alpha=6.0, use_rslora=True),
    "text-encoder": dict(component="text_encoder"),
    "dora": dict(use_dora=True),  # lora_magnitude_vector beside each pair
}
# module → the scale each config gives it, by hand from the config (α/r; α/√r under rsLoRA)
HAND = {
    "plain": {ATTN2_Q: 2.0 / 4, MID_Q: 2.0 / 4},
    "patterns": {ATTN2_Q: 2.0 / 2, ATTN1_K: 8.0 / 4, MID_Q: 2.0 / 4},
    "rslora": {ATTN2_Q: 6.0 / math.sqrt(4)},
    "text-encoder": {"encoder.layers.0.self_attn.q_proj": 2.0 / 4},
    "dora": {ATTN2_Q: 2.0 / 4},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_reader_gives_every_module_the_scale_peft_gives_it(name, tmp_path):
    """Folder and file path alike; every module PEFT made, at PEFT's own scale, in the component it was made on."""
    kwargs = dict(CONFIGS[name])
    component = kwargs.get("component", "unet")
    folder = peft_adapter(tmp_path / name, **kwargs)
    truth = peft_scales(folder, component=component)

    for path in (folder, folder / "adapter_model.safetensors"):
        lora = read_lora(path, tiny_components("sd15"))
        assert lora.layout == "peft"
        assert lora.components() == [component]
        assert scale_mismatches(scales_of(lora), truth) == []
        assert set(lora.variants()) == ({"DoRA"} if kwargs.get("use_dora") else set())
    for module, scale in HAND[name].items():
        assert math.isclose(truth[module], scale, rel_tol=1e-12), (module, truth[module], scale)


def refusal_line(capsys, code: int) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 1, out + err
    [line] = [l for l in out.splitlines() if l.startswith("FAIL: ")]
    return line


@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "file"])
def test_check_reports_that_diffusers_loads_nothing_from_a_unet_adapter(as_file, tmp_path, capsys):
    folder = peft_adapter(tmp_path / "unet_adapter", **CONFIGS["patterns"])
    path = folder / "adapter_model.safetensors" if as_file else folder
    before = snapshot(folder)
    with watch_writes(folder) as writes:
        code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(path)])

    assert writes == [] and differences(before, snapshot(folder)) == []  # the user's folder, untouched
    line = refusal_line(capsys, code)
    assert str(folder / "adapter_model.safetensors") in line
    assert "diffusers refused a valid peft file" in line
    assert "loads nothing from this file (after the conversions it knows, load_lora_weights keeps keys under " \
           "unet./text_encoder. only; these are under base_model.model.: a PEFT adapter" in line
    assert "unet.load_lora_adapter(<file>, prefix='base_model.model')" in line


def test_check_reports_that_diffusers_loads_nothing_from_a_text_encoder_adapter(tmp_path, capsys):
    folder = peft_adapter(tmp_path / "te_adapter", component="text_encoder")
    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(folder)])

    line = refusal_line(capsys, code)
    assert "loads nothing from this file" in line and "text_encoder.load_adapter(<folder>)" in line


# ---------------------------------------------------------------- what diffusers and transformers do, pinned
# The refusal's hints are measurements: these fail when an upgrade changes them, and the wording must follow.


def test_diffusers_load_lora_weights_loads_nothing_from_a_peft_adapter(tmp_path):
    folder = peft_adapter(tmp_path / "unet_adapter")
    from parity.zoo import FAMILIES

    pipe = FAMILIES["sd15"].build_tiny(0)
    pipe.load_lora_weights(str(folder), adapter_name="a")
    assert pipe.get_list_adapters() == {}


def test_unet_load_lora_adapter_with_the_peft_prefix_ignores_the_config(tmp_path):
    """The pairs load, each at scale 1 (alpha = r): adapter_config.json's lora_alpha 2 (scale 0.5) is not read."""
    folder = peft_adapter(tmp_path / "unet_adapter", **CONFIGS["patterns"])
    from parity.zoo import FAMILIES

    pipe = FAMILIES["sd15"].build_tiny(0)
    pipe.unet.load_lora_adapter(str(folder / "adapter_model.safetensors"), prefix="base_model.model",
                                adapter_name="a")
    scales = {n: layer.scaling["a"] for n, layer in pipe.unet.named_modules() if hasattr(layer, "scaling")}
    assert len(scales) == 32 and set(scales.values()) == {1.0}


def test_transformers_load_adapter_reads_a_text_encoder_adapter_with_its_config(tmp_path):
    folder = peft_adapter(tmp_path / "te_adapter", component="text_encoder")
    from parity.zoo import FAMILIES

    pipe = FAMILIES["sd15"].build_tiny(0)
    pipe.text_encoder.load_adapter(str(folder), adapter_name="a")
    scales = {n: layer.scaling["a"] for n, layer in pipe.text_encoder.named_modules() if hasattr(layer, "scaling")}
    assert scales == peft_scales(folder, component="text_encoder")


def test_an_sdxl_text_encoder_2_adapter_is_told_apart_by_its_configs_base_class(tmp_path):
    """SDXL's two tiny CLIP encoders share module names and widths: the keys fit both, and the config's
    auto_mapping (CLIPTextModelWithProjection) says which one get_peft_model wrapped."""
    folder = peft_adapter(tmp_path / "te2_adapter", family="sdxl", component="text_encoder_2")
    lora = read_lora(folder, tiny_components("sdxl"))

    assert lora.components() == ["text_encoder_2"]
    truth = peft_scales(folder, family="sdxl", component="text_encoder_2")
    assert scale_mismatches(scales_of(lora), truth) == []
