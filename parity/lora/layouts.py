"""LoRA file layouts: the registry of every key layout trainers publish, each with the writer that
stores a neutral LoRA in it. Reading is one grammar for all of them (parity/lora/keys.py, names.py,
reader.py); a layout's entry is what recognises it there and what writes it here.

A layout is four choices, made by the trainer that writes it:

- **prefix**: ``kohya`` (``lora_unet_``, ``lora_te1_``… with dots as underscores), ``component``
  (``unet.``, ``transformer.``…), ``diffusion_model`` (the denoiser under ComfyUI's prefix), ``peft``
  (``base_model.model.``: the one component a PEFT adapter was made on) or ``none`` (the denoiser's names bare);
- **pair**: how down/up are spelled: ``lora_down`` (``.lora_down.weight``), ``lora_A``, ``lora_A.default``
  (PEFT with the adapter name kept), ``legacy`` (diffusers' pre-PEFT ``to_q_lora.down.weight``,
  ``.lora.down.weight``, ``.lora_linear_layer.down.weight``), ``down/up`` (XLabs);
- **naming**: whose module names (parity/lora/names: diffusers, sgm, bfl, xlabs);
- **alpha**: ``keys`` (a ``.alpha`` scalar per module, in the factors' dtype), ``metadata`` (diffusers'
  LoraConfig kwargs in the safetensors header), ``config`` (PEFT's adapter_config.json beside the file:
  parity/lora/peftadapter.py) or ``none`` (α = r).

``diff`` names the modules (by suffix) that the layout stores as full differences (``.diff``, and
``.diff_b`` where the module has a bias) instead of a pair.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from parity.lora.headeralpha import METADATA_KEY
from parity.lora.names import Target
from parity.lora.names.diffusers import TEXT_MODEL_PREFIX
from parity.lora.names.table import PARTIAL, ComponentNames, component_names
from parity.lora.neutral import DiffModule, LoraFile, LoraModule
from parity.lora.peftadapter import CONFIG_NAME
from parity.lora.peftadapter import PREFIX as PEFT_PREFIX
from parity.zoo.weights import deterministic_tensor


@dataclass(frozen=True)
class Layout:
    name: str
    trainer: str  # who writes it
    example: str  # one key, as that trainer writes it
    prefix: str
    pair: str
    naming: str
    alpha: str
    diff: tuple[str, ...] = ()
    # kohya prefix of a lone text encoder: sd-scripts writes lora_te_ for SD1.x, lora_te1_ for FLUX.1's CLIP
    single_te: str = "lora_te"
    kohya_denoiser: str = "lora_unet"  # kohya prefix of the UNet or transformer


LAYOUT_LIST = (
    Layout("diffusers", "diffusers save_lora_weights, PEFT, ai-toolkit",
           "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
           "component", "lora_A", "diffusers", "metadata"),
    Layout("diffusers-alpha", "ai-toolkit, SimpleTuner (per-module alpha beside PEFT names)",
           "transformer.transformer_blocks.0.attn.to_q.alpha", "component", "lora_A", "diffusers", "keys"),
    Layout("diffusers-legacy", "diffusers examples/ before PEFT (LoRAAttnProcessor, LoRACompatibleLinear)",
           "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
           "component", "legacy", "legacy", "keys"),
    Layout("kohya", "kohya sd-scripts networks/lora.py (SD1.x), musubi-tuner (Qwen-Image, Z-Image lora_zimage.py)",
           "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "kohya", "lora_down", "diffusers", "keys"),
    Layout("kohya-sgm", "kohya sd-scripts networks/lora.py on sdxl_original_unet (SDXL)",
           "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
           "kohya", "lora_down", "sgm", "keys"),
    Layout("kohya-bfl", "kohya sd-scripts networks/lora_flux.py (FLUX.1)",
           "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", "kohya", "lora_down", "bfl", "keys", single_te="lora_te1"),
    Layout("kohya-bfl-diff", "kohya sd-scripts lora_flux.py / ComfyUI, full-trained layers as .diff/.diff_b",
           "lora_unet_single_blocks_0_linear2.diff", "kohya", "lora_down", "bfl", "keys",
           diff=("linear2",), single_te="lora_te1"),
    Layout("lora_transformer", "kohya-style keys on diffusers transformer names (FLUX.1 trainers)",
           "lora_transformer_single_transformer_blocks_0_attn_to_q.lora_down.weight",
           "kohya", "lora_down", "diffusers", "keys", single_te="lora_te1", kohya_denoiser="lora_transformer"),
    Layout("comfyui", "ComfyUI (comfy/lora.py), BFL names under diffusion_model.",
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight",
           "diffusion_model", "lora_down", "bfl", "keys"),
    Layout("xlabs", "XLabs x-flux train_flux_lora_deepspeed.py",
           "double_blocks.0.processor.qkv_lora1.down.weight", "none", "down/up", "xlabs", "none"),
    Layout("diffusion_model", "ComfyUI / ai-toolkit exports (Qwen-Image, Z-Image z_image.py), PEFT pairs under diffusion_model.",
           "diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight",
           "diffusion_model", "lora_A", "diffusers", "keys"),
    Layout("lightning", "Qwen-Image Lightning (lightx2v): kohya pairs under diffusion_model.",
           "diffusion_model.transformer_blocks.0.attn.to_q.lora_down.weight",
           "diffusion_model", "lora_down", "diffusers", "keys"),
    Layout("diffsynth", "DiffSynth-Studio (Qwen-Image, Z-Image: PEFT names with the adapter name kept, no prefix)",
           "transformer_blocks.0.attn.to_q.lora_A.default.weight", "none", "lora_A.default", "diffusers", "none"),
    # Wan 2.1/2.2 trainers, on Wan's original names (parity/lora/names/wan.py)
    Layout("musubi-wan", "musubi-tuner networks/lora_wan.py (Wan 2.1/2.2)",
           "lora_unet_blocks_0_self_attn_q.lora_down.weight", "kohya", "lora_down", "wan", "keys"),
    Layout("aitoolkit-wan", "ai-toolkit (Wan 2.1/2.2 LoRAs, high/low-noise pairs)",
           "diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model", "lora_A", "wan", "none"),
    Layout("comfyui-wan", "ComfyUI / kijai WanVideoWrapper, LightX2V distill LoRAs: kohya pairs under diffusion_model.",
           "diffusion_model.blocks.0.self_attn.q.lora_down.weight", "diffusion_model", "lora_down", "wan", "keys"),
    Layout("comfyui-wan-diff", "ComfyUI LoraSave, LightX2V extractions: full differences (.diff/.diff_b/.diff_m) beside the pairs",
           "diffusion_model.blocks.0.ffn.2.diff", "diffusion_model", "lora_down", "wan", "keys", diff=("ffn.2",)),
    Layout("diffsynth-wan", "DiffSynth-Studio (Wan: original names, PEFT pairs with the adapter name kept)",
           "blocks.0.self_attn.q.lora_A.default.weight", "none", "lora_A.default", "wan", "none"),
    # Z-Image, on its single-file checkpoint's names (parity/lora/names/zimage.py)
    Layout("kohya-zimage", "musubi-tuner networks/convert_z_image_lora_to_comfy.py (Z-Image: to_q|to_k|to_v "
           "concatenated into attention.qkv at rank 3r, alpha 3α)",
           "lora_unet_layers_0_attention_qkv.lora_down.weight", "kohya", "lora_down", "zimage", "keys"),
    Layout("comfyui-zimage", "ComfyUI LoraSave (comfy_extras/nodes_lora_extract.py) on Z-Image: ComfyUI's names "
           "under diffusion_model., no alpha",
           "diffusion_model.layers.0.attention.qkv.lora_down.weight", "diffusion_model", "lora_down", "zimage", "none"),
    Layout("comfyui-zimage-diff", "ComfyUI LoraSave on Z-Image with bias_diff: full differences (.diff on the norms, "
           ".diff_b on the biases) beside the pairs", "diffusion_model.layers.0.attention_norm1.diff",
           "diffusion_model", "lora_down", "zimage", "none", diff=("feed_forward.w2",)),
    # FLUX.2, on BFL's original names (parity/lora/names/flux2.py)
    Layout("musubi-flux2", "musubi-tuner networks/lora_flux_2.py (FLUX.2: DoubleStreamBlock/SingleStreamBlock Linears)",
           "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", "kohya", "lora_down", "flux2", "keys"),
    Layout("aitoolkit-flux2", "ai-toolkit flux2_model.py convert_lora_weights_before_save (PEFT pairs, no alpha)",
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight", "diffusion_model", "lora_A", "flux2", "none"),
    # fal's trainer publishes PEFT's own keys without the adapter_config.json beside them (diffusers #13169): the
    # reader knows it by its BFL names (parity/lora/reader.py _fal_flux2), alpha = r as diffusers loads it
    Layout("fal-flux2", "fal FLUX.2 [klein] LoRA trainer (PEFT's keys, no adapter_config.json, no alpha)",
           "base_model.model.double_blocks.0.img_attn.qkv.lora_A.weight", "peft", "lora_A", "flux2", "none"),
    Layout("comfyui-flux2", "ComfyUI (comfy/lora.py key map, LoraSave) on FLUX.2: kohya pairs under diffusion_model.",
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight", "diffusion_model", "lora_down", "flux2",
           "keys"),
    # LyCORIS's wrapper names (lycoris/wrapper.py: "lycoris_" + the wrapped model's module name, '.' -> '_'):
    # LoCon files hold these pairs; LoKr/LoHa files their own tensors under the same names
    Layout("lycoris", "LyCORIS create_lycoris on a diffusers model (SimpleTuner; FLUX.2 LoKr, diffusers' "
           "_convert_lycoris_flux2_lokr_to_diffusers)", "lycoris_transformer_blocks_0_attn_to_q.lora_down.weight",
           "kohya", "lora_down", "diffusers", "keys", kohya_denoiser="lycoris"),
    Layout("lycoris-flux2", "ai-toolkit old_lokr_format on FLUX.2 (network_mixins.py get_state_dict: lora_transformer_ "
           "-> lycoris_ on its BFL Flux2)", "lycoris_double_blocks_0_img_attn_qkv.lora_down.weight",
           "kohya", "lora_down", "flux2", "keys", kohya_denoiser="lycoris"),
    Layout("peft", "PEFT save_pretrained of get_peft_model(one component), adapter_config.json beside it",
           "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
           "peft", "lora_A", "diffusers", "config"),
    Layout("diffusers-attn-procs", "diffusers <= 0.14 unet.save_attn_procs (LoRACrossAttnProcessor, no prefix)",
           "down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
           "none", "legacy", "legacy", "none"),
    # Read by parity/lora/cloneofsimo.py, which rebuilds the numbering from the module tree; not written.
    Layout("cloneofsimo", "cloneofsimo lora_diffusion save_safeloras(_with_embeds): modules numbered",
           "unet:0:up", "numbered", "numbered", "numbered", "none"),
)
NUMBERED_LAYOUT = "cloneofsimo"
# The layout registry: name → its entry. The families that publish a layout name it in their
# ``layouts`` (parity/zoo), and the case table takes it from there.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in LAYOUT_LIST}

PAIR_SUFFIXES = {"lora_down": (".lora_down.weight", ".lora_up.weight"), "lora_A": (".lora_A.weight", ".lora_B.weight"),
                 "lora_A.default": (".lora_A.default.weight", ".lora_B.default.weight"),
                 "down/up": (".down.weight", ".up.weight")}
# diffusers' legacy LoRA layers hang below the module: attention projections in the processor
# (``to_q_lora``), text encoder layers as ``lora_linear_layer``, the rest as ``lora``.
LEGACY_TAILS = {"attention": "_lora", "text_encoder": ".lora_linear_layer", "other": ".lora"}


def kohya_prefixes(components: list[str], single_te: str = "lora_te", denoiser: str = "lora_unet") -> dict[str, str]:
    """Component → kohya key prefix; SDXL's two text encoders become te1/te2."""
    two_te = "text_encoder_2" in components
    out = {"unet": denoiser, "transformer": denoiser,
           "text_encoder": "lora_te1" if two_te else single_te, "text_encoder_2": "lora_te2"}
    return {c: out[c] for c in components if c in out}


