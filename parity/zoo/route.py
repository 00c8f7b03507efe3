"""Where ``check`` and ``hotswap`` go without ``--model-path`` for files too wide for the tiny model:
the published architecture (parity/zoo/published.py), whole where it fits in memory, else a
published-width model holding only the transformer blocks the files target.

A FLUX.1 (12 B), Qwen-Image (20 B), Wan 2.2 A14B (two 14 B experts), Z-Image (6 B) or FLUX.2 [dev] (32 B,
larger than a machine here in any dtype) file that trains a few modules needs far less than the whole
model: memory is linear in blocks, every block of a kind has the same shapes, and the modules outside
the blocks (FLUX.1's x_embedder, context_embedder, time/guidance embedders, norm_out, proj_out) are
small and kept in every reduced model at their published shapes. diffusers places a key by its block
index (``transformer_blocks.37`` needs a model with 38 blocks), so the reduced model either

- holds only the targeted blocks, numbered from 0, with the files renumbered to match: a derived file
  in the cache (LORA_PARITY_CACHE/derived) with the same tensors and header under keys whose block
  index is changed, never the user's file. The renaming is proven before it is used: the derived file
  is read against the reduced model and must give, module for module, exactly the user's file's
  modules with the same tensors and alphas, each in its renumbered block. Or,
- where a file's keys cannot be renamed that way (a block index the key grammar below cannot find),
  keeps every block up to the highest one targeted, with the user's file as it is.

Renumbering changes nothing the check measures: diffusers' converters place a block's keys by the
index in the key (kohya's loops over FLUX.1-dev's 19 and 38 blocks, others up to the highest index in
the file, each renaming the keys a block has), the merge is per module, and every block of a kind has
the same shapes. Wan's two experts are reduced alike: a reduced Wan 2.2 model holds the same blocks in
``transformer`` and ``transformer_2``, so a file goes into either expert (parity/zoo/experts.py places it
after it is read against ``transformer``) with the same renumbering. A file targeting every block gains nothing and is refused with the prediction, and
with how many blocks the machine could hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from parity.checks.memory import GIB, MemoryPrediction, available_memory
from parity.errors import ParityInputError
from parity.lora.neutral import LoraFile
import parity.zoo.fullsize as fullsize
from parity.zoo.family import Family
from parity.zoo.published import (
    Published,
    cache_root,
    made_for_published,
    meta_components,
    published,
    read_against_published,
    variant_of,
    VARIANTS,
)

# family → (diffusers' block list in the transformer, what a user calls its blocks), in model order
BLOCK_LISTS: dict[str, tuple[tuple[str, str], ...]] = {
    "flux": (("transformer_blocks", "double"), ("single_transformer_blocks", "single")),
    "qwenimage": (("transformer_blocks", ""),),
    "qwenimage-edit": (("transformer_blocks", ""),),
    "wan": (("blocks", ""),),
    # Z-Image's 30 main layers; its two noise and two context refiners are kept whole, as modules outside
    # the blocks are (4 of its 34 blocks, 0.72 B parameters)
    "zimage": (("layers", ""),),
    # FLUX.2 names its lists as FLUX.1 does (diffusers and BFL's double_blocks/single_blocks alike)
    "flux2": (("transformer_blocks", "double"), ("single_transformer_blocks", "single")),
    "flux2-klein": (("transformer_blocks", "double"), ("single_transformer_blocks", "single")),
}
PUBLISHED_DEPTH = {"flux": (fullsize.FLUX_DOUBLE, fullsize.FLUX_SINGLE), "qwenimage": (fullsize.QWEN_LAYERS,),
                   "qwenimage-edit": (fullsize.QWEN_LAYERS,), "wan": (fullsize.WAN_LAYERS,),
                   "zimage": (fullsize.ZIMAGE_LAYERS,)}
DENOISER = "transformer"
# the components whose blocks a reduction keeps: the denoiser, and Wan 2.2's second expert
DENOISERS = (DENOISER, "transformer_2")


def published_depth(family: str, variant: str = "") -> tuple[int, ...]:
    """Blocks of each block list as published, for the family's ``variant`` (Wan 2.1 1.3B has 30; FLUX.2
    [klein] 9B 8 double and 24 single)."""
    chosen = variant_of(family, variant)
    if chosen is None:
        return PUBLISHED_DEPTH[family]
    return (chosen.blocks,) if chosen.single is None else (chosen.blocks, chosen.single)

# a run's peak, from LoRA-capable components (on the meta device) and the files read against them, in the
# run's dtypes or, for a hint, in the one given
Predict = Callable[[Mapping[str, nn.Module], Sequence[LoraFile], "torch.dtype | None"], MemoryPrediction]


def _module_block(family: str, module: str) -> tuple[str, int] | None:
    """(block list, index) of a transformer module name, None outside the blocks."""
    head, _, rest = module.partition(".")
    index, _, _ = rest.partition(".")
    if head in dict(BLOCK_LISTS[family]) and index.isdigit():
        return head, int(index)
    return None


@dataclass(frozen=True)
class Reduction:
    """The blocks a reduced model keeps: model block j of list L is the files' block ``kept[L][j]``."""

    family: str
    kept: dict[str, tuple[int, ...]]
    variant: str = ""  # the family's published model (parity/zoo/published.py: VARIANTS)

    @property
    def renumbers(self) -> bool:
        return any(indices != tuple(range(len(indices))) for indices in self.kept.values())

    @property
    def blocks(self) -> int:
        return sum(len(indices) for indices in self.kept.values())

    def module(self, name: str) -> str:
        """The diffusers module ``name`` of the files' model, in the reduced model."""
        where = _module_block(self.family, name)
        if where is None:
            return name
        head, index = where
        rest = name.split(".", 2)[2]
        return f"{head}.{self.kept[head].index(index)}.{rest}"

    def published(self, family: Family, dtype: torch.dtype) -> Published:
        counts = [len(self.kept.get(head, ())) for head, _ in BLOCK_LISTS[self.family]]
        return published(family, counts[0], dtype=dtype, single=counts[1] if len(counts) > 1 else None,
                         variant=self.variant or None)

    def meta(self, family: Family) -> dict[str, nn.Module]:
        counts = [len(self.kept.get(head, ())) for head, _ in BLOCK_LISTS[self.family]]
        return meta_components(family, counts[0], counts[1] if len(counts) > 1 else None, self.variant or None)

    def describe(self) -> str:
        """"double block 3 as 0, single block 37 as 0", or "blocks 0-3 at their indices"."""
        parts = []
        for head, word in BLOCK_LISTS[self.family]:
            kind = f"{word} block" if word else "block"
            indices = self.kept.get(head, ())
            if not indices:
                continue
            if not self.renumbers:
                parts.append(f"{kind}s 0-{indices[-1]} at their indices" if len(indices) > 1 else f"{kind} 0")
            else:
                parts += [f"{kind} {old} as {new}" if old != new else f"{kind} {old}"
                          for new, old in enumerate(indices)]
        return ", ".join(parts)


