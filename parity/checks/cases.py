"""The case table: every case every check runs, declared once as data (PyTorch OpInfo style).

Tests, golden images and benchmarks draw their cases from here, and every table is derived from the
registries: the model families in parity/zoo (each with the LoRA layouts diffusers reads for it, its
targets and its Conv2d modules) and the layout writers in parity/lora/layouts.py. Adding a family or a
layout is one registry entry and changes no test file (tests/harness/test_case_table.py adds a
throwaway of each and collects the suite).

A case carries its marks as data (parity/pytest/cases.py turns them into pytest marks):

- ``slow``: outside the representative combinations the default run (`make test`) takes; `make slow`
  runs the rest of the product. Each table says which combinations represent it, and why.
- ``known``: a known departure of diffusers/PEFT from the reference, a finding (parity/checks/findings.py).
  The generic check is expected to fail on that case (a strict xfail), so an upgrade that changes the
  behaviour shows.

Over 500 lines because it is the one table: splitting it by check would bring back the spread-out
case lists it replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from parity.checks.findings import (
    ALPHA_BAKED_IN_FILE_DTYPE,
    BFL_WIDTHS,
    DORA_SCALE_DROPPED,
    EDIT_SAME_ADAPTER_NAME,
    FLUX_DIFFUSION_MODEL,
    KOHYA_PER_MODULE_ALPHA,
    KOHYA_Q_PROJ_ONLY,
    LEGACY_ALPHA,
    LORA_TRANSFORMER,
    LYCORIS_REFUSED,
    QWEN_ALPHA_KEYS,
    SAFE_FUSE_PARTIAL,
    SECOND_FUSE,
    SGM_SD15,
    UNLOAD_AFTER_FUSE,
    WAN_DIFF_B,
    WAN_MUSUBI_KEYS,
    WAN_NO_PREFIX,
    FLUX2_FINAL_MODULATION_NOT_SWAPPED,
    HOTSWAP_ALPHA_PATTERN,
    FLUX2_KOHYA_PAIRS_UNDER_DIFFUSION_MODEL,
    FLUX2_LYCORIS_PAIRS_REFUSED,
    FLUX2_NO_PREFIX,
    ZIMAGE_ALPHA_KEYS,
    ZIMAGE_DIFFS_REFUSED,
    ZIMAGE_FUSED_QKV_DROPPED,
    Known,
)
from parity.checks.hotswap import LEVELS
from parity.errors import LoaderRefused
from parity.lora.layouts import LAYOUTS
from parity.zoo import FAMILIES
from parity.zoo.qwenimage import QWEN_LOADER
from parity.zoo.wan import WAN_LOADER
from parity.zoo.family import Family

DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class Marks:
    slow: bool = False
    known: Known | None = None


def _families(families: Iterable[str] | None) -> list[Family]:
    return [fam for name, fam in FAMILIES.items() if families is None or name in families]


def _has_text_encoder(family: Family) -> bool:
    return any(c.startswith("text_encoder") for c in family.lora_components)


# ---------------------------------------------------------------- LoRA files of the merge and unfuse checks

LORA_SCALES = (0.0, 0.5, 1.0, 1.3)
# set_adapters weights of a one- and a two-adapter case, and of the one-file sets (ONE_FILE_SETS)
ADAPTER_WEIGHTS = {1: (1.0,), 2: (0.7, 0.8), "bf16": (1.0,), "noalpha": (1.0,)}


@dataclass(frozen=True)
class LoraSpec:
    """How one synthesised adapter of a case is shaped."""

    seed: int
    rank: int | tuple[int, int]  # an int, or (low, high) alternating per module
    alpha: float | None | tuple[tuple[int, float | None], ...]  # None: no alpha (α = r); pairs: α per rank
    dtype: str = "float32"  # what the factors (and a kohya alpha) are stored as

    def alpha_of(self, rank: int) -> float | None:
        return dict(self.alpha).get(rank) if isinstance(self.alpha, tuple) else self.alpha


# Adapter 1 carries an explicit alpha (kohya .alpha keys / diffusers header metadata); adapter 2 has
# mixed ranks and a different α/r on each (α = 3 on its rank-2 modules, 4 on its rank-8 ones), as
# kohya's resize_lora.py --dynamic_method writes per-module rank and alpha. The "bf16" set stores its factors and alpha in bfloat16 with α/r = 0.75,
# not a power of two, so scaling the factors rounds.
ADAPTER_SPECS = (LoraSpec(seed=1, rank=4, alpha=2.0), LoraSpec(seed=2, rank=(2, 8), alpha=((2, 3.0), (8, 4.0))))
BF16_SPEC = LoraSpec(seed=3, rank=4, alpha=3.0, dtype="bfloat16")
# No alpha anywhere with mixed ranks (α = r per module): files written without --network_alpha, the
# combination diffusers PR #14409 fixed.
NO_ALPHA_SPEC = LoraSpec(seed=4, rank=(2, 8), alpha=None)
ONE_FILE_SETS = {"bf16": BF16_SPEC, "noalpha": NO_ALPHA_SPEC}


def _default_targets(family: Family) -> dict[str, tuple[str, ...]]:
    return {c: tuple(s) for c, s in family.default_targets.items()}


def _locon_targets(family: Family) -> dict[str, tuple[str, ...]]:
    out = _default_targets(family)
    for c, s in family.conv_targets.items():
        out[c] = out.get(c, ()) + tuple(s)
    return out


def _denoiser_only(family: Family) -> dict[str, tuple[str, ...]]:
    return {family.denoiser: tuple(family.default_targets[family.denoiser])}


def _q_proj_only(family: Family) -> dict[str, tuple[str, ...]]:
    return {family.denoiser: ("to_q",), "text_encoder": ("q_proj",)}


# What a case's LoRA files target, by name: "default" (attention, feed-forward, projections) and
# "locon" (those plus the family's Conv2d modules) for every family; others pin a finding.
def _final_modulation(family: Family) -> dict[str, tuple[str, ...]]:
    """The final AdaLayerNormContinuous's Linear alone, whose halves original checkpoints order otherwise."""
    return {family.denoiser: ("norm_out.linear",)}


TARGET_SETS = {"default": _default_targets, "locon": _locon_targets, "denoiser": _denoiser_only,
               "q_proj-only": _q_proj_only, "final-modulation": _final_modulation}


def targets_for(family: Family, targets: str) -> dict[str, tuple[str, ...]]:
    return TARGET_SETS[targets](family)


@dataclass(frozen=True)
class LayoutCase:
    """LoRA files of one layout on one family's modules; ``known`` maps a check name to its finding."""

    family: str
    layout: str
    targets: str = "default"
    known: tuple[tuple[str, Known], ...] = ()
    expert: str = ""  # a family of several denoisers: the expert the files go into ("": the loader's default)

    @property
    def id(self) -> str:
        return (f"{self.family}-{self.layout}" + ("" if self.targets == "default" else f"-{self.targets}")
                + (f"-{self.expert}" if self.expert else ""))

    def known_for(self, check: str) -> Known | None:
        return dict(self.known).get(check)


