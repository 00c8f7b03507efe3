"""Turning a declared case into what a check needs: a pipeline, LoRA files on disk, their parse."""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from parity.checks.cases import LayoutCase, LoraSpec, targets_for
from parity.checks.fuse import Snapshot, snapshot
from parity.lora.neutral import LoraFile
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.tolerances import dtype_from_name
from parity.zoo import build_pipeline, get_family
from parity.zoo.experts import place
from parity.zoo.family import Family


@dataclass
class Prepared:
    family: Family
    pipe: Any
    components: dict[str, nn.Module]
    before: Snapshot  # base weights before any LoRA was loaded
    paths: list[str]
    loras: list[LoraFile]  # parsed back from the files: the reference reads these


def write_case_loras(
    case: LayoutCase, components: dict[str, nn.Module], specs: Sequence[LoraSpec], directory: str
) -> list[str]:
    targets = targets_for(get_family(case.family), case.targets)
    return [write_lora(components, targets, os.path.join(directory, f"{case.id}-{i}.safetensors"), case.layout,
                       seed=spec.seed, rank=spec.rank, alpha=spec.alpha_of, dtype=dtype_from_name(spec.dtype))
            for i, spec in enumerate(specs)]


def prepare(
    case: LayoutCase,
    specs: Sequence[LoraSpec],
    dtype: str | torch.dtype,
    device: str,
    directory: str,
    model_path: str | None = None,
) -> Prepared:
    """Build the pipeline, write the case's LoRA files, parse them back, snapshot the base weights."""
    family = get_family(case.family)
    torch_dtype = dtype_from_name(dtype) if isinstance(dtype, str) else dtype
    pipe = build_pipeline(family, dtype=torch_dtype, device=device, model_path=model_path)
    components = family.components(pipe)
    paths = write_case_loras(case, components, specs, directory)
    loras = [read_lora(p, components) for p in paths]
    if case.expert:  # into the case's expert, as load_files then loads them (parity/zoo/experts.py)
        loras = [place(lora, family, case.expert) for lora in loras]
    return Prepared(family, pipe, components, snapshot(components), paths, loras)


def fresh_copy(prep: Prepared) -> Prepared:
    """A deep copy of a loaded pipeline, as a fresh load leaves it: measured bit-identical fused weights
    against a fresh load, at a sixth of its cost (the tests' prepared cache, the matrix worker)."""
    # The copy makes tens of thousands of objects and none is garbage: without collections that find nothing
    # it takes two thirds of the time (measured on the tiny sdxl, kohya LoCon).
    collecting = gc.isenabled()
    gc.disable()
    try:
        pipe = copy.deepcopy(prep.pipe)
    finally:
        if collecting:
            gc.enable()
    return replace(prep, pipe=pipe, components=prep.family.components(pipe))
