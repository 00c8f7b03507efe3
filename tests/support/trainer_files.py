"""LoRA files written the way public trainers write them, for the tiny built-in models.

Each writer here is independent of the code under test (parity.lora.layouts / names / synth /
reader): it walks the tiny model's module tree itself and derives every key the way the trainer's
own naming code does, so `lora-parity check` is tested on files it did not write.

Trainers followed (the naming code each writer mirrors):

* kohya sd-scripts, SD 1.x (networks/lora.py): ``lora_unet_`` + diffusers module name with '.' -> '_',
  ``lora_te_`` + the CLIP name (``text_model_`` level included, as published files have it);
  ``.lora_down.weight`` (r, in[, k, k]), ``.lora_up.weight`` (out, r[, 1, 1]), ``.alpha`` a scalar.
  kohya/resize_lora.py ``--dynamic_method`` writes the same keys with a rank and alpha per module.
* kohya sd-scripts, SDXL (networks/lora.py on library/sdxl_original_unet.py): the original SGM UNet's
  names (input_blocks / middle_block / output_blocks, ResBlock in_layers / emb_layers / out_layers /
  skip_connection, downsampler ``op``), text encoders under ``lora_te1_`` / ``lora_te2_``.
* kohya sd-scripts, FLUX.1 (networks/lora_flux.py on library/flux_models.py): BFL names (fused
  img_attn.qkv, single-block linear1/linear2), CLIP under ``lora_te1_``; the ComfyUI spelling of the
  same names under ``diffusion_model.``; XLabs' ``double_blocks.N.processor.qkv_lora1`` files.
* Qwen-Image: musubi-tuner (``lora_unet_``), Lightning (``diffusion_model.``), DiffSynth-Studio
  (``lora_A.default``), and ``transformer.`` + ``.alpha`` files.
* diffusers' legacy training scripts (attention processors, ``to_q_lora.down``), no alpha.
* Wan 2.1 / 2.2 (tests/support/trainer_wan.py): musubi-tuner, ai-toolkit's high/low-noise pair, ComfyUI
  LoraSave, LightX2V, Wan2.2-Lightning, DiffSynth-Studio and diffusers, on Wan's original names.
* Z-Image (tests/support/trainer_zimage.py): musubi-tuner and its ComfyUI conversion (fused qkv), ai-toolkit,
  ComfyUI LoraSave, DiffSynth-Studio and diffusers.
* FLUX.2 (tests/support/trainer_flux2.py): musubi-tuner, ai-toolkit (blocks only, and every Linear), ComfyUI
  LoraSave, fal (PEFT's keys, no config) and diffusers, on BFL's names; DiffSynth-Studio on diffusers' names;
  LoKr by ai-toolkit (its peft and old formats) and by LyCORIS's wrapper.

Factors are deterministic: A ~ N(0, 1/fan_in), B ~ N(0, 0.25/r), from one seeded torch.Generator
per file, drawn in the order the modules are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import (
    ALPHA,
    CLIP_TARGETS,
    RANK,
    Factors,
    Ranks,
    clip_name,
    dynamic_rank,
    ends_with,
    fixed_rank,
    kohya_entry,
    lora_layers,
    save,
    tiny_components,
)
from tests.support import trainer_flux2, trainer_wan, trainer_zimage
from tests.support.trainer_flux import (
    kohya_flux,
    kohya_flux_with_diff,
    lora_transformer_flux,
    xlabs_flux,
)

# ---------------------------------------------------------------- kohya sd-scripts, SD 1.x

SD_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
SD_CONV_TARGETS = ("conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv")


# train_network.py's metadata per model version (``--v2``: library/model_util.py's v2 configs)
KOHYA_SD_VERSION = {"sd15": {"ss_v2": "False", "ss_base_model_version": "sd_v1"},
                    "sd2": {"ss_v2": "True", "ss_base_model_version": "sd_v2"}}


def kohya_sd15(path: Path, *, seed: int = 11, ranks: Ranks = fixed_rank, conv: bool = False,
               dtype: torch.dtype = torch.float32, comps: Mapping[str, nn.Module] | None = None,
               family: str = "sd15") -> Path:
    """networks/lora.py on SD 1.x: the UNet is kohya's copy of the diffusers UNet, so the names are
    diffusers' with '.' -> '_'. Transformer2DModel children (Linear, 1x1 Conv2d); with ``conv``
    (``conv_dim``), ResnetBlock2D / Downsample2D / Upsample2D children too (LoCon). ``comps``: the
    model to walk (default the tiny one; a published-size one, e.g. on the meta device).

    With ``--v2`` (``family="sd2"``) the same code runs on SD 2.x: kohya's UNet is the same diffusers
    copy (linear proj_in/proj_out, so those are Linear pairs), and its OpenCLIP-H text encoder is converted
    to transformers' CLIPTextModel (library/model_util.py), so its keys are ``lora_te_text_model_encoder_
    layers_N_...`` as on SD 1.x."""
    comps = comps or tiny_components(family)
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    i = 0
    targets = SD_UNET_TARGETS + (SD_CONV_TARGETS if conv else ())
    for name, module in lora_layers(comps["unet"]):
        if ends_with(name, *targets):
            rank, alpha = ranks(i)
            i += 1
            down, up = factors.for_module(module, rank)
            kohya_entry(sd, "lora_unet_" + name.replace(".", "_"), down, up, alpha)
    for name, module in lora_layers(comps["text_encoder"]):
        if ends_with(name, *CLIP_TARGETS):
            rank, alpha = ranks(i)
            i += 1
            down, up = factors.for_module(module, rank)
            kohya_entry(sd, "lora_te_" + clip_name(name).replace(".", "_"), down, up, alpha)
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA),
                **KOHYA_SD_VERSION[family]}
    if ranks is dynamic_rank:
        metadata.update(ss_network_dim="Dynamic", ss_network_alpha="Dynamic")
    return save(sd, path, metadata)


# ---------------------------------------------------------------- kohya sd-scripts, SDXL (SGM names)

SGM_RESNET = {"conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "conv2": "out_layers.3",
              "conv_shortcut": "skip_connection"}
SGM_TOP = {"conv_in": "input_blocks.0.0", "conv_out": "out.2",
           "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def sgm_block_map(unet: nn.Module, input_shift: int = 0, output_shift: int = 0) -> dict[str, str]:
    """diffusers UNet sub-module prefix -> original (SGM) UNet prefix, following the original UNet's
    construction order: input_blocks[0] is conv_in; per level, one input block per resnet (resnet at
    .0, its transformer at .1), then one for the downsampler (``.0.op``); middle_block is
    resnet / transformer / resnet; per level, reversed, one output block per resnet (.0 resnet, .1
    transformer, and on the level's last one the upsampler after them). ``input_shift`` /
    ``output_shift`` move every input block after conv_in / every output block by that many: a
    deliberately wrong map, for negative controls."""
    mapping: dict[str, str] = {}
    idx = 1
    for b, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None) or []
        for j, _ in enumerate(block.resnets):
            n = idx + input_shift
            mapping[f"down_blocks.{b}.resnets.{j}"] = f"input_blocks.{n}.0"
            if j < len(attentions):
                mapping[f"down_blocks.{b}.attentions.{j}"] = f"input_blocks.{n}.1"
            idx += 1
        if getattr(block, "downsamplers", None):
            mapping[f"down_blocks.{b}.downsamplers.0.conv"] = f"input_blocks.{idx + input_shift}.0.op"
            idx += 1
    mid = unet.mid_block
    mapping["mid_block.resnets.0"] = "middle_block.0"
    for j, _ in enumerate(getattr(mid, "attentions", None) or []):
        mapping[f"mid_block.attentions.{j}"] = f"middle_block.{2 * j + 1}"
        mapping[f"mid_block.resnets.{j + 1}"] = f"middle_block.{2 * j + 2}"
    idx = 0
    for b, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None) or []
        for j, _ in enumerate(block.resnets):
            n = idx + output_shift
            mapping[f"up_blocks.{b}.resnets.{j}"] = f"output_blocks.{n}.0"
            layer = 1
            if j < len(attentions):
                mapping[f"up_blocks.{b}.attentions.{j}"] = f"output_blocks.{n}.1"
                layer = 2
            if j == len(block.resnets) - 1 and getattr(block, "upsamplers", None):
                mapping[f"up_blocks.{b}.upsamplers.0.conv"] = f"output_blocks.{n}.{layer}.conv"
            idx += 1
    return mapping


def sgm_name(name: str, blocks: dict[str, str]) -> str | None:
    """The original UNet's name of a diffusers UNet module, or None when it has none."""
    if name in SGM_TOP:
        return SGM_TOP[name]
    for prefix in sorted(blocks, key=len, reverse=True):
        if name == prefix:
            return blocks[prefix]
        if name.startswith(prefix + "."):
            rest = name[len(prefix) + 1:]
            if ".resnets." in prefix:
                rest = SGM_RESNET.get(rest, rest)
            return f"{blocks[prefix]}.{rest}"
    return None


SDXL_TARGETS = SD_UNET_TARGETS + ("conv1", "conv2", "time_emb_proj", "conv_shortcut", "conv_in", "conv_out",
                                  "time_embedding.linear_1", "time_embedding.linear_2", "add_embedding.linear_1",
                                  "add_embedding.linear_2", "downsamplers.0.conv", "upsamplers.0.conv")


def kohya_sdxl(path: Path, *, seed: int = 12, input_shift: int = 0, output_shift: int = 0,
               dtype: torch.dtype = torch.float32) -> Path:
    """networks/lora.py on library/sdxl_original_unet.py: SGM names, ``lora_te1_`` / ``lora_te2_``.
    Beyond lora.py's Transformer2DModel + (conv_dim) ResBlock/Downsample/Upsample targets, the file
    also covers conv_in (input_blocks.0.0), conv_out (out.2), time_embed and label_emb, as LyCORIS'
    full preset on the same UNet names them."""
    comps = tiny_components("sdxl")
    factors = Factors(seed, dtype)
    unet = comps["unet"]
    blocks = sgm_block_map(unet, input_shift, output_shift)
    sd: dict[str, torch.Tensor] = {}
    for name, module in lora_layers(unet):
        if not ends_with(name, *SDXL_TARGETS):
            continue
        original = sgm_name(name, blocks)
        assert original is not None, name
        down, up = factors.for_module(module, RANK)
        kohya_entry(sd, "lora_unet_" + original.replace(".", "_"), down, up, ALPHA)
    for component, prefix in (("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_")):
        for name, module in lora_layers(comps[component]):
            if ends_with(name, *CLIP_TARGETS):
                down, up = factors.for_module(module, RANK)
                kohya_entry(sd, prefix + clip_name(name).replace(".", "_"), down, up, ALPHA)
    return save(sd, path, {"ss_network_module": "networks.lora", "ss_base_model_version": "sdxl_base_v1-0"})


# ---------------------------------------------------------------- Qwen-Image

QWEN_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
                "img_mod.1", "txt_mod.1", "img_in", "txt_in", "proj_out", "norm_out.linear")