# Which converter a file goes through decides the finding: kohya SD/SDXL files through
# _convert_non_diffusers_lora_to_diffusers (the two-adapter set has per-module alpha), Qwen-Image files
# with alpha keys through the Qwen converter (the bf16 set has α/r = 0.75).
def _merge_known(fam: Family, lc: LayoutCase, n: int | str) -> Known | None:
    if lc.layout in ("kohya", "kohya-sgm") and fam.denoiser == "unet" and n == 2:
        return KOHYA_PER_MODULE_ALPHA
    if fam.lora_loader == QWEN_LOADER and lc.layout in ("diffusion_model", "kohya", "lightning") and n == "bf16":
        return ALPHA_BAKED_IN_FILE_DTYPE
    # Wan's converters bake α/r into the factors too, in the file's dtype, for every file with alpha keys
    if fam.lora_loader == WAN_LOADER and lc.layout in ("musubi-wan", "comfyui-wan") and n == "bf16":
        return ALPHA_BAKED_IN_FILE_DTYPE
    if fam.lora_loader == WAN_LOADER and lc.layout == "musubi-wan" and n == "noalpha":
        return WAN_MUSUBI_KEYS
    # Z-Image's converter bakes α/r the same way (get_alpha_scales) in every file it converts with alpha keys
    if fam.name == "zimage" and lc.layout in ("kohya", "diffusion_model", "kohya-zimage") and n == "bf16":
        return ALPHA_BAKED_IN_FILE_DTYPE
    # and so does FLUX.2's kohya converter (_convert_to_ai_toolkit's scale_down/scale_up)
    if fam.lora_loader == "Flux2LoraLoaderMixin" and lc.layout == "musubi-flux2" and n == "bf16":
        return ALPHA_BAKED_IN_FILE_DTYPE
    return None


# Files users publish that diffusers gets wrong: layout cases like the others, whose merge check
# is expected to fail with the finding. They take no part in the checks that assume a file loaded.
FINDING_LAYOUTS = (
    LayoutCase("flux", "diffusion_model", "denoiser", known=(("merge", FLUX_DIFFUSION_MODEL),)),
    LayoutCase("sd15", "kohya", "q_proj-only", known=(("merge", KOHYA_Q_PROJ_ONLY),)),
    LayoutCase("sd15", "diffusers-legacy", known=(("merge", LEGACY_ALPHA),)),
    LayoutCase("sdxl", "diffusers-legacy", known=(("merge", LEGACY_ALPHA),)),
    LayoutCase("sd2", "diffusers-legacy", known=(("merge", LEGACY_ALPHA),)),
    LayoutCase("sd15", "kohya-sgm", known=(("merge", SGM_SD15),)),
    LayoutCase("flux", "kohya-bfl", known=(("merge", BFL_WIDTHS),)),
    LayoutCase("flux", "comfyui", known=(("merge", BFL_WIDTHS),)),
    LayoutCase("flux", "kohya-bfl-diff", known=(("merge", BFL_WIDTHS),)),
    LayoutCase("flux", "lora_transformer", known=(("merge", LORA_TRANSFORMER),)),
    LayoutCase("qwenimage", "diffusers-alpha", known=(("merge", QWEN_ALPHA_KEYS),)),
    LayoutCase("qwenimage-edit", "diffusers-alpha", known=(("merge", QWEN_ALPHA_KEYS),)),
    LayoutCase("wan", "comfyui-wan-diff", known=(("merge", WAN_DIFF_B),)),
    LayoutCase("wan", "diffsynth-wan", known=(("merge", WAN_NO_PREFIX),)),
    LayoutCase("zimage", "diffusers-alpha", known=(("merge", ZIMAGE_ALPHA_KEYS),)),
    LayoutCase("zimage", "comfyui-zimage", known=(("merge", ZIMAGE_FUSED_QKV_DROPPED),)),
    LayoutCase("zimage", "comfyui-zimage-diff", known=(("merge", ZIMAGE_DIFFS_REFUSED),)),
    LayoutCase("flux2-klein", "comfyui-flux2", known=(("merge", FLUX2_KOHYA_PAIRS_UNDER_DIFFUSION_MODEL),)),
    LayoutCase("flux2", "comfyui-flux2", known=(("merge", FLUX2_KOHYA_PAIRS_UNDER_DIFFUSION_MODEL),)),
    LayoutCase("flux2-klein", "diffsynth", known=(("merge", FLUX2_NO_PREFIX),)),
    LayoutCase("flux2", "diffsynth", known=(("merge", FLUX2_NO_PREFIX),)),
    LayoutCase("flux2-klein", "lycoris", known=(("merge", FLUX2_LYCORIS_PAIRS_REFUSED),)),
    LayoutCase("flux2", "lycoris", known=(("merge", FLUX2_LYCORIS_PAIRS_REFUSED),)),
    LayoutCase("flux2-klein", "aitoolkit-flux2", "final-modulation",
               known=(("merge", FLUX2_FINAL_MODULATION_NOT_SWAPPED),)),
)
# A family of several denoisers: its files into the other expert and into both, as layout cases of
# their own (the same files; where they go is the case). The default expert is every other case's.
EXPERT_LAYOUTS = (LayoutCase("wan", "diffusers", expert="low"), LayoutCase("wan", "musubi-wan", expert="both"))


def layout_cases(families: Iterable[str] | None = None) -> list[LayoutCase]:
    """Every layout each family publishes, on its default targets; kohya files (LoCon, on diffusers
    and on SGM names) also on its Conv2d modules."""
    out = []
    for fam in _families(families):
        for layout in fam.layouts:
            out.append(LayoutCase(fam.name, layout))
            if layout in ("kohya", "kohya-sgm") and fam.conv_targets:
                out.append(LayoutCase(fam.name, layout, "locon"))
        out += [lc for lc in EXPERT_LAYOUTS if lc.family == fam.name]
    return out


# The layouts every merge combination runs on: the diffusers layout and each family's second
# (kohya, or diffusion_model for Qwen-Image). The others are one grammar through the same reader and
# the same diffusers fuse: three combinations each (float32: two adapters at 1.3, the bfloat16-factor
# and the no-alpha file at 1.0) show their names and splits; the rest of their product is `make slow`.
FULL_PRODUCT_LAYOUTS = 2
# LoCon files (kohya names on the family's Conv2d modules too, TARGET_SETS["locon"]) run the three
# combinations on those layouts as well: what is their own is the 3×3 convolutions' names and shapes, which
# each combination shows; the scales and the one-adapter set go through the same fuse as the default
# targets' full product on the same layout (and the diffusers layout's, whose targets hold a Conv2d
# proj_in). sd15's kohya LoCon product beyond them (7 cases, a load of its own for one adapter) was 5 s of
# `make test` under load.
FULL_PRODUCT_TARGETS = ("default",)


