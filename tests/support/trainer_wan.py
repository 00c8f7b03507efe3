"""Wan 2.1 / 2.2 LoRA files the way each Wan trainer's own source writes them, for the tiny wan family's
transformer; see trainer_files.py for the rule these writers follow (their own naming code, never
parity.lora's, never diffusers' converters).

Every trainer but diffusers and ai-toolkit's internals names modules the way Wan's original model does
(Wan-Video/Wan2.1 ``wan/modules/model.py``; Wan2.2 keeps the names), so the writers first name every
parameter of the tiny diffusers ``WanTransformer3DModel`` by its original name (``original_names``,
from the two model files side by side), then spell the keys each trainer spells:

* musubi-tuner (kohya-ss/musubi-tuner ``src/musubi_tuner/networks/lora_wan.py`` + ``networks/lora.py``):
  ``WAN_TARGET_REPLACE_MODULES = ["WanAttentionBlock"]``, every Linear inside a block, except what
  ``exclude_patterns`` (plus lora_wan's default ``.*(patch_embedding|text_embedding|time_embedding|
  time_projection|norm|head).*``) ``fullmatch`` on the original name; ``lora_unet_`` + name with
  '.' -> '_', ``.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` (a buffer, cast with the factors
  to the save dtype by ``LoRANetwork.save_weights``). Metadata: training/trainer_base.py's ``ss_*`` keys
  (``ss_network_module``, ``ss_base_model_version`` "wan", ``ss_network_args`` as JSON,
  ``ss_sd_model_name`` the basename of ``--dit``) and utils/sai_model_spec.py's modelspec
  (``modelspec.architecture`` "wan2.1/lora"; ``modelspec.timestep_range`` "min,max" only when
  ``--min_timestep`` / ``--max_timestep`` were given, which docs/wan.md tells Wan 2.2 users to set to
  875,1000 (T2V high noise) / 0,875 (low noise); I2V 900).
* ai-toolkit (ostris/ai-toolkit ``toolkit/network_mixins.py`` ``get_state_dict``, ``toolkit/models/wan21/
  wan_lora_convert.py`` ``convert_to_original``, ``extensions_built_in/diffusion_models/wan22/
  wan22_14b_model.py`` ``save_lora``): PEFT format (``lora_A`` / ``lora_B``, alpha dropped), diffusers
  names turned back into ``diffusion_model.`` + original names, only modules under ``blocks``
  (``transformer_only``; ``get_transformer_block_names`` is ``['blocks']``), float16 (the example
  config's ``save.dtype``); a Wan 2.2 14B run splits into ``<name>_high_noise.safetensors`` (its
  ``transformer_1``) and ``<name>_low_noise.safetensors`` (``transformer_2``), both with the job's
  metadata (``ss_base_model_version`` "wan_2.2_14b", ``training_info``, ``software``, ``format``).
* ComfyUI LoraSave (comfyanonymous/ComfyUI ``comfy_extras/nodes_lora_extract.py``, ``lora_type``
  standard, ``bias_diff`` True): for every ``diffusion_model.*.weight`` of the model difference, an SVD
  pair ``lora_up`` / ``lora_down`` (float16, no alpha) when it has 2+ dims, a ``.diff`` when it has
  one (the norms); a ``.diff_b`` for every ``.bias``. The patch embedding's 5-d Conv3d weight fails
  ``extract_lora`` (its ``except`` logs and skips it), so only its ``.diff_b`` is saved; the
  modulations are not ``.weight`` keys, so LoraSave saves nothing for them.
* LightX2V distill LoRAs (ModelTC/LightX2V ``tools/extract/lora_extractor.py``): ``diffusion_model.`` +
  the original key; a 2-d weight of 1,000,000 parameters or more becomes an SVD pair ``lora_up`` /
  ``lora_down`` (no alpha), everything else its full difference: ``.weight`` -> ``.diff``, ``.bias`` ->
  ``.diff_b``, a ``.modulation`` -> ``.diff_m`` (``blocks.0.modulation`` -> ``blocks.0.diff_m``,
  ``head.modulation`` -> ``head.diff_m``); output bfloat16 by default. Which side of 1,000,000 a module
  falls on is decided at Wan 14B's published widths (the tiny model is below it everywhere), so the
  tiny file has the published file's key set: ``head.head.diff`` and ``patch_embedding.diff`` included.
* Wan2.2-Lightning (the input ``tools/extract/convert_lightning_to_x2v_lora.py`` documents:
  ``diffusion_model.blocks.0.cross_attn.o.alpha`` / ``.lora_down.weight`` / ``.lora_up.weight``).
* DiffSynth-Studio (modelscope/DiffSynth-Studio Wan training: PEFT ``inject_adapter_in_model`` on its
  WanModel (original names), ``--lora_target_modules "q,k,v,o,ffn.0,ffn.2"``, ``--remove_prefix_in_ckpt
  "pipe.dit."``): ``blocks.N.self_attn.q.lora_A.default.weight`` (the adapter name kept), no prefix,
  no alpha (lora_alpha = rank).
* diffusers / PEFT (``WanPipeline.save_lora_weights``): ``transformer.`` + diffusers names, ``lora_A`` /
  ``lora_B``, the LoraConfig in the ``lora_adapter_metadata`` header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import (
    ALPHA,
    RANK,
    Factors,
    Ranks,
    fixed_rank,
    kohya_entry,
    save,
    saved_by_diffusers,
)

# ---------------------------------------------------------------- original names

# diffusers transformer_wan.py name (within a block) -> Wan-Video/Wan2.1 wan/modules/model.py name.
# WanAttentionBlock: norm1 / norm2 are parameter-free LayerNorms in both; the affine cross-attention
# norm is ``norm3`` in Wan and ``norm2`` in diffusers.
BLOCK_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
# WanModel's top level: Conv3d patch_embedding, Sequential text_embedding (Linear, GELU, Linear),
# time_embedding (Linear, SiLU, Linear), time_projection (SiLU, Linear), Head (norm, head, modulation).
TOP_NAMES = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}
# nn.Parameters held directly (not a .weight): WanAttentionBlock.modulation (1, 6, dim) and
# Head.modulation (1, 2, dim), diffusers' blocks.N.scale_shift_table and top-level scale_shift_table.
PARAMETER_NAMES = {"scale_shift_table": "head.modulation"}


def original_module(name: str) -> str | None:
    """Wan's name of a diffusers WanTransformer3DModel module (or directly held parameter), or None."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    if name in PARAMETER_NAMES:
        return PARAMETER_NAMES[name]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if m is None:
        return None
    n, rest = m.groups()
    if rest == "scale_shift_table":
        return f"blocks.{n}.modulation"
    return f"blocks.{n}.{BLOCK_NAMES[rest]}" if rest in BLOCK_NAMES else None