def qwen_modules() -> list[tuple[str, nn.Module]]:
    transformer = tiny_components("qwenimage")["transformer"]
    return [(n, m) for n, m in lora_layers(transformer) if ends_with(n, *QWEN_TARGETS)]


def qwen_file(path: Path, style: str, *, seed: int = 15, dtype: torch.dtype = torch.float32,
              modules: list[tuple[str, nn.Module]] | None = None) -> Path:
    """Qwen-Image files; musubi-tuner's model keeps diffusers' module names, so every trainer here
    spells the diffusers name:

    * ``musubi``: networks/lora_qwen_image.py, ``lora_unet_`` + name with '.' -> '_', lora_down/up, alpha
    * ``lightning``: ``diffusion_model.<name>.lora_down.weight`` / ``lora_up`` / ``alpha``
    * ``diffsynth``: ``<name>.lora_A.default.weight`` / ``lora_B.default.weight``, no prefix, no alpha
    * ``alpha``: ``transformer.<name>.lora_A.weight`` / ``lora_B.weight`` + ``transformer.<name>.alpha``
    * ``comfy``: ComfyUI / ai-toolkit exports, ``diffusion_model.<name>.lora_A.weight`` / ``lora_B`` + ``.alpha``

    ``modules``: (name, module) to train instead of the tiny model's targets (a few of a published one).
    """
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in qwen_modules() if modules is None else modules:
        down, up = factors.for_module(module, RANK)
        if style == "musubi":
            kohya_entry(sd, "lora_unet_" + name.replace(".", "_"), down, up, ALPHA)
        elif style == "lightning":
            kohya_entry(sd, f"diffusion_model.{name}", down, up, ALPHA)
        elif style == "diffsynth":
            sd[f"{name}.lora_A.default.weight"], sd[f"{name}.lora_B.default.weight"] = down, up
        elif style in ("alpha", "comfy"):
            prefix = "transformer" if style == "alpha" else "diffusion_model"
            sd[f"{prefix}.{name}.lora_A.weight"], sd[f"{prefix}.{name}.lora_B.weight"] = down, up
            sd[f"{prefix}.{name}.alpha"] = torch.tensor(ALPHA, dtype=dtype)
        else:
            raise ValueError(style)
    metadata = {"ss_network_module": "networks.lora_qwen_image"} if style == "musubi" else None
    return save(sd, path, metadata)