# flux's transformer Linears round like qwenimage's in every dtype (the same nn.Linear fuse), so its full
# product runs in float32 by default, where its own names (XLabs' fused q|k|v) show; qwenimage keeps the
# transformers' float16/bfloat16 products, sd15 the UNets'.
FLOAT32_PRODUCT_FAMILIES = ("flux",)
# sd2's files carry sd15's names (diffusers and kohya alike) into the same UNet and CLIP layer types,
# and its linear proj_in/proj_out fuse as sdxl's do: what is its own is the widths, the gelu text
# encoder and v-prediction, which every combination shows alike. Each of its layouts runs one of the
# three combinations by default, in turn (diffusers: two adapters at 1.3; kohya: the bfloat16 file;
# kohya LoCon: the no-alpha file), and one unfuse cycle shares the diffusers load: 7 s under a load of
# 7 on 2 cores, where its full product took 47 s. The rest is `make slow`.
# sdxl's UNet and text encoders round like sd15's in every dtype (the same layer types and fuse): what is
# its own, the SGM names (kohya-sgm) and text_encoder_2, one combination per layout shows (its float32
# full product was 25 s of `make test`). qwenimage-edit loads its files through qwenimage's converter into
# the same transformer: its own is the pipeline, which the edit workflow checks. wan's layouts differ in
# names and converters, which one combination each shows; its dtypes round as the other transformers'
# Linears do. Its expert cases (EXPERT_LAYOUTS) take their turn the same way. zimage's transformer is
# Linears like the others' (its dtypes round alike); its own is its names and layouts, one combination each.
# FLUX.2's transformer is Linears too (its fused to_qkv_mlp_proj and SwiGLU linear_in are wide Linears):
# klein runs one combination per layout.
ONE_COMBINATION_FAMILIES = ("sd2", "sdxl", "qwenimage-edit", "wan", "zimage", "flux2", "flux2-klein")
COMBINATIONS = (("float32", 1.3, 2), ("float32", 1.0, "bf16"), ("float32", 1.0, "noalpha"))
# Families whose denoiser class another family's default cases run: FLUX.2 [dev] and [klein] share
# Flux2Transformer2DModel, its LoRA loader and fuse; what is dev's own is its Mistral3 text encoder and the
# guidance embedding, which its golden base image and the zoo tests show by default. Its merge and unfuse
# cases (same files, same modules, same fuse as klein's) are `make slow`.
DENOISER_COVERED_BY = {"flux2": "flux2-klein"}


def _full_product(fam: Family, lc: LayoutCase, dtype: str) -> bool:
    """Whether every scale and adapter set runs on this layout and dtype by default. float16 and bfloat16
    change the roundings (the tolerance rows), not the names a layout gives modules: their full product
    runs on the first layout, the second layout's shows its names in float32."""
    if fam.name in ONE_COMBINATION_FAMILIES or lc.targets not in FULL_PRODUCT_TARGETS:
        return False
    index = fam.layouts.index(lc.layout)
    if dtype == "float32":
        return index < FULL_PRODUCT_LAYOUTS
    return index == 0 and fam.name not in FLOAT32_PRODUCT_FAMILIES


def _representative(fam: Family, lc: LayoutCase, dtype: str, scale: float, n: int | str) -> bool:
    if fam.name in DENOISER_COVERED_BY:
        return False
    if _full_product(fam, lc, dtype):
        return isinstance(n, int) or scale == 1.0
    if fam.name in ONE_COMBINATION_FAMILIES:
        return (dtype, scale, n) == COMBINATIONS[layout_cases([fam.name]).index(lc) % len(COMBINATIONS)]
    return (dtype, scale, n) in COMBINATIONS


# ---------------------------------------------------------------- merge parity


class LoadsFiles:
    """A case that loads ``adapters`` of ADAPTER_SPECS in ``layout`` into its family's pipeline in
    ``dtype`` on ``device``, at ADAPTER_WEIGHTS[adapters]."""

    layout: LayoutCase
    dtype: str
    device: str
    adapters: int | str

    @property
    def family(self) -> str:
        return self.layout.family

    @property
    def weights(self) -> tuple[float, ...]:
        return ADAPTER_WEIGHTS[self.adapters]

    @property
    def specs(self) -> tuple[LoraSpec, ...]:
        if isinstance(self.adapters, str):
            return (ONE_FILE_SETS[self.adapters],)
        return ADAPTER_SPECS[: self.adapters]

    @property
    def group(self) -> str:
        """The cases that load the same files into the same pipeline share one xdist worker, where
        the load is done once (tests/support/prepared.py)."""
        return f"loaded-{self.layout.id}-{self.dtype}-{self.device}-x{self.adapters}"


@dataclass(frozen=True)
class MergeCase(LoadsFiles, Marks):
    layout: LayoutCase
    dtype: str
    device: str
    lora_scale: float
    adapters: int | str
    prior_fuse: bool = False  # fuse and unfuse once at lora_scale before the fuse that is measured

    @property
    def id(self) -> str:
        prior = "-after-refuse" if self.prior_fuse else ""
        return f"{self.layout.id}-{self.dtype}-{self.device}-s{self.lora_scale:g}-x{self.adapters}{prior}"


def merge_cases(
    families: Iterable[str] | None = None,
    dtypes: Sequence[str] = DTYPES,
    devices: Sequence[str] = DEVICES,
) -> list[MergeCase]:
    """layout × dtype × device × lora_scale × adapter set, and the finding cases. The whole product on
    each family's first FULL_PRODUCT_LAYOUTS layouts is representative (the cases sharing a load, all
    but scale and device, load once); the other layouts run two combinations by default."""
    out = []
    for lc in layout_cases(families):
        fam = FAMILIES[lc.family]
        for device in devices:
            for dtype in dtypes:
                for scale in LORA_SCALES:
                    for n in ADAPTER_WEIGHTS:
                        known = _merge_known(fam, lc, n)
                        # a refusal shows at every scale; a wrong merge not at 0, where nothing merges
                        refusal = known is not None and known.raises is LoaderRefused
                        out.append(MergeCase(lc, dtype, device, scale, n,
                                             slow=not _representative(fam, lc, dtype, scale, n),
                                             known=None if scale == 0.0 and not refusal else known))
    # The finding layouts and the second fuse need one combination each to show.
    for lc in FINDING_LAYOUTS:
        if families is None or lc.family in families:
            out.append(MergeCase(lc, "float32", "cpu", 1.0, 1, known=lc.known_for("merge"),
                                 slow=lc.family in ONE_COMBINATION_FAMILIES))  # sd15's shows the finding
    if families is None or "sd15" in families:
        refuse = LayoutCase("sd15", "diffusers")
        out.append(MergeCase(refuse, "float32", "cpu", 0.5, 1, prior_fuse=True, known=SECOND_FUSE))
        out.append(MergeCase(refuse, "float32", "cpu", 1.0, 1, prior_fuse=True))  # scale_layer(1) is harmless
    return out


# ---------------------------------------------------------------- unfuse identity

MANY_CYCLES = 20


@dataclass(frozen=True)
class UnfuseCase(LoadsFiles, Marks):
    layout: LayoutCase
    dtype: str
    cycles: int
    adapters: int | str
    device: str = "cpu"

    @property
    def id(self) -> str:
        return f"{self.layout.id}-{self.dtype}" if self.cycles == 1 else f"{self.family}-{self.dtype}"