def original_names(transformer: nn.Module) -> dict[str, str]:
    """diffusers parameter name -> Wan's original parameter name, for every parameter of the tiny
    transformer (the rotary embedding has none; parameter-free norms have none)."""
    out: dict[str, str] = {}
    for pname, _ in transformer.named_parameters():
        owner, _, leaf = pname.rpartition(".")
        if leaf in ("weight", "bias") and original_module(owner) is not None:
            out[pname] = f"{original_module(owner)}.{leaf}"
        elif original_module(pname) is not None:  # a directly held parameter
            out[pname] = original_module(pname)
        else:
            raise AssertionError(f"no Wan name for {pname}: extend the table from wan/modules/model.py")
    return out


@cache
def transformer() -> nn.Module:
    """The tiny wan family's ``transformer`` (the high-noise expert), built alone: the same module tree
    and weights as the pipeline's (parity/zoo/wan.py build_tiny), without the VAE and text encoder."""
    from parity.zoo.wan import tiny_transformer
    from parity.zoo.weights import fill_deterministic

    return fill_deterministic(tiny_transformer(), 0, "wan/transformer")


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(original name, Linear) of every Linear inside a WanAttentionBlock, in module-tree order."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.startswith("blocks."):
            original = original_module(name)
            assert original is not None, name
            out.append((original, module))
    return out


