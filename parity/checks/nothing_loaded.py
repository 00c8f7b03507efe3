"""What to tell a user whose valid file diffusers loaded nothing from, or refused for its format.

``load_lora_weights`` converts the formats it knows (kohya, its own legacy names, the families'
converters), then keeps, per component it loads into, only the keys under ``<component>.`` (lora_base
``_load_lora_into_text_encoder``, peft.py ``load_lora_adapter``: ``k.startswith(f"{prefix}.")``); a file
with none left only gets a logged warning. The sentence says that, in the file's own terms: which
prefixes diffusers keeps and where this file's keys are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from torch import nn

from parity.lora.cloneofsimo import DESCRIPTION as NUMBERED_FILE
from parity.lora.keys import parse_key
from parity.lora.layouts import NUMBERED_LAYOUT
from parity.lora.neutral import LoraFile
from parity.lora.peftadapter import PREFIX as PEFT_PREFIX
from parity.modules import canonical_name

# What each key prefix means to a user, where its name alone does not say.
PREFIX_WORDS = {PEFT_PREFIX: "a PEFT adapter, as save_pretrained writes it", "": "no prefix"}
# What else loads a layout's files, as measured (tests/test_legacy_layouts.py pins each).
LAYOUT_HINTS = {
    "diffusers-attn-procs": "; unet.load_lora_adapter(<file>, prefix=None) loads its pairs (at scale 1, as diffusers "
                            "<= 0.14 trained them); unet.load_attn_procs, which read them then, now takes Custom "
                            "Diffusion files only",
}


def _file_prefix(lora: LoraFile) -> str | None:
    """The key prefix most of the file's keys share, as the key grammar cuts it."""
    keys = [k for keys in lora.sources.values() for k in keys]
    parsed = [p.prefix.text for p in map(parse_key, keys) if p is not None]
    return Counter(parsed).most_common(1)[0][0] if parsed else None


def nothing_loaded(pipe: Any, lora: LoraFile) -> str:
    """Why ``load_lora_weights`` loaded no adapter from ``lora``, in one sentence."""
    import diffusers

    prefix = _file_prefix(lora)
    known_prefix = prefix == PEFT_PREFIX or lora.layout in LAYOUT_HINTS  # the prefix is why, measured
    if lora.variants() and not known_prefix:  # its modules are what no loader converts, whatever their prefix
        return refused(lora, "load_lora_weights loaded no adapter from it and only logs a warning")

    loadable = [c for c in getattr(pipe, "_lora_loadable_modules", []) if getattr(pipe, c, None) is not None]
    kept = "/".join(f"{c}." for c in loadable) or "its components' names"
    if prefix is None:
        where = "these are not"
    elif prefix == "":
        where = "these have no prefix"
    else:
        where = f"these are under {prefix}" + (f": {PREFIX_WORDS[prefix]}" if prefix in PREFIX_WORDS else "")
    text = (f"diffusers {diffusers.__version__} loads nothing from this file (after the conversions it knows, "
            f"load_lora_weights keeps keys under {kept} only; {where}) and only logs a warning")
    if prefix == PEFT_PREFIX:
        text += _peft_loaders(lora.components()[0])
    return text + LAYOUT_HINTS.get(lora.layout, "")


def refused(lora: LoraFile, reason: str) -> str:
    """diffusers' own words on ``lora``, after what the file is where its format is what diffusers lacks."""
    import diffusers

    if lora.variants():  # what the file is that diffusers has no loader for, before its words
        return f"diffusers cannot load {' and '.join(lora.variants())} files ({reason})"
    if lora.layout == NUMBERED_LAYOUT:
        return (f"{NUMBERED_FILE}: its modules are numbered, not named, and diffusers {diffusers.__version__} has no "
                f"loader for that (load_lora_weights: {reason})")
    return reason


def _peft_loaders(component: str) -> str:
    """What else loads a PEFT adapter of ``component``, as measured (tests/test_peft_adapters.py)."""
    if component.startswith("text_encoder"):
        return (f"; transformers' {component}.load_adapter(<folder>) loads it with its adapter_config.json, "
                "as PEFT's PeftModel.from_pretrained does")
    return (f"; {component}.load_lora_adapter(<file>, prefix='base_model.model') loads the pairs but never reads "
            "adapter_config.json (every module at scale 1, alpha = r); PEFT's PeftModel.from_pretrained reads it")


def unloaded_tensors(components: Mapping[str, nn.Module], adapter: str) -> list[str]:
    """Every tensor of ``adapter``'s LoRA layers still on the meta device: made by PEFT for a key the
    file does not have (diffusers loads with low_cpu_mem_usage), never given values."""
    return [f"{c}.{canonical_name(name)}" for c, model in components.items()
            for name, t in model.named_parameters() if t.is_meta and f".{adapter}." in f".{name}."]