def unfuse_cases(families: Iterable[str] | None = None) -> list[UnfuseCase]:
    """One fuse/unfuse cycle with both adapters on every layout × dtype, and MANY_CYCLES with one
    adapter on each family's first layout × dtype. Representative where they share a load the merge
    cases make by default (_full_product)."""
    out = []
    for fam in _families(families):
        cases = layout_cases([fam.name])
        # an unfuse shares the load of its layout's merge cases: where they run only in float32, so does it
        # (and where one combination runs, only where it loads both adapters)
        one = fam.name in ONE_COMBINATION_FAMILIES
        out += [UnfuseCase(lc, dtype, 1, 2, slow=(dtype != "float32" and not _full_product(fam, lc, dtype))
                           or (one and not _representative(fam, lc, dtype, 1.3, 2)))
                for lc in cases for dtype in DTYPES]
        out += [UnfuseCase(cases[0], dtype, MANY_CYCLES, 1, slow=one or (dtype != "float32" and not _full_product(
            fam, cases[0], dtype))) for dtype in DTYPES]
    return out


# ---------------------------------------------------------------- golden images

GOLDEN_LORA_RANK, GOLDEN_LORA_ALPHA = 4, 2.0  # α/r = 0.5: a file whose alpha is dropped renders visibly differently
GOLDEN_LORA_SEEDS = {"a": 1, "b": 2}


@dataclass(frozen=True)
class GoldenCase:
    """One seeded render. ``op``: base | lora (unfused, scale via the attention kwargs) | fused |
    two (adapters a, b at weights 0.5, 1.0) | schedule (a at 1.0, set to 0.5 after step 0)."""

    family: str
    name: str
    op: str
    scale: float = 1.0
    layout: str = "diffusers"
    conv: bool = False  # LoCon: also target the family's Conv2d modules
    seed: int = 0
    dtype: str = "float32"
    steps: int | None = None  # None: the family's default (2)
    same_as: str | None = None  # another case's name this one must reproduce …
    relation: str | None = None  # … within OUTPUT_TOLERANCES[relation] ("same-arithmetic", "reordered", "fused")
    expert: str | None = None  # a family of several denoisers: the expert the LoRA files go into (experts.py)
    slow: bool = False  # outside GOLDEN_REPRESENTATIVE: `make slow` (every case is in golden update/verify)

    @property
    def id(self) -> str:
        return f"{self.family}-{self.name}"


def _golden_family_cases(family: Family) -> list[GoldenCase]:
    name = family.name
    cases = [
        GoldenCase(name, "base", "base"),
        GoldenCase(name, "lora-0.5", "lora", scale=0.5),
        GoldenCase(name, "lora-1.0", "lora", scale=1.0),
        # the fused weights are rounded once more in the model dtype (W' = fl(W + δ)): OUTPUT_TOLERANCES["fused"],
        # 3·e_fwd; with 2·e_fwd ("reordered") sd2's render measured 5.1e-06 against 4.31e-06
        GoldenCase(name, "fused-1.0", "fused", scale=1.0, same_as="lora-1.0", relation="fused"),
        GoldenCase(name, "two-adapters", "two"),
        # 3 steps: with 2, the step after the switch is DDIM's last (t=1) and moves sd15 by < 1/255.
        GoldenCase(name, "schedule", "schedule", steps=3),
    ]
    for layout in family.layouts:
        if layout == "diffusers":
            continue
        # The same LoRA under other names renders what the diffusers file renders (XLabs names attention
        # only: another LoRA, with an image of its own). UNet loaders keep the file's factors and put α/r
        # in PEFT's scaling, as for the diffusers file: the same arithmetic. The transformer loaders bake
        # α/r into the factors (A·α/r, scaling 1): the same products, which the CPU kernels may sum in
        # another order (measured on Qwen-Image: img_mod.1's lora_A(x) for A and A/2 differ beyond the
        # factor 2 for a 1×16 input), so the budget is the reordered one.
        same = LAYOUTS[layout].naming != "xlabs"
        relation = "same-arithmetic" if family.denoiser == "unet" else "reordered"
        cases.append(GoldenCase(name, f"{layout}-1.0", "lora", layout=layout, same_as="lora-1.0" if same else None,
                                relation=relation if same else None))
        if layout == "kohya" and family.conv_targets:
            cases.append(GoldenCase(name, "locon-kohya", "lora", layout="kohya", conv=True))
    return _expert_cases(family, cases) if family.experts else cases


def _expert_cases(family: Family, cases: list[GoldenCase]) -> list[GoldenCase]:
    """The family's cases with their files in the default expert (load_lora_weights without kwargs), and the
    low expert's own: a LoRA loaded with load_into_transformer_2=True, its fuse (≈ unfused), and the
    schedule, which runs there: the weight change after step 0 reaches only the steps after it, which are
    all the low expert's (a schedule in the high expert changes nothing, and its check fails), and one
    file in both experts (two loads of one adapter name)."""
    from parity.zoo.experts import DEFAULT  # the expert load_lora_weights loads into without kwargs

    name = family.name
    # every case renders the family's three steps, where both experts run (parity/zoo/wan.py)
    out = [replace(c, expert=None if c.op == "base" else DEFAULT)
           for c in cases if c.op != "schedule"]
    return out + [
        GoldenCase(name, "low-lora-1.0", "lora", expert="low"),
        GoldenCase(name, "low-fused-1.0", "fused", expert="low", same_as="low-lora-1.0",
                   relation="fused"),
        GoldenCase(name, "low-schedule", "schedule", expert="low"),
        GoldenCase(name, "both-lora-1.0", "lora", expert="both"),
    ]


# The cases a family runs by default where not all: sd2 renders through sd15's pipeline code, so the
# default run shows what is its own (the v-prediction image, a LoRA on its widths, kohya names = diffusers
# names); its other renders (about 1 s each on 2 cores, and a float64 twin each) are `make slow`. Wan
# renders a 5-frame video with two experts: by default the base video and a LoRA in each expert, the
# low expert's through load_into_transformer_2 (its negative controls are tests/harness/
# test_golden_video_negative_controls.py). Z-Image by default: its base image and one LoRA on it. FLUX.2:
# the base image and one LoRA on each (dev's base shows its Mistral3 encoder and embedded guidance; the
# rest of dev's renders are klein's transformer operations). sdxl renders through sd15's UNet pipeline code
# but for its second text encoder and added time embeddings, which its base image shows, and its kohya files'
# SGM names (kohya-sgm-1.0, = the diffusers file's render); its other renders (the heaviest of the default
# goldens: 4 s for nine under load, with their float64 twins) are the scale, fuse, two-adapter, schedule
# and LoCon operations sd15's default renders run on the same layer types: `make slow`.
GOLDEN_REPRESENTATIVE = {"sd2": ("base", "lora-1.0", "kohya-1.0"), "wan": ("base", "lora-1.0", "low-lora-1.0"),
                         "sdxl": ("base", "lora-1.0", "kohya-sgm-1.0"),
                         "zimage": ("base", "lora-1.0"), "flux2": ("base", "lora-1.0"),
                         "flux2-klein": ("base", "lora-1.0")}