def targeted_blocks(family: str, loras: Sequence[LoraFile]) -> dict[str, tuple[int, ...]]:
    found: dict[str, set[int]] = {head: set() for head, _ in BLOCK_LISTS[family]}
    for lora in loras:
        for component, module in lora.modules:
            where = _module_block(family, module) if component in DENOISERS else None
            if where is not None:
                found[where[0]].add(where[1])
    return {head: tuple(sorted(indices)) for head, indices in found.items()}


def _renamed(lora: LoraFile, reduction: Reduction) -> LoraFile:
    """``lora``'s modules under the reduced model's names: what the derived file must read as."""
    def move(key: tuple[str, str]) -> tuple[str, str]:
        return (key[0], reduction.module(key[1]) if key[0] in DENOISERS else key[1])

    modules = {move(k): _with_names(m, reduction.module) if k[0] in DENOISERS else m for k, m in lora.modules.items()}
    return dataclasses.replace(lora, modules=modules, sources={move(k): v for k, v in lora.sources.items()})


def _with_names(module: object, rename: Callable[[str], str]) -> object:
    """The neutral module with every module name in it renamed (a DoRA's inner module, a LoHa/LoKr's
    whole file module beside the rows it sets)."""
    if not dataclasses.is_dataclass(module) or isinstance(module, type):
        return module
    changes = {f.name: rename(getattr(module, f.name)) if f.name == "module" else
               _with_names(getattr(module, f.name), rename)
               for f in dataclasses.fields(module) if f.name in ("module", "inner", "whole")}
    return dataclasses.replace(module, **changes)


