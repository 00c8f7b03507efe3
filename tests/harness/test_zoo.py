"""Each zoo family keeps real module names, runs one denoiser step and a pipeline call, and reloads by path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from parity.modules import lora_capable_modules
from parity.zoo import FAMILIES, build_pipeline
from parity.zoo.family import select_modules

# Module names as they appear in the published checkpoints (and so in published LoRA files).
REAL_NAMES = {
    "sd15": {
        "unet": ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "mid_block.attentions.0.proj_in",
                 "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0", "down_blocks.0.resnets.0.conv1"],
        "text_encoder": ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.mlp.fc2"],
    },
    # SD 2.x: SD1.5's names; proj_in is a Linear (use_linear_projection), as kohya's SD2 files target it
    "sd2": {
        "unet": ["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "mid_block.attentions.0.proj_in",
                 "up_blocks.0.attentions.0.proj_out", "down_blocks.0.resnets.0.conv1"],
        "text_encoder": ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.mlp.fc2"],
    },
    "sdxl": {
        "unet": ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "add_embedding.linear_1"],
        "text_encoder": ["encoder.layers.0.self_attn.q_proj"],
        "text_encoder_2": ["encoder.layers.0.self_attn.q_proj"],
    },
    "flux": {
        "transformer": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_k_proj",
                        "transformer_blocks.0.ff.net.0.proj", "single_transformer_blocks.0.proj_mlp",
                        "single_transformer_blocks.0.attn.to_q", "x_embedder"],
    },
    "qwenimage": {
        "transformer": ["transformer_blocks.0.img_mod.1", "transformer_blocks.0.attn.to_q",
                        "transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.img_mlp.net.0.proj"],
    },
    "qwenimage-edit": {
        "transformer": ["transformer_blocks.0.img_mod.1", "transformer_blocks.0.attn.to_q",
                        "transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.img_mlp.net.0.proj"],
    },
    # Wan 2.2 A14B's two experts: the same module tree in each
    "wan": {c: ["blocks.1.attn1.to_q", "blocks.0.attn2.to_out.0", "blocks.0.ffn.net.0.proj", "proj_out",
                "condition_embedder.time_proj", "condition_embedder.text_embedder.linear_1"]
            for c in ("transformer", "transformer_2")},
    # Z-Image's main layers and both refiners; diffusers' split to_q/to_k/to_v of the original attention.qkv
    "zimage": {
        "transformer": ["layers.1.attention.to_q", "layers.0.attention.to_out.0", "layers.0.feed_forward.w2",
                        "noise_refiner.0.attention.to_k", "context_refiner.0.feed_forward.w1",
                        "layers.0.adaLN_modulation.0", "all_final_layer.2-1.linear", "cap_embedder.1"],
    },
    # FLUX.2 [dev] and [klein]: one transformer class. Double-stream blocks with split q/k/v and SwiGLU
    # feed-forwards; single-stream blocks with the fused q|k|v|mlp-in projection (the original linear1)
    **{name: {"transformer": ["transformer_blocks.0.attn.to_q", "transformer_blocks.1.attn.add_k_proj",
                              "transformer_blocks.0.attn.to_add_out", "transformer_blocks.0.ff.linear_in",
                              "transformer_blocks.1.ff_context.linear_out",
                              "single_transformer_blocks.1.attn.to_qkv_mlp_proj",
                              "single_transformer_blocks.0.attn.to_out", "double_stream_modulation_img.linear",
                              "x_embedder", "context_embedder", "proj_out"]}
       for name in ("flux2", "flux2-klein")},
}


def _strip_text_model(names):
    return {n.removeprefix("text_model.") for n in names}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_family_keeps_real_module_names(family):
    fam = FAMILIES[family]
    components = fam.components(build_pipeline(fam))
    for component, names in REAL_NAMES[family].items():
        present = _strip_text_model(lora_capable_modules(components[component]))
        missing = [n for n in names if n not in present]
        assert not missing, f"{family}.{component} lacks {missing}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_targets_select_modules_in_every_lora_component(family):
    fam = FAMILIES[family]
    components = fam.components(build_pipeline(fam))
    for component, suffixes in fam.default_targets.items():
        if component in components:
            assert select_modules(sorted(lora_capable_modules(components[component])), tuple(suffixes))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_denoiser_step_is_finite_and_deterministic(family):
    fam = FAMILIES[family]
    outputs = []
    for _ in range(2):
        pipe = build_pipeline(fam)
        with torch.no_grad():
            outputs.append(fam.denoiser_step(pipe, fam.denoiser, 0, torch.float32))
    assert torch.isfinite(outputs[0]).all()
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pipeline_call_gives_a_finite_image(family):
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    image = fam.render(pipe, fam.pipeline_call_args(0))
    image = np.asarray(image)
    assert image.ndim == 4 and np.isfinite(image).all()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_path_loads_the_same_weights_from_a_local_folder(family, tmp_path):
    fam = FAMILIES[family]
    tiny = build_pipeline(fam)
    tiny.save_pretrained(tmp_path)

    loaded = build_pipeline(fam, model_path=str(tmp_path))

    for component, module in fam.components(tiny).items():
        want = module.state_dict()
        got = getattr(loaded, component).state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want), component


@pytest.mark.skipif("flux2" not in FAMILIES, reason="this diffusers has no Flux2Pipeline")
def test_a_flux2_folder_whose_tokenizer_is_a_pixtral_processor_loads_with_its_tokenizer(tmp_path):
    # FLUX.2 [dev] as published: model_index.json names a PixtralProcessor, which transformers 5 builds only
    # with torchvision; the folder's tokenizer/ and its chat template stand in (parity/zoo/flux2.py).
    fam = FAMILIES["flux2"]
    tiny = build_pipeline(fam)
    tiny.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PixtralProcessor"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))

    loaded = build_pipeline(fam, model_path=str(tmp_path))

    assert loaded.tokenizer.chat_template == tiny.tokenizer.chat_template
    messages = [[{"role": "user", "content": [{"type": "text", "text": fam.pipeline_call_args(0)["prompt"]}]}]]
    assert tiny.tokenizer.apply_chat_template(messages) == loaded.tokenizer.apply_chat_template(messages)


@pytest.mark.parametrize("family", [f for f in ("flux2", "flux2-klein") if f in FAMILIES])
def test_a_flux2_encoder_as_deep_as_the_published_is_called_with_the_pipelines_own_layers(family):
    # The tiny encoder (3 layers) is called with layers (1, 2, 3); one with the published depth is called
    # as its users call it, with the pipeline's default (10, 20, 30) or (9, 18, 27).
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    assert fam.call_args(pipe, 0)["text_encoder_out_layers"] == (1, 2, 3)
    config = pipe.text_encoder.config
    getattr(config, "text_config", config).num_hidden_layers = 40
    assert "text_encoder_out_layers" not in fam.call_args(pipe, 0)
