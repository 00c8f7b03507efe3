"""Z-Image LoRA files the way each Z-Image trainer's own source writes them, for the tiny zimage family's
transformer; see trainer_files.py for the rule these writers follow (their own naming code, never
parity.lora's, never diffusers' converters).

Two name sets exist. The original Tongyi-MAI/Z-Image model (``src/zimage/transformer.py``), DiffSynth-
Studio's ``diffsynth/models/z_image_dit.py``, musubi-tuner's model and diffusers all name modules alike
(``layers.N.attention.to_q``, ``attention.to_out.0``, ``feed_forward.w1``), so those trainers walk the tiny
diffusers model's own names. The published single-file checkpoint that ComfyUI loads (its NextDiT module
tree) fuses q|k|v into ``attention.qkv`` and says ``attention.out``, ``q_norm``/``k_norm``, ``x_embedder``
and ``final_layer`` (COMFY_NAMES below, from diffusers' single-file converter run backwards).

* musubi-tuner (kohya-ss/musubi-tuner ``src/musubi_tuner/networks/lora_zimage.py`` + ``networks/lora.py``):
  ``ZIMAGE_TARGET_REPLACE_MODULES = ["ZImageTransformerBlock"]``, every Linear inside one, minus the
  default exclude ``.*(_modulation|_refiner).*`` (so the main ``layers`` only, without adaLN_modulation);
  ``lora_unet_`` + name with '.' -> '_', ``.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` (cast with
  the factors to the save dtype).
* musubi-tuner's ``networks/convert_z_image_lora_to_comfy.py`` (sd-scripts -> ComfyUI) on that file:
  ``attention_to_out_0`` -> ``attention_out``; to_q/to_k/to_v's downs concatenated (rank 3r), their ups
  placed block-diagonally (``up_weight[rows, i*rank:(i+1)*rank] = up_i``), alpha × 3, as
  ``lora_unet_layers_N_attention_qkv``.
* ai-toolkit (ostris/ai-toolkit ``extensions_built_in/diffusion_models/z_image/z_image.py``): LoRASpecialNetwork
  on diffusers' ZImageTransformer2DModel, every Linear under ``get_transformer_block_names()`` = ``["layers"]``
  (transformer_only), PEFT ``lora_A`` / ``lora_B`` with no alpha, ``convert_lora_weights_before_save``
  turning ``transformer.`` into ``diffusion_model.``; float16 (the example config's ``save.dtype``).
* ComfyUI LoraSave (comfyanonymous/ComfyUI ``comfy_extras/nodes_lora_extract.py``, lora_type standard,
  bias_diff True) on a ModelSubtract of two Z-Image models: for every ``diffusion_model.*.weight`` of ComfyUI's
  model, a float16 SVD pair ``lora_up`` / ``lora_down`` when 2-d (one pair for the fused qkv), a ``.diff``
  when 1-d (the RMSNorms); a ``.diff_b`` for every ``.bias``; no alpha. The pad tokens are not ``.weight``
  keys: LoraSave skips them.
* DiffSynth-Studio (modelscope/DiffSynth-Studio Z-Image examples: ``--lora_target_modules
  "to_q,to_k,to_v,to_out.0,w1,w2,w3"``, ``--remove_prefix_in_ckpt "pipe.dit."``): PEFT's state dict with the
  adapter name kept, ``layers.0.attention.to_q.lora_A.default.weight``, no prefix, no alpha.
* diffusers (``ZImagePipeline.save_lora_weights``): ``transformer.`` + diffusers names, the LoraConfig in
  the ``lora_adapter_metadata`` header.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import ALPHA, RANK, Factors, kohya_entry, save, saved_by_diffusers

# ComfyUI's Z-Image names of diffusers' (convert_z_image_transformer_checkpoint_to_diffusers, backwards):
# (diffusers fragment, ComfyUI fragment), applied in order to a full parameter name.
COMFY_NAMES = ((".attention.to_out.0.", ".attention.out."), (".attention.norm_q.", ".attention.q_norm."),
               (".attention.norm_k.", ".attention.k_norm."), ("all_x_embedder.2-1.", "x_embedder."),
               ("all_final_layer.2-1.", "final_layer."))
QKV = re.compile(r"(.+)\.attention\.to_([qkv])\.weight")


@cache
def transformer() -> nn.Module:
    """The tiny zimage family's transformer, built alone (parity/zoo/zimage.py tiny_transformer)."""
    from parity.zoo.weights import fill_deterministic
    from parity.zoo.zimage import tiny_transformer

    return fill_deterministic(tiny_transformer(), 0, "zimage/transformer")


def linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------- musubi-tuner

MUSUBI_DEFAULT_EXCLUDE = r".*(_modulation|_refiner).*"


def musubi_targets(model: nn.Module, exclude_patterns: tuple[str, ...] = ()) -> list[tuple[str, nn.Linear]]:
    """lora.create_network on ZImageTransformerBlock: its Linears, minus what the patterns match."""
    patterns = [re.compile(p) for p in (*exclude_patterns, MUSUBI_DEFAULT_EXCLUDE)]
    blocks = [n for n, m in model.named_modules() if type(m).__name__ == "ZImageTransformerBlock"]
    out = []
    for name, module in linears(model):
        if any(name.startswith(b + ".") for b in blocks) and not any(p.match(name) for p in patterns):
            out.append((name, module))
    return out


def musubi_state_dict(seed: int, dtype: torch.dtype, exclude_patterns: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in musubi_targets(transformer(), exclude_patterns):
        down, up = factors.for_module(module, RANK)
        kohya_entry(sd, "lora_unet_" + name.replace(".", "_"), down, up, ALPHA)
    return sd


MUSUBI_METADATA = {"ss_network_module": "networks.lora_zimage", "ss_network_dim": str(RANK),
                   "ss_network_alpha": str(ALPHA), "ss_base_model_version": "zimage",
                   "modelspec.architecture": "Z-Image/lora"}


def musubi_zimage(path: Path, *, seed: int = 41, dtype: torch.dtype = torch.bfloat16) -> Path:
    """networks/lora_zimage.py: ``lora_unet_layers_0_attention_to_q.lora_down.weight`` + alpha."""
    return save(musubi_state_dict(seed, dtype), path, MUSUBI_METADATA)


def to_comfy(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """convert_z_image_lora_to_comfy.py (sd-scripts -> ComfyUI), LoRA part: renames within ``layers`` keys,
    then q|k|v concatenated: downs stacked, ups block-diagonal, alpha × 3 (sd-scripts issue 2204)."""
    sd = dict(sd)
    for key in list(sd):
        if "layers" in key:
            new = key
            for src, dst in (("attention_to_out_0", "attention_out"), ("attention_norm_k", "attention_k_norm"),
                             ("attention_norm_q", "attention_q_norm")):
                new = new.replace(src, dst)
            sd[new] = sd.pop(key)
    for key in [k for k in sd if "attention" in k and "to_q" in k and "lora_up" in k]:
        name = key.split(".", 1)[0]
        prefix = name.replace("to_q", "")
        split = [sd[key].size(0)] * 3
        downs = [sd.pop(f"{prefix}{s}.lora_down.weight") for s in ("to_q", "to_k", "to_v")]
        ups = [sd.pop(f"{prefix}{s}.lora_up.weight") for s in ("to_q", "to_k", "to_v")]
        alpha = sd.pop(f"{name}.alpha")
        sd.pop(f"{prefix}to_k.alpha")
        sd.pop(f"{prefix}to_v.alpha")
        down = torch.cat(downs, dim=0)
        rank = ups[0].size(1)
        up = torch.zeros((sum(split), down.size(0)), dtype=down.dtype)
        row = 0
        for i, u in enumerate(ups):
            up[row:row + split[i], i * rank:(i + 1) * rank] = u
            row += split[i]
        sd[f"{prefix}qkv.lora_down.weight"], sd[f"{prefix}qkv.lora_up.weight"] = down, up
        sd[f"{prefix}qkv.alpha"] = alpha * 3
    return sd


def musubi_comfy_zimage(path: Path, *, seed: int = 41, dtype: torch.dtype = torch.bfloat16) -> Path:
    """The musubi file above after ``convert_z_image_lora_to_comfy.py`` (metadata kept, as it does)."""
    return save(to_comfy(musubi_state_dict(seed, dtype)), path, MUSUBI_METADATA)


# ---------------------------------------------------------------- ai-toolkit


def aitoolkit_zimage(path: Path, *, seed: int = 42, dtype: torch.dtype = torch.float16) -> Path:
    """z_image.py: every Linear under ``layers`` as ``diffusion_model.<name>.lora_A/lora_B``, no alpha."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in linears(transformer()):
        if name.startswith("layers."):
            down, up = factors.for_module(module, RANK)
            sd[f"diffusion_model.{name}.lora_A.weight"], sd[f"diffusion_model.{name}.lora_B.weight"] = down, up
    metadata = {"name": path.stem, "version": "1.0", "ss_base_model_version": "zimage",
                "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit"}),
                "format": "pt"}
    return save(sd, path, metadata)


# ---------------------------------------------------------------- ComfyUI LoraSave


def comfy_state_names(model: nn.Module) -> dict[str, str]:
    """ComfyUI's parameter name of each diffusers parameter (q/k/v weights all map to their qkv)."""
    out = {}
    for pname, _ in model.named_parameters():
        m = QKV.fullmatch(pname)
        name = f"{m[1]}.attention.qkv.weight" if m else pname
        for src, dst in COMFY_NAMES:
            if src.startswith("."):
                name = name.replace(src, dst)
            elif name.startswith(src):  # the top-level ModuleDict entries
                name = dst + name[len(src):]
        out[pname] = name
    return out


def comfy_loraextract_zimage(path: Path, *, seed: int = 43, rank: int = RANK, bias_diff: bool = True) -> Path:
    """LoraSave (standard) on the difference of two Z-Image models, ComfyUI's names. Without ``bias_diff``
    LoraSave keeps the pairs alone: calc_lora_model saves a 1-d weight's .diff and a .diff_b only with it."""
    model = transformer()
    params = dict(model.named_parameters())
    comfy: dict[str, torch.Tensor] = {}  # ComfyUI's state dict of the difference's shapes
    for pname, comfy_name in comfy_state_names(model).items():
        p = params[pname]
        comfy[comfy_name] = torch.cat([comfy[comfy_name], p]) if comfy_name in comfy else p
    gen = torch.Generator().manual_seed(seed)
    factors = Factors(seed, torch.float16)
    sd: dict[str, torch.Tensor] = {}
    for name, p in comfy.items():
        stem = "diffusion_model." + name.rsplit(".", 1)[0]
        if name.endswith(".weight") and p.ndim == 2:
            down, up = factors.for_shape(p.shape[0], p.shape[1], min(rank, *p.shape))
            sd[f"{stem}.lora_up.weight"], sd[f"{stem}.lora_down.weight"] = up, down
        elif not bias_diff:
            continue
        elif name.endswith(".weight"):
            sd[f"{stem}.diff"] = (torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.05).half()
        elif name.endswith(".bias"):
            sd[f"{stem}.diff_b"] = (torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.01).half()
    return save(sd, path)


# ---------------------------------------------------------------- DiffSynth-Studio, diffusers

DIFFSYNTH_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3")


def diffsynth_zimage(path: Path, *, seed: int = 44, dtype: torch.dtype = torch.float32) -> Path:
    """PEFT target_modules ``to_q,to_k,to_v,to_out.0,w1,w2,w3`` (every block, refiners too), the adapter
    name kept, ``pipe.dit.`` removed: no prefix, no alpha."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in linears(transformer()):
        if any(name.endswith("." + t) for t in DIFFSYNTH_TARGETS):
            down, up = factors.for_module(module, RANK)
            sd[f"{name}.lora_A.default.weight"], sd[f"{name}.lora_B.default.weight"] = down, up
    return save(sd, path)


def diffusers_zimage(folder: Path, *, seed: int = 45, name: str = "diffusers_zimage.safetensors") -> Path:
    """``ZImagePipeline.save_lora_weights`` with the LoraConfig as transformer_lora_adapter_metadata."""
    targets = ("to_q", "to_k", "to_v", "to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
    return saved_by_diffusers(folder, "ZImagePipeline", transformer(), targets, seed, name)