# A block index in a file key: "double_blocks_3_", "transformer_blocks.37.", "single_blocks.0." (kohya,
# BFL, XLabs, diffusers, musubi, ComfyUI all write "blocks" then the index between separators); Z-Image's
# main layers are "layers.3." (diffusers and the original checkpoint alike).
_KEY_INDEX = re.compile(r"(?:blocks|layers)[._](\d+)(?=[._])")


class _NoRename(Exception):
    """The files' keys cannot be renamed by the key grammar: keep the blocks at their indices."""


def _key_renames(lora: LoraFile, keys: Sequence[str], reduction: Reduction) -> dict[str, str]:
    """Every key of the file → its key in the derived file. What each block list's keys look like before
    the index is learnt from the keys the reader placed (``LoraFile.sources``), then applied to every key
    (alphas, magnitudes); a key whose index cannot be told is _NoRename."""
    prefixes: dict[str, str] = {}  # the key's text before its block index → the block list
    for (component, module), sources in lora.sources.items():
        where = _module_block(reduction.family, module) if component in DENOISERS else None
        for key in sources:
            found = list(_KEY_INDEX.finditer(key))
            if where is None:
                continue
            if len(found) != 1 or int(found[0].group(1)) != where[1]:
                raise _NoRename(key)
            if prefixes.setdefault(key[:found[0].start(1)], where[0]) != where[0]:
                raise _NoRename(key)
    renames = {}
    for key in keys:
        found = [m for m in _KEY_INDEX.finditer(key) if key[:m.start(1)] in prefixes]
        if not found:
            renames[key] = key
            continue
        head, index = prefixes[key[:found[0].start(1)]], int(found[0].group(1))
        if len(found) != 1 or index not in reduction.kept[head]:
            raise _NoRename(key)
        new = reduction.kept[head].index(index)
        renames[key] = key[:found[0].start(1)] + str(new) + key[found[0].end(1):]
    return renames


# diffusers module names in a header (lora_adapter_metadata's target_modules, and rank_pattern/alpha_pattern
# keys, which PEFT's trainers write re.escape'd: transformer_blocks\.37\.attn)
# Wan's block list is "blocks" (blocks.3.attn1.to_q), Z-Image's "layers" (layers.3.attention.to_q); a name
# is renumbered only where its list is one the reduction keeps, so a CLIP encoder's layers.3 stays as is
_HEADER_INDEX = re.compile(
    r"(?<![A-Za-z_])(single_transformer_blocks|transformer_blocks|blocks|layers)(\\?\.)(\d+)(?=\\?\.|$)")


