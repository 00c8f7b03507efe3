"""LyCORIS (LoCon / LoHa / LoKr, with tucker and DoRA) and PEFT-DoRA LoRA files, written the way those
trainers write them, so that the suite's reader and reference are tested on files their own writer did
not make. Only torch + safetensors are used: nothing from parity, diffusers or peft.

Followed (LyCORIS at f49d30d, "update to 3.3.0"; peft 0.21.2):

* lycoris/modules/locon.py ``LoConModule``: ``weight_list`` / ``custom_state_dict`` give ``lora_up.weight``,
  ``lora_down.weight``, ``lora_mid.weight`` (tucker), ``alpha``, ``dora_scale``; shapes from ``__init__``.
* lycoris/modules/loha.py ``LohaModule``: ``hada_w1_a/_b``, ``hada_w2_a/_b``, ``hada_t1/_t2`` (tucker, where
  ``w_a`` is stored transposed, (r, out)), ``alpha``, ``dora_scale``.
* lycoris/modules/lokr.py ``LokrModule``: ``lokr_w1`` or ``lokr_w1_a/_b``, ``lokr_w2`` or ``lokr_w2_a/_b``
  (+ ``lokr_t2`` for tucker, ``w2_a`` transposed), ``alpha``, ``dora_scale``; out = a*b, in = c*d by
  lycoris/functional/general.py ``factorization`` (re-implemented below, line for line).
* dora_scale: the ``weight_decompose`` branch of each module's ``__init__`` (``wd_on_out``).
* dtypes: ``alpha`` is a 0-d fp32 buffer, ``dora_scale`` an fp32 parameter, but ``save_weights``
  (lycoris/kohya.py, lycoris/wrapper.py) casts *every* tensor to the save dtype, so all of them are in ``dtype``.
* peft/tuners/lora/model.py ``_get_adapter_state_dict``: ``lora_magnitude_vector`` without ``.weight``;
  peft/tuners/lora/dora.py: magnitude (out,) for Linear, (1, out, 1, 1) for Conv2d; diffusers'
  ``save_lora_weights`` prefixes ``unet.`` / ``text_encoder.`` and drops the adapter name.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

Shapes = dict[str, tuple[int, ...]]  # module stem -> base weight shape (out, in) or (out, in, kh, kw)

ALGOS = ("locon", "loha", "lokr")
Draw = Callable[[str, tuple[int, ...], float], torch.Tensor]  # (tensor name, shape, std) -> float64
DELTA_STD = 0.25  # std of the applied ΔW times sqrt(fan_in): ~0.4x a kaiming-uniform base weight's
SD = dict[str, torch.Tensor]


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """LyCORIS functional/general.py ``factorization``: (m, n), m <= n, m*n = dimension; with factor > 0
    dividing the dimension, (factor, dim/factor) sorted; else the divisor pair closest to sqrt (m <= factor)."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    if factor < 0:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def _draw(seed: int, stem: str, name: str, shape: tuple[int, ...], std: float) -> torch.Tensor:
    """N(0, std²) in float64 from a generator per (seed, stem, name) (sha256, not hash(), which is salted
    per process), so that a tensor does not depend on which other modules the file has."""
    digest = hashlib.sha256(f"{seed}|{stem}|{name}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(shape, generator=gen, dtype=torch.float64) * std


def _row_factor(seed: int, stem: str, n: int) -> torch.Tensor:
    """A factor in [0.8, 1.2] per magnitude entry. If the stored magnitude equalled the norm, a reader
    that dropped it or recomputed it would still match."""
    digest = hashlib.sha256(f"{seed}|{stem}|magnitude".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return 0.8 + 0.4 * torch.rand(n, generator=gen, dtype=torch.float64)


def _tucker(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """functional/general.py ``rebuild_tucker``: wa (r, out), wb (r, in), t (r, r, k...) -> (out, in, k...)."""
    return torch.einsum("i j ..., i p, j r -> p r ...", t, wa, wb)


# Stds: each rebuilt product sums r terms (r² for tucker), so each summed rank axis gets one 1/sqrt(r)
# and every product has unit-variance entries. `gain` then sits on the first factor, where LyCORIS
# folds its `scalar` (lora_up / hada_w1_a / lokr_w1[_a] * scalar in custom_state_dict). So ΔW has about
# the same size for every algo and layout, and a dropped factor or scale shows, even in bf16.


def _locon(sd: SD, draw: Draw, shape: tuple[int, ...], rank: int, tucker: bool, gain: float) -> torch.Tensor:
    out, inp, kernel = shape[0], shape[1], shape[2:]
    ones = [1] * len(kernel)
    s = rank**-0.5
    if tucker:  # locon.py: down is a 1x1 conv, mid carries the kernel, up is a 1x1 conv
        up = sd["lora_up.weight"] = draw("lora_up.weight", (out, rank, *ones), gain * s)
        down = sd["lora_down.weight"] = draw("lora_down.weight", (rank, inp, *ones), s)
        mid = sd["lora_mid.weight"] = draw("lora_mid.weight", (rank, rank, *kernel), 1.0)
        return _tucker(mid, up.reshape(out, -1).T, down.reshape(rank, -1))  # locon.py make_weight
    # Linear: (out, r) / (r, in); conv: up (out, r, 1, 1), down (r, in, kh, kw)
    up = sd["lora_up.weight"] = draw("lora_up.weight", (out, rank, *ones), gain * s)
    down = sd["lora_down.weight"] = draw("lora_down.weight", (rank, inp, *kernel), 1.0)
    return (up.reshape(out, -1) @ down.reshape(rank, -1)).reshape(shape)


def _loha(sd: SD, draw: Draw, shape: tuple[int, ...], rank: int, tucker: bool, gain: float) -> torch.Tensor:
    out, inp, kernel = shape[0], shape[1], shape[2:]
    s = rank**-0.5
    rebuilt = []
    for i, g in ((1, gain), (2, 1.0)):
        if tucker:  # loha.py: hada_w*_a is (r, out) here, not (out, r)
            wa = sd[f"hada_w{i}_a"] = draw(f"hada_w{i}_a", (rank, out), g * s)
            wb = sd[f"hada_w{i}_b"] = draw(f"hada_w{i}_b", (rank, inp), s)
            t = sd[f"hada_t{i}"] = draw(f"hada_t{i}", (rank, rank, *kernel), 1.0)
            rebuilt.append(torch.einsum("i j ..., j r, i p -> p r ...", t, wb, wa))  # HadaWeightTucker
        else:  # conv without tucker: w_shape = (out, in*kh*kw)
            wa = sd[f"hada_w{i}_a"] = draw(f"hada_w{i}_a", (out, rank), g * s)
            wb = sd[f"hada_w{i}_b"] = draw(f"hada_w{i}_b", (rank, inp * math.prod(kernel)), 1.0)
            rebuilt.append(wa @ wb)  # HadaWeight
    return (rebuilt[0] * rebuilt[1]).reshape(shape)


def _lokr(sd: SD, draw: Draw, shape: tuple[int, ...], rank: int, tucker: bool, gain: float, factor: int,
          full_w1: bool, full_w2: bool) -> torch.Tensor:
    out, inp, kernel = shape[0], shape[1], shape[2:]
    (a, b), (c, d) = factorization(out, factor), factorization(inp, factor)  # lokr.py: ((a, b), (c, d))
    s = rank**-0.5
    if full_w1:
        w1 = sd["lokr_w1"] = draw("lokr_w1", (a, c), gain)
    else:  # decompose_both: (a, r) @ (r, c)
        sd["lokr_w1_a"], sd["lokr_w1_b"] = draw("lokr_w1_a", (a, rank), gain * s), draw("lokr_w1_b", (rank, c), 1.0)
        w1 = sd["lokr_w1_a"] @ sd["lokr_w1_b"]
    if full_w2:
        w2 = sd["lokr_w2"] = draw("lokr_w2", (b, d, *kernel), 1.0)
    elif tucker:  # lokr.py: w2_a (r, b) transposed, w2_b (r, d), t2 (r, r, k...)
        sd["lokr_w2_a"], sd["lokr_w2_b"] = draw("lokr_w2_a", (rank, b), s), draw("lokr_w2_b", (rank, d), s)
        sd["lokr_t2"] = draw("lokr_t2", (rank, rank, *kernel), 1.0)
        w2 = _tucker(sd["lokr_t2"], sd["lokr_w2_a"], sd["lokr_w2_b"])
    else:  # Linear (b, r) @ (r, d); conv (b, r) @ (r, d*kh*kw)
        sd["lokr_w2_a"] = draw("lokr_w2_a", (b, rank), s)
        sd["lokr_w2_b"] = draw("lokr_w2_b", (rank, d * math.prod(kernel)), 1.0)
        w2 = sd["lokr_w2_a"] @ sd["lokr_w2_b"]
    for _ in range(w2.dim() - w1.dim()):  # functional/lokr.py make_kron
        w1 = w1.unsqueeze(-1)
    return torch.kron(w1, w2.contiguous()).reshape(shape)


def lycoris_state_dict(shapes: Shapes, algo: str, *, prefix: str = "lora_unet_", rank: int = 4, alpha: float = 2.0,
                       seed: int = 0, dtype: torch.dtype = torch.float32, tucker: bool = False,
                       dora: bool = False, wd_on_out: bool = True, base: dict[str, torch.Tensor] | None = None,
                       lokr_factor: int = -1, lokr_full_w1: bool = True,
                       lokr_full_w2: bool = False) -> dict[str, torch.Tensor]:
    """``prefix + stem + "." + name`` -> tensor, for each stem (kohya-underscored module name) in ``shapes``.

    ``tucker`` acts only on convs with a kernel other than 1 (as ``use_tucker`` does), and for LoKr only
    when w2 is decomposed. ``lokr_full_w1`` / ``lokr_full_w2`` pick the layout; LyCORIS itself decomposes
    w1 only with ``decompose_both`` and rank < max(a, c)/2, and forces a full w2 when rank >= max(b, d)/2
    (or ``full_matrix``): callers choose a rank for which their layout is the one LyCORIS would write.
    With both LoKr factors full LyCORIS stores alpha = rank (scale 1), so the file does too.
    ``dora``: ``dora_scale`` from ``base[stem]`` (see module docstring), which ``base`` must then hold."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, not {algo!r}")
    if dora and base is None:
        raise ValueError("dora=True needs base (stem -> base weight) to compute dora_scale")
    result: dict[str, torch.Tensor] = {}
    for stem, shape in shapes.items():
        shape = tuple(shape)
        kernel = shape[2:]
        use_tucker = tucker and any(k != 1 for k in kernel)

        # the stored factors are rounded to dtype before ΔW is computed from them, as a reader sees them
        def draw(name: str, s: tuple[int, ...], std: float, stem: str = stem) -> torch.Tensor:
            return _draw(seed, stem, name, s, std).to(dtype).to(torch.float64)

        sd: dict[str, torch.Tensor] = {}
        file_alpha = float(alpha) if alpha else float(rank)  # LyCORIS: alpha None or 0 -> lora_dim
        scale = file_alpha / rank
        if algo == "lokr" and lokr_full_w1 and lokr_full_w2:  # lokr.py: use_w1 and use_w2 -> alpha = lora_dim
            file_alpha, scale = float(rank), 1.0
        gain = DELTA_STD / (scale * math.sqrt(math.prod(shape[1:])))
        if algo == "locon":
            delta = _locon(sd, draw, shape, rank, use_tucker, gain)
        elif algo == "loha":
            delta = _loha(sd, draw, shape, rank, use_tucker, gain)
        else:
            delta = _lokr(sd, draw, shape, rank, use_tucker, gain, lokr_factor, lokr_full_w1, lokr_full_w2)
        # 0-d buffer torch.tensor(alpha * lora_dim / r_factor), fp32, cast to the save dtype
        sd["alpha"] = torch.tensor(file_alpha, dtype=torch.float32)
        if dora:
            assert base is not None
            if tuple(base[stem].shape) != shape:
                raise ValueError(f"base[{stem!r}] has shape {tuple(base[stem].shape)}, shapes says {shape}")
            weight = base[stem].to(torch.float64) + delta * scale
            tail = [1] * (len(shape) - 1)
            if wd_on_out:  # ||.|| of each output row -> (out, 1[, 1, 1])
                norm = weight.reshape(shape[0], -1).norm(dim=1)
                mag = (norm * _row_factor(seed, stem, shape[0])).reshape(shape[0], *tail)
            else:  # legacy: ||.|| of each input column -> (1, in[, 1, 1])
                norm = weight.transpose(0, 1).reshape(shape[1], -1).norm(dim=1)
                mag = (norm * _row_factor(seed, stem, shape[1])).reshape(shape[1], *tail).transpose(0, 1)
            sd["dora_scale"] = mag.float()  # an fp32 nn.Parameter in the module
        for name, tensor in sd.items():
            result[f"{prefix}{stem}.{name}"] = tensor.to(dtype).contiguous()  # save_weights: .to(dtype)
    return result


def peft_dora_state_dict(shapes_dotted: Shapes, *, component: str = "unet", rank: int = 4, seed: int = 0,
                         dtype: torch.dtype = torch.float32,
                         base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A PEFT DoRA adapter as diffusers' ``save_lora_weights`` writes it (no ``lora_adapter_metadata``, so
    a loader takes lora_alpha = r, scaling 1): ``{component}.{module}.lora_A.weight`` (r, in[, kh, kw]),
    ``.lora_B.weight`` (out, r[, 1, 1]), ``.lora_magnitude_vector`` (out,) for Linear, (1, out, 1, 1) for
    Conv2d, = ||W + B@A|| per output row (dora.py get_weight_norm) times a factor in [0.8, 1.2]."""
    result: dict[str, torch.Tensor] = {}
    for module, shape in shapes_dotted.items():
        shape = tuple(shape)
        out, inp, kernel = shape[0], shape[1], shape[2:]
        if tuple(base[module].shape) != shape:
            raise ValueError(f"base[{module!r}] has shape {tuple(base[module].shape)}, shapes says {shape}")
        gain = DELTA_STD / math.sqrt(math.prod(shape[1:]))  # scaling is 1: see the comment above _locon
        a = _draw(seed, module, "lora_A", (rank, inp, *kernel), 1.0).to(dtype)
        b = _draw(seed, module, "lora_B", (out, rank, *[1] * len(kernel)), gain * rank**-0.5).to(dtype)
        delta = (b.double().reshape(out, rank) @ a.double().reshape(rank, -1)).reshape(shape)
        weight = base[module].to(torch.float64) + delta
        mag = weight.reshape(out, -1).norm(dim=1) * _row_factor(seed, module, out)
        if kernel:  # _DoraConvNdLayer: norm(keepdim).transpose(1, 0) -> (1, out, 1, 1)
            mag = mag.reshape(1, out, *[1] * len(kernel))
        key = f"{component}.{module}"
        result[f"{key}.lora_A.weight"] = a.contiguous()
        result[f"{key}.lora_B.weight"] = b.contiguous()
        result[f"{key}.lora_magnitude_vector"] = mag.to(dtype).contiguous()
    return result


def save(sd: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """safetensors file at ``path``; returns the path as str."""
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return str(path)
