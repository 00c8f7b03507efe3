"""Reading a LoRA file into the neutral form, against the model it is meant for: every key resolved
against the real module tree, every tensor checked before the merge relies on it, and every problem
a ParityInputError naming the file and the key.

kohya names replace dots by underscores, which is ambiguous (``to_out_0`` vs ``proj_in``), so a name
is resolved by looking it up among the model's own module names, never by guessing where dots were.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.familyguess import describe_guess
from parity.lora.layouts import METADATA_KEY, TEXT_MODEL_PREFIX, detect_layout, kohya_prefixes
from parity.lora.neutral import LoraFile, LoraModule
from parity.lora.tensors import is_pickle_path, load_tensors
from parity.modules import lora_capable_modules

# What a LoRA weight may be stored as: the dtypes diffusers/PEFT train and save in, and that the
# float64 reference merge can upcast exactly. float8/float4, integers, bool and complex are refused.
LORA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# kohya trainers sometimes store alpha as an integer; any exact real scalar will do.
ALPHA_DTYPES = (*LORA_DTYPES, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


# The components a LoRA file can address in some zoo family; a key for one the model lacks means
# the file was made for another family (SDXL's text_encoder_2, a transformer on a UNet model).
KNOWN_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")


KOHYA_COMPONENT_PREFIXES = {"lora_unet_": "unet", "lora_te2_": "text_encoder_2", "lora_transformer_": "transformer"}


class _Resolver:
    """Maps a component-relative module name (dotted or kohya-underscored) onto the module tree."""

    def __init__(self, components: Mapping[str, nn.Module]) -> None:
        self.modules = {c: lora_capable_modules(m) for c, m in components.items()}
        self.underscored: dict[str, dict[str, list[str]]] = {}
        for c, mods in self.modules.items():
            table: dict[str, list[str]] = {}
            for name in mods:
                table.setdefault(name.replace(".", "_"), []).append(name)
            self.underscored[c] = table

    def dotted(self, component: str, name: str) -> str | None:
        mods = self.modules.get(component, {})
        for candidate in (name, name.removeprefix(TEXT_MODEL_PREFIX), TEXT_MODEL_PREFIX + name):
            if candidate in mods:
                return candidate
        return None

    def underscore(self, component: str, name: str, path: str | None, key: str) -> str | None:
        table = self.underscored.get(component, {})
        for candidate in (name, name.removeprefix("text_model_"), "text_model_" + name):
            hits = table.get(candidate)
            if hits and len(hits) > 1:
                raise ParityInputError(f"kohya name is ambiguous in this model: {hits}", path=path, key=key)
            if hits:
                return hits[0]
        return None

    def closest(self, component: str | None, name: str, n: int = 3) -> list[str]:
        """Dotted module names nearest to ``name`` (dotted or underscored), within ``component`` if known."""
        import difflib

        components = [component] if component in self.modules else list(self.modules)
        dotted = {m: m for c in components for m in self.modules[c]}
        underscored = {u: names[0] for c in components for u, names in self.underscored[c].items()}
        pool = dotted if "." in name or not underscored else underscored
        return [pool[m] for m in difflib.get_close_matches(name, list(pool), n=n, cutoff=0.5)]


@dataclass(frozen=True)
class _Pair:
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None
    down_key: str
    up_key: str
    keys: tuple[str, ...]  # every key of the pair, alpha included


def _alpha_value(t: torch.Tensor, path: str | None, key: str) -> float:
    if t.dtype not in ALPHA_DTYPES:
        raise ParityInputError(f"alpha has dtype {str(t.dtype).removeprefix('torch.')}; expected a real number",
                               path=path, key=key)
    if t.numel() != 1:
        raise ParityInputError(f"alpha must hold one number, holds {t.numel()} (shape {tuple(t.shape)})",
                               path=path, key=key)
    value = float(t.reshape(-1)[0].item())
    if not math.isfinite(value):
        raise ParityInputError(f"alpha is {value}, not a finite number", path=path, key=key)
    return value


def _pairs(tensors: dict[str, torch.Tensor], down_suffix: str, up_suffix: str, path: str | None) -> dict[str, _Pair]:
    """stem → its pair; a half without its partner is an error naming the key. Stray alphas are left out."""
    stems: dict[str, dict[str, str]] = {}
    for key in tensors:
        for part, suffix in (("down", down_suffix), ("up", up_suffix), ("alpha", ".alpha")):
            if key.endswith(suffix):
                stems.setdefault(key[: -len(suffix)], {})[part] = key
                break
    out = {}
    for stem, parts in stems.items():
        if "down" not in parts and "up" not in parts:
            continue  # a stray alpha; reported as unmatched by the caller
        if "down" not in parts or "up" not in parts:
            have, missing = ("down", "up") if "down" in parts else ("up", "down")
            suffix = {"down": down_suffix, "up": up_suffix}
            raise ParityInputError(
                f"{have} weight without its {missing} partner ({stem}{suffix[missing]} missing)",
                path=path,
                key=parts[have],
            )
        alpha = _alpha_value(tensors[parts["alpha"]], path, parts["alpha"]) if "alpha" in parts else None
        out[stem] = _Pair(tensors[parts["down"]], tensors[parts["up"]], alpha, parts["down"], parts["up"],
                          tuple(parts.values()))
    return out


def _real_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_config(component: str, config: dict, path: str | None) -> dict:
    """The alpha fields of one component's LoraConfig kwargs, checked where they are read."""
    def bad(message: str) -> ParityInputError:
        return ParityInputError(f"header metadata: {component}.{message}", path=path, key=METADATA_KEY)

    if "lora_alpha" in config and not _real_number(config["lora_alpha"]):
        raise bad(f"lora_alpha is {config['lora_alpha']!r}, not a finite number")
    patterns = config.get("alpha_pattern") or {}
    if not isinstance(patterns, dict):
        raise bad(f"alpha_pattern is a {type(patterns).__name__}, not an object")
    compiled = []
    for pattern, value in patterns.items():
        try:
            regex = re.compile(rf"(.*\.)?({pattern})$")
        except (re.error, RecursionError, OverflowError) as exc:
            raise bad(f"alpha_pattern {pattern!r} is not a valid regular expression ({exc})") from None
        if not _real_number(value):
            raise bad(f"alpha_pattern {pattern!r} maps to {value!r}, not a finite number")
        compiled.append((regex, float(value)))
    return {"lora_alpha": config.get("lora_alpha"), "alpha_pattern": compiled}


