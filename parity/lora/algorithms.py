"""DoRA, LoHa, LoKr and tucker files for the tiny zoo, written as LyCORIS and PEFT write them, so that the
compatibility matrix (parity/matrix) can run the case table's algorithm rows (parity/checks/cases.py
ALGORITHM_FILES) without the tests' trainer helpers. tests/harness/test_algorithm_files.py holds these
files against tests/support/trainer_lycoris.py's, a writer that shares no code with this one.

Followed (LyCORIS f49d30d, 3.3.0; peft 0.21.2):

* lycoris/modules/locon.py ``LoConModule``: ``lora_up.weight`` (out, r[, 1, 1]), ``lora_down.weight``
  (r, in[, k, k]); with ``use_tucker`` on a k×k conv, a 1×1 down, ``lora_mid.weight`` (r, r, k, k), a 1×1 up.
* lycoris/modules/loha.py ``LohaModule``: ``hada_w{1,2}_a`` (out, r), ``hada_w{1,2}_b`` (r, in·k·k); with
  tucker ``hada_w*_a`` is (r, out), ``hada_w*_b`` (r, in) and ``hada_t{1,2}`` (r, r, k, k) the cores.
* lycoris/modules/lokr.py ``LokrModule``: out = a·b, in = c·d (functional/general.py ``factorization``),
  ``lokr_w1`` (a, c) full (no ``decompose_both``), ``lokr_w2_a`` (b, r) / ``lokr_w2_b`` (r, d·k·k), or with
  tucker ``lokr_w2_a`` (r, b), ``lokr_w2_b`` (r, d), ``lokr_t2`` (r, r, k, k).
* every module: ``alpha`` a 0-d float32 buffer, ΔW = (alpha/r)·rebuilt; DoRA (``weight_decompose``):
  ``dora_scale`` (out, 1…) per output row, or (1, in, 1…) per input channel with ``wd_on_out=False``
  (LyCORIS before 3.2). ``save_weights`` casts every tensor to the save dtype: all float32 here.
* PEFT DoRA as diffusers' ``save_lora_weights`` writes it: ``unet.``/``transformer.`` + module +
  ``.lora_A.weight`` / ``.lora_B.weight`` / ``.lora_magnitude_vector`` (peft/tuners/lora/model.py
  ``_get_adapter_state_dict`` drops ``.weight``), (out,) for a Linear, (1, out, 1, 1) for a Conv2d
  (dora.py ``_DoraConvNdLayer.get_weight_norm``: keepdim then ``transpose(1, 0)``); no header, so α = r.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from parity.lora.layouts import LAYOUTS, kohya_prefixes
from parity.lora.names.table import component_names
from parity.zoo import FAMILIES, build_pipeline
from parity.zoo.weights import deterministic_tensor, tensor_seed

RANK = 2
# LyCORIS's default alpha (LoConModule/LohaModule/LokrModule ``alpha=1``, kohya's network_alpha 1): α/r =
# 1/2, so a reader that drops the alpha reads a ΔW twice the size. PEFT DoRA files carry no alpha.
ALPHA = 1.0
DELTA_RATIO = 0.4  # rms(ΔW) / rms(W): far outside any rounding bound, small enough to keep the net in range
# DoRA magnitude = ‖W + ΔW‖ × (1 ± 10…25 %) per entry: were it equal to the norm, a loader that drops it
# or recomputes it would still match
MAGNITUDE_OFF = (0.10, 0.25)


@dataclass(frozen=True)
class Kind:
    algo: str  # "peft" (PEFT LoRA pairs), "locon", "loha", "lokr"
    tucker: bool = False  # tucker cores on the k×k convs; the file then holds those convs only
    dora: str | None = None  # the magnitude's axis: "out" (PEFT, LyCORIS >= 3.2) or "in" (LyCORIS < 3.2)


# the case table's file kinds, in its order (parity/checks/cases.py ALGORITHM_FILES)
KINDS: dict[str, Kind] = {
    "peft-dora": Kind("peft", dora="out"),
    "lycoris-dora": Kind("locon", dora="out"),
    "lycoris-dora-input-axis": Kind("locon", dora="in"),
    "locon-tucker": Kind("locon", tucker=True),
    "loha": Kind("loha"),
    "loha-tucker": Kind("loha", tucker=True),
    "loha-dora": Kind("loha", dora="out"),
    "lokr": Kind("lokr"),
    "lokr-tucker": Kind("lokr", tucker=True),
}
ALGORITHM_FILES = tuple(KINDS)

# The modules each family's files set (diffusers names): attention Linears, a 1×1 conv or Linear
# proj_in, and a 3×3 conv where the family has one (tucker acts on a k×k kernel only).
ALGORITHM_MODULES: dict[str, tuple[str, ...]] = {
    "sd15": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
             "down_blocks.1.attentions.0.proj_in", "down_blocks.1.resnets.0.conv1"),
    "sd2": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
            "down_blocks.1.attentions.0.proj_in", "down_blocks.1.resnets.0.conv1"),  # proj_in: a Linear
    "sdxl": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v", "down_blocks.1.resnets.0.conv1"),
    # whole BFL modules, none fused (img_mlp.0, img_attn.proj, linear2)
    "flux": ("transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.attn.to_out.0",
             "single_transformer_blocks.0.proj_out"),
    "qwenimage": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.img_mlp.net.2", "img_in"),
}
# The kohya-style layout LyCORIS files come in per family (parity/lora/layouts.py): sd-scripts names the
# SDXL UNet by SGM's names and FLUX.1 by BFL's; SD1.x/2.x and musubi-tuner's Qwen-Image keep diffusers'.
KOHYA_LAYOUT = {"sdxl": "kohya-sgm", "flux": "kohya-bfl"}


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """lycoris/functional/general.py ``factorization``: (m, n), m ≤ n, m·n = dimension, the divisors
    nearest sqrt with m ≤ factor; with factor > 0 dividing it, (factor, dimension/factor) ordered."""
    if factor > 0 and dimension % factor == 0:
        return min(factor, dimension // factor), max(factor, dimension // factor)
    limit = dimension if factor < 0 else factor
    best = (1, dimension)
    for m in range(2, math.isqrt(dimension) + 1):  # m + dimension/m falls as m nears sqrt
        if dimension % m == 0 and m <= limit:
            best = (m, dimension // m)
    return best


def _shapes(kind: Kind, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Each tensor a module of ``kind`` stores for a weight of ``shape``, by the modules' __init__. The
    first entry is the factor the size of ΔW is set on (where LyCORIS folds its ``scalar``)."""
    out, inp, kernel = shape[0], shape[1], shape[2:]
    ones, flat, r = (1,) * len(kernel), inp * math.prod(kernel), RANK
    if kind.algo in ("peft", "locon"):
        if kind.tucker:
            return {"lora_up.weight": (out, r, *ones), "lora_down.weight": (r, inp, *ones),
                    "lora_mid.weight": (r, r, *kernel)}
        return {"lora_up.weight": (out, r, *ones), "lora_down.weight": (r, inp, *kernel)}
    if kind.algo == "loha":
        if kind.tucker:
            return {f"hada_{n}{i}{s}": dims for i in (1, 2) for n, s, dims in
                    (("w", "_a", (r, out)), ("w", "_b", (r, inp)), ("t", "", (r, r, *kernel)))}
        return {f"hada_w{i}{s}": dims for i in (1, 2) for s, dims in (("_a", (out, r)), ("_b", (r, flat)))}
    (a, b), (c, d) = factorization(out), factorization(inp)
    # LyCORIS takes w2 full where r ≥ max(b, d)/2 (lokr.py): on these tiny layers (b, d ≤ 10) it would
    # at rank 2; we write the decomposed w2 (and its tucker core) it writes on real-size layers.
    if kind.tucker:
        return {"lokr_w1": (a, c), "lokr_w2_a": (r, b), "lokr_w2_b": (r, d), "lokr_t2": (r, r, *kernel)}
    return {"lokr_w1": (a, c), "lokr_w2_a": (b, r), "lokr_w2_b": (r, d * math.prod(kernel))}


