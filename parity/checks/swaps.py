"""The check ``lora-parity hotswap`` runs, as one function: load the first file into a denoiser
prepared for hotswap, compile and warm up, then swap every next file into the same adapter and check
each swap (no recompile, no refusal, the output of a fresh load, no parameter growth).

The per-swap check, :func:`swap_and_check`, is what tests/test_hotswap.py asserts on too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from parity.checks import hotswap as hs
from parity.checks.dynamo import compile_options, reset
from parity.checks.memory import gate_memory, predict_hotswap
from parity.checks.progress import SILENT, Progress
from parity.devices import resolve, strict_float32
from parity.errors import ParityInputError
from parity.lora.neutral import DiffModule, LoraFile
from parity.lora.reader import read_lora
from parity.modules import pipeline_models
from parity.tolerances import dtype_from_name
from parity.versions import library_versions
from parity.zoo import build_pipeline, get_family
from parity.zoo.experts import DEFAULT, check_expert_option, check_present
from parity.zoo.family import Family
from parity.zoo.published import ensure_folder
from parity.zoo.source import describe as describe_source
from parity.zoo.route import published_route

SHOWN_KEYS = 3  # unexpected keys a refusal's failure line names; the JSON keeps them all


@dataclass(frozen=True)
class HotswapRequest:
    """Files to swap one after another: the first is loaded and compiled, the others swapped in."""

    family: str
    loras: tuple[str, ...]
    target_rank: int | None = None  # None: the largest denoiser rank in the files
    level: str = "model"
    compile_backend: str | None = None  # None: the device's default
    compile_mode: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    model_path: str | None = None
    allow_pickle: bool = False
    expert: str | None = None  # a family of several denoisers: high, low or both (default: high)
    quantization: str | None = None  # the denoiser(s) quantized by this parity/quant/registry.py name


@dataclass(frozen=True)
class HotswapPlan:
    """A request whose options are all valid; no file or model has been read yet."""

    request: HotswapRequest
    family: Family
    device: str
    dtype: torch.dtype
    level: str
    backend: str
    mode: str | None
    expert: str | None = None  # None: a family of one denoiser


def _expert(family: Family, option: str | None) -> str | None:
    """The expert every file of the session goes into: ``--expert``, else ``high`` (where
    load_lora_weights loads without kwargs) for a family of several denoisers. One compiled session
    swaps one adapter in one set of experts, so the files share it (no per-file guess)."""
    if option is None:
        return DEFAULT if family.experts else None
    check_expert_option(family, option)
    return option


def plan_hotswap(request: HotswapRequest) -> HotswapPlan:
    """Validate every option (ParityInputError naming the first bad one), reading nothing."""
    family = get_family(request.family)
    if len(request.loras) < 2:
        raise ParityInputError(f"hotswap needs at least two --lora files (got {len(request.loras)}): "
                               "the first is loaded and compiled, the others are swapped in")
    device = resolve(request.device)
    dtype = dtype_from_name(request.dtype)
    if request.level not in hs.LEVELS:
        raise ParityInputError(f"unknown level {request.level!r}; choose from {', '.join(hs.LEVELS)}")
    backend, mode = compile_options(request.compile_backend, request.compile_mode, device)
    if request.quantization is not None:  # one line saying why it cannot run here (bnb on a CPU, a missing package)
        from parity.quant.registry import require

        if request.quantization == "gguf":
            raise ParityInputError("--quantization gguf (the user's own .gguf denoiser) is not taken by hotswap yet: "
                                   "use gguf-q8_0 or gguf-q4_0, a GGUF written from the model's weights")
        require(request.quantization, device)
    return HotswapPlan(request, family, device, dtype, request.level, backend, mode, _expert(family, request.expert))


def denoiser_rank(lora: LoraFile, denoiser: str) -> int:
    return max(m.rank for (component, _), m in lora.modules.items() if component == denoiser)


def _read_files(plan: HotswapPlan, pipe: Any) -> list[LoraFile]:
    """Parse every file against the model, and refuse what the chosen loader cannot swap."""
    request, family = plan.request, plan.family
    components = family.components(pipe)
    if plan.expert is not None:  # a Wan 2.1 folder has no transformer_2
        check_present(family, pipe, plan.expert, request.loras[0])
    loras = [read_lora(path, components, strict=True, allow_pickle=request.allow_pickle) for path in request.loras]
    denoiser = family.denoiser
    for lora in loras:
        diffs = [f"{c}.{m}" for (c, m), module in lora.modules.items() if isinstance(module, DiffModule)]
        if diffs:
            raise ParityInputError(f"sets {len(diffs)} module(s) by a full difference (.diff keys, e.g. {diffs[0]}): "
                                   "hotswap swaps LoRA factors only", path=lora.path)
        if lora.variants():  # the swap's file is written as plain pairs, and PEFT's hotswap swaps pairs
            raise ParityInputError(f"holds {' and '.join(lora.variants())} modules: the hotswap check swaps plain "
                                   "LoRA factors only (check the file with `lora-parity check`)", path=lora.path)
        if denoiser not in lora.components():
            raise ParityInputError(f"no {denoiser} keys: only the {denoiser} part of a file can be hotswapped",
                                   path=lora.path)
        others = [c for c in lora.components() if c != denoiser]
        if plan.level == "pipeline" and others:
            raise ParityInputError(f"has {', '.join(others)} keys: diffusers cannot hotswap text encoders "
                                   f"(use --level model, which swaps only the {denoiser} part)", path=lora.path)
    return loras


def _target_rank(requested: int | None, loras: Sequence[LoraFile], denoiser: str) -> int:
    ranks = [denoiser_rank(lora, denoiser) for lora in loras]
    needed = max(ranks)
    if requested is None:
        return needed
    if requested < needed:
        widest = loras[ranks.index(needed)].path
        raise ParityInputError(
            f"--target-rank {requested} is below the largest {denoiser} rank in the files ({needed}, in {widest}): "
            f"PEFT would grow the padded LoRA tensors on that swap, which always recompiles; use {needed} or more"
        )
    return requested


def one_line_refusal(error: Exception, shorten: bool) -> str:
    """The refusal as one line; ``shorten`` names only the first unexpected keys."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    head, sep, keys = text.partition("unexpected keys found: ")
    if not shorten or not sep:
        return text
    names = keys.rstrip(".").split(", ")
    more = len(names) - SHOWN_KEYS
    return head + sep + ", ".join(names[:SHOWN_KEYS]) + (f" (+{more} more)" if more > 0 else "")