def _metadata_alphas(metadata: Mapping[str, str], path: str | None) -> dict[str, dict]:
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        packed = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, TypeError) as exc:
        raise ParityInputError(f"header metadata is not JSON ({exc})", path=path, key=METADATA_KEY) from None
    if not isinstance(packed, dict):
        raise ParityInputError(f"header metadata is a JSON {type(packed).__name__}, not an object",
                               path=path, key=METADATA_KEY)
    per_component: dict[str, dict] = {}
    for key, value in packed.items():
        component, _, field_name = key.partition(".")
        per_component.setdefault(component, {})[field_name] = value
    return {c: _checked_config(c, config, path) for c, config in per_component.items()}


def _alpha_from_config(config: dict, module: str) -> float | None:
    if config["lora_alpha"] is None:
        return None
    for regex, value in config["alpha_pattern"]:
        if regex.match(module):
            return value
    return float(config["lora_alpha"])


def _check_tensor(t: torch.Tensor, part: str, module: str, path: str | None, key: str) -> None:
    if t.dtype not in LORA_DTYPES:
        raise ParityInputError(
            f"{part} weight of {module} has dtype {str(t.dtype).removeprefix('torch.')}; "
            "LoRA weights must be float16, bfloat16, float32 or float64",
            path=path,
            key=key,
        )
    if t.ndim not in (2, 4):
        raise ParityInputError(
            f"{part} weight of {module} is {t.ndim}-d {tuple(t.shape)}; expected 2-d (Linear) or 4-d (Conv2d)",
            path=path,
            key=key,
        )


def _check_pair(m: LoraModule, pair: _Pair, target: nn.Module, path: str | None) -> None:
    """Everything the merge will rely on: float dtype, rank > 0, ranks agree, shapes fit the module, finite."""
    label = f"{m.component}.{m.module}"
    _check_tensor(m.down, "down", label, path, pair.down_key)
    _check_tensor(m.up, "up", label, path, pair.up_key)
    w = target.weight
    rank = m.down.shape[0]
    if rank == 0:
        raise ParityInputError(f"rank 0 LoRA on {label} (alpha/rank is undefined)", path=path, key=pair.down_key)
    if m.up.shape[1] != rank:
        raise ParityInputError(
            f"rank mismatch on {label}: down has rank {rank}, up has rank {m.up.shape[1]}", path=path, key=pair.up_key
        )
    if m.down.ndim != w.ndim or m.up.ndim != w.ndim:
        raise ParityInputError(
            f"{label} has a {w.ndim}-d weight and needs {w.ndim}-d down/up tensors, "
            f"got {m.down.ndim}-d/{m.up.ndim}-d",
            path=path,
            key=pair.down_key,
        )
    want_down = (rank, w.shape[1], *w.shape[2:])  # conv down carries the module's kernel
    want_up = (w.shape[0], rank, *(1,) * (w.ndim - 2))  # conv up is 1x1
    if tuple(m.down.shape) != want_down or tuple(m.up.shape) != want_up:
        raise ParityInputError(
            f"shape mismatch with module {label} (weight {tuple(w.shape)}): "
            f"down {tuple(m.down.shape)}, up {tuple(m.up.shape)}; expected {want_down} and {want_up}",
            path=path,
            key=pair.down_key,
        )
    for part, t, key in (("down", m.down, pair.down_key), ("up", m.up, pair.up_key)):
        if not torch.isfinite(t).all():
            raise ParityInputError(f"{part} weight of {label} holds NaN or Inf", path=path, key=key)


