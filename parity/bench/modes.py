"""The states a benchmark times a pipeline in, declared once as data, and how to enter and leave them.

A benchmark subject is a pipeline (tiny, full-size denoiser, or the user's model) whose LoRA files
target the denoiser only: what is timed is the denoiser. Leaving a mode unloads every adapter,
undoes compilation and writes the targeted base weights back from a snapshot, so one built
pipeline serves every mode and no mode sees another's leftovers (fuse + unload keeps the fused
weights in diffusers, which the snapshot undoes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from parity.bench import record as rec
from parity.bench.flops import adapter_ranks, counted_flops, lora_extra_flops
from parity.bench.timing import device_name, driver_versions
from parity.checks.dynamo import compile_in_place, reset
from parity.devices import device_class
from parity.lora.neutral import LoraFile
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.modules import lora_capable_modules
from parity.versions import library_versions
from parity.zoo import build_pipeline
from parity.zoo.family import Family, InputShape
from parity.zoo.fullsize import FULL, SIZES, full_denoiser

BENCH_RANK = 8  # rank of every benchmark adapter; hotswap-ready modes pad it to their target rank
MAX_ADAPTERS = 4


@dataclass(frozen=True)
class Mode:
    name: str
    adapters: int = 0  # loaded and active
    fused: bool = False
    unload: bool = False  # unload_lora_weights after fusing: plain layers again
    compiled: bool = False
    target_rank: int | None = None  # enable_lora_hotswap(target_rank) before loading


MODES: tuple[Mode, ...] = (
    Mode(rec.BASE),
    *(Mode(rec.unfused_mode(n), adapters=n) for n in (1, 2, 4)),
    Mode(rec.FUSED, adapters=1, fused=True),
    Mode(rec.FUSED_UNLOADED, adapters=1, fused=True, unload=True),
    Mode(rec.COMPILED_BASE, compiled=True),
    Mode(rec.COMPILED_FUSED, adapters=1, fused=True, unload=True, compiled=True),
    # target_rank == BENCH_RANK pads nothing: the baseline for what padding to 64 and 128 costs.
    *(Mode(rec.hotswap_ready_mode(t), adapters=1, compiled=True, target_rank=t) for t in (BENCH_RANK, 64, 128)),
)
MODES_BY_NAME = {m.name: m for m in MODES}
# The hotswap-ready modes below the largest padding: the untimed smoke run takes the largest only.
PADDINGS_BELOW_LARGEST = tuple(m.name for m in MODES if m.target_rank is not None)[:-1]


@dataclass
class Subject:
    """One built pipeline, its LoRA files, the inputs of one denoiser call, and a weight snapshot."""

    family: Family
    pipe: Any
    size: str  # "tiny", "small", "full", or "model-path"
    dtype: torch.dtype
    device: str
    paths: list[str]
    loras: list[LoraFile]
    inputs: dict[str, Any]
    shape: InputShape | None
    saved: dict[str, torch.Tensor] = field(default_factory=dict)  # targeted base tensors, on the CPU
    backend: str = "eager"
    compile_mode: str | None = None
    notes: str = ""
    flops: dict[tuple, int] = field(default_factory=dict)  # counted once per subject, in the base state
    scratch: dict[str, Any] = field(default_factory=dict)  # one case's state between rounds; cleared by leave
    quantization: str | None = None  # the denoiser quantized by this --quantization name (parity/bench/quantized.py)

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipe, self.family.denoiser)

    def forward(self) -> Any:
        with torch.no_grad():
            return self.denoiser(**self.inputs, return_dict=False)[0]

    def pipeline_call(self) -> Any:
        with torch.no_grad():
            return self.family.render(self.pipe, self.family.call_args(self.pipe, seed=0))


def build_subject(
    family: Family,
    size: str,
    dtype: torch.dtype,
    device: str,
    directory: str,
    model_path: str | None = None,
    backend: str = "eager",
    compile_mode: str | None = None,
    blocks: int | None = None,
    snapshot: bool = True,
) -> Subject:
    """The pipeline for ``size`` with ``MAX_ADAPTERS`` rank-``BENCH_RANK`` LoRA files on its denoiser.
    Without ``snapshot`` the subject cannot ``leave`` a mode (a group's subjects never do): at the
    small size the snapshot is nearly a second copy of the model."""
    notes = ""
    if model_path is not None:
        size = "model-path"
        pipe = build_pipeline(family, dtype=dtype, device=device, model_path=model_path)
        shape = FULL[family.name].shape
    elif size in SIZES:
        spec = SIZES[size][family.name]
        pipe = build_pipeline(family, dtype=dtype, device=device)
        denoiser = full_denoiser(family.name, device, blocks=blocks, size=size).to(dtype)
        pipe.register_modules(**{family.denoiser: denoiser})
        shape = spec.shape
        notes = spec.note
        if spec.published_blocks is not None:
            notes += f"; {blocks or spec.bench_blocks} of {spec.published_blocks} blocks"
    else:
        pipe = build_pipeline(family, dtype=dtype, device=device)
        shape = None
    denoiser = getattr(pipe, family.denoiser)
    components = {family.denoiser: denoiser}
    targets = {family.denoiser: family.default_targets[family.denoiser]}
    paths, loras = [], []
    for i in range(MAX_ADAPTERS):
        path = write_lora(components, targets, os.path.join(directory, f"bench-{family.name}-{i}.safetensors"),
                          seed=100 + i, rank=BENCH_RANK, alpha=BENCH_RANK)
        paths.append(path)
        loras.append(read_lora(path, components))
    inputs = family.denoiser_inputs(pipe, 0, dtype, shape)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    subject = Subject(family, pipe, size, dtype, device, paths, loras, inputs, shape, backend=backend,
                      compile_mode=compile_mode, notes=notes)
    if snapshot:
        subject.saved = _targeted_weights(subject)
    return subject


# Sizes whose subject is the tiny pipeline around a denoiser of that size: its pipeline call would
# feed the denoiser the tiny VAE's latents, so only the forward is timed without a model folder.
DENOISER_ONLY = tuple(SIZES)
DENOISER_ONLY_SKIP = "{size} size builds only the denoiser; time a whole pipeline with --model-path"


def _targeted_weights(subject: Subject) -> dict[str, torch.Tensor]:
    layers = lora_capable_modules(subject.denoiser)
    names = {m.module for lora in subject.loras for m in lora.modules.values()}
    return {name: layers[name].weight.detach().to("cpu", copy=True) for name in sorted(names)}


def adapter_names(n: int) -> list[str]:
    return [f"a{i}" for i in range(n)]


def load(subject: Subject, index: int, name: str, hotswap: bool = False) -> None:
    subject.pipe.load_lora_weights(subject.paths[index], adapter_name=name, hotswap=hotswap)


def enter(subject: Subject, mode: Mode, warmup: Callable[[], Any] | None = None) -> None:
    """Put the subject into ``mode``. Compiled modes are compiled and warmed up here with ``warmup``
    (the call that will be timed: a pipeline call traces other shapes than one forward), so no
    compile lands in the timed rounds."""
    pipe, denoiser_name = subject.pipe, subject.family.denoiser
    if mode.target_rank is not None:
        pipe.enable_lora_hotswap(target_rank=mode.target_rank)
    names = adapter_names(mode.adapters)
    for i, name in enumerate(names):
        load(subject, i, name)
    if len(names) > 1:
        pipe.set_adapters(names, adapter_weights=[1.0] * len(names))
    if mode.fused:
        pipe.fuse_lora(components=[denoiser_name])
    if mode.unload:
        pipe.unload_lora_weights()
    if mode.compiled:
        compile_in_place(subject.denoiser, subject.backend, subject.compile_mode)
        # reduce-overhead records CUDA graphs on the second call
        for _ in range(2 if subject.compile_mode == "reduce-overhead" else 1):
            (warmup or subject.forward)()


def uncompile(model: nn.Module) -> None:
    """Undo ``model.compile()``: nn.Module keeps the compiled callable in ``_compiled_call_impl``."""
    model._compiled_call_impl = None
    reset()


def leave(subject: Subject) -> None:
    """Back to the base pipeline: no adapters, not compiled, targeted weights as built (verified)."""
    subject.scratch.clear()
    uncompile(subject.denoiser)
    subject.pipe.unload_lora_weights()
    layers = lora_capable_modules(subject.denoiser)
    with torch.no_grad():
        for name, saved in subject.saved.items():
            layers[name].weight.copy_(saved.to(layers[name].weight.device))
    leftover = [n for n, _ in subject.denoiser.named_modules() if n.endswith(".lora_A")]
    if leftover:
        raise RuntimeError(f"adapters left after unload_lora_weights: {leftover[:3]}")


def lora_modules_of(subject: Subject, n: int) -> list[Any]:
    """The LoraModules of the first ``n`` adapters (for the FLOP count)."""
    return [m for lora in subject.loras[:n] for m in lora.modules.values()]


def call_of(subject: Subject, kind: str) -> Callable[[], Any]:
    return subject.pipeline_call if kind == rec.PIPELINE else subject.forward


def flop_fields(subject: Subject, mode: Mode, kind: str) -> dict[str, float]:
    """FLOPs of one base call and what ``mode``'s unfused LoRA adds (padded ranks count as computed).

    Call in the base state: the counts run the base model, with hooks on the targeted layers.
    """
    call = call_of(subject, kind)
    if (kind,) not in subject.flops:
        subject.flops[(kind,)] = counted_flops(call)
    extra = 0
    if mode.adapters and not mode.fused:
        key = (kind, mode.adapters, mode.target_rank)
        if key not in subject.flops:
            ranks = adapter_ranks(lora_modules_of(subject, mode.adapters), rank=mode.target_rank)
            subject.flops[key] = lora_extra_flops(subject.denoiser, ranks, call)
        extra = subject.flops[key]
    return {"flops_base": float(subject.flops[(kind,)]), "flops_lora": float(extra)}


def info(subject: Subject, kind: str, mode: str, **fields: Any) -> rec.BenchInfo:
    """The extra_info of one benchmark of ``subject``: what it ran on and with which libraries."""
    return rec.BenchInfo(
        kind=kind,
        family=subject.family.name,
        mode=mode,
        dtype=str(subject.dtype).removeprefix("torch."),
        device=torch.device(subject.device).type,
        device_name=device_name(subject.device),
        device_class=device_class(subject.device),
        size=subject.size,
        versions={**library_versions(), **driver_versions(subject.device), **_quantizer_versions(subject)},
        notes=subject.notes,
        quantization=subject.quantization,
        **fields,
    )


def _quantizer_versions(subject: Subject) -> dict[str, str]:
    if subject.quantization is None:
        return {}
    from parity.quant.registry import quantizer_versions

    return quantizer_versions()


def mode_info(subject: Subject, mode: Mode, kind: str) -> rec.BenchInfo:
    return info(
        subject,
        kind,
        mode.name,
        rank=BENCH_RANK if mode.adapters else 0,
        adapters=mode.adapters,
        target_rank=mode.target_rank,
        compiled=mode.compiled,
        backend=subject.backend if mode.compiled else None,
    )
