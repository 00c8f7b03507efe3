"""SD 1.5 and SD 2.x at their published shapes on the meta device, built here from the configs as the hub
ships them (runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1: unet/config.json and
text_encoder/config.json), not from parity.zoo: the trainer-style writers walk them to write real-size files."""

from __future__ import annotations

import torch

SD_BLOCKS = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 block_out_channels=(320, 640, 1280, 1280))


def published_sd15_on_meta() -> dict[str, torch.nn.Module]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD_BLOCKS, cross_attention_dim=768, attention_head_dim=8)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                            num_hidden_layers=12, hidden_act="quick_gelu", vocab_size=49408))
    return {"unet": unet, "text_encoder": text}


def published_sd2_on_meta() -> dict[str, torch.nn.Module]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**{**SD_BLOCKS, "sample_size": 96}, cross_attention_dim=1024,
                                    attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                                    upcast_attention=True)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                            num_hidden_layers=23, hidden_act="gelu", projection_dim=512,
                                            vocab_size=49408))
    return {"unet": unet, "text_encoder": text}