def golden_cases(families: Iterable[str] | None = None) -> list[GoldenCase]:
    """Per family: base, LoRA at 0.5 and 1.0, fused (≈ unfused), two adapters, a per-step schedule; the
    same LoRA in each other layout the family publishes (= the diffusers file), and LoCon where it
    publishes kohya files. All of them are representative (a render is a fraction of a second), but
    for the families GOLDEN_REPRESENTATIVE names."""
    return [replace(c, slow=c.family in GOLDEN_REPRESENTATIVE and c.name not in GOLDEN_REPRESENTATIVE[c.family])
            for fam in _families(families) for c in _golden_family_cases(fam)]


def golden_case(case_id: str) -> GoldenCase:
    return {c.id: c for c in golden_cases()}[case_id]


def variant(case: Any, **changes: Any) -> Any:
    """The same case with fields changed (negative controls: another seed, scale 1.05)."""
    return replace(case, **changes)


# ---------------------------------------------------------------- hotswap

HOTSWAP_TARGET_RANK = 8
SUBSET_TARGETS = ("to_q", "to_k")


@dataclass(frozen=True)
class SwapSpec:
    name: str
    seed: int
    rank: int | tuple[int, int]
    alpha: float
    subset: bool = False  # target only SUBSET_TARGETS of the first LoRA's modules


FIRST_SWAP = SwapSpec("first", seed=1, rank=4, alpha=8.0)
SWAPS = (
    SwapSpec("same-rank", seed=11, rank=4, alpha=2.0),  # new weights and alpha
    SwapSpec("rank-up", seed=12, rank=8, alpha=16.0),  # 4 -> 8 = target_rank
    SwapSpec("rank-down", seed=13, rank=2, alpha=1.0),  # below the first rank
    SwapSpec("subset", seed=14, rank=4, alpha=4.0, subset=True),
)
SEQUENCE = tuple(SwapSpec(f"seq{i}", seed=100 + i, rank=r, alpha=float(2 * r))
                 for i, r in enumerate((1, 8, 3, 8, 2, 5, 4, 7, 6, 1)))


@dataclass(frozen=True)
class HotswapCase(Marks):
    """One compiled session (family × level × expert × layout of its files) and what is swapped into it:
    one spec, or SEQUENCE."""

    family: str
    level: str
    swap: SwapSpec | None = None  # None: the ten-swap SEQUENCE
    layout: str = "diffusers"
    expert: str | None = None  # a family of several denoisers: high, low or both (parity/zoo/experts.py)

    @property
    def session(self) -> str:
        return (f"{self.family}-{self.level}" + ("" if self.expert is None else f"-{self.expert}")
                + ("" if self.layout == "diffusers" else f"-{self.layout}"))

    @property
    def id(self) -> str:
        return self.session if self.swap is None else f"{self.session}-{self.swap.name}"

    @property
    def group(self) -> str:
        """One xdist worker per session, so it compiles once."""
        return f"hotswap-{self.session}"


# Files of the family's second layout (kohya, XLabs, diffusion_model) swapped into a session started
# from that layout, as its users swap them: hotswap takes every layout check reads. Rank 2 keeps
# XLabs' fused q|k|v (3·rank in the file) within HOTSWAP_TARGET_RANK; a file of one layout swapped onto
# another's is not a user's workflow, and PEFT refuses it when their alpha_pattern differs.
LAYOUT_FIRST = SwapSpec("first", seed=1, rank=2, alpha=4.0)
LAYOUT_SWAPS = (SwapSpec("same-rank", seed=11, rank=2, alpha=2.0),)


HOTSWAP_SLOW_FAMILIES = ("sdxl", "sd2", "qwenimage-edit", "zimage", "flux2")
# The uncompiled refusals tests/test_hotswap.py pins per family (a file onto modules the first did not
# target: PEFT's hotswap check behind load_lora_adapter; a text-encoder file: lora_base's
# _load_lora_into_text_encoder) are raised by code every loader shares. Families whose loader is another
# default family's (sd2: StableDiffusionLoraLoaderMixin, sd15's; qwenimage-edit: QwenImageLoraLoaderMixin,
# qwenimage's; flux2: Flux2LoraLoaderMixin, flux2-klein's) or a copy of it into the same UNet code
# (sdxl's StableDiffusionXLLoraLoaderMixin) run theirs in `make slow` (4 s of `make test` under load).
HOTSWAP_REFUSALS_COVERED_BY = {"sd2": "sd15", "sdxl": "sd15", "qwenimage-edit": "qwenimage", "flux2": "flux2-klein"}
# Families whose default hotswap run is one swap into one compiled session (about 5 s on 2 cores): FLUX.2
# [klein] at model level, rank 4 -> 8 (the padding to the target rank); its other swaps, the ten-swap
# sequence (16 s) and pipeline level (17 s) go through the same diffusers/PEFT code as flux's, `make slow`.
# FLUX.2 [dev] compiles the same transformer class: HOTSWAP_SLOW_FAMILIES.
HOTSWAP_ONE_SWAP = {"flux2-klein": ("model", "rank-up")}
# At pipeline level every family goes through the same diffusers code (load_lora_weights with
# hotswap=True into the denoiser, one pipeline call), so one family runs every spec and the sequence:
# flux, whose tiny transformer compiles in a third of the time of sd15's UNet. The other families'
# pipeline-level sessions (one spec each, in turn) are `make slow`: what a family adds there is its
# loader routing a hotswap=True load to its denoiser, which tests/test_hotswap.py's refusals run through
# each family's pipeline API uncompiled, and its compiled denoiser's swap, which its model-level session
# runs. They were sd15's compiled UNet pipeline (6 s of `make test` on 2 cores) and qwenimage's (2.5 s);
# Wan's default session (EXPERT_REPRESENTATIVE) is at pipeline level.
PIPELINE_FAMILY = "flux"
# Families whose second layout's model-level session tests/test_cli_hotswap.py already runs (sd15's
# kohya files, through `lora-parity hotswap`): here it would compile the same UNet once more.
CLI_LAYOUT_SESSIONS = ("sd15",)
# Families whose second layout's model-level session is `make slow`: at model level a file in another layout
# is handed to load_lora_adapter as our parse of it written in diffusers' layout (hotswap.denoiser_part), so
# a session whose parse is the diffusers session's modules at the same ranks swaps what that session swaps.
# Qwen-Image's diffusion_model files are diffusers' own PEFT names under another prefix (the reader's, which
# the merge cases show): 5 s of `make test` under load. FLUX.1's XLabs session stays default: its fused
# q|k|v reach the swap as rank-3r rows of to_q, to_k and to_v, shapes no diffusers session has.
PARSE_ONLY_LAYOUT_SESSIONS = ("qwenimage",)
# (layout, level) whose swapped file PEFT refuses for its alpha_pattern: at model level the suite loads its
# own reading of a musubi FLUX.2 file, per-module alphas included (the fused q|k|v at rank 3r, alpha 3α); at
# pipeline level diffusers' converter bakes α/r into the factors and no alpha_pattern is left
HOTSWAP_ALPHA_PATTERN_LAYOUTS = {("musubi-flux2", "model"): HOTSWAP_ALPHA_PATTERN}


