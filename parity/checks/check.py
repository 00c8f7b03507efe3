"""The check ``lora-parity check`` runs on a user's LoRA files, as one function: per dtype, fuse the
files and measure every weight against our reference merge, then run fuse/unfuse cycles on a freshly
built pipeline and measure the drift. The CLI prints the report; tests assert on it.

The unfuse cycles run on a fresh pipeline with freshly loaded adapters, at lora_scale
``UNFUSE_LORA_SCALE``: in diffusers 0.42 ``fuse_lora(lora_scale=s)`` multiplies PEFT's scaling by s
and ``unfuse_lora`` never divides it back (tests/test_findings.py), so a second fuse on the merge
check's pipeline would merge s² times the delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from parity.checks.fuse import Loaded, fuse_and_measure, fuse_unfuse_cycles, load_files
from parity.checks.progress import SILENT, Progress
from parity.devices import resolve, strict_float32
from parity.errors import ParityInputError
from parity.lora.neutral import LoraFile
from parity.lora.reader import read_lora
from parity.tolerances import dtype_from_name
from parity.versions import library_versions
from parity.zoo import build_pipeline, get_family
from parity.zoo.family import Family

UNFUSE_LORA_SCALE = 1.0


@dataclass(frozen=True)
class CheckRequest:
    """What to check: the user's files against a family's model, tiny or from ``model_path``."""

    family: str
    loras: tuple[str, ...]
    dtypes: tuple[str, ...] = ("float32",)
    lora_scale: float = 1.0
    weights: tuple[float, ...] | None = None  # one per file; None: 1.0 each
    cycles: int = 1
    device: str = "cpu"
    model_path: str | None = None
    allow_pickle: bool = False


@dataclass(frozen=True)
class CheckPlan:
    """A request whose options are all valid; no file or model has been read yet."""

    request: CheckRequest
    family: Family
    dtypes: dict[str, torch.dtype]
    device: str
    weights: list[float]


def plan_check(request: CheckRequest) -> CheckPlan:
    """Validate every option (ParityInputError naming the first bad one), reading nothing."""
    family = get_family(request.family)
    dtypes = {name: dtype_from_name(name) for name in request.dtypes}
    device = resolve(request.device)
    n_files = len(request.loras)
    weights = [1.0] * n_files if request.weights is None else list(request.weights)
    if len(weights) != n_files:
        raise ParityInputError(f"--weights has {len(weights)} value(s) for {n_files} --lora file(s)")
    return CheckPlan(request, family, dtypes, device, weights)


@dataclass(frozen=True)
class FileReport:
    path: str
    layout: str
    matched: dict[str, int]  # component → modules the file sets there
    unmatched: list[str]  # keys that match no module of the model


@dataclass(frozen=True)
class UnfuseReport:
    cycles: int
    lora_scale: float
    max_ulps: list[float]  # after each cycle
    frac_changed: list[float]  # after each cycle: targeted elements not bit-exact
    max_bound_ratio: float
    ok: bool


@dataclass(frozen=True)
class DtypeReport:
    dtype: str
    scale: float
    max_ulps: float  # the merge's
    max_bound_ratio: float
    ok: bool
    failures: list[str]
    unfuse: UnfuseReport


@dataclass(frozen=True)
class CheckReport:
    family: str
    model_path: str | None
    device: str
    versions: dict[str, str]
    weights: list[float]
    files: list[FileReport]
    results: list[DtypeReport]
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", all(r.ok for r in self.results))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_report(lora: LoraFile) -> FileReport:
    matched: dict[str, int] = {}
    for component, _ in lora.modules:
        matched[component] = matched.get(component, 0) + 1
    return FileReport(lora.path, lora.layout, matched, list(lora.unmatched))


def _dtype_report(dtype_name: str, scale: float, merge: Any, unfuse: Any) -> DtypeReport:
    failures = merge.failures()
    for cycle, ratio in enumerate(unfuse.bound_ratio, start=1):
        if ratio > 1.0:
            failures.append(f"unfuse: drift is {ratio:.2f}x the bound after cycle {cycle}")
            break
    failures += [f"unfuse: {name}: not targeted but changed" for name in unfuse.changed_untargeted]
    drift = UnfuseReport(unfuse.cycles, UNFUSE_LORA_SCALE, unfuse.max_ulps, unfuse.frac_changed,
                         max(unfuse.bound_ratio, default=0.0), unfuse.ok)
    return DtypeReport(dtype_name, scale, merge.max_ulps, merge.max_bound_ratio, merge.ok and unfuse.ok, failures,
                       drift)


def _loaded(plan: CheckPlan, dtype: torch.dtype, loras: Sequence[LoraFile]) -> Loaded:
    pipe = build_pipeline(plan.family, dtype=dtype, device=plan.device, model_path=plan.request.model_path)
    return load_files(pipe, plan.family, loras, plan.weights)


def _check_dtype(plan: CheckPlan, dtype: torch.dtype, loras: Sequence[LoraFile], progress: Progress,
                 preloaded: list[Loaded]) -> DtypeReport:
    """Merge check on a pipeline with the adapters loaded, then unfuse cycles on a fresh one."""
    request = plan.request
    name = str(dtype).removeprefix("torch.")
    with progress.step(f"{name}: fuse at scale {request.lora_scale:g}") as outcome:
        # Popped rather than passed in, so no caller frame keeps the fused pipeline alive below.
        loaded = preloaded.pop() if preloaded else _loaded(plan, dtype, loras)
        merge = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras, plan.weights,
                                 request.lora_scale)
        outcome(merge.ok)
    del loaded
    with progress.step(f"{name}: {request.cycles} fuse/unfuse cycle(s) on a fresh pipeline") as outcome:
        fresh = _loaded(plan, dtype, loras)
        unfuse = fuse_unfuse_cycles(fresh.pipe, fresh.components, fresh.before, loras, plan.weights,
                                    request.cycles, UNFUSE_LORA_SCALE)
        outcome(unfuse.ok)
    del fresh
    if torch.device(plan.device).type == "cuda":
        torch.cuda.empty_cache()
    return _dtype_report(name, request.lora_scale, merge, unfuse)


def run_check(request: CheckRequest | CheckPlan, progress: Progress = SILENT) -> CheckReport:
    """Read the files against the model, then per dtype: fuse and measure, and fuse/unfuse cycles."""
    plan = request if isinstance(request, CheckPlan) else plan_check(request)
    request = plan.request
    strict_float32(plan.device)
    # Every input error surfaces here, before the first step: model, files, diffusers' loader.
    first = build_pipeline(plan.family, dtype=next(iter(plan.dtypes.values())), device=plan.device,
                           model_path=request.model_path)
    loras = [read_lora(path, plan.family.components(first), strict=False, allow_pickle=request.allow_pickle)
             for path in request.loras]
    preloaded = [load_files(first, plan.family, loras, plan.weights)]
    del first
    progress.plan(2 * len(plan.dtypes))
    results = [_check_dtype(plan, dtype, loras, progress, preloaded) for dtype in plan.dtypes.values()]
    return CheckReport(plan.family.name, request.model_path, plan.device, library_versions(), plan.weights,
                       [file_report(lora) for lora in loras], results)