PEFT_SUFFIXES = ("q", "k", "v", "o", "ffn.0", "ffn.2")  # DiffSynth's default --lora_target_modules


def peft_targets(modules: Iterable[tuple[str, nn.Linear]], suffixes: tuple[str, ...] = PEFT_SUFFIXES):
    """PEFT's target_modules rule on a list of names: the name is, or ends with '.' + , a target."""
    return [(n, m) for n, m in modules if any(n == s or n.endswith("." + s) for s in suffixes)]


# ---------------------------------------------------------------- musubi-tuner

MUSUBI_DEFAULT_EXCLUDE = r".*(patch_embedding|text_embedding|time_embedding|time_projection|norm|head).*"
# Comfy-Org/Wan_2.2_ComfyUI_Repackaged file names, the --dit docs/wan.md points Wan 2.2 users to
DIT_HIGH = "wan2.2_t2v_high_noise_14B_fp16.safetensors"
DIT_LOW = "wan2.2_t2v_low_noise_14B_fp16.safetensors"


def musubi_wan(path: Path, *, seed: int = 31, dtype: torch.dtype = torch.bfloat16, ranks: Ranks = fixed_rank,
               exclude_patterns: tuple[str, ...] = (), timestep_range: tuple[int, int] | None = None,
               dit: str = DIT_LOW, model: nn.Module | None = None) -> Path:
    """networks/lora_wan.py through lora.create_network: the Linears of each WanAttentionBlock, keyed
    ``lora_unet_`` + original name with '.' -> '_'; ``exclude_patterns`` (``--network_args
    "exclude_patterns=[...]"``) fullmatched on the original name, after which lora_wan appends its
    default. ``timestep_range``: ``--min_timestep`` / ``--max_timestep``. ``dtype``: the save dtype
    (``--save_precision``; bfloat16 here), which alpha is cast to as well."""
    model = model or transformer()
    patterns = [re.compile(p) for p in (*exclude_patterns, MUSUBI_DEFAULT_EXCLUDE)]
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    i = 0
    for original, module in block_linears(model):
        if any(p.fullmatch(original) for p in patterns):
            continue
        rank, alpha = ranks(i)
        i += 1
        down, up = factors.for_module(module, rank)
        kohya_entry(sd, "lora_unet_" + original.replace(".", "_"), down, up, alpha)
    metadata = {
        "ss_network_module": "networks.lora_wan", "ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA),
        "ss_base_model_version": "wan", "ss_output_name": path.stem, "ss_sd_model_name": dit,
        "ss_vae_name": "wan_2.1_vae.safetensors", "ss_mixed_precision": "bf16", "ss_timestep_sampling": "shift",
        "ss_discrete_flow_shift": "3.0",
        "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": "wan2.1/lora",
        "modelspec.implementation": "https://github.com/Wan-Video/Wan2.1", "modelspec.title": path.stem,
        "modelspec.resolution": "1280x720", "modelspec.date": "2026-01-01T00:00:00",
    }
    if exclude_patterns:
        # trainer_base.py: net_kwargs from "key=value" network_args, json.dumps'd
        metadata["ss_network_args"] = json.dumps({"exclude_patterns": str(list(exclude_patterns))})
    if timestep_range is not None:
        metadata["modelspec.timestep_range"] = f"{timestep_range[0]},{timestep_range[1]}"
    return save(sd, path, metadata)


# ---------------------------------------------------------------- ai-toolkit