# A family of several denoisers (Wan 2.2 A14B) runs every session once per expert (high: transformer, low:
# transformer_2, both: each compiled and swapped). Its default run is one session: both experts at
# pipeline level (load_lora_weights into transformer, then with load_into_transformer_2=True; two
# compiled instances of one class; a video whose steps run both), swapping rank 4 -> 8 (the padding);
# the low expert alone at model level runs through `lora-parity hotswap --expert low` in
# tests/test_cli_hotswap.py. Each other session is the same calls on one expert, or the same loads as
# one-denoiser families, about 4-8 s each on 2 cores: `make slow`.
EXPERT_REPRESENTATIVE = ("pipeline", "both", "rank-up")


def _expert_choices(fam: Family) -> tuple[str | None, ...]:
    from parity.zoo.experts import EXPERT_CHOICES

    return EXPERT_CHOICES if fam.experts else (None,)


def _default_expert(fam: Family) -> str | None:
    """The expert load_lora_weights loads into without kwargs: a layout's session swaps there."""
    from parity.zoo.experts import DEFAULT

    return DEFAULT if fam.experts else None


def hotswap_cases(families: Iterable[str] | None = None, sequence: bool = False) -> list[HotswapCase]:
    """Each swap spec (or the ten-swap sequence) into each family × level (× expert, for a family of
    several denoisers). Representative: every spec at model level (one denoiser step per output); at
    pipeline level (a whole tiny image, three more for each output check) PIPELINE_FAMILY (or the first
    family selected) runs every spec and the sequence, the others none by default. Each
    family's second layout: one swap at model level (pipeline level is slow). A family with experts:
    EXPERT_REPRESENTATIVE only."""
    out = []
    selected = _families(families)
    names = [fam.name for fam in selected]
    full = PIPELINE_FAMILY if PIPELINE_FAMILY in names else names[0] if names else None
    for fam in selected:
        for level in LEVELS:
            for expert in _expert_choices(fam):
                cases = []
                if sequence:
                    cases.append(HotswapCase(fam.name, level, expert=expert,
                                             slow=level == "pipeline" and fam.name != full))
                else:
                    for spec in SWAPS:
                        representative = level == "model" or fam.name == full
                        cases.append(HotswapCase(fam.name, level, spec, expert=expert, slow=not representative))
                    if len(fam.layouts) > 1 and expert == _default_expert(fam):
                        cases += [HotswapCase(fam.name, level, spec, fam.layouts[1], expert=expert,
                                              slow=level == "pipeline" or fam.name in CLI_LAYOUT_SESSIONS
                                              or fam.name in PARSE_ONLY_LAYOUT_SESSIONS,
                                              known=HOTSWAP_ALPHA_PATTERN_LAYOUTS.get((fam.layouts[1], level)))
                                  for spec in LAYOUT_SWAPS]
                if fam.experts:
                    cases = [replace(c, slow=(c.level, c.expert, c.swap and c.swap.name) != EXPERT_REPRESENTATIVE)
                             for c in cases]
                out += cases
    # sdxl and sd2 hotswap through the same UNet code path as sd15, qwenimage-edit through qwenimage's
    # transformer and loader: their sessions (compiled UNet, about three minutes on 2 cores for sdxl; 16 s
    # for qwenimage-edit) run in `make slow`
    out = [replace(c, slow=True) if c.family in HOTSWAP_SLOW_FAMILIES else c for c in out]
    return [replace(c, slow=True) if c.family in HOTSWAP_ONE_SWAP
            and (c.level, c.swap and c.swap.name) != HOTSWAP_ONE_SWAP[c.family] else c for c in out]


# The harness's own machinery run per family (the float64 forward, fresh float64 copies): sd2 is sd15's
# pipeline and layer types at other widths, so its runs (10 s on 2 cores) are `make slow`.
MACHINERY_SLOW_FAMILIES = ("sd2",)


def family_cases(families: Iterable[str] | None = None) -> list[FamilyCase]:
    """One case per family for the harness's per-family tests, slow where MACHINERY_SLOW_FAMILIES says."""
    return [FamilyCase(fam.name, slow=fam.name in MACHINERY_SLOW_FAMILIES) for fam in _families(families)]


@dataclass(frozen=True)
class FamilyCase(Marks):
    family: str

    @property
    def id(self) -> str:
        return self.family


def text_encoder_families() -> list[str]:
    return [name for name, fam in FAMILIES.items() if _has_text_encoder(fam)]


# ---------------------------------------------------------------- the adapter API

# sdxl is a UNet family like sd15 with one more text encoder, sd2 one with sd15's components at other
# widths: no adapter-API path that sd15 lacks, and a minute on 2 cores. zimage loads through the same
# LoraBaseMixin code as the other transformer families, and so do FLUX.2's (Flux2LoraLoaderMixin).
# qwenimage-edit loads through qwenimage's QwenImageLoraLoaderMixin into the same transformer class: its
# own is the edit pipeline, which the edit workflow (tests/test_edit_workflow.py) runs load, fuse and
# unload on by default (its adapter-API cases were 13 s of `make test` under load). Their cases run in
# `make slow`.
API_SLOW_FAMILIES = ("sdxl", "sd2", "zimage", "flux2", "flux2-klein", "qwenimage-edit")


@dataclass(frozen=True)
class ApiCase(Marks):
    """One family for an adapter-API check, at ``level`` where the check compares outputs."""

    family: str
    level: str | None = None
    expert: str | None = None  # a family of several denoisers: the expert the adapters are loaded into

    @property
    def id(self) -> str:
        return "-".join(p for p in (self.family, self.expert, self.level) if p is not None)


def _api_case(fam: Family, level: str | None = None, known: Known | None = None) -> ApiCase:
    return ApiCase(fam.name, level, slow=fam.name in API_SLOW_FAMILIES, known=known)


def api_output_cases(families: Iterable[str] | None = None) -> list[ApiCase]:
    """Outputs compared at model level for every family; a UNet pipeline takes seconds per image on a
    CPU, so only the transformer families also run a whole tiny image (their text encoder's LoRA too)."""
    out = []
    for fam in _families(families):
        out.append(_api_case(fam, "model"))
        pipeline = _api_case(fam, "pipeline")
        out.append(replace(pipeline, slow=True) if fam.denoiser == "unet" else pipeline)
    return out


def api_unload_cases(families: Iterable[str] | None = None) -> list[ApiCase]:
    """Unload, once per family: UNet families at model level, transformer families through a whole image."""
    return [_api_case(fam, "model" if fam.denoiser == "unet" else "pipeline") for fam in _families(families)]


def api_family_cases(families: Iterable[str] | None = None, text_encoder: bool = False,
                     known: Known | None = None) -> list[ApiCase]:
    """One case per family; with ``text_encoder`` only the families whose text encoder takes a LoRA."""
    return [_api_case(fam, known=known) for fam in _families(families) if not text_encoder or _has_text_encoder(fam)]