# ---------------------------------------------------------------- diffusers legacy training scripts

LEGACY_ATTN = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora", "to_out.0": "to_out_lora"}
LEGACY_CLIP = ("q_proj", "k_proj", "v_proj", "out_proj")


def diffusers_legacy(path: Path, *, seed: int = 16, dtype: torch.dtype = torch.float32, family: str = "sd15") -> Path:
    """train_dreambooth_lora.py / train_text_to_image_lora.py of diffusers <= 0.20: LoRAAttnProcessor
    weights ``unet.<attention>.processor.to_q_lora.down.weight`` (to_out.0 -> to_out_lora), the text
    encoder's PatchedLoraProjection ``text_encoder.<...>.q_proj.lora_linear_layer.down.weight``; no alpha.
    The scripts trained SD 2.x (``--pretrained_model_name_or_path stabilityai/stable-diffusion-2-1``) the
    same way: ``family="sd2"``."""
    comps = tiny_components(family)
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in lora_layers(comps["unet"]):
        for leaf, processor in LEGACY_ATTN.items():
            if name.endswith("." + leaf) and (".attn1." in name or ".attn2." in name):
                attention = name[: -len(leaf) - 1]
                down, up = factors.for_module(module, RANK)
                sd[f"unet.{attention}.processor.{processor}.down.weight"] = down
                sd[f"unet.{attention}.processor.{processor}.up.weight"] = up
    for name, module in lora_layers(comps["text_encoder"]):
        if ends_with(name, *LEGACY_CLIP):
            down, up = factors.for_module(module, RANK)
            sd[f"text_encoder.{clip_name(name)}.lora_linear_layer.down.weight"] = down
            sd[f"text_encoder.{clip_name(name)}.lora_linear_layer.up.weight"] = up
    return save(sd, path)