def _header_renamed(metadata: dict[str, str], reduction: Reduction) -> dict[str, str]:
    """The header with every diffusers block name in it renumbered; values that are JSON are renamed
    inside (strings and object keys), others as text."""
    def text(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            head, sep, index = match.group(1), match.group(2), int(match.group(3))
            kept = reduction.kept.get(head, ())
            return f"{head}{sep}{kept.index(index)}" if index in kept else match.group(0)

        return _HEADER_INDEX.sub(one, value)

    def walk(value: object) -> object:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {text(k): walk(v) for k, v in value.items()}
        return value

    renamed = {}
    for key, value in metadata.items():
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        renamed[key] = json.dumps(walk(parsed)) if isinstance(parsed, dict | list) else text(value)
    return renamed


def derived_file(lora: LoraFile, reduction: Reduction) -> str:
    """The file renumbered for ``reduction``, written once into the cache (the user's file is only read).
    Raises _NoRename where its keys cannot be renamed."""
    from safetensors.torch import save_file

    from parity.lora.tensors import load_tensors

    assert lora.path is not None
    tensors, metadata = load_tensors(lora.path)
    renames = _key_renames(lora, list(tensors), reduction)
    stat = os.stat(lora.path)
    blob = json.dumps([os.path.abspath(lora.path), stat.st_size, stat.st_mtime_ns, reduction.kept], sort_keys=True)
    stem = os.path.splitext(os.path.basename(lora.path))[0]
    path = os.path.join(cache_root(), "derived", f"{stem}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
                        ".safetensors")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, staging = tempfile.mkstemp(suffix=".safetensors", dir=os.path.dirname(path))
        os.close(fd)
        try:
            save_file({renames[k]: t.contiguous() for k, t in tensors.items()}, staging,
                      _header_renamed(metadata, reduction) or None)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
    return path


def same_modules(a: object, b: object) -> bool:
    """Equal neutral modules: every tensor bit for bit, every other field equal (a magnitude's file key aside)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(f.name == "key" or same_modules(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(map(same_modules, a, b))
    return a == b


def proven(derived: LoraFile, expected: LoraFile) -> str | None:
    """None where the derived file reads as the user's file renumbered; else what differs."""
    if set(derived.modules) != set(expected.modules):
        missing = sorted(set(expected.modules) ^ set(derived.modules))
        return f"its modules differ ({', '.join('.'.join(k) for k in missing[:3])})"
    for key, module in expected.modules.items():
        if not same_modules(derived.modules[key], module):
            return f"{'.'.join(key)} differs"
    return None


@dataclass(frozen=True)
class Route:
    """Files too wide for the tiny model, read against the published architecture they were made for,
    whole or reduced to the blocks they target."""

    model: Published  # stored in the one dtype a run uses, else float32
    components: dict[str, nn.Module]  # its LoRA-capable components on the meta device: for a memory prediction
    loras: list[LoraFile]  # read against it
    paths: list[str]  # what the run reads and hands diffusers: the user's files, or the renumbered ones
    prediction: MemoryPrediction | None = None  # None where host memory is not what limits (a CUDA run)
    reduction: Reduction | None = None
    whole: MemoryPrediction | None = None  # the whole architecture's, where it did not fit
    derived: dict[str, str] = dataclasses.field(default_factory=dict)  # user's file → its renumbered copy
    available: float | None = None  # bytes, where the whole did not fit
    hint: str = ""  # where nothing fits: why no reduced model does, and what would

    def describe(self) -> str:
        if self.reduction is None or self.whole is None:
            return self.model.describe()
        r = self.reduction
        total = sum(published_depth(self.model.family, self.model.variant))
        room = f", more than the {self.available / GIB:.1f} GiB available" if self.available is not None else ""
        if not r.blocks:
            kept = f"none of its {total} blocks (the files target none), only the modules outside them"
        elif r.renumbers:
            kept = f"only the {r.blocks} of its {total} blocks the files target ({r.describe()}) and the modules " \
                   "outside the blocks"
        else:
            kept = f"only its first {r.blocks} of {total} blocks, through the last the files target " \
                   f"({r.describe()}), and the modules outside the blocks"
        text = f"{self.model.describe()}: {kept}, since all of it would need {self.whole.peak / GIB:.1f} GiB{room}"
        if self.derived:
            text += "; renumbered copies of the files (same tensors, block indices changed): " + ", ".join(
                f"{os.path.basename(user)} -> {copy}" for user, copy in self.derived.items())
        return text


def _fits(prediction: MemoryPrediction, available: float | None) -> bool:
    return available is None or prediction.peak <= available


def _hint(family: Family, loras: Sequence[LoraFile], predict: Predict, reduction: Reduction,
          prediction: MemoryPrediction, available: float, dtypes: Sequence[torch.dtype]) -> str:
    """What would fit: how many blocks this machine could hold, from the prediction without any block and
    with the reduction's blocks (memory is linear in blocks); and, for a run in a 4-byte dtype, whether
    the same model would in bfloat16."""
    empty = Reduction(reduction.family, {head: () for head in reduction.kept}, reduction.variant)
    # the files as they are: their block modules find no module there, but their tensors are still read
    base = predict(empty.meta(family), loras, None).peak
    if base > available:
        return "; not even a model with none of its blocks would fit"
    per_block = (prediction.peak - base) / max(reduction.blocks, 1)
    fit = int((available - base) // per_block)
    text = f"; about {fit} blocks would fit: a file targeting that many could be checked"
    if any(d.itemsize > 2 for d in dtypes):
        half = predict(reduction.meta(family), [_renamed(lora, reduction) for lora in loras], torch.bfloat16)
        if half.peak <= available:
            text += f"; --dtype bfloat16 would fit ({half.peak / GIB:.1f} GiB)"
    return text


def _read_published(family: Family, paths: Sequence[str],
                    allow_pickle: bool) -> tuple[str, dict[str, nn.Module], list[LoraFile]]:
    """(published model, its components on the meta device, the files read against them): for a family of
    several published models (Wan), the first the files' shapes fit, in VARIANTS' order; where none does,
    the default's error names what does not fit."""
    names = [v.name for v in VARIANTS.get(family.name, ())] or [""]
    first: ParityInputError | None = None
    for name in names:
        components = meta_components(family, variant=name or None)
        try:
            return name, components, read_against_published(components, paths, allow_pickle)
        except ParityInputError as exc:
            first = first or exc
    assert first is not None
    raise first


def published_route(family: Family, paths: Sequence[str], tiny: Mapping[str, nn.Module],
                    dtypes: Sequence[torch.dtype], allow_pickle: bool, predict: Predict | None = None) -> Route | None:
    """Where ``check`` and ``hotswap`` go without a model folder: None for files the ``tiny``
    components fit, else the published architecture, the files read against it on the meta device. With
    ``predict`` (a run limited by host memory): whole where its predicted peak fits what is available,
    else reduced to the blocks the files target (renumbered, or kept at their indices), else refused up
    front: the whole, with its prediction and a ``hint`` for the caller's ``gate_memory`` to refuse it
    with. Nothing is built yet: the caller prints the prediction, gates it, and calls ``ensure_folder``."""
    if not made_for_published(family, paths, tiny):
        return None
    variant, components, loras = _read_published(family, paths, allow_pickle)
    # stored in the one dtype run, so that loading it maps no wider file than the model it builds
    dtype = dtypes[0] if len(set(dtypes)) == 1 else torch.float32
    whole = published(family, dtype=dtype, variant=variant or None)
    if predict is None:
        return Route(whole, components, loras, list(paths))
    prediction, available = predict(components, loras, None), available_memory()
    if _fits(prediction, available):
        return Route(whole, components, loras, list(paths), prediction)
    assert available is not None
    refused = Route(whole, components, loras, list(paths), prediction)  # the caller's gate refuses it
    if family.name not in BLOCK_LISTS:
        return dataclasses.replace(refused, hint=f"the published {family.name} architecture has no blocks to leave out")
    targeted = targeted_blocks(family.name, loras)
    total = sum(published_depth(family.name, variant))
    renumbered = Reduction(family.name, targeted, variant)
    at_indices = Reduction(family.name, {h: tuple(range(i[-1] + 1)) if i else () for h, i in targeted.items()},
                           variant)
    if renumbered.blocks == total:
        why = f"the files target every block of the published {family.name} architecture"
        return dataclasses.replace(refused, hint=why + _hint(family, loras, predict, renumbered, prediction, available,
                                                             dtypes))
    smallest: MemoryPrediction | None = None
    reasons = []  # why each reduced model was not used
    for reduction in [renumbered] + ([at_indices] if at_indices != renumbered else []):
        expected = [_renamed(lora, reduction) for lora in loras]
        reduced = reduction.meta(family)
        small = predict(reduced, expected, None)
        smallest = smallest or small
        if reduction.blocks == total or not _fits(small, available):
            reasons.append(f"the files target {reduction.blocks} of its {total} blocks, and a model with only those "
                           f"needs {small.peak / GIB:.1f} GiB" if reduction.renumbers or reduction is renumbered else
                           f"with the blocks at their indices (the first {reduction.blocks}) it needs "
                           f"{small.peak / GIB:.1f} GiB")
            continue
        derived: dict[str, str] = {}
        if reduction.renumbers:
            try:
                for path, lora in zip(paths, loras):
                    derived[path] = derived_file(lora, reduction)
                read = read_against_published(reduced, list(derived.values()), allow_pickle)
                if any(proven(got, want) is not None for got, want in zip(read, expected)):
                    raise _NoRename("the renumbered copy does not read as the file does")
            except (_NoRename, ParityInputError):
                # a renaming not proven (or a file the copy cannot stand in for: a PEFT adapter, whose
                # adapter_config.json names its modules), so never used: the blocks at their indices
                for copy in derived.values():
                    os.remove(copy)
                reasons.append("the files' keys could not be renumbered")
                continue
        else:
            read = read_against_published(reduced, paths, allow_pickle)
        return Route(reduction.published(family, dtype), reduced, read, [derived.get(p, p) for p in paths], small,
                     reduction, prediction, derived, available)
    assert smallest is not None
    return dataclasses.replace(refused, hint="; ".join(reasons) + _hint(family, loras, predict, renumbered,
                                                                         smallest, available, dtypes))