# A family of several denoisers (Wan 2.2): the tables above load every adapter with load_lora_weights'
# default, into the high-noise expert (transformer). The low expert (transformer_2) takes one only with
# load_into_transformer_2=True, and a file for both experts is two loads of one adapter name; the
# pipeline's adapter API (set_adapters, disable/enable, delete, unload, listing) then walks both experts
# (WanLoraLoaderMixin._lora_loadable_modules), and save_lora_weights takes transformer's layers only.
# tests/test_adapter_wan_experts.py runs each on these (0.5-1.5 s each on 2 cores): the low expert by
# default; both experts (the same calls on transformer as on transformer_2, two loads of one name) in
# `make slow`.
API_EXPERTS = ("low", "both")
API_DEFAULT_EXPERT = "low"


def api_expert_cases(families: Iterable[str] | None = None, levels: Sequence[str] = ("model",)) -> list[ApiCase]:
    """expert × level for each family with experts, adapters loaded into API_EXPERTS."""
    return [ApiCase(fam.name, level, expert, slow=fam.name in API_SLOW_FAMILIES or expert != API_DEFAULT_EXPERT)
            for fam in _families(families) if fam.experts for expert in API_EXPERTS for level in levels]


def api_fuse_default_cases(families: Iterable[str] | None = None) -> list[ApiCase]:
    """fuse_lora() with its default components, then unload_lora_weights(), per expert: the high expert's
    LoRA stays fused (the control); one in the low expert is lost (the finding)."""
    from parity.checks.findings import FUSE_DEFAULT_SKIPS_TRANSFORMER_2

    return [ApiCase(fam.name, "model", expert, slow=fam.name in API_SLOW_FAMILIES or expert == "both",
                    known=None if expert == "high" else FUSE_DEFAULT_SKIPS_TRANSFORMER_2)
            for fam in _families(families) if fam.experts for expert in ("high", *API_EXPERTS)]


@dataclass(frozen=True)
class UnloadCase(Marks):
    family: str
    level: str
    after_fuse: bool

    @property
    def id(self) -> str:
        return f"{self.family}-{self.level}" + ("-after-fuse" if self.after_fuse else "")


def unload_cases(families: Iterable[str] | None = None) -> list[UnloadCase]:
    """Unload, on loaded adapters and after a fuse (the finding: the fused weights stay). The finding
    is one diffusers code path for every family: the first family shows it, the others in `make slow`."""
    out = []
    for i, case in enumerate(api_unload_cases(families)):
        out.append(UnloadCase(case.family, case.level, False, slow=case.slow))
        out.append(UnloadCase(case.family, case.level, True, slow=case.slow or i > 0, known=UNLOAD_AFTER_FUSE))
    return out


SET_ADAPTERS_WEIGHTS = ((0.0,), (0.25,), (1.0,), (-0.5,), (2.0,), (0.7, -0.3))


@dataclass(frozen=True)
class WeightsCase(Marks):
    family: str
    weights: tuple[float, ...]

    @property
    def id(self) -> str:
        return f"{self.family}-{','.join(map(str, self.weights))}"


def _in_turn(cases: Sequence[ApiCase], case: ApiCase, k: int) -> bool:
    """Whether the k-th entry of a table of weights is ``case``'s family's turn among the default
    (not API_SLOW_FAMILIES) families of ``cases``."""
    default = [c.family for c in cases if not c.slow]
    return not case.slow and k % len(default) == default.index(case.family)


# set_adapters' weights are one multiplier on each adapter's scaling (PEFT's set_scale), the same code on
# every family's LoRA layers, Linear and Conv2d alike: by default each single-adapter weight runs once, on
# the default text-encoder families in turn (sd15: 0.0, 1.0, 2.0; flux: 0.25, -0.5), and the two-adapter
# weights, where adapter b is on the denoiser only and the per-component weights differ, on each of them.
# The rest (5 cases, about 10 s of `make test` under load) is `make slow`.
def set_adapters_cases(families: Iterable[str] | None = None) -> list[WeightsCase]:
    cases = api_family_cases(families, text_encoder=True)
    return [WeightsCase(case.family, w, slow=not (_in_turn(cases, case, k) or (not case.slow and len(w) > 1)))
            for case in cases for k, w in enumerate(SET_ADAPTERS_WEIGHTS)]


@dataclass(frozen=True)
class WeightedCase(Marks):
    """PEFT's add_weighted_adapter on adapters a and b of ``family``."""

    family: str
    combination: str
    weights: tuple[float, float]
    density: float | None = None

    @property
    def id(self) -> str:
        return (f"{self.family}-{self.combination}-{self.weights[0]},{self.weights[1]}"
                + (f"-d{self.density}" if self.density else ""))


WEIGHTED_COMBINATIONS = (
    ("linear", (0.7, 0.4), None),
    ("linear", (1.0, -0.6), None),
    ("ties", (0.7, 0.4), 0.5),
    ("ties", (1.0, -0.6), 0.3),
    ("dare_linear", (0.7, 0.4), 0.5),
    ("dare_linear", (1.0, -0.6), 0.8),
)


