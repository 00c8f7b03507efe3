"""The names trainers give a model's modules, derived from the model's own module tree.

A LoRA file addresses a module by some name: diffusers' own (``down_blocks.1.attentions.0…``), the
original checkpoint's (SGM ``input_blocks.4.1…`` for Stable Diffusion UNets, BFL ``double_blocks.0…``
for FLUX.1), or a trainer's own (XLabs ``processor.qkv_lora1``, diffusers' legacy ``processor.to_q``).
Each naming maps a name to a :class:`Target`: the diffusers modules that the file's module feeds, and
which of its output rows go where, because original checkpoints fuse what diffusers splits (q|k|v,
q|k|v|mlp) and order some outputs differently (BFL's final modulation is shift|scale, diffusers'
scale|shift).

Nothing here is a table fitted to one model size: every index comes from walking the model that the
file is checked against, so the same code names a tiny UNet and SDXL's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Piece:
    """File output rows [start, start+size) are rows [at, at+size) of diffusers module ``module``."""

    module: str
    start: int
    size: int
    at: int = 0


@dataclass(frozen=True)
class Target:
    """What one module of a file sets: pieces covering its output rows in order, with no gap."""

    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(p.size for p in self.pieces)

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.module for p in self.pieces))

    @property
    def whole(self) -> bool:
        """One module, rows in order: the file's module *is* that diffusers module."""
        return len(self.pieces) == 1 and self.pieces[0].at == 0


def out_rows(modules: Mapping[str, nn.Module], name: str) -> int:
    return int(modules[name].weight.shape[0])


def whole(modules: Mapping[str, nn.Module], name: str) -> Target:
    return Target((Piece(name, 0, out_rows(modules, name)),))


def fused(modules: Mapping[str, nn.Module], names: list[str]) -> Target:
    """Output rows stacked in ``names`` order, each at the width the model gives it."""
    pieces, start = [], 0
    for name in names:
        size = out_rows(modules, name)
        pieces.append(Piece(name, start, size))
        start += size
    return Target(tuple(pieces))


def halves_swapped(modules: Mapping[str, nn.Module], name: str) -> Target:
    """The file's first half of rows is the module's second half, and the other way round."""
    rows = out_rows(modules, name)
    half = rows // 2
    return Target((Piece(name, 0, half, at=rows - half), Piece(name, half, rows - half, at=0)))


def children(module: nn.Module, attribute: str) -> Iterator[tuple[int, nn.Module]]:
    """(index, child) of ``module.attribute`` (a ModuleList), or nothing when the block has none."""
    found = getattr(module, attribute, None)
    yield from enumerate(found or ())