def _prefix(layout: Layout, component: str, components: list[str]) -> tuple[str, bool]:
    """(key prefix, names underscored) of ``component`` in ``layout``."""
    if layout.prefix == "kohya":
        prefixes = kohya_prefixes(components, layout.single_te, layout.kohya_denoiser)
        if component not in prefixes:
            raise ValueError(f"{layout.name} layout has no prefix for component {component!r}")
        return prefixes[component] + "_", True
    if layout.prefix == "component":
        return component + ".", False
    if layout.prefix == "peft":
        if len(components) != 1:
            raise ValueError(f"a PEFT adapter holds one model's modules, not {', '.join(components)}'s")
        return PEFT_PREFIX, False
    if component.startswith("text_encoder"):
        raise ValueError(f"the {layout.name} layout holds the denoiser only, not {component}")
    return ("diffusion_model." if layout.prefix == "diffusion_model" else ""), False


def _diffusers_metadata(lora: LoraFile) -> dict[str, str] | None:
    pairs = lora.low_rank()
    if all(m.alpha is None for m in pairs.values()):
        return None
    packed: dict[str, object] = {}
    for component in lora.components():
        mods = [m for (c, _), m in sorted(pairs.items()) if c == component]
        ranks = [m.rank for m in mods]
        alphas = [m.effective_alpha for m in mods]
        r = max(set(ranks), key=ranks.count)
        a = max(set(alphas), key=alphas.count)
        packed[f"{component}.r"] = r
        packed[f"{component}.lora_alpha"] = a
        packed[f"{component}.target_modules"] = [m.module for m in mods]
        packed[f"{component}.rank_pattern"] = {re.escape(m.module): m.rank for m in mods if m.rank != r}
        packed[f"{component}.alpha_pattern"] = {
            re.escape(m.module): m.effective_alpha for m in mods if m.effective_alpha != a
        }
    return {METADATA_KEY: json.dumps(packed), "format": "pt"}


