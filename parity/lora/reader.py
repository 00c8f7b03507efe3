"""Reading a LoRA file into the neutral form, against the model it is meant for: every key cut by
the key grammar (parity/lora/keys.py), its module name resolved against names derived from the real
module tree (parity/lora/names), fused modules split at the model's own widths, every tensor checked
before the merge relies on it (parity/lora/tensorchecks.py), and every problem a ParityInputError
naming the file and the key.

kohya names replace dots by underscores, which is ambiguous (``to_out_0`` vs ``proj_in``), so a name
is resolved by looking it up among the model's own names, never by guessing where dots were. Every
key ends up in a module, or in ``LoraFile.unmatched``: nothing in a file is skipped unseen.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.cloneofsimo import is_numbered, renamed
from parity.lora.familyguess import describe_guess, with_guess
from parity.lora.headeralpha import alpha_from_config, metadata_alphas
from parity.lora.keys import (
    DENOISER,
    LOHA_ROLES,
    LOKR_ROLES,
    MAGNITUDE_ROLES,
    MODULE_ROLES,
    PEFT_MODEL,
    ParsedKey,
    Prefix,
    parse_key,
)
from parity.lora.layouts import NUMBERED_LAYOUT, Signature, layout_name
from parity.lora.names import Target
from parity.lora.names.table import ComponentNames, Resolved, component_names
from parity.lora.neutral import (
    DiffModule,
    DoraModule,
    LohaModule,
    LokrModule,
    LoraFile,
    LoraModule,
    Module,
    RowsOf,
    TuckerModule,
)
from parity.lora.peftadapter import AdapterConfig, adapter_component, adapter_file, has_config, read_config
from parity.lora.tensorchecks import (
    alpha_value,
    check_diff,
    check_factors,
    check_lycoris,
    check_pair,
    check_tucker,
    magnitude,
)
from parity.lora.tensors import is_pickle_path, load_tensors
from parity.modules import ParameterSite

# The components a LoRA file can address in some zoo family; a key for one the model lacks means
# the file was made for another family (SDXL's text_encoder_2, a transformer on a UNet model).
KNOWN_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")

# The partner a half pair misses, per pair spelling, for the error message.
PARTNER = {"lora_down": {"down": ".lora_down.weight", "up": ".lora_up.weight"},
           "lora_A": {"down": ".lora_A.weight", "up": ".lora_B.weight"},
           "down/up": {"down": ".down.weight", "up": ".up.weight"}}


@dataclass
class _Group:
    """One module of the file: its keys by role (down, up, alpha, diff, diff_b, and LyCORIS's and
    DoRA's roles: parity/lora/keys.py)."""

    prefix: Prefix
    body: str
    keys: dict[str, str] = field(default_factory=dict)
    style: str = ""

    @property
    def stem(self) -> str:
        return self.prefix.text + self.body

    def partner_key(self, role: str) -> str:
        if self.style.startswith("lora_A."):
            adapter = self.style.removeprefix("lora_A.")
            return f"{self.stem}.lora_{'A' if role == 'down' else 'B'}.{adapter}.weight"
        return self.stem + PARTNER.get(self.style, PARTNER["lora_A"])[role]


def _groups(keys: list[str]) -> tuple[list[_Group], list[str]]:
    groups: dict[tuple[str, str], _Group] = {}
    unparsed = []
    for key in keys:
        parsed: ParsedKey | None = parse_key(key)
        if parsed is None:
            unparsed.append(key)
            continue
        group = groups.setdefault((parsed.prefix.text, parsed.body), _Group(parsed.prefix, parsed.body))
        group.keys[parsed.role] = key
        if parsed.style:
            group.style = parsed.style
    return list(groups.values()), unparsed


def _rows(t: torch.Tensor, target: Target, module: str, out: int) -> torch.Tensor:
    """``module``'s rows of a fused tensor (dim 0), in the module's own order."""
    pieces = [p for p in target.pieces if p.module == module]
    if target.whole:
        return t
    part = t.new_empty((out, *t.shape[1:]))
    for p in pieces:
        part[p.at:p.at + p.size] = t[p.start:p.start + p.size]
    return part


def _check_rows(t: torch.Tensor, target: Target, label: str, path: str | None, key: str) -> None:
    if not target.whole and (t.ndim == 0 or t.shape[0] != target.rows):
        raise ParityInputError(
            f"shape mismatch with {label}: {tuple(t.shape)} has {t.shape[0] if t.ndim else 0} output rows, "
            f"the model's {' | '.join(target.modules)} have {target.rows}",
            path=path, key=key)


@dataclass
class _Reading:
    path: str | None
    names: dict[str, ComponentNames]
    header: dict[str, dict]
    modules: dict[tuple[str, str], Module] = field(default_factory=dict)
    sources: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    placement: dict[str, tuple[str, ...]] = field(default_factory=dict)
    peft: AdapterConfig | None = None  # a PEFT adapter's adapter_config.json

    def add(self, component: str, module: Module, group: _Group) -> None:
        key = (component, module.module)
        if isinstance(module, DiffModule) and module.diff is None and isinstance(self.modules.get(key), LoraModule):
            # a .diff_b beside its module's pair (ComfyUI LoraSave, LightX2V): the pair sets the weight,
            # the difference the bias, each its own contribution (parity/reference/merge.py)
            key = (component, f"{module.module}.bias")
        if key in self.modules:
            earlier = self.sources[key][0]
            raise ParityInputError(f"resolves to module {component}.{module.module}, which {earlier} already sets",
                                   path=self.path, key=next(iter(group.keys.values())))
        self.modules[key] = module
        self.sources[key] = tuple(group.keys.values())

    def pair(self, component: str, name: str, target: Target, group: _Group,
             tensors: Mapping[str, torch.Tensor]) -> None:
        down_key, up_key = group.keys["down"], group.keys["up"]
        down, up = tensors[down_key], tensors[up_key]
        label = f"{component}.{name}"
        check_factors(down, up, label, self.path, down_key, up_key)
        _check_rows(up, target, label, self.path, up_key)
        alpha = self.alpha(group, tensors)
        modules = self.names[component].modules
        mid_key = group.keys.get("mid")
        if mid_key is not None and not target.whole:
            raise ParityInputError(f"a tucker core on the fused module {label} cannot be split per module "
                                   "(not supported yet)", path=self.path, key=mid_key)
        for module in target.modules:
            if self.peft is not None and group.prefix.style == "peft":
                alpha_m = self.peft_alpha(module, down, down_key)
            elif alpha is None and component in self.header and group.prefix.style == "component":
                alpha_m = alpha_from_config(self.header[component], module)
            else:
                alpha_m = alpha
            out = int(modules[module].weight.shape[0])
            m: Module
            if mid_key is not None:
                m = TuckerModule(component, module, down, tensors[mid_key], up, alpha_m)
                check_tucker(m, modules[module], self.path, down_key, mid_key, up_key)
            else:
                m = LoraModule(component, module, down, _rows(up, target, module, out), alpha_m)
                check_pair(m, modules[module], self.path, down_key, up_key)
            self.add(component, self.with_magnitude(m, modules[module], target, group, tensors), group)

    def peft_alpha(self, module: str, down: torch.Tensor, down_key: str) -> float:
        """PEFT's α for ``module`` from adapter_config.json, once the config's rank is the tensors' (PEFT
        builds the layer at the config's rank, so a file at another rank does not load into it)."""
        assert self.peft is not None
        rank, source = self.peft.rank_of(module)
        if down.ndim == 0 or int(down.shape[0]) != rank:
            have = int(down.shape[0]) if down.ndim else 0
            raise ParityInputError(f"has rank {have}, but {os.path.basename(self.peft.path)} gives {module} rank "
                                   f"{rank} ({source})", path=self.path, key=down_key)
        return self.peft.stored_alpha(module)

    def alpha(self, group: _Group, tensors: Mapping[str, torch.Tensor]) -> float | None:
        return alpha_value(tensors[group.keys["alpha"]], self.path, group.keys["alpha"]) if "alpha" in group.keys \
            else None

    def with_magnitude(self, m: Module, layer: nn.Module, target: Target, group: _Group,
                       tensors: Mapping[str, torch.Tensor]) -> Module:
        """``m`` with the group's DoRA magnitude, if it has one, cut to ``m``'s rows of a fused module."""
        roles = [r for r in MAGNITUDE_ROLES if r in group.keys]
        if not roles:
            return m
        if len(roles) > 1:
            raise ParityInputError("both a dora_scale and a lora_magnitude_vector for one module",
                                   path=self.path, key=group.keys[roles[0]])
        key = group.keys[roles[0]]
        weight = layer.weight
        mag = magnitude(tensors[key], roles[0], tuple(weight.shape), f"{m.component}.{m.module}", self.path, key)
        if not target.whole:
            if mag.axis == "in":
                raise ParityInputError(f"an input-axis DoRA magnitude on the fused module {' | '.join(target.modules)} "
                                       "normalises across its parts and cannot be split (not supported yet)",
                                       path=self.path, key=key)
            rows = _rows(mag.value.reshape(-1, 1), target, m.module, int(weight.shape[0]))
            mag = replace(mag, value=rows.reshape(-1))
        return DoraModule(m, mag)

    def lycoris(self, component: str, name: str, target: Target, group: _Group,
                tensors: Mapping[str, torch.Tensor]) -> None:
        """A LoHa or LoKr module: every tensor its formula needs, shapes that give the module's weight."""
        label = f"{component}.{name}"
        loha = any(r in group.keys for r in LOHA_ROLES)
        if loha and any(r in group.keys for r in LOKR_ROLES):
            raise ParityInputError(f"{label} has both LoHa (hada_) and LoKr (lokr_) tensors",
                                   path=self.path, key=group.keys.get("hada_w1_a", next(iter(group.keys.values()))))
        modules = self.names[component].modules
        first = modules[target.modules[0]]
        t = {role: tensors[key] for role, key in group.keys.items()}
        alpha = self.alpha(group, tensors)
        whole: LohaModule | LokrModule
        if loha:
            whole = LohaModule(component, name, t.get("hada_w1_a"), t.get("hada_w1_b"), t.get("hada_w2_a"),
                               t.get("hada_w2_b"), t.get("hada_t1"), t.get("hada_t2"), alpha)
        else:
            whole = LokrModule(component, name, t.get("lokr_w1"), t.get("lokr_w1_a"), t.get("lokr_w1_b"),
                               t.get("lokr_w2"), t.get("lokr_w2_a"), t.get("lokr_w2_b"), t.get("lokr_t2"), alpha)
        # a fused module's ΔW has the parts' rows stacked, over the columns they share
        check_lycoris(whole, (target.rows, *first.weight.shape[1:]), label, self.path, group.keys)
        for module in target.modules:
            m: Module = replace(whole, module=module) if target.whole else RowsOf(
                component, module, whole, tuple((p.start, p.size, p.at) for p in target.pieces if p.module == module),
                int(modules[module].weight.shape[0]))
            self.add(component, self.with_magnitude(m, modules[module], target, group, tensors), group)

    def diff(self, component: str, name: str, target: Target, group: _Group,
             tensors: Mapping[str, torch.Tensor]) -> None:
        diff_key, bias_key = group.keys.get("diff", group.keys.get("diff_m")), group.keys.get("diff_b")
        label = f"{component}.{name}"
        if "diff" in group.keys and "diff_m" in group.keys:
            raise ParityInputError(f"both a .diff and a .diff_m for {label}", path=self.path, key=group.keys["diff_m"])
        for key in (diff_key, bias_key):
            if key is not None:
                _check_rows(tensors[key], target, label, self.path, key)
        modules = self.names[component].modules
        for module in target.modules:
            out = int(modules[module].weight.shape[0])
            diff = _rows(tensors[diff_key], target, module, out) if diff_key else None
            bias = _rows(tensors[bias_key], target, module, out) if bias_key else None
            m = DiffModule(component, module, diff, bias, bare=isinstance(modules[module], ParameterSite))
            check_diff(m, modules[module], self.path, diff_key, bias_key)
            self.add(component, m, group)


def _closest(names: Mapping[str, ComponentNames], component: str | None, body: str, n: int = 3) -> list[str]:
    """diffusers module names nearest to ``body`` (dotted or underscored), within ``component`` if known."""
    pool: dict[str, str] = {}
    for c, table in names.items():
        if component in names and c != component:
            continue
        for module in table.modules:
            pool[module.replace(".", "_") if "." not in body else module] = module
    return [pool[m] for m in difflib.get_close_matches(body, list(pool), n=n, cutoff=0.5)]


def _signature(seen: list[tuple[_Group, str, Resolved]]) -> Signature:
    """The file's layout from its resolved groups: the denoiser's where it has any."""
    denoiser = [s for s in seen if s[1] in ("unet", "transformer")] or seen
    prefix = Counter((g.prefix.style, g.prefix.text) for g, _, _ in denoiser).most_common(1)[0][0]
    pair = Counter(g.style for g, _, _ in denoiser if g.style != "diff").most_common(1)
    naming = Counter(h.naming for _, _, h in denoiser if h.naming != "diffusers").most_common(1)
    if prefix[0] == "none" and pair and pair[0][0].startswith("lora_A."):
        pair = [("lora_A.default", 1)]
    return Signature(prefix[0], prefix[1], pair[0][0] if pair else "diff", naming[0][0] if naming else "diffusers",
                     any("alpha" in g.keys for g, _, _ in denoiser),
                     any(r in g.keys for g, _, _ in denoiser for r in ("diff", "diff_b", "diff_m")))


def _peft_component(reading: _Reading, groups: list[_Group], components: Mapping[str, nn.Module],
                    tensors: Mapping[str, torch.Tensor]) -> str | None:
    """For a PEFT adapter (keys under base_model.model.): its adapter_config.json, read into ``reading``,
    and the component its keys fit; None for any other file."""
    peft = [g for g in groups if g.prefix.component == PEFT_MODEL]
    if not peft:
        return None
    first = next(iter(peft[0].keys.values()))
    fal = _fal_flux2(reading, peft, components)
    if fal is not None and (reading.path is None or not has_config(reading.path)):
        return fal
    if reading.path is None:
        raise ParityInputError("a PEFT adapter's state dict (keys under base_model.model.) has no "
                               "adapter_config.json to take its rank and alpha from; pass its file", key=first)
    reading.peft = read_config(reading.path)
    by_body = {g.body: g for g in peft}

    def fits(component: str, body: str) -> bool:
        hits = reading.names[component].lookup(body, False)
        if len(hits) != 1:
            return False
        group = by_body[body]
        shape = tuple(reading.names[component].modules[hits[0].target.modules[0]].weight.shape)
        down, up = (tensors[group.keys[r]] for r in ("down", "up")) if {"down", "up"} <= set(group.keys) \
            else (None, None)
        return down is None or (down.ndim >= 2 and up.ndim >= 2 and (up.shape[0], down.shape[1]) == shape[:2])

    return adapter_component(list(by_body), dict(components), fits, reading.peft, reading.path, first)


def _fal_flux2(reading: _Reading, peft: list[_Group], components: Mapping[str, nn.Module]) -> str | None:
    """The denoiser, for fal's FLUX.2 trainer files: ``base_model.model.`` + BFL's FLUX.2 names, lora_A/lora_B,
    published without the adapter_config.json beside them and with no alpha (diffusers #13169, "FAL trained loras
    use the default peft key naming": Flux2LoraLoaderMixin.lora_state_dict renames the prefix to diffusion_model.
    and loads them at alpha = r). Told apart by the names, not by the missing config: a lone file on diffusers'
    names keeps its refusal, as its alpha is in the config it lacks; with a config beside it, the config rules."""
    denoiser = next((c for c in ("transformer", "unet") if c in components), None)
    if denoiser is None:
        return None
    names = reading.names[denoiser]
    if any(h.naming == "flux2" for g in peft for h in names.lookup(g.body, False)):
        return denoiser
    return None


def read_lora(
    source: str | os.PathLike | dict[str, torch.Tensor],
    components: Mapping[str, nn.Module],
    metadata: dict[str, str] | None = None,
    strict: bool = True,
    allow_pickle: bool = False,
) -> LoraFile:
    """Parse a LoRA file (or state dict) against the model it is meant for.

    With ``strict``, a key that resolves to no module is an error naming it and the closest module
    names; otherwise such keys are listed in ``LoraFile.unmatched``. Keys for a component the model
    does not have are an error either way: the file was made for another family.
    """
    raw = None
    if isinstance(source, dict):
        tensors, path = source, None
        metadata = metadata or {}
    else:
        path = adapter_file(str(source))  # a PEFT adapter folder: its adapter_model file
        tensors, metadata = load_tensors(path, allow_pickle=allow_pickle)
        raw = tensors if is_pickle_path(path) else None
    if not is_numbered(list(tensors)):
        return _read(tensors, metadata, path, raw, components, strict)
    # cloneofsimo's numbered modules, read under the names their numbering rebuilds; messages and the
    # key listing name the file's own keys, and its token embeddings are listed, not LoRA layers
    named, original, embeddings = renamed(tensors, metadata, components, path)
    try:
        lora = _read(named, metadata, path, raw, components, strict)
    except ParityInputError as exc:
        raise ParityInputError(exc.message, path=exc.path, key=original.get(exc.key or "", exc.key)) from None
    sources = {k: tuple(original.get(key, key) for key in keys) for k, keys in lora.sources.items()}
    return replace(lora, layout=NUMBERED_LAYOUT, unmatched=[*lora.unmatched, *embeddings], sources=sources)


def _read(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: str | None,
          raw: dict[str, torch.Tensor] | None, components: Mapping[str, nn.Module], strict: bool) -> LoraFile:
    keys = list(tensors)
    groups, unmatched = _groups(keys)
    if not any(r in g.keys for g in groups for r in MODULE_ROLES):
        raise ParityInputError("unrecognised LoRA layout (no lora_A/lora_B or lora_down/lora_up keys)"
                               + describe_guess(keys), path=path, key=min(keys) if keys else None)
    names = {c: component_names(c, m) for c, m in components.items()}
    denoiser = "unet" if "unet" in components else "transformer"
    reading = _Reading(path, names, metadata_alphas(metadata, path))
    hints: dict[str, tuple[str | None, str]] = {}  # unmatched key → (component, name) to suggest near
    foreign: dict[str, str] = {}  # key → a component this model does not have
    seen: list[tuple[_Group, str, Resolved]] = []
    halves: list[_Group] = []  # a down without its up, or the other way round
    peft_component = _peft_component(reading, groups, components, tensors)

    for group in groups:
        component = {DENOISER: denoiser, PEFT_MODEL: peft_component}.get(group.prefix.component,
                                                                           group.prefix.component)
        first = next(iter(group.keys.values()))
        if component not in components:
            if component in KNOWN_COMPONENTS:
                foreign[first] = component
            unmatched += group.keys.values()
            hints[first] = (None, group.body)
            continue
        if set(group.keys) == {"alpha"}:
            unmatched.append(first)  # a stray alpha
            continue
        if not any(r in group.keys for r in MODULE_ROLES):
            lone = next(group.keys[r] for r in MAGNITUDE_ROLES if r in group.keys)
            raise ParityInputError("DoRA magnitude without its module's LoRA tensors", path=path, key=lone)
        if ("down" in group.keys) != ("up" in group.keys):
            halves.append(group)
            continue
        hits = names[component].lookup(group.body, group.prefix.underscored)
        if len(hits) > 1:
            readings = sorted(" | ".join(h.target.modules) for h in hits)
            raise ParityInputError(f"kohya name is ambiguous in this model: {readings}", path=path, key=first)
        if not hits:
            unmatched += [k for role, k in group.keys.items() if role != "alpha"]
            unmatched += [group.keys["alpha"]] if "alpha" in group.keys else []
            hints[group.keys.get("down", first)] = (component, group.body)
            continue
        seen.append((group, component, hits[0]))

    # One file, one layout: keys spelled in another layout's grammar (a diffusers key in a kohya
    # file) are listed as unmatched rather than merged, as no loader reads such a mix either.
    dominant = Counter((g.prefix.style, g.style) for g in [*(g for g, _, _ in seen), *halves]
                       if g.style != "diff").most_common(1)
    for group in halves:
        if dominant and (group.prefix.style, group.style) != dominant[0][0]:
            unmatched += group.keys.values()
            continue
        have, missing = ("down", "up") if "down" in group.keys else ("up", "down")
        raise ParityInputError(f"{have} weight without its {missing} partner ({group.partner_key(missing)} "
                               "missing)", path=path, key=group.keys[have])
    for group, component, hit in seen:
        if dominant and group.style != "diff" and (group.prefix.style, group.style) != dominant[0][0]:
            unmatched += group.keys.values()
            continue
        try:
            if "down" in group.keys:
                reading.pair(component, hit.name, hit.target, group, tensors)
            elif any(r in group.keys for r in (*LOHA_ROLES, *LOKR_ROLES)):
                reading.lycoris(component, hit.name, hit.target, group, tensors)
            if any(r in group.keys for r in ("diff", "diff_b", "diff_m")):
                reading.diff(component, hit.name, hit.target, group, tensors)
        except ParityInputError as exc:  # SD1.5 and SD2 share names: a shape says which family it is for
            raise with_guess(exc, keys, tensors, components) from None
        reading.placement[group.stem] = tuple(f"{component}.{m}" for m in hit.target.modules)
    seen = [(g, c, h) for g, c, h in seen if g.stem in reading.placement]

    if foreign:
        first = next(iter(foreign))
        missing = ", ".join(sorted(set(foreign.values())))
        raise ParityInputError(
            f"{len(foreign)} key(s) address {missing}, which this model does not have: "
            f"the file was made for another model family{describe_guess(keys, tensors, components)}",
            path=path,
            key=first,
        )
    if (strict and unmatched) or not reading.modules:
        first = unmatched[0] if unmatched else keys[0]
        hint = _closest(names, *hints.get(first, (None, first.split(".")[0])))
        what = "no key matches a module of this model" if not reading.modules else (
            f"{len(unmatched)} key(s) match no module of this model")
        raise ParityInputError(
            what + (f"; closest module names: {', '.join(hint)}" if hint else "")
            + describe_guess(keys, tensors, components),
            path=path,
            key=first,
        )
    return LoraFile(modules=reading.modules, layout=layout_name(_signature(seen)), path=path, unmatched=unmatched,
                    raw=raw, sources=reading.sources, placement=reading.placement, metadata=dict(metadata))