@dataclass(frozen=True)
class SwapRecord:
    """One swap: what dynamo and diffusers did, the output against its budgets, the parameter change."""

    path: str
    recompiled: bool
    new_graphs: int
    reasons: list[str]
    refused: str | None  # diffusers' refusal, one line
    swap_seconds: float
    call_seconds: float
    vs_fresh: float | None  # None: refused, or the call never ran
    vs_fresh_budget: float | None
    forward_error: float | None  # e_fwd: the dtype's own rounding on a fresh load; informational
    errors: dict[str, float]  # float64: diffusers' LoRA forward of a fresh load against our reference merge
    budgets: dict[str, float]
    params_delta: int
    bytes_delta: int
    failures: list[str]
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _output_fields(check: hs.SwapOutputReport | None) -> dict[str, Any]:
    if check is None:
        return {"vs_fresh": None, "vs_fresh_budget": None, "forward_error": None, "errors": {}, "budgets": {}}
    return {
        "vs_fresh": check.vs_fresh,
        "vs_fresh_budget": check.fresh_budget,
        "forward_error": check.forward_error,
        "errors": {"vs_reference": check.vs_reference},
        "budgets": {"vs_reference": check.reference_budget},
    }


def swap_and_check(session: hs.HotswapSession, source: hs.Source, baseline: tuple[int, int],
                   label: str | None = None) -> SwapRecord:
    """Hotswap ``source`` in, then check the swap; ``baseline`` is the parameter footprint before the
    first swap, ``label`` what the record calls the file (default: its path)."""
    from diffusers.utils import logging as diffusers_logging

    # diffusers logs a refused swap at error level (twice) before raising; the record says it once.
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        result = hs.swap(session, source)
    finally:
        diffusers_logging.set_verbosity(level)
    check = None if result.output is None else hs.check_swap_output(session, source, result.output)
    params, nbytes = hs.parameter_footprint(session)
    watch = result.watch
    failures = []
    if watch.recompiled:
        failures.append(f"recompiled: {watch.summary()}")
    if result.error is not None:
        failures.append(f"refused: {one_line_refusal(result.error, shorten=True)}")
    if check is not None:
        failures += check.failures()
    if params > baseline[0]:
        # Growth means PEFT replaced a padded tensor by a wider one: the shapes the graph guards on changed.
        failures.append(f"parameters grew by {params - baseline[0]} ({nbytes - baseline[1]} bytes)")
    path = label if label is not None else str(source.path if isinstance(source, LoraFile) else source)
    refused = None if result.error is None else one_line_refusal(result.error, shorten=False)
    return SwapRecord(path, watch.recompiled, watch.new_graphs, list(watch.reasons), refused, result.swap_seconds,
                      result.call_seconds, **_output_fields(check), params_delta=params - baseline[0],
                      bytes_delta=nbytes - baseline[1], failures=failures, ok=not failures)


