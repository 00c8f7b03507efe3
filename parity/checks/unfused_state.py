"""After fuse/unfuse, the pipeline must be the one that was loaded: the same PEFT adapter state, and
the same denoiser output as before the first fuse.

The unfuse drift check (parity/checks/fuse.py) only looks at the base weights. What a fuse may also
leave behind lives in PEFT's LoRA layers: diffusers' ``fuse_lora(lora_scale=s)`` multiplies each
layer's ``scaling`` by s (``scale_layer``) and ``unfuse_lora`` never divides it back (the finding
SECOND_FUSE in parity/checks/cases.py), so the unfused pipeline runs its adapters at s times their
loaded strength. This module records the state right after loading, compares it with the state after
the cycles, and compares one denoiser forward of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from parity.checks.float64_forward import computed_in_float64
from parity.modules import canonical_name
from parity.tolerances import output_budget

SEED = 0  # denoiser_inputs seed of the forward compared before and after


@dataclass(frozen=True)
class AdapterState:
    """Per PEFT LoRA layer (``component.module``): scaling per adapter, active adapters, merged adapters."""

    scaling: dict[str, dict[str, float]]
    active: dict[str, list[str]]
    merged: dict[str, list[str]]


def _lora_layers(components: Mapping[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    # PEFT's tuner layers hold the per-adapter `scaling` dict; the base layer inside them does not.
    return [
        (f"{c}.{canonical_name(name)}", layer)
        for c, model in components.items()
        for name, layer in model.named_modules()
        if isinstance(getattr(layer, "scaling", None), dict) and hasattr(layer, "get_base_layer")
    ]


def adapter_state(components: Mapping[str, nn.Module]) -> AdapterState:
    """What PEFT holds per LoRA layer, as plain values (a hotswap-prepared scaling is a tensor)."""
    scaling, active, merged = {}, {}, {}
    for name, layer in _lora_layers(components):
        scaling[name] = {a: float(s) for a, s in layer.scaling.items()}
        active[name] = list(layer.active_adapters)
        merged[name] = list(getattr(layer, "merged_adapters", []))
    return AdapterState(scaling, active, merged)


def denoiser_output(family: Any, pipe: Any, seed: int = SEED, float64: bool = False) -> torch.Tensor:
    """One denoiser forward on the family's seeded inputs, as a CPU tensor; with ``float64``, computed
    in float64 module by module on the pipeline's own weights (parity/checks/float64_forward.py)."""
    outs = []
    # every expert of a several-denoiser pipeline (Wan 2.2), on the same inputs: a file placed in either shows
    for name in family.denoisers(pipe):
        if not float64:
            with torch.no_grad():
                out = family.denoiser_step(pipe, name, seed)
        else:
            with torch.no_grad(), computed_in_float64(getattr(pipe, name)):
                out = family.denoiser_step(pipe, name, seed, torch.float64)
        outs.append(out.detach().cpu())
    return outs[0] if len(outs) == 1 else torch.cat([o.reshape(-1) for o in outs])


@dataclass(frozen=True)
class ScalingChange:
    layer: str
    adapter: str
    now: float | None  # None: the adapter is gone from the layer
    loaded: float | None  # None: the layer had no such adapter after loading