def aitoolkit_wan(folder: Path, name: str, expert: str, *, seed: int = 32,
                  dtype: torch.dtype = torch.float16) -> Path:
    """wan22_14b_model.py save_lora with split_multistage_loras: the expert's half of the PEFT-format
    state dict under ``diffusion_model.`` + original names, saved as ``<name>_high_noise.safetensors``
    (transformer_1) or ``<name>_low_noise.safetensors`` (transformer_2). Each expert draws its own
    factors (they are separate LoRA modules in training)."""
    suffix = {"high": "_high_noise", "low": "_low_noise"}[expert]
    factors = Factors(seed + (0 if expert == "high" else 100), dtype)
    sd: dict[str, torch.Tensor] = {}
    for original, module in block_linears(transformer()):
        down, up = factors.for_module(module, RANK)
        sd[f"diffusion_model.{original}.lora_A.weight"] = down
        sd[f"diffusion_model.{original}.lora_B.weight"] = up
    metadata = {  # toolkit/metadata.py get_meta_for_safetensors: non-strings JSON-encoded
        "name": name, "version": "1.0", "training_info": json.dumps({"step": 2000, "epoch": 4}),
        "ss_base_model_version": "wan_2.2_14b", "ss_output_name": name,
        "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit"}),
        "format": "pt",
    }
    return save(sd, Path(folder) / f"{name}{suffix}.safetensors", metadata)


# ---------------------------------------------------------------- full differences (ComfyUI, LightX2V)


def _diff_like(gen: torch.Generator, p: torch.Tensor, scale: float = 0.05) -> torch.Tensor:
    """A full difference for parameter ``p``: noise of ``scale`` x the parameter's spread (x 1 for a
    constant parameter such as a norm's ones)."""
    spread = float(p.detach().double().std()) if p.numel() > 1 else 0.0
    return torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale * (spread or 1.0)


def comfy_loraextract_wan(path: Path, *, seed: int = 33, rank: int = RANK) -> Path:
    """comfy_extras/nodes_lora_extract.py LoraSave, lora_type "standard", bias_diff True, on a
    ModelSubtract of two Wan models: float16 throughout, no alpha, no metadata."""
    model = transformer()
    names = original_names(model)
    gen = torch.Generator().manual_seed(seed)
    factors = Factors(seed, torch.float16)
    modules = dict(model.named_modules())
    sd: dict[str, torch.Tensor] = {}
    for pname, p in model.named_parameters():
        original = names[pname]
        if original.endswith(".weight"):
            stem = "diffusion_model." + original[: -len(".weight")]
            if p.ndim < 2:
                sd[f"{stem}.diff"] = _diff_like(gen, p).half()
            elif p.ndim == 2:
                down, up = factors.for_module(modules[pname[: -len(".weight")]], min(rank, *p.shape))
                sd[f"{stem}.lora_up.weight"], sd[f"{stem}.lora_down.weight"] = up, down
            # a 5-d Conv3d weight: extract_lora raises inside its try, LoraSave logs and skips it
        elif original.endswith(".bias"):
            sd[f"diffusion_model.{original[: -len('.bias')]}.diff_b"] = _diff_like(gen, p, 0.01).half()
        # modulations: not ".weight" / ".bias" keys, LoraSave writes nothing for them
    return save(sd, path)


# Wan 14B's published widths (Wan-Video/Wan2.1 wan/configs/wan_t2v_14B.py; Wan2.2 A14B the same):
# dim 5120, ffn_dim 13824, text_dim 4096, freq_dim 256, in/out_dim 16, patch (1, 2, 2).
WAN14B = {"dim": 5120, "ffn": 13824, "text": 4096, "freq": 256, "in": 16, "out": 16, "patch": 1 * 2 * 2}


def published_numel(original: str) -> int:
    """Parameter count of an original Wan 14B parameter (a ``.weight`` / ``.bias`` / modulation)."""
    d, f = WAN14B["dim"], WAN14B["ffn"]
    stem, _, leaf = original.rpartition(".")
    if leaf == "bias" or original.endswith(("norm3.weight", "norm_q.weight", "norm_k.weight")):
        if stem.endswith("ffn.0"):
            return f
        if stem.endswith("head.head"):
            return WAN14B["out"] * WAN14B["patch"]
        if stem == "time_projection.1":
            return 6 * d
        return d
    if original.endswith("modulation"):
        return (2 if original.startswith("head.") else 6) * d
    shapes = {"ffn.0": (f, d), "ffn.2": (d, f), "text_embedding.0": (d, WAN14B["text"]),
              "time_embedding.0": (d, WAN14B["freq"]), "time_projection.1": (6 * d, d),
              "head.head": (WAN14B["out"] * WAN14B["patch"], d),
              "patch_embedding": (d, WAN14B["in"] * WAN14B["patch"])}
    for suffix, (o, i) in shapes.items():
        if stem == suffix or stem.endswith("." + suffix):
            return o * i
    return d * d  # q, k, v, o, text_embedding.2, time_embedding.2