@dataclass(frozen=True)
class HotswapReport:
    family: str
    model_path: str | None
    level: str
    backend: str
    mode: str | None
    target_rank: int
    device: str
    dtype: str
    versions: dict[str, str]
    first: str
    ranks: dict[str, int]  # path → the file's largest denoiser rank
    compile_seconds: float  # first load + compile + first call
    parameters: int  # the swapped denoisers', after the first load
    swaps: list[SwapRecord]
    skipped: list[str]  # files not swapped: diffusers deleted the adapter after a refusal
    model: str = ""  # what ran: the tiny model, the user's folder, or the published architecture
    expert: str | None = None  # a family of several denoisers: the expert(s) swapped (high, low, both)
    components: tuple[str, ...] = ()  # the denoisers compiled and swapped
    warmup_recompiles: list[str] = field(default_factory=list)  # the second call's, before any swap (a model's own)
    quantization: str | None = None  # the denoiser(s) quantized by this parity/quant/registry.py name
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", all(s.ok for s in self.swaps) and not self.skipped)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _memory_gate(plan: HotswapPlan, models: Any, loras: Sequence[LoraFile], target_rank: int, progress: Progress,
                 float32_build: bool) -> None:
    """The predicted peak, printed; a machine with less available is refused here, before the first compile."""
    if torch.device(plan.device).type != "cpu":  # host memory; on CUDA the weights live on the device
        return
    experts = len(hs.expert_components(plan.family, plan.expert))
    prediction = predict_hotswap(models, loras, plan.dtype, target_rank, plan.family.denoiser,
                                 float32_build=float32_build, experts=experts)
    gate_memory(prediction, progress.note, plan.request.model_path)


