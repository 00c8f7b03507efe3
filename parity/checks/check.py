"""The check ``lora-parity check`` runs on a user's LoRA files, as one function: per dtype, on one
pipeline with the files loaded, fuse and measure every weight against our reference merge, then unfuse
and run any further fuse/unfuse cycles, measuring the drift. The CLI prints the report; tests assert on it.

Both run at the user's lora_scale. The merge check's fuse is the pipeline's first, as a user's would be,
and the unfuse after it ends cycle 1: one pipeline per dtype, loaded once, so the check's cost stays
near what diffusers' own from_pretrained + load + fuse + unfuse costs (benchmarks/test_bench_check.py).
After the cycles the unfused pipeline is compared with
itself right after loading (parity/checks/unfused_state.py): each PEFT layer's scaling and active
adapters, and one denoiser forward against the never-fused forward. At a scale other than 1 diffusers
0.42 fails that comparison: ``fuse_lora(lora_scale=s)`` multiplies PEFT's scaling by s and
``unfuse_lora`` never divides it back (the finding SECOND_FUSE, tests/test_findings.py), so the
unfused pipeline runs its adapters at s times their strength and the next fuse merges s² times the
delta. The report names that finding where the measured symptom is its symptom, and still fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from parity.checks.findings import SECOND_FUSE, Known
from parity.checks.fresh_copies import float64_copy, pristine_copy, release_free_heap, stored_values
from parity.checks.fuse import Loaded, fuse_and_measure, fuse_unfuse_cycles, load_files, targeted_parameters
from parity.checks.known_findings import merge_findings, refusal_finding
from parity.checks.memory import gate_memory, predict_check
from parity.checks.progress import SILENT, Progress
from parity.checks.unfused_state import (
    UnfusedState,
    adapter_state,
    compare_unfused,
    denoiser_output,
)
from parity.devices import resolve, strict_float32
from parity.errors import LoaderRefused, ParityInputError
from parity.lora.neutral import LoraFile
from parity.lora.reader import read_lora
from parity.modules import pipeline_models
from parity.tolerances import dtype_from_name
from parity.versions import library_versions
from parity.zoo import build_pipeline, get_family
from parity.zoo.family import Family
from parity.zoo.experts import check_expert_option, expert_for
from parity.zoo.published import ensure_folder
from parity.zoo.source import describe as describe_source
from parity.zoo.route import published_route

KNOWN_PREFIX = "known diffusers behaviour: "


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
    expert: str | None = None  # a several-denoiser family's expert for every file; None: each file's own


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
    check_expert_option(family, request.expert)
    return CheckPlan(request, family, dtypes, device, weights)


@dataclass(frozen=True)
class FileReport:
    """Every key of one file accounted for: read into modules, and where diffusers put each."""

    path: str
    layout: str
    matched: dict[str, int]  # component → modules the file sets there
    unmatched: list[str]  # keys that match no module of the model
    keys_read: int = 0
    modules: dict[str, list[str]] = field(default_factory=dict)  # file module → the diffusers modules it sets
    # modules the file sets that got no LoRA layer from diffusers (their keys, dropped on loading)
    not_loaded: dict[str, list[str]] = field(default_factory=dict)
    loaded_elsewhere: list[str] = field(default_factory=list)  # LoRA layers on modules the file does not set
    algorithms: list[str] = field(default_factory=list)  # LoRA, LoHa, LoKr, DoRA, … (parity/lora/neutral.py)
    expert: str = ""  # the expert it went into (Wan 2.2), and what said so
    expert_source: str = ""


@dataclass(frozen=True)
class UnfuseReport:
    cycles: int
    lora_scale: float
    max_ulps: list[float]  # after each cycle
    frac_changed: list[float]  # after each cycle: targeted elements not bit-exact
    max_bound_ratio: float
    ok: bool  # the drift, and the unfused state
    state: UnfusedState  # the unfused pipeline against the loaded one


@dataclass(frozen=True)
class DtypeReport:
    dtype: str
    scale: float
    max_ulps: float  # the merge's
    max_bound_ratio: float
    ok: bool
    failures: list[str]
    unfuse: UnfuseReport
    known: list[str]  # "known diffusers behaviour: …" for each finding the failures show
    # every weight over its bound, by name (``failures`` words the worst few)
    failing: list[str] = field(default_factory=list)
    # what each weight over its bound shows (parity/checks/diagnosis.py), the worst first; the merge's
    # verdict alone is ``not failing and not merge_untargeted`` (``ok`` holds the unfuse's too)
    diagnoses: list[str] = field(default_factory=list)
    merge_untargeted: list[str] = field(default_factory=list)  # weights no adapter targets that the fuse changed


@dataclass(frozen=True)
class CheckReport:
    family: str
    model_path: str | None
    device: str
    versions: dict[str, str]
    weights: list[float]
    files: list[FileReport]
    results: list[DtypeReport]
    model: str = ""  # what was checked: the tiny model, the user's folder, or the published architecture
    ok: bool = field(init=False)
    known: list[str] = field(init=False)  # the findings any dtype shows, once each

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", all(r.ok for r in self.results))
        object.__setattr__(self, "known", list(dict.fromkeys(k for r in self.results for k in r.known)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_report(lora: LoraFile, placed: set[tuple[str, str]] | None = None, expert_source: str = "") -> FileReport:
    """The file's keys and modules; with ``placed`` (where diffusers put LoRA layers for it), what
    diffusers left out and what it added."""
    matched: dict[str, int] = {}
    for component, _ in lora.modules:
        matched[component] = matched.get(component, 0) + 1
    keys = {k for ks in lora.sources.values() for k in ks}
    not_loaded, elsewhere = {}, []
    if placed is not None:
        ours = {key for key, m in lora.modules.items() if getattr(m, "rank", 0)}  # full differences have no layer
        not_loaded = {f"{c}.{m}": list(lora.sources.get((c, m), ())) for c, m in sorted(ours - placed)}
        elsewhere = [f"{c}.{m}" for c, m in sorted(placed - set(lora.modules))]
    return FileReport(lora.path, lora.layout, matched, list(lora.unmatched), len(keys) + len(lora.unmatched),
                      {stem: list(mods) for stem, mods in lora.placement.items()}, not_loaded, elsewhere,
                      lora.algorithms(), lora.expert, expert_source)


def known_behaviour(finding: Known) -> str:
    return KNOWN_PREFIX + finding.reason.removeprefix("finding: ")


def _dtype_report(plan: CheckPlan, loras: Sequence[LoraFile], dtype_name: str, scale: float, merge: Any,
                  unfuse: Any, state: UnfusedState) -> DtypeReport:
    failures = merge.failures()
    for cycle, ratio in enumerate(unfuse.bound_ratio, start=1):
        if ratio > 1.0:
            failures.append(f"unfuse: drift is {ratio:.2f}x the bound after cycle {cycle}")
            break
    failures += [f"unfuse: {name}: not targeted but changed" for name in unfuse.changed_untargeted]
    failures += state.failures(scale, unfuse.cycles)
    # Named only where the measurement shows the finding's own symptom, never from the scale alone.
    known = [known_behaviour(SECOND_FUSE)] if state.left_by_fuse_scale(scale, unfuse.cycles) else []
    known += [known_behaviour(k) for k in merge_findings(plan.family, loras, merge.reports)]
    drift = UnfuseReport(unfuse.cycles, scale, unfuse.max_ulps, unfuse.frac_changed,
                         max(unfuse.bound_ratio, default=0.0), unfuse.ok and state.ok, state)
    over = sorted((r for r in merge.reports if not r.ok), key=lambda r: -r.max_bound_ratio)
    return DtypeReport(dtype_name, scale, merge.max_ulps, merge.max_bound_ratio, merge.ok and drift.ok, failures,
                       drift, known, [r.name for r in over] + merge.missing, [r.diagnosis for r in over],
                       list(merge.changed_untargeted))


Truth = dict[str, torch.Tensor]  # "out" → the loaded, never fused denoiser forward in float64, once per run


def _load_with_truth(plan: CheckPlan, pipe: Any, loras: Sequence[LoraFile], truth: Truth) -> Loaded:
    """Load the files into ``pipe`` (built, nothing loaded yet), and the first time, the forward budget's
    float64 truth: the loaded, never fused denoiser forward in float64, taken before the first fuse.

    No second pipeline and no float64 copy of the model: a float32 pipeline holds the checkpoint
    exactly and is computed in float64 one module at a time (parity/checks/float64_forward.py); in
    another dtype, a float64 copy of the pipeline from before loading, whose weights are filled from
    the checkpoint module by module (parity/checks/fresh_copies.py), gets the files loaded in float64.
    Both are bit for bit a float64 pipeline's forward (tests/harness/test_float64_forward.py,
    test_fresh_copies.py)."""
    request = plan.request
    copy64 = None
    dtype = denoiser_dtype(plan.family, pipe)
    if "out" not in truth and dtype != torch.float32:
        values = stored_values(pipe, plan.family, dtype, request.model_path, plan.device)
        copy64 = float64_copy(pristine_copy(pipe), values)
    loaded = load_files(pipe, plan.family, loras, plan.weights, copy_untargeted=False, model_path=request.model_path)
    if "out" not in truth:
        if copy64 is None:
            truth["out"] = denoiser_output(plan.family, pipe, float64=True)
        else:
            load_files(copy64, plan.family, loras, plan.weights, snapshot_base=False)
            truth["out"] = denoiser_output(plan.family, copy64)
            del copy64
            release_free_heap(0)
    return loaded


def denoiser_dtype(family: Family, pipe: Any) -> torch.dtype:
    return getattr(pipe, family.denoiser).dtype


def _check_dtype(plan: CheckPlan, dtype: torch.dtype, loras: Sequence[LoraFile], progress: Progress,
                 preloaded: list[Loaded], truth: Truth) -> DtypeReport:
    """On one pipeline with the adapters loaded: the merge check on its first fuse, then the unfuse
    after it (cycle 1) and any further cycles, and the unfused pipeline against the loaded one."""
    request = plan.request
    name = str(dtype).removeprefix("torch.")
    with progress.step(f"{name}: fuse at scale {request.lora_scale:g}") as outcome:
        # Popped rather than passed in, so no caller frame keeps the pipeline alive past this dtype.
        loaded = preloaded.pop() if preloaded else _load_with_truth(plan, _built(plan, dtype), loras, truth)
        loaded_state, loaded_out = adapter_state(loaded.components), denoiser_output(plan.family, loaded.pipe)
        # restore off: a pipeline the check throws away on an error needs no saved copy to write back
        merge = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras, plan.weights,
                                 request.lora_scale, progress, restore=False)
        outcome(merge.ok)
    # cycle 1 is the merge check's fuse and the unfuse after it
    with progress.step(f"{name}: {request.cycles} fuse/unfuse cycle(s) at scale {request.lora_scale:g}") as outcome:
        unfuse = fuse_unfuse_cycles(loaded.pipe, loaded.components, loaded.before, loras, plan.weights,
                                    request.cycles, request.lora_scale, progress, restore=False, fused=True)
        unfused_state, unfused_out = adapter_state(loaded.components), denoiser_output(plan.family, loaded.pipe)
        bit_exact = unfuse.frac_changed[-1] == 0.0 and not unfuse.changed_untargeted
        state = compare_unfused(loaded_state, unfused_state, loaded_out, unfused_out, bit_exact,
                                lambda: truth["out"], max(unfuse.max_ulps, default=0.0))
        outcome(unfuse.ok and state.ok)
    del loaded
    if torch.device(plan.device).type == "cuda":
        torch.cuda.empty_cache()
    return _dtype_report(plan, loras, name, request.lora_scale, merge, unfuse, state)


def _built(plan: CheckPlan, dtype: torch.dtype) -> Any:
    return build_pipeline(plan.family, dtype=dtype, device=plan.device, model_path=plan.request.model_path)


def _memory_gate(plan: CheckPlan, components: Any, loras: Sequence[LoraFile], folder: bool, progress: Progress,
                 path: str | None) -> None:
    """The predicted peak, printed; a machine with less available is refused here, before the long work."""
    if torch.device(plan.device).type != "cpu":  # host memory; on CUDA the weights live on the device
        return
    gate_memory(predict_check(components, loras, plan.dtypes, copies_targeted=not folder), progress.note, path)


def with_published(plan: CheckPlan, tiny: Any, progress: Progress) -> tuple[CheckPlan, str | None]:
    """Without a model folder, files too wide for the ``tiny`` model's components are checked against
    the published architecture (parity/zoo/route.py): read and its memory predicted on the meta
    device, reduced to the blocks the files target where all of it would not fit, then built once
    into the cache and used as a folder. Returns the plan to run (on renumbered copies of the files
    where the route made them) and what it runs on."""
    request = plan.request
    host = torch.device(plan.device).type == "cpu"  # on CUDA the weights live on the device

    def predict(components: Any, loras: Sequence[LoraFile], dtype: torch.dtype | None) -> Any:
        dtypes = plan.dtypes if dtype is None else {str(dtype).removeprefix("torch."): dtype}
        return predict_check(components, loras, dtypes, copies_targeted=False)

    route = None if request.model_path is not None else published_route(
        plan.family, request.loras, tiny, list(plan.dtypes.values()), request.allow_pickle, predict if host else None)
    if route is None:
        return plan, None
    progress.note(f"the files are wider than the tiny {plan.family.name} model: checking them against the "
                  f"{route.describe()}")
    if route.prediction is not None:
        gate_memory(route.prediction, progress.note, None, route.hint)
    folder = ensure_folder(plan.family, route.model, progress.note)
    return replace(plan, request=replace(request, model_path=folder, loras=tuple(route.paths))), route.describe()


def run_check(request: CheckRequest | CheckPlan, progress: Progress = SILENT) -> CheckReport:
    """Read the files against the model, then per dtype: fuse and measure, and fuse/unfuse cycles
    with the unfused pipeline compared against the loaded one."""
    plan = request if isinstance(request, CheckPlan) else plan_check(request)
    strict_float32(plan.device)
    # Every input error surfaces here, before the first step: model, files, diffusers' loader.
    first = _built(plan, next(iter(plan.dtypes.values())))
    users = plan.request.loras  # reported by the names given, where the route checks renumbered copies
    plan, published_model = with_published(plan, plan.family.components(first), progress)
    request = plan.request
    if published_model is not None:  # the tiny pipeline only showed the files are not its own
        first = _built(plan, next(iter(plan.dtypes.values())))
    read = [read_lora(path, plan.family.components(first), strict=True, allow_pickle=request.allow_pickle)
            for path in request.loras]
    placed_in = [expert_for(plan.family, lora, request.expert, first) for lora in read]
    loras = [placed for placed, _ in placed_in]
    targeted_parameters(loras)  # a stack the reference cannot form is refused before anything loads
    if published_model is None:  # the published architecture's was predicted before it was built
        # every model the pipeline holds counts, not only the LoRA-capable ones (FLUX.1's T5 is 4.7 B);
        # no name here may keep them alive past ``del first``
        _memory_gate(plan, pipeline_models(first), loras, request.model_path is not None, progress,
                     request.model_path)
    truth: Truth = {}
    try:
        preloaded = [_load_with_truth(plan, first, loras, truth)]
    except LoaderRefused as exc:
        refused = next((lora for lora in loras if str(lora.path) == exc.path), None)
        finding = refusal_finding(plan.family, exc.layout, refused, exc.reason)
        if finding is not None:
            exc.known = known_behaviour(finding)
        raise
    placed = preloaded[0].placed
    del first
    progress.plan(2 * len(plan.dtypes))
    results = [_check_dtype(plan, dtype, loras, progress, preloaded, truth) for dtype in plan.dtypes.values()]
    model = published_model or describe_source(request.model_path, plan.family) or "tiny (built-in, seed 0)"
    given = dict(zip(request.loras, users))  # a renumbered copy → the file given
    files = [file_report(lora, where, why) for lora, where, (_, why) in zip(loras, placed, placed_in)]
    return CheckReport(plan.family.name, None if published_model else request.model_path, plan.device,
                       library_versions(), plan.weights, [replace(f, path=given.get(f.path, f.path)) for f in files],
                       results, model)