def _namings(layout: Layout, component: str) -> tuple[str, ...]:
    """The namings ``layout`` gives ``component``'s modules, first choice first: text encoders keep
    diffusers' names in every layout; the legacy layout renames attention projections only."""
    if component not in ("unet", "transformer"):
        return ("diffusers",)
    return (layout.naming, "diffusers") if layout.naming in PARTIAL else (layout.naming,)


def _grouped(layout: Layout, lora: LoraFile, names: Mapping[str, ComponentNames]) -> dict[tuple[str, str], tuple]:
    """(component, file module name) → the target and the neutral modules it carries, for layouts
    whose naming fuses modules (BFL qkv): every module of a fused target must come from one write."""
    groups: dict[tuple[str, str], tuple] = {}
    for (component, module), m in sorted(lora.modules.items()):
        found = next((f for naming in _namings(layout, component)
                      if (f := names[component].name_of(naming, module)) is not None), None)
        if found is None:
            raise ValueError(f"the {layout.name} layout has no name for {component}.{module}")
        name, target = found
        groups.setdefault((component, name), (target, {}))[1][module] = m
    return groups


def _fuse(target: Target, members: dict[str, LoraModule]) -> LoraModule:
    """One file pair for a fused target: downs stacked, ups block-diagonal, so ΔW of every member is
    exactly its own (α/r)·B@A; members' α/r go into the ups when they differ (the file is the truth)."""
    if len(members) == 1 and target.whole:
        return next(iter(members.values()))
    ratios = {m.effective_alpha / m.rank for m in members.values()}
    keep = len(ratios) == 1
    dtype = next(iter(members.values())).down.dtype
    downs, blocks = [], []
    for name in target.modules:
        m = members.get(name)
        if m is None:
            continue
        downs.append(m.down)
        blocks.append((name, m.up if keep else (m.up.double() * (m.effective_alpha / m.rank)).to(dtype)))
    down = torch.cat(downs)
    rank = down.shape[0]
    up = torch.zeros((target.rows, rank), dtype=dtype)
    col = 0
    for name, block in blocks:
        r = block.shape[1]
        for piece in (p for p in target.pieces if p.module == name):
            up[piece.start:piece.start + piece.size, col:col + r] = block[piece.at:piece.at + piece.size].reshape(
                piece.size, r)
        col += r
    first = next(iter(members.values()))
    alpha = (ratios.pop() * rank) if keep else float(rank)
    return LoraModule(first.component, "+".join(target.modules), down, up, alpha)


