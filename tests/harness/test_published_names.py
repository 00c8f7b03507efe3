"""The names derived from the module tree are the names real files use, on the published
architectures (built on the meta device: shapes, no memory). The expected names are the original
checkpoints' own (SGM openaimodel UNet, BFL flux_models), as they appear in published kohya, A1111 and
ComfyUI files, written down here from those architectures, not from parity/lora/names."""

from __future__ import annotations

import pytest
import torch

from parity.lora.names.table import component_names
from parity.zoo.fullsize import flux_transformer, sd15_unet, sdxl_unet


def _names(build, component):
    with torch.device("meta"):
        model = build()
    return component_names(component, model)


@pytest.fixture(scope="module")
def sdxl():
    return _names(sdxl_unet, "unet")


@pytest.fixture(scope="module")
def sd15():
    return _names(sd15_unet, "unet")


@pytest.fixture(scope="module")
def flux():
    return _names(flux_transformer, "transformer")


SDXL = {  # SDXL: 3 blocks of 2 layers, no attention in the first, transformer depth 1/2/10
    "input_blocks.0.0": "conv_in",
    "input_blocks.1.0.in_layers.2": "down_blocks.0.resnets.0.conv1",
    "input_blocks.3.0.op": "down_blocks.0.downsamplers.0.conv",
    "input_blocks.4.1.proj_in": "down_blocks.1.attentions.0.proj_in",
    "input_blocks.6.0.op": "down_blocks.1.downsamplers.0.conv",
    "input_blocks.8.1.transformer_blocks.9.attn2.to_k": "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k",
    "middle_block.0.emb_layers.1": "mid_block.resnets.0.time_emb_proj",
    "middle_block.1.transformer_blocks.0.attn1.to_q": "mid_block.attentions.0.transformer_blocks.0.attn1.to_q",
    "middle_block.2.out_layers.3": "mid_block.resnets.1.conv2",
    "output_blocks.0.1.transformer_blocks.0.ff.net.0.proj": "up_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
    "output_blocks.2.2.conv": "up_blocks.0.upsamplers.0.conv",
    "output_blocks.5.1.proj_out": "up_blocks.1.attentions.2.proj_out",
    "output_blocks.5.2.conv": "up_blocks.1.upsamplers.0.conv",
    "output_blocks.8.0.skip_connection": "up_blocks.2.resnets.2.conv_shortcut",
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "out.2": "conv_out",
}
SD15 = {  # SD1.5: 4 blocks of 2 layers, attention in the first three, none in the last
    "input_blocks.1.1.transformer_blocks.0.attn1.to_q": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "input_blocks.9.0.op": "down_blocks.2.downsamplers.0.conv",
    "input_blocks.11.0.emb_layers.1": "down_blocks.3.resnets.1.time_emb_proj",
    "middle_block.1.proj_in": "mid_block.attentions.0.proj_in",
    "output_blocks.2.1.conv": "up_blocks.0.upsamplers.0.conv",  # no attention in the first up block
    "output_blocks.5.2.conv": "up_blocks.1.upsamplers.0.conv",
    "output_blocks.11.1.proj_out": "up_blocks.3.attentions.2.proj_out",
}


@pytest.mark.parametrize(("fixture", "table"), [("sdxl", SDXL), ("sd15", SD15)])
def test_original_unet_names_are_the_published_checkpoints(fixture, table, request):
    names = request.getfixturevalue(fixture)
    got = {name: names.dotted["sgm"][name].modules for name in table if name in names.dotted["sgm"]}
    assert got == {name: (module,) for name, module in table.items()}


@pytest.mark.parametrize("fixture", ["sdxl", "sd15"])
def test_every_unet_module_has_an_original_name(fixture, request):
    names = request.getfixturevalue(fixture)
    named = {m for t in names.dotted["sgm"].values() for m in t.modules}
    assert set(names.capable) <= named  # every module that takes a LoRA pair; SGM names the norms too


def test_bfl_names_split_at_flux1_dev_widths(flux):
    bfl = flux.dotted["bfl"]
    qkv = bfl["double_blocks.18.img_attn.qkv"]  # 19 double blocks, inner 3072
    assert [(p.module.rsplit(".", 1)[-1], p.start, p.size) for p in qkv.pieces] == [
        ("to_q", 0, 3072), ("to_k", 3072, 3072), ("to_v", 6144, 3072)]
    linear1 = bfl["single_blocks.37.linear1"]  # 38 single blocks, mlp 4 x 3072
    assert linear1.rows == 3 * 3072 + 12288 and linear1.modules[-1].endswith("proj_mlp")
    final = bfl["final_layer.adaLN_modulation.1"]  # shift|scale in the file, scale|shift in diffusers
    assert [(p.start, p.at) for p in final.pieces] == [(0, 3072), (3072, 0)]
    assert "double_blocks.19.img_attn.qkv" not in bfl and "single_blocks.38.linear1" not in bfl
