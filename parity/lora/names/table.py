"""Every name a file may give a component's modules, per naming, and the lookup the reader does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from parity.lora.names import Target
from parity.lora.names.bfl import bfl_names, xlabs_names
from parity.lora.names.diffusers import diffusers_names, legacy_names
from parity.lora.names.flux2 import flux2_names
from parity.lora.names.sgm import sgm_names
from parity.lora.names.wan import wan_names
from parity.lora.names.zimage import zimage_names
from parity.modules import difference_sites, lora_capable_modules

Naming = Callable[[str, nn.Module, Mapping[str, nn.Module]], dict[str, Target]]

# Lookup order: diffusers' names first, so a name that is both (none is, today) means the diffusers module.
NAMINGS: dict[str, Naming] = {
    "diffusers": lambda component, model, modules: diffusers_names(component, modules),
    "legacy": lambda component, model, modules: legacy_names(component, modules),
    "sgm": sgm_names,
    "bfl": bfl_names,
    "xlabs": xlabs_names,
    "wan": wan_names,
    "zimage": zimage_names,
    "flux2": flux2_names,
}
# Namings that rename some modules only and keep diffusers' names for the rest: a layout on one names
# a module by it where it can, else by diffusers' name (legacy: attention processors; zimage: qkv, out,
# x_embedder, final_layer).
PARTIAL = frozenset({"legacy", "zimage"})

# What a stem may end with besides the module name: diffusers' legacy LoRA layers (``to_q_lora``,
# ``conv1.lora``, ``q_proj.lora_linear_layer``) hang the pair one level below the module.
STEM_TAILS = ("", "_lora", ".lora", ".lora_linear_layer")


@dataclass(frozen=True)
class Resolved:
    naming: str
    name: str  # the name as that naming spells it, dotted
    target: Target


@dataclass
class ComponentNames:
    """One component's names: dotted per naming, and kohya's underscored spelling of each."""

    modules: dict[str, nn.Module]  # the LoRA-capable modules and the difference sites
    dotted: dict[str, dict[str, Target]]
    capable: frozenset[str] = frozenset()  # the modules that take a LoRA pair (Linear, Conv2d)
    underscored: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # naming → '_' name → dotted

    def __post_init__(self) -> None:
        for naming, names in self.dotted.items():
            table: dict[str, list[str]] = {}
            for name in names:
                table.setdefault(name.replace(".", "_"), []).append(name)
            self.underscored[naming] = table

    def lookup(self, body: str, underscored: bool) -> list[Resolved]:
        """Every reading of ``body`` (after the component prefix): one means resolved, several ambiguous."""
        found: list[Resolved] = []
        for tail in STEM_TAILS:
            if tail and not body.endswith(tail.replace(".", "_") if underscored else tail):
                continue
            stem = body[: len(body) - len(tail)] if tail else body
            for naming, names in self.dotted.items():
                if underscored:
                    candidates = self.underscored[naming].get(stem, [])
                else:
                    candidates = [stem] if stem in names else []
                found += [Resolved(naming, c, names[c]) for c in candidates]
            if found:
                break
        distinct = {r.target: r for r in found}
        return list(distinct.values())

    def name_of(self, naming: str, module: str) -> tuple[str, Target] | None:
        """The name ``naming`` gives the target holding ``module`` (one that is the module alone
        before a fused one), or None."""
        holding = [(name, t) for name, t in self.dotted.get(naming, {}).items() if module in t.modules]
        return next((h for h in holding if h[1].whole), holding[0] if holding else None)


def component_names(component: str, model: nn.Module) -> ComponentNames:
    capable = lora_capable_modules(model)
    # A difference site (a norm, a bare parameter) only a full difference reaches; named so that such
    # a key is merged by the reference, or failed by name, rather than left unread.
    modules = {**difference_sites(model), **capable}
    return ComponentNames(modules, {n: naming(component, model, modules) for n, naming in NAMINGS.items()},
                          frozenset(capable))