def _diff_of(m: LoraModule, module: nn.Module, seed_tag: str) -> DiffModule:
    delta = (m.effective_alpha / m.rank) * (m.up.double().flatten(1) @ m.down.double().flatten(1))
    bias = None
    if getattr(module, "bias", None) is not None:
        bias = deterministic_tensor(0, seed_tag + "/diff_b", tuple(module.bias.shape), 0.1).to(m.down.dtype)
    return DiffModule(m.component, m.module, delta.reshape(module.weight.shape).to(m.down.dtype), bias)


def _stem(layout: Layout, component: str, name: str, underscored: bool) -> str:
    if component.startswith("text_encoder") and layout.prefix == "kohya" and not name.startswith(TEXT_MODEL_PREFIX):
        name = TEXT_MODEL_PREFIX + name
    if layout.pair == "legacy":
        kind = ("attention" if ".processor." in name else "text_encoder" if component.startswith("text_encoder")
                else "other")
        name += LEGACY_TAILS[kind]
    return name.replace(".", "_") if underscored else name


def to_state_dict(lora: LoraFile, layout: str, components: Mapping[str, nn.Module] | None = None,
                  ) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The tensors (and safetensors header metadata) ``layout`` stores for ``lora``. Layouts on
    original names (SGM, BFL, XLabs) need the model's ``components`` to derive them."""
    try:
        spec = LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}") from None
    if spec.prefix == "numbered":
        raise ValueError(f"the {layout} layout is lora_diffusion's own: its numbering is the trainer's, not written here")
    needs_model = spec.naming != "diffusers"
    if needs_model and components is None:
        raise ValueError(f"the {layout} layout derives its names from the model: pass its components")
    names = {c: component_names(c, m) for c, m in (components or {}).items()}
    if not needs_model:
        groups = {(c, mod): (None, {mod: m}) for (c, mod), m in lora.modules.items()}
    else:
        groups = _grouped(spec, lora, names)
    down_sfx, up_sfx = PAIR_SUFFIXES.get(spec.pair, (".down.weight", ".up.weight"))
    sd: dict[str, torch.Tensor] = {}
    for (component, name), (target, members) in groups.items():
        prefix, underscored = _prefix(spec, component, lora.components())
        stem = prefix + _stem(spec, component, name, underscored)
        if any(isinstance(m, DiffModule) for m in members.values()) or any(
                name.endswith(s) for s in spec.diff):
            if len(members) != 1 or (target is not None and not target.whole):
                raise ValueError(f"{layout}: a full difference on a fused module ({name}) is not supported")
            if spec.prefix not in ("kohya", "diffusion_model"):
                raise ValueError(f"the {layout} layout stores no full differences ({component}.{name})")
            m = next(iter(members.values()))
            if isinstance(m, LoraModule):
                m = _diff_of(m, names[component].modules[m.module], stem)
            if m.diff is not None:
                sd[stem + ".diff"] = m.diff
            if m.bias is not None:
                sd[stem + ".diff_b"] = m.bias
            continue
        pair = _fuse(target, members) if target is not None else next(iter(members.values()))
        sd[stem + down_sfx] = pair.down
        sd[stem + up_sfx] = pair.up
        if spec.alpha == "keys" and pair.alpha is not None:
            sd[stem + ".alpha"] = torch.tensor(float(pair.alpha), dtype=pair.down.dtype)
        elif spec.alpha == "none" and pair.alpha is not None and not math.isclose(pair.alpha, pair.rank):
            # No alpha to store: α/r goes into the up factor, rounded in its dtype, as a converter
            # to such a layout does. The reader reads the file back, so the rounding is in the truth.
            sd[stem + up_sfx] = (pair.up.double() * (pair.alpha / pair.rank)).to(pair.up.dtype)
    metadata = _diffusers_metadata(lora) if spec.alpha == "metadata" else None
    return {k: v.contiguous() for k, v in sd.items()}, metadata