def _with_published(plan: HotswapPlan, tiny: Any, progress: Progress) -> tuple[HotswapPlan, str | None]:
    """Without a model folder, files too wide for the tiny model are hotswapped on the published
    architecture, as ``check`` checks them (parity/zoo/published.py): its memory predicted on the meta
    device first, then the folder built once into the cache. Returns the plan to run and what it runs on."""
    request = plan.request
    host = torch.device(plan.device).type == "cpu"  # on CUDA the weights live on the device

    def predict(components: Any, loras: Sequence[LoraFile], dtype: torch.dtype | None) -> Any:
        rank = _target_rank(request.target_rank, loras, plan.family.denoiser)
        return predict_hotswap(components, loras, dtype or plan.dtype, rank, plan.family.denoiser,
                               float32_build=False)

    route = None if request.model_path is not None else published_route(
        plan.family, request.loras, plan.family.components(tiny), [plan.dtype], request.allow_pickle,
        predict if host else None)
    if route is None:
        return plan, None
    progress.note(f"the files are wider than the tiny {plan.family.name} model: hotswapping them on the "
                  f"{route.describe()}")
    if route.prediction is not None:
        gate_memory(route.prediction, progress.note, None, route.hint)
    folder = ensure_folder(plan.family, route.model, progress.note)
    return replace(plan, request=replace(request, model_path=folder, loras=tuple(route.paths))), route.describe()


def run_hotswap(request: HotswapRequest | HotswapPlan, progress: Progress = SILENT) -> HotswapReport:
    """Validate and read everything, start a compiled session with the first file, swap each next one in."""
    plan = request if isinstance(request, HotswapPlan) else plan_hotswap(request)
    family = plan.family
    # The session's own pipeline: built once, and every input error surfaces before the first compile.
    pipe = build_pipeline(family, dtype=plan.dtype, device=plan.device, model_path=plan.request.model_path)
    users = plan.request.loras  # reported by the names given, where the route swaps renumbered copies
    plan, published_model = _with_published(plan, pipe, progress)
    request = plan.request
    if published_model is not None:  # the tiny pipeline only showed the files are not its own
        del pipe
        pipe = build_pipeline(family, dtype=plan.dtype, device=plan.device, model_path=request.model_path)
    loras = _read_files(plan, pipe)
    target_rank = _target_rank(request.target_rank, loras, family.denoiser)
    if published_model is None:  # the published architecture's was predicted before it was built
        _memory_gate(plan, pipeline_models(pipe), loras, target_rank, progress,
                     float32_build=request.model_path is None and plan.dtype != torch.float32)
    strict_float32(plan.device)
    twin = None
    if request.quantization is not None:  # files were read on the float build: it is the session's float twin
        twin, pipe = pipe, None
    first, rest = loras[0], list(zip(users[1:], loras[1:]))
    progress.plan(len(loras))
    swaps: list[SwapRecord] = []
    skipped: list[str] = []
    try:
        with progress.step(f"load {os.path.basename(users[0])}, compile ({plan.backend}), warm up"):
            session = hs.start(family, first, target_rank, level=plan.level, dtype=plan.dtype, device=plan.device,
                               backend=plan.backend, mode=plan.mode, model_path=request.model_path, pipe=pipe,
                               expert=plan.expert, quantization=request.quantization, twin=twin)
        baseline = hs.parameter_footprint(session)
        for i, (path, lora) in enumerate(rest):
            with progress.step(f"swap {os.path.basename(path)}, check output") as outcome:
                swaps.append(swap_and_check(session, lora, baseline, label=path))
                outcome(swaps[-1].ok)
            if any(hs.ADAPTER not in getattr(d, "peft_config", {}) for d in session.denoisers):
                # diffusers deletes the adapter when a hotswap fails: nothing is left to swap into.
                skipped = [p for p, _ in rest[i + 1:]]
                break
    finally:
        reset()  # an in-process caller's next compiled model must not meet this one's guards
    return HotswapReport(
        family.name, None if published_model else request.model_path, plan.level, plan.backend, plan.mode,
        target_rank, plan.device,
        str(plan.dtype).removeprefix("torch."), library_versions(), users[0],
        {path: denoiser_rank(lora, family.denoiser) for path, lora in zip(users, loras)},
        session.compile_seconds, baseline[0], swaps, skipped,
        published_model or describe_source(request.model_path, family) or "tiny (built-in, seed 0)",
        plan.expert, session.components, session.warmup_recompiles, request.quantization,
    )
