"""Set-up for the adapter-API checks (tests/test_adapter_*.py) and their negative controls: two
adapters on a tiny pipeline, the LoRA layers PEFT injected, and PEFT's add_weighted_adapter run
against our own formulas (parity.reference.weighted)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.lora import LoraLayer, LoraModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from parity.checks.cases import WeightedCase
from parity.checks.fuse import snapshot
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.reference import weighted
from parity.tolerances import report_against_bound
from parity.zoo import FAMILIES, build_pipeline


@dataclass
class Loaded:
    family: Any
    pipe: Any
    components: dict
    before: dict
    paths: dict  # adapter name → file
    loras: dict  # adapter name → parsed LoraFile


def write_pair(family: Any, directory: str) -> tuple[dict, dict]:
    """Adapter a on every component (alpha in the header), adapter b on the denoiser only (no alpha)."""
    components = family.components(build_pipeline(family))
    paths = {
        "a": write_lora(components, family.default_targets, os.path.join(directory, f"{family.name}-a.safetensors"),
                        seed=1, rank=4, alpha=2.0),
        "b": write_lora(components, {family.denoiser: family.default_targets[family.denoiser]},
                        os.path.join(directory, f"{family.name}-b.safetensors"), seed=2, rank=4, alpha=None),
    }
    return paths, {k: read_lora(p, components) for k, p in paths.items()}


def load(family_name: str, directory: Any, names: tuple[str, ...] = ("a", "b"), expert: str | None = None) -> Loaded:
    """Adapters a and b loaded as a user would; with ``expert`` (Wan 2.2) into that expert, with the
    ``load_lora_weights`` kwargs that put them there, and ``loras`` placed there (parity/zoo/experts.py)."""
    from parity.zoo.experts import load_kwargs, place

    family = FAMILIES[family_name]
    paths, loras = write_pair(family, str(directory))
    pipe = build_pipeline(family)
    components = family.components(pipe)
    before = snapshot(components)
    for name in names:
        for kwargs in load_kwargs(family, expert):
            pipe.load_lora_weights(paths[name], adapter_name=name, **kwargs)
    if expert:
        loras = {k: place(v, family, expert) for k, v in loras.items()}
    return Loaded(family, pipe, components, before, paths, loras)


def lora_layers(components: dict) -> list[tuple[str, BaseTunerLayer]]:
    return [
        (f"{c}.{n}", m) for c, comp in components.items() for n, m in comp.named_modules() if isinstance(m, BaseTunerLayer)
    ]


def holders(components: dict, adapter: str) -> list[str]:
    """Modules that still hold ``adapter``'s LoRA parameters."""
    return [name for name, m in lora_layers(components) if adapter in getattr(m, "lora_A", {})]


def differing(a: dict, b: dict) -> list[str]:
    return [f"{c}.{k}" for c in a for k in a[c] if c not in b or k not in b[c] or not torch.equal(a[c][k], b[c][k])]


def active_per_component(components: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c, comp in components.items():
        for m in comp.modules():
            if isinstance(m, BaseTunerLayer):
                out.setdefault(c, set()).update(m.active_adapters)
    return out


def lora_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    bad = [k for k in expected if actual[k].dtype != expected[k].dtype or not torch.equal(actual[k], expected[k])]
    assert bad == [], f"{len(bad)} tensors differ, e.g. {bad[:3]}"


# ---------------------------------------------------------------- add_weighted_adapter


class AttachedLoraModel(LoraModel):
    """PEFT's LoraModel around a diffusers model whose adapters diffusers already injected.

    LoraModel.__init__ would inject (and re-initialise) an adapter; everything add_weighted_adapter
    needs is ``model``, ``peft_config`` (the diffusers model's own dict, shared) and the bookkeeping
    lists, so this sets exactly those and leaves the injected layers alone.
    """

    def __init__(self, model: nn.Module) -> None:
        nn.Module.__init__(self)
        self.model = model
        self.peft_config = model.peft_config
        self.targeted_module_names: list[str] = []
        self.targeted_parameter_names: list[str] = []
        self.active_adapter = next(iter(model.peft_config))


@contextlib.contextmanager
def rng_state_at_first_bernoulli():
    """Record torch's default-generator state at PEFT's first torch.bernoulli call (after the new
    adapter's initialisation consumed some draws), so our masks start from the same state."""
    original = torch.bernoulli
    state: list[torch.Tensor] = []

    def recording(*args, **kwargs):
        if not state:
            state.append(torch.get_rng_state())
        return original(*args, **kwargs)

    torch.bernoulli = recording
    try:
        yield state
    finally:
        torch.bernoulli = original


def add_weighted(case: WeightedCase, directory: Any, seed: int = 0):
    """PEFT's combination of adapters a and b: (their factors before, the new adapter's, the RNG state)."""
    fam = FAMILIES[case.family]
    paths, _ = write_pair(fam, str(directory))
    pipe = build_pipeline(fam)
    model = getattr(pipe, fam.denoiser)
    for name in ("a", "b"):
        model.load_lora_adapter(paths[name], prefix=fam.denoiser, adapter_name=name, use_safetensors=True)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    snapshot_ab = {n: [(m.lora_A[k].weight.detach().clone(), m.lora_B[k].weight.detach().clone(), m.scaling[k])
                       for k in ("a", "b")] for n, m in layers}
    torch.manual_seed(seed)
    with rng_state_at_first_bernoulli() as state:
        AttachedLoraModel(model).add_weighted_adapter(
            ["a", "b"], list(case.weights), "mix", combination_type=case.combination, density=case.density
        )
    new = {n: (m.lora_A["mix"].weight.detach().clone(), m.lora_B["mix"].weight.detach().clone(), m.scaling["mix"])
           for n, m in layers}
    return snapshot_ab, new, (state[0] if state else None)


def ours_for(snapshot_ab, case: WeightedCase, rng_state, elect=weighted.elect_sign, weight_error=1.0):
    """Our combination of the same factors (``weight_error`` scales the first weight: a control)."""
    if rng_state is not None:
        torch.set_rng_state(rng_state)
    out = {}
    for name, factors in snapshot_ab.items():  # PEFT's order: named_modules, A masks then B masks
        downs, ups, scalings = [f[0] for f in factors], [f[1] for f in factors], [f[2] for f in factors]
        masks = None
        if case.combination == "dare_linear":
            masks = weighted.dare_masks([d.shape for d in downs] + [u.shape for u in ups], case.density)
        w = [case.weights[0] * weight_error, case.weights[1]]
        out[name] = weighted.combine_layer(downs, ups, w, scalings, case.combination, case.density, masks, elect)
    return out


def compare_weighted(new, ours, combination: str) -> list:
    reports = []
    for name, (down, up, scaling) in new.items():
        assert scaling == 1.0, f"{name}: new adapter scaling {scaling}, expected α = r"
        o = ours[name]
        actual = weighted.compose(up.double(), down.double())
        bound = weighted.delta_bound(o, down, up, combination, 2)
        reports.append(report_against_bound(name, actual, o.delta, bound, torch.float32, bound))
    return reports
