"""The sd2 family is SD 2.x where it differs from SD1.5: the tiny model has each difference, a folder's own
scheduler decides the prediction type (a 2.x base folder predicts noise, a 768-v one velocity), and its
published architecture is stabilityai/stable-diffusion-2-1's. The generic checks run its cases from the
case table; this module pins what makes it SD 2.x, so a change that quietly turned it into SD1.5 fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parity.zoo import build_pipeline, get_family
from parity.zoo import published as pub

SD2 = get_family("sd2")


@pytest.fixture(scope="module")
def tiny():
    return build_pipeline(SD2)


def test_the_tiny_model_has_sd2_s_differences_from_sd15(tiny):
    unet, text = tiny.unet, tiny.text_encoder
    sd15 = build_pipeline("sd15")

    assert isinstance(unet.down_blocks[1].attentions[0].proj_in, nn.Linear)  # use_linear_projection
    assert isinstance(sd15.unet.down_blocks[1].attentions[0].proj_in, nn.Conv2d)
    assert text.config.hidden_act == "gelu" and sd15.text_encoder.config.hidden_act == "quick_gelu"
    assert tiny.scheduler.config.prediction_type == "v_prediction"
    assert sd15.scheduler.config.prediction_type == "epsilon"
    assert unet.config.cross_attention_dim == text.config.hidden_size != sd15.unet.config.cross_attention_dim
    assert unet.config.upcast_attention and list(unet.config.attention_head_dim) == [2, 4]  # heads per level


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_a_folder_s_own_scheduler_decides_the_prediction_type(tiny, prediction, tmp_path):
    """A 2.x base folder (epsilon) and a 768-v one (v_prediction) load through the same family, each with
    the scheduler its folder holds; the same weights predict another image under each."""
    tiny.scheduler = type(tiny.scheduler).from_config(tiny.scheduler.config, prediction_type=prediction)
    tiny.save_pretrained(tmp_path)

    loaded = build_pipeline(SD2, model_path=str(tmp_path))

    assert loaded.scheduler.config.prediction_type == prediction
    image = SD2.call(loaded, SD2.call_args(loaded, 0)).images
    assert torch.isfinite(torch.as_tensor(image)).all()


def test_the_published_architecture_is_stable_diffusion_2_1_s():
    with torch.device("meta"):
        parts = {c: build(None) for c, build in pub.PUBLISHED["sd2"].items()}
    unet, text = parts["unet"], parts["text_encoder"]
    assert unet.config.cross_attention_dim == 1024 and unet.config.use_linear_projection
    assert list(unet.config.attention_head_dim) == [5, 10, 20, 20]
    assert (text.config.hidden_size, text.config.num_hidden_layers, text.config.hidden_act) == (1024, 23, "gelu")
    assert sum(p.numel() for p in text.parameters()) == 340_387_840