# ---------------------------------------------------------------- the table the tests run


@dataclass(frozen=True)
class TrainerFile:
    id: str
    family: str
    write: Callable[[Path], Path]
    notes: str = ""


TRAINER_FILES: tuple[TrainerFile, ...] = (
    TrainerFile("sd15-kohya", "sd15", lambda p: kohya_sd15(p / "kohya_sd15.safetensors")),
    TrainerFile("sd15-kohya-dynamic-locon", "sd15",
                lambda p: kohya_sd15(p / "kohya_sd15_dynamic.safetensors", seed=21, ranks=dynamic_rank, conv=True),
                "resize_lora.py --dynamic_method: a rank and an alpha per module; conv_dim LoCon convs"),
    TrainerFile("sd2-kohya-v2", "sd2", lambda p: kohya_sd15(p / "kohya_sd2.safetensors", family="sd2"),
                "train_network.py --v2: SD1.x's names on SD 2.x's widths"),
    TrainerFile("sd2-kohya-v2-dynamic-locon", "sd2",
                lambda p: kohya_sd15(p / "kohya_sd2_dynamic.safetensors", seed=22, ranks=dynamic_rank, conv=True,
                                     family="sd2"),
                "--v2 with resize_lora.py --dynamic_method and conv_dim LoCon convs"),
    TrainerFile("sdxl-kohya-sgm", "sdxl", lambda p: kohya_sdxl(p / "kohya_sdxl.safetensors")),
    TrainerFile("flux-kohya-bfl", "flux", lambda p: kohya_flux(p / "kohya_flux.safetensors")),
    TrainerFile("flux-comfyui", "flux", lambda p: kohya_flux(p / "comfy_flux.safetensors", comfy=True)),
    TrainerFile("flux-xlabs", "flux", lambda p: xlabs_flux(p / "xlabs_flux.safetensors")),
    TrainerFile("flux-lora-transformer", "flux",
                lambda p: lora_transformer_flux(p / "lora_transformer_flux.safetensors")),
    TrainerFile("flux-kohya-diff", "flux", lambda p: kohya_flux_with_diff(p / "kohya_flux_diff.safetensors"),
                "linear2 as .diff/.diff_b beside the other layers' pairs"),
    TrainerFile("qwenimage-musubi-bf16", "qwenimage",
                lambda p: qwen_file(p / "musubi_qwen.safetensors", "musubi", dtype=torch.bfloat16),
                "factors and alpha stored in bfloat16"),
    TrainerFile("qwenimage-lightning", "qwenimage", lambda p: qwen_file(p / "lightning_qwen.safetensors", "lightning")),
    TrainerFile("qwenimage-diffsynth", "qwenimage", lambda p: qwen_file(p / "diffsynth_qwen.safetensors", "diffsynth")),
    TrainerFile("qwenimage-comfy", "qwenimage", lambda p: qwen_file(p / "comfy_qwen.safetensors", "comfy")),
    TrainerFile("qwenimage-transformer-alpha", "qwenimage",
                lambda p: qwen_file(p / "alpha_qwen.safetensors", "alpha")),
    TrainerFile("sd15-diffusers-legacy", "sd15", lambda p: diffusers_legacy(p / "legacy_sd15.safetensors")),
    TrainerFile("sd2-diffusers-legacy", "sd2",
                lambda p: diffusers_legacy(p / "legacy_sd2.safetensors", family="sd2")),
    # Wan 2.1 / 2.2 (tests/support/trainer_wan.py), read against the tiny two-expert WanPipeline
    TrainerFile("wan-musubi", "wan", lambda p: trainer_wan.musubi_wan(p / "musubi_wan.safetensors"),
                "networks/lora_wan.py: lora_unet_ + original names, alpha, bfloat16"),
    TrainerFile("wan-musubi-excluded", "wan",
                lambda p: trainer_wan.musubi_wan(p / "musubi_wan_excluded.safetensors",
                                                 exclude_patterns=(r"blocks\.1\.ffn\..*",)),
                "--network_args exclude_patterns: no ffn in block 1"),
    TrainerFile("wan-aitoolkit-high", "wan",
                lambda p: trainer_wan.aitoolkit_wan(p, "my_wan22_lora", "high"),
                "wan22_14b_model.py save_lora: <name>_high_noise.safetensors, float16, no alpha"),
    TrainerFile("wan-aitoolkit-low", "wan",
                lambda p: trainer_wan.aitoolkit_wan(p, "my_wan22_lora", "low"),
                "<name>_low_noise.safetensors: goes into transformer_2 by its name"),
    TrainerFile("wan-comfy-loraextract", "wan",
                lambda p: trainer_wan.comfy_loraextract_wan(p / "ComfyUI_extracted_lora_00001_.safetensors"),
                "LoraSave standard + bias_diff: pairs on every Linear, .diff on norms, .diff_b on every bias"),
    TrainerFile("wan-lightx2v", "wan", lambda p: trainer_wan.lightx2v_wan(p / "lightx2v_wan_distill.safetensors"),
                "lora_extractor.py: pairs on big Linears, .diff/.diff_b/.diff_m on the rest (head.head.diff)"),
    TrainerFile("wan-lightning", "wan", lambda p: trainer_wan.lightning_wan(p / "lightning_wan.safetensors"),
                "Wan2.2-Lightning: diffusion_model. + lora_down/lora_up + alpha"),
    TrainerFile("wan-diffsynth", "wan", lambda p: trainer_wan.diffsynth_wan(p / "diffsynth_wan.safetensors"),
                "DiffSynth-Studio: blocks.N.self_attn.q.lora_A.default.weight, no prefix"),
    TrainerFile("wan-diffusers", "wan", lambda p: trainer_wan.diffusers_wan(p),
                "WanPipeline.save_lora_weights with lora_adapter_metadata"),
    # Z-Image (tests/support/trainer_zimage.py)
    TrainerFile("zimage-musubi", "zimage", lambda p: trainer_zimage.musubi_zimage(p / "musubi_zimage.safetensors"),
                "networks/lora_zimage.py: lora_unet_ + diffusers names, alpha, bfloat16, main layers only"),
    TrainerFile("zimage-musubi-comfy", "zimage",
                lambda p: trainer_zimage.musubi_comfy_zimage(p / "musubi_zimage_comfy.safetensors"),
                "convert_z_image_lora_to_comfy.py: attention.qkv at rank 3r, alpha 3α, attention.out"),
    TrainerFile("zimage-aitoolkit", "zimage",
                lambda p: trainer_zimage.aitoolkit_zimage(p / "aitoolkit_zimage.safetensors"),
                "z_image.py: diffusion_model. + diffusers names, lora_A/lora_B, no alpha, float16"),
    TrainerFile("zimage-comfy-loraextract", "zimage",
                lambda p: trainer_zimage.comfy_loraextract_zimage(p / "ComfyUI_extracted_lora_00001_.safetensors"),
                "LoraSave standard + bias_diff: ComfyUI names (fused qkv), .diff on norms, .diff_b on biases"),
    TrainerFile("zimage-comfy-loraextract-pairs", "zimage",
                lambda p: trainer_zimage.comfy_loraextract_zimage(p / "ComfyUI_extracted_lora_00002_.safetensors",
                                                                  bias_diff=False),
                "LoraSave without bias_diff: the pairs alone, on ComfyUI's names"),
    TrainerFile("zimage-diffsynth", "zimage",
                lambda p: trainer_zimage.diffsynth_zimage(p / "diffsynth_zimage.safetensors"),
                "DiffSynth-Studio: layers.0.attention.to_q.lora_A.default.weight, no prefix"),
    TrainerFile("zimage-diffusers", "zimage", lambda p: trainer_zimage.diffusers_zimage(p),
                "ZImagePipeline.save_lora_weights with lora_adapter_metadata"),
    # FLUX.2 (tests/support/trainer_flux2.py), against the tiny klein pipeline (dev's transformer is the same class)
    TrainerFile("flux2-musubi", "flux2-klein", lambda p: trainer_flux2.musubi_flux2(p / "musubi_flux2.safetensors"),
                "networks/lora_flux_2.py: lora_unet_ + BFL names (fused img_attn.qkv), alpha, bfloat16"),
    TrainerFile("flux2-aitoolkit", "flux2-klein",
                lambda p: trainer_flux2.aitoolkit_flux2(p / "aitoolkit_flux2.safetensors"),
                "flux2_model.py: diffusion_model. + BFL names, lora_A/lora_B, no alpha, blocks only"),
    TrainerFile("flux2-aitoolkit-all", "flux2-klein",
                lambda p: trainer_flux2.aitoolkit_flux2(p / "aitoolkit_flux2_all.safetensors", transformer_only=False),
                "transformer_only: false: every Linear, final_layer.adaLN_modulation.1 included"),
    TrainerFile("flux2-comfy-loraextract", "flux2-klein",
                lambda p: trainer_flux2.comfy_loraextract_flux2(p / "ComfyUI_extracted_lora_00003_.safetensors"),
                "LoraSave: lora_down/lora_up under diffusion_model. on every Linear"),
    TrainerFile("flux2-diffusers", "flux2-klein", lambda p: trainer_flux2.diffusers_flux2(p),
                "Flux2KleinPipeline.save_lora_weights with lora_adapter_metadata"),
    TrainerFile("flux2-fal", "flux2-klein", lambda p: trainer_flux2.fal_flux2(p / "flux-spritesheet-lora.safetensors"),
                "fal: base_model.model. + BFL names, lora_A/lora_B, no alpha, no adapter_config.json, bfloat16"),
    TrainerFile("flux2-diffsynth", "flux2-klein",
                lambda p: trainer_flux2.diffsynth_flux2(p / "epoch-4.safetensors"),
                "DiffSynth-Studio: transformer_blocks.0.attn.to_q.lora_A.default.weight, no prefix, bfloat16"),
    TrainerFile("flux2-aitoolkit-lokr", "flux2-klein",
                lambda p: trainer_flux2.aitoolkit_flux2_lokr(p / "aitoolkit_flux2_lokr.safetensors"),
                "ai-toolkit LoKr (lokr_full_rank): diffusion_model. + BFL names, lokr_w1/lokr_w2, alpha 9999999999"),
    TrainerFile("flux2-aitoolkit-lokr-old", "flux2-klein",
                lambda p: trainer_flux2.aitoolkit_flux2_lokr(p / "aitoolkit_flux2_lokr_old.safetensors",
                                                             old_format=True),
                "old_lokr_format: true: lycoris_ + BFL names with '.' -> '_'"),
    TrainerFile("flux2-lycoris-lokr", "flux2-klein",
                lambda p: trainer_flux2.lycoris_flux2_lokr(p / "lycoris_flux2_lokr.safetensors"),
                "LyCORIS create_lycoris(algo=lokr) on diffusers' names (SimpleTuner): w1 full, w2_a@w2_b, bfloat16"),
    TrainerFile("flux2-dev-musubi", "flux2",
                lambda p: trainer_flux2.musubi_flux2(p / "musubi_flux2_dev.safetensors", family="flux2"),
                "the musubi file on FLUX.2 [dev]'s pipeline (guidance embedder, Mistral3)"),
    # Qwen-Image-Edit-2509's transformer is Qwen-Image's: its users load the same trainers' files.
    *(TrainerFile(f"qwenimage-edit-{style}", "qwenimage-edit",
                  lambda p, style=style: qwen_file(p / f"{style}_qwen_edit.safetensors", style))
      for style in ("musubi", "lightning", "diffsynth", "comfy", "alpha")),
)


def by_id(trainer_id: str) -> TrainerFile:
    [t] = [t for t in TRAINER_FILES if t.id == trainer_id]
    return t


def keys_of(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())