def lightx2v_wan(path: Path, *, seed: int = 34, rank: int = RANK, dtype: torch.dtype = torch.bfloat16) -> Path:
    """tools/extract/lora_extractor.py (no --diff-only) on a distilled Wan 14B against its base: every
    changed parameter; 2-d weights of >= 1,000,000 parameters (at 14B widths) as SVD pairs, the rest as
    ``.diff`` / ``.diff_b`` / ``.diff_m``; ``--output-dtype`` bf16 (its default)."""
    model = transformer()
    names = original_names(model)
    gen = torch.Generator().manual_seed(seed)
    factors = Factors(seed, dtype)
    modules = dict(model.named_modules())
    sd: dict[str, torch.Tensor] = {}
    for pname, p in model.named_parameters():
        original = names[pname]
        if p.ndim == 2 and original.endswith(".weight") and published_numel(original) >= 1_000_000:
            down, up = factors.for_module(modules[pname[: -len(".weight")]], rank)
            stem = "diffusion_model." + original[: -len(".weight")]
            sd[f"{stem}.lora_up.weight"], sd[f"{stem}.lora_down.weight"] = up, down
        elif original.endswith(".weight"):
            sd[f"diffusion_model.{original[: -len('.weight')]}.diff"] = _diff_like(gen, p).to(dtype)
        elif original.endswith(".bias"):
            sd[f"diffusion_model.{original[: -len('.bias')]}.diff_b"] = _diff_like(gen, p, 0.01).to(dtype)
        elif original.endswith(".modulation"):
            sd[f"diffusion_model.{original[: -len('.modulation')]}.diff_m"] = _diff_like(gen, p, 0.01).to(dtype)
        else:
            raise AssertionError(original)
    return save(sd, path)


def lightning_wan(path: Path, *, seed: int = 35, dtype: torch.dtype = torch.bfloat16, alpha: float = 8.0) -> Path:
    """Wan2.2-Lightning's release format (the input of LightX2V's convert_lightning_to_x2v_lora.py):
    ``diffusion_model.`` + original block Linear names, ``lora_down`` / ``lora_up`` and ``.alpha``."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for original, module in block_linears(transformer()):
        down, up = factors.for_module(module, RANK)
        kohya_entry(sd, f"diffusion_model.{original}", down, up, alpha)
    return save(sd, path)


# ---------------------------------------------------------------- DiffSynth-Studio, diffusers


def diffsynth_wan(path: Path, *, seed: int = 36, dtype: torch.dtype = torch.float32) -> Path:
    """DiffSynth-Studio's Wan LoRA: PEFT's ``lora_A.default`` / ``lora_B.default`` on the original
    names of ``q,k,v,o,ffn.0,ffn.2``, ``pipe.dit.`` removed, no prefix, no alpha."""
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for original, module in peft_targets(block_linears(transformer())):
        down, up = factors.for_module(module, RANK)
        sd[f"{original}.lora_A.default.weight"], sd[f"{original}.lora_B.default.weight"] = down, up
    return save(sd, path)


DIFFUSERS_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")


def diffusers_wan(folder: Path, *, seed: int = 37, name: str = "diffusers_wan.safetensors") -> Path:
    """``WanPipeline.save_lora_weights`` as diffusers' training scripts call it (``blocks.N.attn1.to_q``)."""
    return saved_by_diffusers(folder, "WanPipeline", transformer(), DIFFUSERS_TARGETS, seed, name)