# add_weighted_adapter's combinations are PEFT's arithmetic on the two adapters' factors, the same code
# on every family's LoRA layers: by default each combination runs on each default text-encoder family
# once, with the weights in turn (sd15: linear 0.7,0.4, ties 1.0,-0.6, dare_linear 0.7,0.4; flux: the
# other three), so every row of WEIGHTED_COMBINATIONS runs on one family and a negative weight on each.
# The other half (about 13 s of `make test` under load) is `make slow`.
def weighted_cases(families: Iterable[str] | None = None) -> list[WeightedCase]:
    cases = api_family_cases(families, text_encoder=True)
    return [WeightedCase(case.family, c, w, d, slow=not _in_turn(cases, case, k // 2 + k % 2))
            for case in cases for k, (c, w, d) in enumerate(WEIGHTED_COMBINATIONS)]


# ---------------------------------------------------------------- benchmarks

# dtypes timed per device: CPUs have no fast float16 kernels, so float16 is a CUDA-only number.
BENCH_DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")}
SMOKE_DTYPE = "float32"
# The cheapest tiny model: compiled cases and whole-pipeline calls smoke-run on it only (every family's
# pipeline call runs in the golden and hotswap checks anyway).
SMOKE_FAMILY = "flux"
# Families whose benchmarks time sd15's code on other widths (the same modes and operations): a smoke
# run of theirs shows nothing sd15's does not. `make bench` times them.
SMOKE_SKIP_FAMILIES = ("sd2",)


@dataclass(frozen=True)
class BenchCase:
    family: str
    dtype: str
    name: str  # a mode (parity.bench.modes) or an operation (parity.bench.operations)
    compiled: bool = False
    padded: bool = False  # a hotswap-ready mode below the largest padding

    @property
    def id(self) -> str:
        return f"{self.family}-{self.dtype}-{self.name}"

    @property
    def group(self) -> str:
        return f"bench-{self.family}"  # one worker builds each family's subject once

    def in_smoke_run(self, whole_pipeline: bool = False) -> bool:
        """Benchmarks untimed (`make test`) run once each so none rots: float32, the largest hotswap
        padding only, and compiled cases and whole-pipeline calls on the cheapest family only; no
        benchmark of SMOKE_SKIP_FAMILIES."""
        if self.dtype != SMOKE_DTYPE or self.padded or self.family in SMOKE_SKIP_FAMILIES:
            return False
        return not (self.compiled or whole_pipeline) or self.family == SMOKE_FAMILY


def bench_cases(names: Mapping[str, bool], padded: Sequence[str] = (),
                families: Iterable[str] | None = None) -> list[BenchCase]:
    """family × dtype × mode or operation; ``names`` maps each to whether it runs compiled, ``padded``
    lists the hotswap-ready modes the smoke run leaves out."""
    return [BenchCase(fam.name, dtype, name, compiled, name in padded)
            for fam in _families(families) for dtype in DTYPES for name, compiled in names.items()]


# ---------------------------------------------------------------- the Qwen-Image-Edit workflow

EDIT_PIPELINE = "QwenImageEditPlusPipeline"  # the families whose pipeline runs the edit workflow
# where the edit workflow's fuse block runs (parity/checks/edit.py): a fresh pipeline, or after the
# no-fuse block on the same one, as the workflow's own code runs it
EDIT_SEQUENCES = ("fresh", "one-pipeline")
EDIT_IMAGES = (1, 2, 3)
# The default run: one, two and three input images across both dtypes, and the workflow's own
# one-pipeline sequence once; the rest of the product is `make slow`.
EDIT_REPRESENTATIVE = {("float32", 1, "fresh"), ("bfloat16", 2, "fresh"), ("float32", 3, "fresh"),
                       ("float32", 1, "one-pipeline")}
# Where the NaN of the refused-fuse check sits: the first module diffusers fuses, or the last.
NAN_PLACES = {"first": "img_in", "last": "proj_out"}


@dataclass(frozen=True)
class EditCase(Marks):
    family: str
    dtype: str
    images: int
    sequence: str

    @property
    def id(self) -> str:
        return f"{self.family}-{self.dtype}-{self.images}img-{self.sequence}"


def edit_cases(families: Iterable[str] | None = None) -> list[EditCase]:
    """The edit workflow (no fuse against fuse) per dtype × input images × where the fuse block runs."""
    return [EditCase(fam.name, dtype, images, sequence,
                     slow=(dtype, images, sequence) not in EDIT_REPRESENTATIVE,
                     known=EDIT_SAME_ADAPTER_NAME if sequence == "one-pipeline" else None)
            for fam in _families(families) if fam.pipeline_class == EDIT_PIPELINE
            for dtype in ("float32", "bfloat16") for images in EDIT_IMAGES for sequence in EDIT_SEQUENCES]


@dataclass(frozen=True)
class RefusedFuseCase(Marks):
    family: str
    place: str  # a key of NAN_PLACES

    @property
    def id(self) -> str:
        return f"{self.family}-nan-{self.place}"


def refused_fuse_cases(families: Iterable[str] | None = None) -> list[RefusedFuseCase]:
    return [RefusedFuseCase(fam.name, place, known=SAFE_FUSE_PARTIAL if place == "last" else None)
            for fam in _families(families) if fam.pipeline_class == EDIT_PIPELINE for place in NAN_PLACES]


# ---------------------------------------------------------------- every table, for the throwaway check

def all_tables() -> dict[str, list[Any]]:
    """Every table each family is in (benchmarks aside: their names come from parity.bench; the edit
    tables aside: they hold only the families whose pipeline runs the edit workflow)."""
    return {
        "merge": merge_cases(),
        "unfuse": unfuse_cases(),
        "golden": golden_cases(),
        "hotswap": hotswap_cases(),
        "hotswap-sequence": hotswap_cases(sequence=True),
        "api-output": api_output_cases(),
        "unload": unload_cases(),
        "set-adapters": set_adapters_cases(),
        "weighted": weighted_cases(),
    }



# ---------------------------------------------------------------- LoRA algorithms (issue 19)

# Files written as LyCORIS and PEFT write them (tests/support/trainer_lycoris.py): PEFT's DoRA, LyCORIS's
# DoRA on either norm axis, tucker LoCon, LoHa (plain, tucker, with DoRA) and LoKr (plain, tucker).
ALGORITHM_FILES = ("peft-dora", "lycoris-dora", "lycoris-dora-input-axis", "locon-tucker", "loha", "loha-tucker",
                   "loha-dora", "lokr", "lokr-tucker")
# What each family's trainers publish: LyCORIS trains every algorithm on the SD UNets; for FLUX.1 and
# Qwen-Image the trainers write DoRA (PEFT, LyCORIS) and LoKr.
ALGORITHMS_BY_FAMILY = {"sd15": ALGORITHM_FILES, "sdxl": ALGORITHM_FILES, "sd2": ALGORITHM_FILES,
                        "flux": ("peft-dora", "lycoris-dora", "lokr"),
                        "qwenimage": ("peft-dora", "lycoris-dora", "lokr")}
# sd2's files go through sd15's loader and converter onto the layer types sd15's and sdxl's (Linear
# proj_in) default cases hold; a DoRA case checks in float32 and bfloat16, 4-8 s on 2 cores: `make slow`.
ALGORITHM_SLOW_FAMILIES = ("sd2",)
# Families whose refused files (LoHa, LoKr, tucker LoCon: LYCORIS_REFUSED) are `make slow`: sdxl's are refused
# by the same kohya converter as sd15's (_convert_non_diffusers_lora_to_diffusers: "The following keys have
# not been correctly renamed"), which sd15's default cases show for every algorithm; sdxl's DoRA files, which
# diffusers loads and merges, run by default and read its SGM names. Its six refusals (our reader on
# SGM-named LoHa, LoKr and tucker keys) were 6 s of `make test` under load.
ALGORITHM_REFUSALS_SLOW_FAMILIES = ("sdxl",)


@dataclass(frozen=True)
class AlgorithmCase(Marks):
    family: str
    file: str  # one of ALGORITHM_FILES

    @property
    def id(self) -> str:
        return f"{self.family}-{self.file}"


def _algorithm_finding(file: str) -> Known | None:
    if file == "peft-dora":
        return None
    return DORA_SCALE_DROPPED if file.startswith("lycoris-dora") else LYCORIS_REFUSED


def algorithm_cases(families: Iterable[str] | None = None) -> list[AlgorithmCase]:
    """family × the algorithms its trainers publish, each with what diffusers does with it."""
    return [AlgorithmCase(fam.name, file, known=_algorithm_finding(file),
                          slow=fam.name in ALGORITHM_SLOW_FAMILIES or (fam.name in ALGORITHM_REFUSALS_SLOW_FAMILIES
                                                                       and _algorithm_finding(file) is LYCORIS_REFUSED))
            for fam in _families(families) for file in ALGORITHMS_BY_FAMILY.get(fam.name, ())]