def _tucker(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """functional/general.py ``rebuild_tucker``: core (r, r, k…), wa (r, out), wb (r, in) → (out, in, k…)."""
    return torch.einsum("i j ..., i p, j r -> p r ...", core, wa, wb)


def rebuilt(kind: Kind, t: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """The module's ΔW before α/r, in float64: locon.py ``make_weight``, functional/loha.py ``weight_gen``
    (w1 ⊙ w2), functional/lokr.py ``make_kron`` (kron(w1, w2), w1 given w2's trailing dims)."""
    t = {k: v.double() for k, v in t.items()}
    if kind.algo in ("peft", "locon"):
        up, down = t["lora_up.weight"].flatten(1), t["lora_down.weight"].flatten(1)
        return (_tucker(t["lora_mid.weight"], up.T, down) if kind.tucker else up @ down).reshape(shape)
    if kind.algo == "loha":
        w = [_tucker(t[f"hada_t{i}"], t[f"hada_w{i}_a"], t[f"hada_w{i}_b"]) if kind.tucker
             else t[f"hada_w{i}_a"] @ t[f"hada_w{i}_b"] for i in (1, 2)]
        return (w[0] * w[1]).reshape(shape)
    w1 = t["lokr_w1"]
    w2 = (_tucker(t["lokr_t2"], t["lokr_w2_a"], t["lokr_w2_b"]) if kind.tucker
          else t["lokr_w2_a"] @ t["lokr_w2_b"])
    w1 = w1.reshape(*w1.shape, *(1,) * (w2.dim() - w1.dim()))
    return torch.kron(w1, w2.contiguous()).reshape(shape)  # make_kron: kron views w2, which einsum leaves strided


def _magnitude(weight: torch.Tensor, axis: str, seed: int, tag: str) -> torch.Tensor:
    """‖weight‖ per output row ("out") or per input channel ("in", over every other axis), each entry
    off by MAGNITUDE_OFF either way: (out, 1…) or (1, in, 1…), dora_scale's shapes."""
    dim = 0 if axis == "out" else 1
    norm = weight.transpose(0, dim).flatten(1).norm(dim=1)
    gen = torch.Generator().manual_seed(tensor_seed(seed, tag + "/magnitude", tuple(norm.shape)))
    low, high = MAGNITUDE_OFF
    off = low + (high - low) * torch.rand(norm.shape, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(norm.shape, generator=gen) < 0.5, -1.0, 1.0).double()
    tail = (1,) * (weight.dim() - 1)
    return (norm * (1 + sign * off)).reshape(-1, *tail).transpose(0, dim)


def module_tensors(kind: Kind, weight: torch.Tensor, seed: int, tag: str) -> dict[str, torch.Tensor]:
    """The tensors one module of ``kind`` stores for base ``weight`` (LyCORIS's or PEFT's names, without
    the module's key prefix), float32; ``tag`` keys the random draws."""
    shape = tuple(weight.shape)
    t = {name: deterministic_tensor(seed, f"{tag}/{name}", dims) for name, dims in _shapes(kind, shape).items()}
    scale = 1.0 if kind.algo == "peft" else ALPHA / RANK
    base = weight.detach().double()
    want = DELTA_RATIO * base.pow(2).mean().sqrt()
    # unit-normal factors, then the first one scaled so that rms(ΔW) is DELTA_RATIO × rms(W) exactly,
    # whatever spread the algorithm's product (Hadamard, Kronecker, tucker) gives unit factors
    first = next(iter(t))
    t[first] = (t[first].double() * (want / (scale * rebuilt(kind, t, shape).pow(2).mean().sqrt()))).float()
    delta = scale * rebuilt(kind, t, shape)  # from the stored (float32) factors, as a loader sees them
    if kind.dora is not None:
        t["dora_scale"] = _magnitude(base + delta, kind.dora, seed, tag).float()
    if kind.algo != "peft":
        return {**t, "alpha": torch.tensor(ALPHA, dtype=torch.float32)}
    peft = {"lora_A.weight": t["lora_down.weight"], "lora_B.weight": t["lora_up.weight"]}
    if kind.dora is not None:  # dora.py: (out,) on a Linear; on a conv the keepdim norm transposed, (1, out, 1, 1)
        mag = t["dora_scale"]
        peft["lora_magnitude_vector"] = mag.reshape(-1) if len(shape) == 2 else mag.transpose(0, 1).contiguous()
    return peft


def algorithm_state_dict(family: str, kind: str, denoiser: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The file's tensors for ``family``'s denoiser ``denoiser`` (its weights are the base DoRA's norm
    is taken of)."""
    spec, fam = KINDS[kind], FAMILIES[family]
    modules = dict(denoiser.named_modules())
    # a tucker file holds the modules tucker changes (locon.py: ``use_tucker and any(k != 1 ...)``) only
    names = [n for n in ALGORITHM_MODULES[family]
             if not spec.tucker or any(k != 1 for k in modules[n].weight.shape[2:])]
    if spec.algo == "peft":
        prefix, stems = fam.denoiser + ".", {n: n for n in names}
    else:
        layout = LAYOUTS[KOHYA_LAYOUT.get(family, "kohya")]
        prefix = kohya_prefixes([fam.denoiser], layout.single_te, layout.kohya_denoiser)[fam.denoiser] + "_"
        table = component_names(fam.denoiser, denoiser)
        stems = {}
        for n in names:
            found = table.name_of(layout.naming, n)
            if found is None or not found[1].whole:
                raise ValueError(f"{layout.name} names no whole module {n} in {family}'s {fam.denoiser}")
            stems[n] = found[0].replace(".", "_")
    sd: dict[str, torch.Tensor] = {}
    for n in names:
        for name, tensor in module_tensors(spec, modules[n].weight, seed, f"{family}/{kind}/{n}").items():
            sd[f"{prefix}{stems[n]}.{name}"] = tensor.contiguous()
    return sd


def write_algorithm_file(family: str, kind: str, directory: str | os.PathLike, seed: int = 0, *,
                         components: Mapping[str, nn.Module] | None = None) -> Path:
    """``directory/{family}-{kind}.safetensors``: the ``kind`` file (one of ALGORITHM_FILES) on the
    family's tiny model (``components``: its built components, to spare a build), rank 2, float32."""
    if kind not in KINDS:
        raise ValueError(f"unknown algorithm file {kind!r}; choose from {', '.join(ALGORITHM_FILES)}")
    if family not in ALGORITHM_MODULES:
        raise ValueError(f"no algorithm files for family {family!r}; choose from {', '.join(ALGORITHM_MODULES)}")
    fam = FAMILIES[family]
    if components is None:
        components = fam.components(build_pipeline(fam))
    path = Path(directory) / f"{family}-{kind}.safetensors"
    save_file(algorithm_state_dict(family, kind, components[fam.denoiser], seed), str(path))
    return path
