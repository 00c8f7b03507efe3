"""Synthesised LoRA adapters for the built-in zoo: deterministic, sized so the delta is visible, and
written to disk in any layout by :func:`write_lora`, the one way the suite writes one."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from parity.lora.layouts import nameable, save_lora
from parity.lora.neutral import LoraFile, LoraModule
from parity.modules import lora_capable_modules
from parity.zoo.family import select_modules
from parity.zoo.weights import deterministic_tensor, stable_name

RankFn = Callable[[int, str], int]
# A rank: one for every module, (low, high) alternating per module, or a function of (index, name).
Rank = int | tuple[int, int] | RankFn


def uniform_rank(rank: int) -> RankFn:
    return lambda index, name: rank


def mixed_rank(low: int, high: int) -> RankFn:
    """Alternating ranks: files with mixed ranks exercise diffusers' rank_pattern/alpha_pattern path."""
    return lambda index, name: low if index % 2 == 0 else high


def synth_lora(
    components: Mapping[str, nn.Module],
    targets: Mapping[str, Sequence[str]],
    seed: int,
    rank: Rank = 4,
    alpha: float | None | Callable[[int], float | None] = None,
    dtype: torch.dtype = torch.float32,
    only: Mapping[str, set[str]] | None = None,
) -> LoraFile:
    """A LoRA on every module of ``components`` matching ``targets`` (component → name suffixes).

    A ~ N(0, 1/fan_in) and B ~ N(0, 0.25/r) put |ΔW| at about half of |W| for α = r: large enough
    that a dropped or doubled scale is far outside any rounding bound. ``only`` (component → module
    names) leaves out what a layout cannot name (XLabs names attention only).
    """
    rank_fn = uniform_rank(rank) if isinstance(rank, int) else mixed_rank(*rank) if isinstance(rank, tuple) else rank
    alpha_fn = alpha if callable(alpha) else (lambda r: alpha)
    modules: dict[tuple[str, str], LoraModule] = {}
    for component, suffixes in targets.items():
        if component not in components:
            continue
        available = lora_capable_modules(components[component])
        if only is not None:
            available = {n: m for n, m in available.items() if n in only.get(component, ())}
        for index, name in enumerate(select_modules(sorted(available), tuple(suffixes))):
            weight = available[name].weight
            r = rank_fn(index, name)
            out_f, in_f = weight.shape[0], weight.shape[1]
            kernel = tuple(weight.shape[2:])
            fan_in = in_f * math.prod(kernel)
            # keyed by the stable name: the same file content whichever transformers builds the model
            tag = f"lora/{seed}/{component}/{stable_name(components[component], name)}"
            down = deterministic_tensor(seed, tag + "/down", (r, in_f, *kernel), 1 / math.sqrt(fan_in))
            up = deterministic_tensor(seed, tag + "/up", (out_f, r, *(1,) * len(kernel)), 0.5 / math.sqrt(r))
            modules[(component, name)] = LoraModule(component, name, down.to(dtype), up.to(dtype), alpha_fn(r))
    if not modules:
        raise ValueError(f"targets {dict(targets)} match no module")
    return LoraFile(modules=modules, layout="synthetic")


def write_lora(
    components: Mapping[str, nn.Module],
    targets: Mapping[str, Sequence[str]],
    path: str | os.PathLike,
    layout: str = "diffusers",
    seed: int = 0,
    rank: Rank = 4,
    alpha: float | None | Callable[[int], float | None] = None,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Synthesise a LoRA on ``targets`` (see ``synth_lora``), on the modules ``layout`` can name, and
    save it at ``path`` in ``layout``."""
    lora = synth_lora(components, targets, seed=seed, rank=rank, alpha=alpha, dtype=dtype,
                      only=nameable(layout, components))
    return save_lora(lora, path, layout, components)