def _peft_config(lora: LoraFile) -> dict[str, object]:
    """The LoraConfig fields PEFT's save_pretrained writes that set each module's scale: the most common
    rank and α, every other module by an exact-name pattern."""
    mods = [m for _, m in sorted(lora.low_rank().items())]
    ranks = [m.rank for m in mods]
    alphas = [m.effective_alpha for m in mods]
    r, a = max(set(ranks), key=ranks.count), max(set(alphas), key=alphas.count)
    return {"peft_type": "LORA", "r": r, "lora_alpha": a, "target_modules": sorted({m.module for m in mods}),
            "rank_pattern": {re.escape(m.module): m.rank for m in mods if m.rank != r},
            "alpha_pattern": {re.escape(m.module): m.effective_alpha for m in mods if m.effective_alpha != a},
            "use_rslora": False, "use_dora": False}


def save_lora(lora: LoraFile, path: str | os.PathLike, layout: str,
              components: Mapping[str, nn.Module] | None = None) -> str:
    from safetensors.torch import save_file

    sd, metadata = to_state_dict(lora, layout, components)
    save_file(sd, str(path), metadata=metadata)
    if LAYOUTS[layout].alpha == "config":  # PEFT's adapter_config.json, beside the file
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_NAME), "w") as fh:
            json.dump(_peft_config(lora), fh, indent=2)
    return str(path)


