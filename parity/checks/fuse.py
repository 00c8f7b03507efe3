"""Fusing LoRAs through diffusers and measuring the weights against the reference merge and the base.

The one place where the suite touches diffusers' fuse/unfuse API; tests and the CLI both call it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import xxhash
from torch import nn

from parity.checks.diagnosis import diagnose
from parity.checks.nothing_loaded import nothing_loaded, refused, unloaded_tensors
from parity.checks.progress import SILENT, Progress
from parity.checks.variant_merge import formula_drift, formula_report
from parity.errors import LoaderRefused, ParityInputError
from parity.fused_comparison import merge_report, unfuse_drift
from parity.lora.neutral import LoraFile
from parity.lora.tensors import diffusers_source
from parity.modules import base_weights, canonical_name, dtype_of, held_adapters, live_weights
from parity.reference.merge import LazyReferences, reference_merge
from parity.tolerances import TensorReport, weight_tolerance
from parity.zoo.checkpoint import CheckpointWeights
from parity.zoo.experts import load_kwargs

Snapshot = dict[str, dict[str, "torch.Tensor | Digest"]]  # component → parameter → copy or digest


class Digest(bytes):
    """A tensor's 128-bit XXH3 digest, in a snapshot in place of a copy: enough to prove it unchanged."""


def digest(t: torch.Tensor) -> Digest:
    # XXH3, not a cryptographic hash: what it guards against is a library writing a weight it should
    # not, not an adversary forging one, and any change of bits is caught with probability 1 − 2⁻¹²⁸.
    # It runs at memory speed (1 GiB in 0.04 s here; SHA-256 took 0.6 s, three passes over a full-size
    # model's untargeted weights were a tenth of a check).
    flat = t.detach().contiguous().cpu().reshape(-1)
    return Digest(xxhash.xxh3_128_digest(flat.view(torch.uint8).numpy().data))


def digests_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, Digest]:
    """``digest`` of each tensor."""
    return {name: digest(t) for name, t in tensors.items()}


def same_tensor(before: torch.Tensor | Digest, now: torch.Tensor | None) -> bool:
    if now is None:
        return False
    if isinstance(before, Digest):
        return before == digest(now)
    return torch.equal(before, now)


class OnDisk:
    """A snapshot entry read from the model's checkpoint when it is used, not kept in memory."""

    def __init__(self, checkpoint: CheckpointWeights, component: str, name: str, like: torch.Tensor) -> None:
        self.checkpoint, self.component, self.name = checkpoint, component, name
        self.dtype, self.device = like.dtype, like.device

    def load(self) -> torch.Tensor:
        t = self.checkpoint.read(self.component, self.name, torch.empty(0, dtype=self.dtype, device=self.device))
        assert t is not None, f"{self.component}.{self.name} left the checkpoint"
        return t


class SnapshotPart(dict):
    """One component's snapshot: copies, digests, and entries read from disk when asked for."""

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        return value.load() if isinstance(value, OnDisk) else value


def _kept(c: str, name: str, t: torch.Tensor, checkpoint: CheckpointWeights | None) -> Any:
    """The base value of a targeted tensor: on disk where the checkpoint holds it bit for bit, else a copy."""
    if checkpoint is not None:
        stored = checkpoint.read(c, name, t)
        if stored is not None and torch.equal(stored, t) and stored.dtype == t.dtype:
            return OnDisk(checkpoint, c, name, t)
        if stored is not None:  # the disk is not what was loaded (a file changed, or the wrong one read)
            checkpoint.disagrees(c, name)
    return t.detach().clone()


def snapshot(components: Mapping[str, nn.Module], keep: set[tuple[str, str]] | None = None,
             checkpoint: CheckpointWeights | None = None) -> Snapshot:
    """Every base tensor, copied; with ``keep`` (component, parameter) only those are kept, the others
    digested: what a check on a real model can afford (the reference needs the targeted weights'
    values, the rest need only to be proven unchanged). With a ``checkpoint``, a kept tensor that the
    folder holds bit for bit is read from there when needed instead of being copied."""
    if keep is None:
        return {c: base_weights(m) for c, m in components.items()}
    out = {}
    for c, m in components.items():
        tensors = live_weights(m)
        digested = digests_of({name: t for name, t in tensors.items() if (c, name) not in keep})
        out[c] = SnapshotPart({name: digested[name] if name in digested else _kept(c, name, t, checkpoint)
                               for name, t in tensors.items()})
    return out