@dataclass(frozen=True)
class UnfusedState:
    """The unfused pipeline against the loaded one: what changed in PEFT, and the forward's difference."""

    scaling_changed: list[ScalingChange]
    active_changed: list[str]  # layers whose active adapters differ
    merged_left: list[str]  # layers still marked merged after unfuse
    vs_loaded: float  # max |denoiser output unfused − loaded, never fused|
    budget: float
    tolerance: str  # the OUTPUT_TOLERANCES entry the budget comes from
    forward_error: float | None  # e_fwd (dtype vs float64) where the tolerance needs it
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        ok = not (self.scaling_changed or self.active_changed or self.merged_left) and self.vs_loaded <= self.budget
        object.__setattr__(self, "ok", ok)

    def left_by_fuse_scale(self, lora_scale: float, cycles: int) -> bool:
        """Every changed scaling is the loaded one times lora_scale per fuse: scale_layer never undone."""
        factor = lora_scale**cycles
        return bool(self.scaling_changed) and all(
            c.now is not None and c.loaded is not None and math.isclose(c.now, c.loaded * factor, rel_tol=1e-6)
            for c in self.scaling_changed
        )

    def failures(self, lora_scale: float, cycles: int) -> list[str]:
        out = []
        if self.scaling_changed:
            c = self.scaling_changed[0]
            why = ""
            if self.left_by_fuse_scale(lora_scale, cycles):
                fuses = "" if cycles == 1 else f"{cycles} × "
                why = f" (scale left behind by {fuses}fuse_lora(lora_scale={lora_scale:g}))"
            more = len(self.scaling_changed) - 1
            others = f"; {more} more layer/adapter scalings changed" if more else ""
            out.append(f"unfuse: PEFT scaling of {c.layer} (adapter {c.adapter}) is {_value(c.now)}, was "
                       f"{_value(c.loaded)} after loading{why}{others}")
        if self.active_changed:
            out.append(f"unfuse: active adapters of {self.active_changed[0]} changed"
                       + (f" (and {len(self.active_changed) - 1} more layers)" if len(self.active_changed) > 1 else ""))
        if self.merged_left:
            out.append(f"unfuse: {self.merged_left[0]} is still marked merged"
                       + (f" (and {len(self.merged_left) - 1} more layers)" if len(self.merged_left) > 1 else ""))
        if self.vs_loaded > self.budget:
            out.append(f"unfuse: the denoiser output differs from the loaded, never fused pipeline by "
                       f"{self.vs_loaded:.3g} (budget {self.budget:.3g}, {self.tolerance})")
        return out


def _value(scaling: float | None) -> str:
    return "absent" if scaling is None else f"{scaling:g}"


def compare_unfused(
    loaded: AdapterState,
    unfused: AdapterState,
    loaded_out: torch.Tensor,
    unfused_out: torch.Tensor,
    weights_bit_exact: bool,
    float64_out: Callable[[], torch.Tensor],
    drift_ulps: float = 0.0,
) -> UnfusedState:
    """The unfused pipeline against the loaded one.

    The forward budget is OUTPUT_TOLERANCES': where unfuse restored every weight bit for bit, both runs
    do the same arithmetic and must agree bit for bit ("same-arithmetic"); otherwise the weights differ
    by ``drift_ulps`` (the drift check's measured largest, in ULPs at |W| + Σ P), and the two outputs
    are correct roundings of two functions that far apart ("unfused": (2 + drift_ulps)·e_fwd + 1 ULP,
    with e_fwd measured against ``float64_out()``, the loaded pipeline's forward in float64, called
    only then).
    """
    changed = [
        ScalingChange(layer, adapter, now, loaded.scaling.get(layer, {}).get(adapter))
        for layer, per_adapter in unfused.scaling.items()
        for adapter, now in per_adapter.items()
        if now != loaded.scaling.get(layer, {}).get(adapter)
    ]
    changed += [ScalingChange(layer, adapter, None, was) for layer, per_adapter in loaded.scaling.items()
                for adapter, was in per_adapter.items() if adapter not in unfused.scaling.get(layer, {})]
    active = [layer for layer in loaded.active.keys() | unfused.active.keys()
              if loaded.active.get(layer) != unfused.active.get(layer)]
    merged = [layer for layer, names in unfused.merged.items() if names]
    dtype = loaded_out.dtype
    if weights_bit_exact:
        kind, forward_error = "same-arithmetic", None
    else:
        kind = "unfused"
        forward_error = float((loaded_out.double() - float64_out().double()).abs().max())
    budget = output_budget(forward_error or 0.0, loaded_out, dtype, kind,
                           weight_roundings=0.0 if weights_bit_exact else math.ceil(drift_ulps))
    vs_loaded = float((unfused_out.double() - loaded_out.double()).abs().max())
    return UnfusedState(changed, sorted(active), merged, vs_loaded, budget, kind, forward_error)
