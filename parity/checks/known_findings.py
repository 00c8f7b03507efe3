"""Which pinned findings (parity/checks/findings.py) a user's run shows, so its verdict can name them.

A finding is named only where the run shows the finding's own symptom, never from the file's layout
alone: the layout says which diffusers converter ran, the measured failures say what it did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from parity.checks.cases import FINDING_LAYOUTS
from parity.checks.findings import (
    ALPHA_BAKED_IN_FILE_DTYPE,
    DORA_SCALE_DROPPED,
    FLUX2_FINAL_MODULATION_NOT_SWAPPED,
    FLUX2_LOKR_QKV_FUSED,
    FLUX2_LYCORIS_BFL_NAMES_REFUSED,
    KOHYA_PER_MODULE_ALPHA,
    LYCORIS_REFUSED,
    WAN_DIFFS_DROPPED,
    WAN_MUSUBI_KEYS,
    ZIMAGE_FUSED_QKV_DROPPED,
    Known,
)
from parity.errors import LoaderRefused
from parity.lora.neutral import DiffModule, DoraModule, LokrModule, LoraFile, LoraModule, RowsOf
from parity.tolerances import TensorReport
from parity.zoo.qwenimage import QWEN_LOADER
from parity.zoo.wan import WAN_LOADER
from parity.zoo.zimage import FAMILY as ZIMAGE

FLUX2_LOADER = "Flux2LoraLoaderMixin"  # parity/zoo/flux2.py's families' loader
from parity.zoo.family import Family

ATTENTION_PROJECTIONS = (".to_q.", ".to_k.", ".to_v.", ".to_out.0.")
# The Linears FLUX.2's fuse_qkv_projections stacks into to_qkv / to_added_qkv (transformer_flux2.py)
FLUX2_QKV = re.compile(r"\.attn\.(to_[qkv]|add_[qkv]_proj)\.weight$")
# Z-Image's modules whose ComfyUI name diffusers' converter leaves unconverted under diffusion_model.
COMFY_RENAMED = re.compile(r"\.attention\.to_[qkv]\.weight$|^transformer\.all_(x_embedder|final_layer)\.")


def refusal_finding(family: Family, layout: str, lora: LoraFile | None = None, reason: str = "") -> Known | None:
    """The pinned refusal of this family's files in this layout, if diffusers refuses them all, or of
    the refused file's LyCORIS modules, which no loader of these families converts; or the refusal
    ``reason`` shows (diffusers' musubi Wan converter's KeyError on a key it pops)."""
    if lora is not None and any(v != "DoRA" for v in lora.variants()):
        if family.lora_loader == FLUX2_LOADER and "These keys are not LyCORIS Flux2 LoKr keys" in reason:
            return FLUX2_LYCORIS_BFL_NAMES_REFUSED  # diffusers' own words: its LyCORIS converter's names
        return LYCORIS_REFUSED
    if family.lora_loader == WAN_LOADER and layout == "musubi-wan" and reason.startswith("KeyError"):
        return WAN_MUSUBI_KEYS
    for case in FINDING_LAYOUTS:
        known = case.known_for("merge")
        if (case.family, case.layout, case.targets) == (family.name, layout, "default") and known is not None \
                and known.raises is LoaderRefused:
            return known
    return None


def _changes_a_difference(parameter: str, diffs: set[tuple[str, str]]) -> bool:
    """Whether ``parameter`` ("component.module.weight"/".bias", or a bare parameter) is one a full
    difference of the files changes."""
    component, name = parameter.split(".", 1)
    return any((component, m) in diffs for m in (name, name.rsplit(".", 1)[0]))


def _power_of_two(x: float) -> bool:
    return x > 0 and math.log2(x).is_integer()


def merge_findings(family: Family, loras: Sequence[LoraFile], reports: Sequence[TensorReport]) -> list[Known]:
    failing = [r for r in reports if not r.ok]
    if not failing:
        return []
    layouts = {lora.layout for lora in loras}
    pairs = [m for lora in loras for m in lora.modules.values() if isinstance(m, LoraModule)]
    out = []
    per_module_alpha = len({m.effective_alpha for m in pairs}) > 1
    if (family.denoiser == "unet" and layouts & {"kohya", "kohya-sgm"} and per_module_alpha
            and all("× the reference delta" in r.diagnosis
                    and (any(p in r.name for p in ATTENTION_PROJECTIONS) or r.name.startswith("text_encoder"))
                    for r in failing)):
        out.append(KOHYA_PER_MODULE_ALPHA)
    dora_scales = [m for lora in loras for m in lora.modules.values()
                   if isinstance(m, DoraModule) and m.magnitude.key.endswith(".dora_scale")]
    if dora_scales and any("the DoRA magnitude was dropped" in r.diagnosis for r in failing):
        out.append(DORA_SCALE_DROPPED)
    diffs = {(c, m) for lora in loras for (c, m), mod in lora.modules.items() if isinstance(mod, DiffModule)}
    if (family.lora_loader == WAN_LOADER and diffs
            and all(r.diagnosis.startswith("dropped") and _changes_a_difference(r.name, diffs) for r in failing)):
        out.append(WAN_DIFFS_DROPPED)
    half = any(m.down.element_size() == 2 and not _power_of_two(m.effective_alpha / m.rank) for m in pairs)
    baking = {QWEN_LOADER: {"diffusion_model", "kohya", "lightning"},
              ZIMAGE.lora_loader: {"diffusion_model", "kohya", "kohya-zimage"},
              FLUX2_LOADER: {"musubi-flux2"}}.get(family.lora_loader, set())
    if layouts & baking and half and any("extra rounding of the delta" in r.diagnosis for r in failing):
        out.append(ALPHA_BAKED_IN_FILE_DTYPE)
    if (family.lora_loader == ZIMAGE.lora_loader and "comfyui-zimage" in layouts
            and all(r.diagnosis.startswith("dropped") and COMFY_RENAMED.search(r.name) for r in failing)):
        out.append(ZIMAGE_FUSED_QKV_DROPPED)  # every failure a module ComfyUI names otherwise, left unmerged
    if family.lora_loader == FLUX2_LOADER and any(r.name.endswith("norm_out.linear.weight")
                                                  and "halves are swapped" in r.diagnosis for r in failing):
        out.append(FLUX2_FINAL_MODULATION_NOT_SWAPPED)
    # a LoKr on BFL's fused qkv: the failures are exactly the projections diffusers fused, left at their base
    fused_lokr = any(isinstance(m, RowsOf) and isinstance(m.whole, LokrModule) for lora in loras
                     for m in lora.modules.values())
    if family.lora_loader == FLUX2_LOADER and fused_lokr and all(FLUX2_QKV.search(r.name) for r in failing):
        out.append(FLUX2_LOKR_QKV_FUSED)
    return out
