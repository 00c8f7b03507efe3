"""kohya files on original (SGM) block names, on an SDXL UNet with SDXL's published block structure:
three blocks of two layers, no attention in the first, transformer depth 1/2/3, at tiny widths.

The tiny zoo's UNets have one layer per block, where input_blocks.N and output_blocks.N number the
layers differently than at two: an SGM index that is off for layers_per_block = 2 (ours, or
diffusers' ``(i - 1) // (layers_per_block + 1)``) shows here and nowhere else. The file is written by
our writer from our names; diffusers maps the same names by its own formula, so a numbering of ours
that is off puts its LoRA on other modules than our reference, and the merge check fails.
"""

from __future__ import annotations

import pytest

from parity.checks.fuse import fuse_and_measure, load_files
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import get_family
from parity.zoo.sd15 import tiny_unet
from parity.zoo.sdxl import N_TIME_IDS, TEXT_DIM, TIME_EMBED_DIM
from parity.zoo.weights import fill_deterministic

SDXL = get_family("sdxl")


def sdxl_structured_unet():
    return tiny_unet(
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 3),
        cross_attention_dim=2 * TEXT_DIM,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=N_TIME_IDS * TIME_EMBED_DIM + TEXT_DIM,
    )


@pytest.fixture
def pipe():
    pipe = SDXL.build_tiny(0)
    pipe.unet = fill_deterministic(sdxl_structured_unet(), 0, "sdxl-depth/unet")
    return pipe


TARGETS = {"unet": ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv",
                    "upsamplers.0.conv", "conv_in", "conv_out")}


def test_a_kohya_sgm_file_fuses_to_the_reference_at_two_layers_per_block(pipe, tmp_path):
    components = SDXL.components(pipe)
    path = write_lora(components, TARGETS, tmp_path / "sgm.safetensors", "kohya-sgm", seed=3, rank=4, alpha=2.0)
    lora = read_lora(path, components)
    assert any(stem.startswith("lora_unet_input_blocks_8_1_") for stem in lora.placement)  # block 2, layer 1

    loaded = load_files(pipe, SDXL, [lora], None)
    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, [lora], [1.0], 1.0)

    assert result.ok, "\n".join(result.failures())
    assert {r.name.split(".")[1] for r in result.reports} >= {"down_blocks", "mid_block", "up_blocks"}
