"""The grammar of LoRA file keys: ``<prefix><module name><role suffix>``.

The prefix says which component (``lora_te2_``, ``text_encoder.``, ``diffusion_model.``, PEFT's
``base_model.model.`` for the one model a PEFT adapter was made on, or none at all for DiffSynth and
XLabs files, which address the denoiser) and whether the module name has its
dots replaced by underscores (kohya). The suffix says what the tensor is: a down or up factor, in
whichever spelling a trainer uses, an alpha, or a full weight or bias difference. What the module
name means is parity/lora/names; this module only cuts keys apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DENOISER = "<denoiser>"  # the model's unet or transformer, whichever it has
# PEFT's save_pretrained of get_peft_model(<one component>): the component is whichever one the keys
# fit (parity/lora/peftadapter.py), as the file holds one model's adapter and never says which.
PEFT_MODEL = "<peft model>"


@dataclass(frozen=True)
class Prefix:
    text: str
    component: str
    underscored: bool
    style: str  # "kohya" | "component" | "diffusion_model" | "peft" | "none"


# First match wins: longer prefixes before those they extend.
PREFIXES = (
    Prefix("lora_unet_", DENOISER, True, "kohya"),
    Prefix("lora_transformer_", "transformer", True, "kohya"),
    Prefix("lora_te1_", "text_encoder", True, "kohya"),
    Prefix("lora_te2_", "text_encoder_2", True, "kohya"),
    Prefix("lora_te_", "text_encoder", True, "kohya"),
    # LyCORIS's own wrapper (lycoris/wrapper.py LycorisNetwork.LORA_PREFIX = "lycoris"): "lycoris_" + the wrapped
    # model's module name with '.' -> '_' (SimpleTuner on diffusers' names; ai-toolkit's old_lokr_format on BFL's)
    Prefix("lycoris_", DENOISER, True, "kohya"),
    Prefix("unet.", "unet", False, "component"),
    Prefix("transformer.", "transformer", False, "component"),
    Prefix("text_encoder_2.", "text_encoder_2", False, "component"),
    Prefix("text_encoder.", "text_encoder", False, "component"),
    Prefix("diffusion_model.", DENOISER, False, "diffusion_model"),
    Prefix("base_model.model.", PEFT_MODEL, False, "peft"),
    Prefix("", DENOISER, False, "none"),
)

# (suffix, role, pair style); first match wins. ``.lora_A.<adapter>.weight`` is matched by pattern.
ROLES = (
    (".lora_down.weight", "down", "lora_down"),
    (".lora_up.weight", "up", "lora_down"),
    (".lora_A.weight", "down", "lora_A"),
    (".lora_B.weight", "up", "lora_A"),
    (".down.weight", "down", "down/up"),
    (".up.weight", "up", "down/up"),
    (".alpha", "alpha", ""),
    (".diff_b", "diff_b", "diff"),
    # a full difference of a bare parameter (kijai's Wan extractions: ``blocks.N.modulation.diff_m``)
    (".diff_m", "diff_m", "diff"),
    (".diff", "diff", "diff"),
    # LyCORIS (lycoris/modules/*.py custom_state_dict): its algorithms' tensors sit beside kohya pairs
    # in one file, under the same prefixes and names, so they share the kohya pair style.
    (".lora_mid.weight", "mid", "lora_down"),
    (".hada_w1_a", "hada_w1_a", "lora_down"),
    (".hada_w1_b", "hada_w1_b", "lora_down"),
    (".hada_w2_a", "hada_w2_a", "lora_down"),
    (".hada_w2_b", "hada_w2_b", "lora_down"),
    (".hada_t1", "hada_t1", "lora_down"),
    (".hada_t2", "hada_t2", "lora_down"),
    (".lokr_w1", "lokr_w1", "lora_down"),
    (".lokr_w1_a", "lokr_w1_a", "lora_down"),
    (".lokr_w1_b", "lokr_w1_b", "lora_down"),
    (".lokr_w2", "lokr_w2", "lora_down"),
    (".lokr_w2_a", "lokr_w2_a", "lora_down"),
    (".lokr_w2_b", "lokr_w2_b", "lora_down"),
    (".lokr_t2", "lokr_t2", "lora_down"),
    # DoRA magnitudes: LyCORIS/kohya's dora_scale, PEFT's lora_magnitude_vector (diffusers' save drops
    # PEFT's ".weight"; a state dict taken from the model keeps it)
    (".dora_scale", "dora_scale", ""),
    (".lora_magnitude_vector.weight", "magnitude", ""),
    (".lora_magnitude_vector", "magnitude", ""),
)
# The roles of LyCORIS's LoHa and LoKr tensors: a module with any of them is that algorithm.
LOHA_ROLES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR_ROLES = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
MAGNITUDE_ROLES = ("dora_scale", "magnitude")
# Roles that make a module by themselves (an alpha or a magnitude alone makes none).
MODULE_ROLES = ("down", "up", "diff", "diff_b", "diff_m", *LOHA_ROLES, *LOKR_ROLES)
NAMED_ADAPTER = re.compile(r"\.lora_([AB])\.([A-Za-z0-9_-]+)\.weight$")


@dataclass(frozen=True)
class ParsedKey:
    key: str
    prefix: Prefix
    body: str  # the module name as the file spells it
    role: str  # down | up | alpha | diff | diff_b | diff_m | mid | dora_scale | magnitude | a LoHa or LoKr tensor
    style: str  # how the pair is spelled: lora_down | lora_A | lora_A.<adapter> | down/up | diff | ""


def parse_key(key: str) -> ParsedKey | None:
    """The key cut into prefix, module name and role; None for a key no LoRA layout writes."""
    stem = role = style = None
    for suffix, r, s in ROLES:
        if key.endswith(suffix):
            stem, role, style = key[: -len(suffix)], r, s
            break
    named = NAMED_ADAPTER.search(key)
    if named and (stem is None or style == "down/up"):
        stem, role, style = key[: named.start()], "down" if named[1] == "A" else "up", f"lora_A.{named[2]}"
    if stem is None:
        return None
    for prefix in PREFIXES:
        if stem.startswith(prefix.text):
            return ParsedKey(key, prefix, stem[len(prefix.text):], role, style)
    return None  # unreachable: the empty prefix matches everything