def nameable(layout: str, components: Mapping[str, nn.Module]) -> dict[str, set[str]]:
    """component → the modules ``layout`` can name in this model (all of them, on diffusers names)."""
    spec = LAYOUTS[layout]
    out: dict[str, set[str]] = {}
    for component, model in components.items():
        if spec.prefix in ("diffusion_model", "none") and component.startswith("text_encoder"):
            continue
        names = component_names(component, model)
        out[component] = {m for naming in _namings(spec, component) for t in names.dotted[naming].values()
                          for m in t.modules if m in names.capable}
    return out


@dataclass(frozen=True)
class Signature:
    """What the reader saw of a file's denoiser keys (its text encoder keys when it has no denoiser)."""

    prefix: str  # prefix style
    prefix_text: str
    pair: str
    naming: str
    alpha_keys: bool
    diff: bool = False  # some modules are full differences


def layout_name(sig: Signature) -> str:
    """The registered layout a file with this signature is written in, or a description of it.

    Layouts that spell keys alike (kohya and lora_transformer, diffusers and diffusers-alpha, kohya-bfl
    and kohya-bfl-diff) are told apart by what the file shows: its denoiser prefix, whether it has
    alpha keys, whether it has full differences."""
    pair, naming = sig.pair, sig.naming
    if pair == "down/up" and naming in ("legacy", "diffusers"):
        pair, naming = "legacy", "legacy"
    matches = [layout for layout in LAYOUT_LIST if (layout.prefix, layout.pair, layout.naming) == (sig.prefix, pair, naming)]
    if not matches:
        return f"unregistered: {sig.prefix} prefix, {pair} pairs, {naming} names"

    def fit(layout: Layout) -> tuple[bool, bool, bool]:
        denoiser = layout.prefix != "kohya" or sig.prefix_text == layout.kohya_denoiser + "_"
        return denoiser, (layout.alpha == "keys") == sig.alpha_keys, bool(layout.diff) == sig.diff

    return max(matches, key=fit).name
