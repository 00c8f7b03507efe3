"""docs/checking-files.md's first example on a real-size file: `lora-parity check --family sd15 --lora FILE` with no
--model-path, on a kohya file for the published SD1.5 shapes (issue 15, item 3).

The file is written by tests/support/trainer_files.py walking a model built here from the published
configs as the hub ships them (runwayml/stable-diffusion-v1-5 unet/config.json, CLIP ViT-L/14's text
config), on the meta device: neither the file nor its shapes come from parity.zoo. Slow: the first run
builds the 1 B-parameter folder into the cache (about a minute) before the check itself.
"""

from __future__ import annotations

import pytest
import torch

from parity.cli import main
from parity.zoo import published as pub
from tests.support.trainer_files import kohya_sd15

pytestmark = pytest.mark.slow


def published_sd15_on_meta() -> dict[str, torch.nn.Module]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                            num_hidden_layers=12, hidden_act="quick_gelu", vocab_size=49408))
    return {"unet": unet, "text_encoder": text}


def test_a_real_size_kohya_file_passes_on_the_published_architecture(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(pub.CACHE_ENV, str(tmp_path / "cache"))
    path = kohya_sd15(tmp_path / "real_size.safetensors", comps=published_sd15_on_meta())
    code = main(["check", "--family", "sd15", "--lora", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, out[-2000:]
    assert "model published sd15 architecture, synthetic weights" in out
    assert "keys unmatched" in out and " 0 " in out.split("keys unmatched")[1].splitlines()[1]
    assert "building the published sd15 architecture once" in err