def live(components: Mapping[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """The model's base tensors as they are now, not copied: to measure after a fuse."""
    return {c: live_weights(m) for c, m in components.items()}


def device_of(components: Mapping[str, nn.Module]) -> torch.device:
    return next(iter(next(iter(components.values())).parameters())).device


@dataclass
class MergeResult:
    dtype: torch.dtype
    reports: list[TensorReport]
    changed_untargeted: list[str]  # tensors no adapter targets that changed anyway
    missing: list[str]  # targeted tensors absent after fusing

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and not self.changed_untargeted and not self.missing

    @property
    def max_ulps(self) -> float:
        return max((r.max_ulps for r in self.reports), default=0.0)

    @property
    def max_bound_ratio(self) -> float:
        return max((r.max_bound_ratio for r in self.reports), default=0.0)

    def failures(self, limit: int = 5) -> list[str]:
        out = [
            f"{r.name}: {r.n_over}/{r.numel} elements over bound, max {r.max_ulps:.2f} ULP "
            f"({r.max_bound_ratio:.2f}x bound) at {r.worst_index}" + (f"; {r.diagnosis}" if r.diagnosis else "")
            for r in sorted(self.reports, key=lambda r: -r.max_bound_ratio)
            if not r.ok
        ]
        out += [f"{k}: not targeted but changed" for k in self.changed_untargeted]
        out += [f"{k}: targeted but missing after fuse" for k in self.missing]
        return out[:limit]


def measure_merge(
    before: Snapshot,
    after: Snapshot,
    refs: LazyReferences,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    loras: Sequence[LoraFile] = (),
    progress: Progress = SILENT,
) -> MergeResult:
    """Targeted weights against the reference within their dtype's bound; all others bit-identical. A
    weight over its bound says what is off, naming the file keys it came from (``loras``)."""
    tols: dict[torch.dtype, object] = {}
    reports, missing = [], []
    sources: dict[tuple[str, str], tuple[str, ...]] = {}
    for lora in loras:
        for key, keys in lora.sources.items():
            sources[key] = sources.get(key, ()) + keys
    targeted = {refs.parameter(key) for key in refs}
    siblings = _fused_siblings(loras)
    for done, key in enumerate(refs, start=1):
        progress.advance(done, len(refs), "weights compared")
        actual = after.get(key[0], {}).get(refs.parameter(key)[1])
        if actual is None:
            missing.append(refs.name(key))
            continue
        steps = refs.steps(key)
        weight_dtype, tol = weight_tolerance("merge", device, actual, tols)
        if any(step.formula for step in steps):  # LyCORIS or DoRA: the whole weight's float64 reference
            reports.append(formula_report(refs.name(key), actual, refs[key], weight_dtype, tol))
            continue
        # one pass, no float64 array of the weight's size (parity/fused_comparison.py)
        report = merge_report(refs.name(key), actual, refs.base(key), steps, weight_dtype, tol)
        if not report.ok:  # the diagnosis fits the whole weight: only for one that failed
            ref = refs[key]
            others = {refs[k].key: refs[k] for k in siblings.get(key, ()) if k != key and k in refs}
            keys = sources.get(key) or sources.get((key[0], key[1].removesuffix(".bias")), ())  # a .diff_b's module
            report = replace(report, diagnosis=diagnose(actual, ref, others, keys))
        reports.append(report)
    return MergeResult(dtype, reports, changed_untargeted(before, after, targeted), missing)


def _fused_siblings(loras: Sequence[LoraFile]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(component, module) → the modules one file module sets with it (a fused q|k|v): where a
    wrong split would have put another's delta."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lora in loras:
        for modules in lora.placement.values():
            group = [tuple(m.split(".", 1)) for m in modules]
            for member in group:
                out.setdefault(member, []).extend(g for g in group if g != member)
    return out


def changed_untargeted(before: Snapshot, after: Mapping[str, Mapping[str, torch.Tensor]],
                       targeted: set[tuple[str, str]]) -> list[str]:
    """Every tensor no adapter targets that is not bit-identical to before (a copy, or its digest)."""
    out = []
    for c, tensors in before.items():
        now = after.get(c, {})
        names = [k for k in tensors if (c, k) not in targeted]
        # dict.__getitem__: an entry read from disk is never a Digest, and must not be read to find that out
        stored = {k: dict.__getitem__(tensors, k) for k in names}
        digested = digests_of({k: now[k] for k in names if isinstance(stored[k], Digest) and k in now})
        out += [f"{c}.{k}" for k in names
                if not (digested[k] == stored[k] if k in digested else same_tensor(tensors[k], now.get(k)))]
    return out


def load_adapters(pipe: Any, sources: Sequence[Any], weights: Sequence[float] | None = None,
                  loads: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> list[str]:
    """Load each file (a path, or a state dict) as its own adapter (a0, a1, …), with ``loads[i]``'s
    kwargs for each load file i takes (parity/zoo/experts.py: load_kwargs), and activate them at ``weights``."""
    names = [f"a{i}" for i in range(len(sources))]
    for i, (source, name) in enumerate(zip(sources, names)):
        for kwargs in (loads[i] if loads is not None else ({},)):
            pipe.load_lora_weights(source, adapter_name=name, **kwargs)
    if weights is not None:
        pipe.set_adapters(names, adapter_weights=list(weights))
    return names


@dataclass
class Loaded:
    """A pipeline with the adapters loaded, and its base weights from before loading."""

    pipe: Any
    components: dict[str, nn.Module]
    before: Snapshot
    placed: list[set[tuple[str, str]]] = field(default_factory=list)  # per file: where diffusers put it


def _failing_file(pipe: Any, loras: Sequence[LoraFile]) -> str:
    """The file whose adapter did not finish loading: load_adapters loads a0, a1, … in order and
    diffusers removes a failed adapter, so the first one missing from any of its components."""
    loaded = pipe.get_list_adapters()
    for i, lora in enumerate(loras):
        if any(f"a{i}" not in loaded.get(c, []) for c in lora.components()):
            return str(lora.path)
    return ", ".join(str(lora.path) for lora in loras)


def placements(components: Mapping[str, nn.Module], adapter: str) -> set[tuple[str, str]]:
    """(component, module) of every PEFT layer (LoRA, LoKr, LoHa) that holds ``adapter``: where diffusers put it."""
    return {(c, canonical_name(name)) for c, model in components.items()
            for name, layer in model.named_modules() if adapter in held_adapters(layer)}


def targeted_parameters(loras: Sequence[LoraFile]) -> set[tuple[str, str]]:
    """(component, parameter) of every base tensor some file changes."""
    refs = reference_merge({}, [(lora, 1.0) for lora in loras])
    return {refs.parameter(key) for key in refs}


@contextmanager
def _as_refusal(pipe: Any, loras: Sequence[LoraFile]) -> Iterator[None]:
    """What diffusers/PEFT raise on a file our reader accepted, as their verdict: LoaderRefused."""
    try:
        yield
    except ParityInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - what diffusers/PEFT raise on a file we read is their verdict
        failing = _failing_file(pipe, loras)
        lora = next((lora for lora in loras if str(lora.path) == failing), loras[0])
        message = " ".join(str(exc).split())[:300]
        reason = f"{type(exc).__name__}: {message}" if message else f"{type(exc).__name__} (no message)"
        raise LoaderRefused(failing, lora.layout, refused(lora, reason)) from None


def load_files(pipe: Any, family: Any, loras: Sequence[LoraFile], weights: Sequence[float] | None,
               copy_untargeted: bool = True, model_path: str | None = None, snapshot_base: bool = True) -> Loaded:
    """Load the files (read by our reader) as adapters a0, a1, … at ``weights``, as a user would.

    Our reader has accepted every file, so a file diffusers raises on, or loads no adapter from
    (load_lora_weights only logs a warning then), is diffusers refusing a valid file: LoaderRefused.
    Where it put each module is in ``Loaded.placed``; what it left out, the merge check names. Without
    ``copy_untargeted`` the snapshot keeps only the targeted weights and digests the rest; with a
    ``model_path`` as well, a targeted weight is read back from the folder's checkpoint, not copied.
    Without ``snapshot_base`` there is no snapshot at all (``Loaded.before`` is empty): for a pipeline
    that is only run, never measured.
    """
    from diffusers.utils import logging as diffusers_logging

    components = family.components(pipe)
    checkpoint = CheckpointWeights(model_path) if model_path is not None else None
    before = snapshot(components, None if copy_untargeted else targeted_parameters(loras), checkpoint) \
        if snapshot_base else {}
    # diffusers logs a failed load at error level before raising; we report it as our one line.
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    # The tensors we read, not the path, for a pickle: diffusers must never unpickle a file itself.
    sources = [diffusers_source(lora) for lora in loras]
    try:
        # Weights are set only once every file is seen to have loaded: set_adapters on an adapter that
        # loaded nothing raises "not in the list of present adapters", which hides why.
        with _as_refusal(pipe, loras):
            names = load_adapters(pipe, sources, loads=[load_kwargs(family, lora.expert) for lora in loras])
        placed = [placements(components, name) for name in names]
        for lora, name, where in zip(loras, names, placed):
            if not where:
                raise LoaderRefused(str(lora.path), lora.layout, nothing_loaded(pipe, lora))
            if unloaded := unloaded_tensors(components, name):
                raise LoaderRefused(str(lora.path), lora.layout, refused(lora, (
                    f"load_lora_weights left {len(unloaded)} LoRA tensor(s) it made without values, on the meta "
                    f"device, so the model cannot run: {', '.join(unloaded[:3])}" + ", …" * (len(unloaded) > 3))))
        if weights is not None:
            with _as_refusal(pipe, loras):
                pipe.set_adapters(names, adapter_weights=list(weights))
    finally:
        diffusers_logging.set_verbosity(level)
    return Loaded(pipe, components, before, placed)


def fuse_components(pipe: Any, components: Mapping[str, nn.Module]) -> list[str]:
    loadable = getattr(pipe, "_lora_loadable_modules", list(components))
    return [c for c in components if c in loadable]


def _peft_layers(components: Mapping[str, nn.Module]) -> list[nn.Module]:
    return [
        layer
        for model in components.values()
        for layer in model.modules()
        if isinstance(getattr(layer, "merged_adapters", None), list) and hasattr(layer, "get_base_layer")
    ]


def _layer_state(layers: Sequence[nn.Module]) -> list[tuple[nn.Module, dict[str, torch.Tensor], list[str]]]:
    """What a fuse can change, and only that: each PEFT layer's base tensors and its merged list
    (PEFT records merges per layer). Copying the whole model would double a real model's memory."""
    saved = []
    for layer in layers:
        base = layer.get_base_layer()
        tensors = {n: p.detach().clone() for n, p in base.named_parameters(recurse=False)}
        saved.append((layer, tensors, list(layer.merged_adapters)))
    return saved


def _write_back(saved: list[tuple[nn.Module, dict[str, torch.Tensor], list[str]]]) -> None:
    with torch.no_grad():
        for layer, tensors, merged in saved:
            params = dict(layer.get_base_layer().named_parameters(recurse=False))
            for name, tensor in tensors.items():
                params[name].data.copy_(tensor)
            layer.merged_adapters[:] = merged


def _non_finite_adapter(components: Mapping[str, nn.Module]) -> str | None:
    """The first LoRA layer (component.module) whose A or B holds NaN/Inf, if any."""
    for c, model in components.items():
        for name, param in model.named_parameters():
            if (".lora_A." in name or ".lora_B." in name) and not torch.isfinite(param).all():
                return f"{c}.{canonical_name(name.split('.lora_')[0])}"
    return None


def fuse_all_or_nothing(
    pipe: Any, components: Mapping[str, nn.Module], lora_scale: float = 1.0, safe_fusing: bool = False,
    restore: bool = True,
) -> None:
    """``pipe.fuse_lora``, but a fuse that raises leaves every weight bit-identical to before.

    diffusers fuses layer by layer, so a refusal midway (``safe_fusing`` finding NaN, or any error)
    leaves the layers before it fused: measured on diffusers 0.42.1/peft 0.21.2, a NaN in one of 48
    sd15 LoRA pairs left 12 base weights fused (tests/test_findings.py). Here the weights and PEFT's
    per-layer merged lists are written back from a snapshot before the error propagates; a NaN/Inf
    adapter becomes a ParityInputError naming its module. Without ``restore``, for a pipeline that is
    thrown away when the fuse raises (check's), nothing is saved: the saved weights are every targeted
    weight again, 0.74 B parameters beside a 0.81 B one-block FLUX.1 transformer.
    """
    saved = _layer_state(_peft_layers(components)) if restore else []
    try:
        pipe.fuse_lora(components=fuse_components(pipe, components), lora_scale=lora_scale, safe_fusing=safe_fusing)
    except BaseException as exc:
        _write_back(saved)
        bad = _non_finite_adapter(components) if isinstance(exc, Exception) else None
        if bad is not None:
            raise ParityInputError(f"fuse refused: this module's LoRA weights hold NaN or Inf ({exc})",
                                   key=bad) from exc
        raise


def fuse_and_measure(
    pipe: Any,
    components: Mapping[str, nn.Module],
    before: Snapshot,
    loras: Sequence[LoraFile],
    weights: Sequence[float],
    lora_scale: float,
    progress: Progress = SILENT,
    restore: bool = True,
) -> MergeResult:
    """``pipe.fuse_lora(lora_scale)`` on loaded adapters, measured against our reference merge; a fuse
    that raises leaves the weights as they were unless ``restore`` is off (fuse_all_or_nothing)."""
    fuse_all_or_nothing(pipe, components, lora_scale, restore=restore)
    refs = reference_merge(before, list(zip(loras, weights)), lora_scale)
    return measure_merge(before, live(components), refs, dtype_of(components), device_of(components), loras,
                         progress)


@dataclass
class UnfuseResult:
    dtype: torch.dtype
    cycles: int
    max_ulps: list[float] = field(default_factory=list)  # after each cycle, ULPs at |W| + Σ P
    max_base_ulps: list[float] = field(default_factory=list)  # the same in ULPs of W itself (large where W ≈ 0)
    frac_changed: list[float] = field(default_factory=list)  # fraction of targeted elements not bit-exact
    bound_ratio: list[float] = field(default_factory=list)  # max |drift| / bound(cycle)
    changed_untargeted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r <= 1.0 for r in self.bound_ratio) and not self.changed_untargeted


@dataclass
class Drift:
    max_ulps: float  # at |W| + Σ P
    max_base_ulps: float  # in ULPs of W
    frac_changed: float
    bound_ratio: float
    changed_untargeted: list[str]


def measure_unfuse(
    before: Snapshot,
    after: Snapshot,
    refs: LazyReferences,
    dtype: torch.dtype,
    cycles: int,
    device: torch.device | str = "cpu",
    progress: Progress = SILENT,
) -> Drift:
    """How far the weights after ``cycles`` fuse/unfuse cycles are from the base, against the bound."""
    tols: dict[torch.dtype, object] = {}
    drifts = []
    for done, key in enumerate(refs, start=1):
        progress.advance(done, len(refs), f"weights compared after cycle {cycles}")
        component, name = refs.parameter(key)
        steps = refs.steps(key)
        weight_dtype, tol = weight_tolerance("unfuse", device, after[component][name], tols)
        if any(step.formula for step in steps):
            drifts.append(formula_drift(refs.name(key), after[component][name], refs[key], weight_dtype, tol, cycles))
            continue
        drifts.append(unfuse_drift(refs.name(key), after[component][name], refs.base(key), steps, weight_dtype,
                                   tol, cycles))
    worst_ulps = max((d.max_ulps for d in drifts), default=0.0)
    worst_base_ulps = max((d.max_base_ulps for d in drifts), default=0.0)
    worst_ratio = max((d.max_bound_ratio for d in drifts), default=0.0)
    n_changed, n_total = sum(d.n_changed for d in drifts), sum(d.numel for d in drifts)
    changed = changed_untargeted(before, after, {refs.parameter(key) for key in refs})
    return Drift(worst_ulps, worst_base_ulps, n_changed / max(n_total, 1), worst_ratio, changed)


def fuse_unfuse_cycles(
    pipe: Any,
    components: Mapping[str, nn.Module],
    before: Snapshot,
    loras: Sequence[LoraFile],
    weights: Sequence[float],
    cycles: int,
    lora_scale: float = 1.0,
    progress: Progress = SILENT,
    restore: bool = True,
    fused: bool = False,
) -> UnfuseResult:
    """``cycles`` × (fuse_lora, unfuse_lora), recording the drift from the base after each cycle; each
    fuse is all or nothing unless ``restore`` is off (fuse_all_or_nothing). A pipeline already ``fused``
    once at ``lora_scale`` (the merge check's fuse) starts its first cycle at the unfuse."""
    dtype = dtype_of(components)
    device = device_of(components)
    refs = reference_merge(before, list(zip(loras, weights)), lora_scale)
    names = fuse_components(pipe, components)
    result = UnfuseResult(dtype=dtype, cycles=cycles)
    for cycle in range(1, cycles + 1):
        if not (fused and cycle == 1):
            fuse_all_or_nothing(pipe, components, lora_scale, restore=restore)
        pipe.unfuse_lora(components=names)
        drift = measure_unfuse(before, live(components), refs, dtype, cycle, device, progress)
        result.max_ulps.append(drift.max_ulps)
        result.max_base_ulps.append(drift.max_base_ulps)
        result.frac_changed.append(drift.frac_changed)
        result.bound_ratio.append(drift.bound_ratio)
        result.changed_untargeted = drift.changed_untargeted
    return result