def _kohya_component(stem: str, prefix_to_component: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """(component of this model, foreign component, rest of the name) for a kohya stem."""
    for prefix, component in prefix_to_component.items():
        if stem.startswith(prefix):
            return component, None, stem[len(prefix):]
    for prefix, component in KOHYA_COMPONENT_PREFIXES.items():
        if stem.startswith(prefix):
            return None, component, stem[len(prefix):]
    return None, None, stem


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
        path = str(source)
        tensors, metadata = load_tensors(path, allow_pickle=allow_pickle)
        raw = tensors if is_pickle_path(path) else None
    keys = list(tensors)
    layout = detect_layout(keys, path)
    resolver = _Resolver(components)
    modules: dict[tuple[str, str], LoraModule] = {}
    pairs_of: dict[tuple[str, str], _Pair] = {}
    unmatched: list[str] = []
    hints: dict[str, tuple[str | None, str]] = {}  # unmatched key → (component, name) to suggest near
    foreign: dict[str, str] = {}  # key → a component this model does not have

    if layout == "kohya":
        prefix_to_component = {v + "_": k for k, v in kohya_prefixes(list(components)).items()}
        down_suffix, up_suffix = ".lora_down.weight", ".lora_up.weight"
    else:
        down_suffix, up_suffix = ".lora_A.weight", ".lora_B.weight"
    pairs = _pairs(tensors, down_suffix, up_suffix, path)
    per_component_cfg = _metadata_alphas(metadata, path) if layout == "diffusers" else {}
    for stem, pair in pairs.items():
        if layout == "kohya":
            component, elsewhere, rest = _kohya_component(stem, prefix_to_component)
            name = resolver.underscore(component, rest, path, pair.down_key) if component else None
        else:
            if layout == "diffusion_model":
                component, rest = "transformer", stem.removeprefix("diffusion_model.")
            else:
                component, _, rest = stem.partition(".")
            elsewhere = component if component in KNOWN_COMPONENTS and component not in components else None
            name = resolver.dotted(component, rest) if component in components else None
        if elsewhere is not None:
            foreign[pair.down_key] = elsewhere
        if name is None:
            unmatched.append(pair.down_key)
            hints[pair.down_key] = (component, rest)
            continue
        if (component, name) in modules:
            earlier = pairs_of[(component, name)].down_key
            raise ParityInputError(f"resolves to module {component}.{name}, which {earlier} already sets",
                                   path=path, key=pair.down_key)
        alpha = pair.alpha
        if alpha is None and component in per_component_cfg:
            alpha = _alpha_from_config(per_component_cfg[component], name)
        modules[(component, name)] = LoraModule(component, name, pair.down, pair.up, alpha)
        pairs_of[(component, name)] = pair

    # Keys no pair took: stray alphas, other layouts' suffixes, anything else.
    paired = {k for pair in pairs.values() for k in pair.keys}
    unmatched += [k for k in keys if k not in paired]

    if foreign:
        first = next(iter(foreign))
        missing = ", ".join(sorted(set(foreign.values())))
        raise ParityInputError(
            f"{len(foreign)} key(s) address {missing}, which this model does not have: "
            f"the file was made for another model family{describe_guess(keys)}",
            path=path,
            key=first,
        )
    for key, m in modules.items():
        _check_pair(m, pairs_of[key], resolver.modules[key[0]][key[1]], path)
    if (strict and unmatched) or not modules:
        first = unmatched[0] if unmatched else keys[0]
        hint = resolver.closest(*hints.get(first, (None, first.split(".")[0])))
        what = "no key matches a module of this model" if not modules else (
            f"{len(unmatched)} key(s) match no module of this model")
        raise ParityInputError(
            what + (f"; closest module names: {', '.join(hint)}" if hint else "") + describe_guess(keys),
            path=path,
            key=first,
        )
    return LoraFile(modules=modules, layout=layout, path=path, unmatched=unmatched, raw=raw)
