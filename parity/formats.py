"""LoRA file layouts, written and read through one format-neutral representation.

Layouts
  diffusers        ``unet.<module>.lora_A.weight`` / ``lora_B`` (also ``text_encoder.``, ``text_encoder_2.``,
                   ``transformer.``); alpha, when given, in the safetensors header under
                   ``lora_adapter_metadata`` as diffusers writes it (LoraConfig kwargs per component).
  kohya            ``lora_unet_<module_with_underscores>.lora_down.weight`` / ``lora_up`` / ``.alpha``;
                   text encoders ``lora_te_`` (``lora_te1_``/``lora_te2_`` with two). LoCon conv LoRAs are
                   the same layout on Conv2d modules (3x3 or 1x1 down, 1x1 up).
  diffusion_model  ``diffusion_model.<module>.lora_A.weight`` / ``lora_B`` / ``.alpha`` (ComfyUI, ai-toolkit)
                   for transformer families whose loader strips the prefix (Qwen-Image); not Flux.1, whose
                   loader converts ``diffusion_model.`` only in kohya files with BFL module names.

Reading resolves every key against the real module tree. kohya names replace dots by underscores,
which is ambiguous (``to_out_0`` vs ``proj_in``), so a name is resolved by looking it up among the
model's own module names, never by guessing where dots were.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.modules import lora_capable_modules

LAYOUTS = ("diffusers", "kohya", "diffusion_model")
METADATA_KEY = "lora_adapter_metadata"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# transformers 5 flattened CLIPTextModel (no ``text_model.`` level); every published file still has it.
TEXT_MODEL_PREFIX = "text_model."


@dataclass(frozen=True)
class LoraModule:
    """One LoRA pair on one module: ΔW = (alpha/rank) · up @ down."""

    component: str
    module: str  # canonical module name inside the component
    down: torch.Tensor  # A: (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # B: (out, r) or (out, r, 1, 1)
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def effective_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def is_conv(self) -> bool:
        return self.down.ndim == 4


@dataclass
class LoraFile:
    modules: dict[tuple[str, str], LoraModule]
    layout: str
    path: str | None = None
    unmatched: list[str] = field(default_factory=list)

    def components(self) -> list[str]:
        return sorted({c for c, _ in self.modules})


def kohya_prefixes(components: list[str]) -> dict[str, str]:
    """Component → kohya key prefix; SDXL's two text encoders become te1/te2."""
    two_te = "text_encoder_2" in components
    out = {"unet": "lora_unet", "transformer": "lora_transformer"}
    out["text_encoder"] = "lora_te1" if two_te else "lora_te"
    out["text_encoder_2"] = "lora_te2"
    return {c: out[c] for c in components if c in out}


# ---------------------------------------------------------------- writing


def _kohya_module_name(component: str, module: str) -> str:
    if component.startswith("text_encoder") and not module.startswith(TEXT_MODEL_PREFIX):
        module = TEXT_MODEL_PREFIX + module
    return module.replace(".", "_")


def _diffusers_metadata(lora: LoraFile) -> dict[str, str] | None:
    if all(m.alpha is None for m in lora.modules.values()):
        return None
    packed: dict[str, object] = {}
    for component in lora.components():
        mods = [m for (c, _), m in sorted(lora.modules.items()) if c == component]
        ranks = [m.rank for m in mods]
        alphas = [m.effective_alpha for m in mods]
        r = max(set(ranks), key=ranks.count)
        a = max(set(alphas), key=alphas.count)
        packed[f"{component}.r"] = r
        packed[f"{component}.lora_alpha"] = a
        packed[f"{component}.target_modules"] = [m.module for m in mods]
        packed[f"{component}.rank_pattern"] = {re.escape(m.module): m.rank for m in mods if m.rank != r}
        packed[f"{component}.alpha_pattern"] = {
            re.escape(m.module): m.effective_alpha for m in mods if m.effective_alpha != a
        }
    return {METADATA_KEY: json.dumps(packed), "format": "pt"}


def to_state_dict(lora: LoraFile, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The tensors (and safetensors header metadata) ``layout`` stores for ``lora``."""
    sd: dict[str, torch.Tensor] = {}
    metadata = None
    if layout == "diffusers":
        for (component, module), m in lora.modules.items():
            sd[f"{component}.{module}.lora_A.weight"] = m.down
            sd[f"{component}.{module}.lora_B.weight"] = m.up
        metadata = _diffusers_metadata(lora)
    elif layout == "kohya":
        prefixes = kohya_prefixes(lora.components())
        for (component, module), m in lora.modules.items():
            if component not in prefixes:
                raise ValueError(f"kohya layout has no prefix for component {component!r}")
            stem = f"{prefixes[component]}_{_kohya_module_name(component, module)}"
            sd[f"{stem}.lora_down.weight"] = m.down
            sd[f"{stem}.lora_up.weight"] = m.up
            if m.alpha is not None:
                sd[f"{stem}.alpha"] = torch.tensor(float(m.alpha), dtype=m.down.dtype)
    elif layout == "diffusion_model":
        for (component, module), m in lora.modules.items():
            if component != "transformer":
                raise ValueError("the diffusion_model layout holds transformer LoRAs only")
            sd[f"diffusion_model.{module}.lora_A.weight"] = m.down
            sd[f"diffusion_model.{module}.lora_B.weight"] = m.up
            if m.alpha is not None:
                sd[f"diffusion_model.{module}.alpha"] = torch.tensor(float(m.alpha), dtype=m.down.dtype)
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    return {k: v.contiguous() for k, v in sd.items()}, metadata


def save_lora(lora: LoraFile, path: str | os.PathLike, layout: str) -> str:
    from safetensors.torch import save_file

    sd, metadata = to_state_dict(lora, layout)
    save_file(sd, str(path), metadata=metadata)
    return str(path)


# ---------------------------------------------------------------- reading


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; every failure names the file."""
    path = str(path)
    if os.path.isdir(path):
        raise ParityInputError("is a directory, expected a .safetensors file", path=path)
    if not os.path.exists(path):
        raise ParityInputError("no such file", path=path)
    if path.endswith(PICKLE_SUFFIXES):
        raise ParityInputError(
            "pickle checkpoints are refused (unpickling runs arbitrary code); convert it to .safetensors",
            path=path,
        )
    if os.path.getsize(path) == 0:
        raise ParityInputError("file is empty", path=path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ParityInputError(f"not a readable safetensors file ({exc})", path=path) from None
    if not tensors:
        raise ParityInputError("holds no tensors", path=path)
    return tensors, metadata


def detect_layout(keys: list[str], path: str | None = None) -> str:
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")) for k in keys):
        return "kohya"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "diffusion_model"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    raise ParityInputError("unrecognised LoRA layout (no lora_A/lora_B or lora_down/lora_up keys)", path=path,
                           key=sorted(keys)[0] if keys else None)


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

    def closest(self, component: str, name: str, n: int = 3) -> list[str]:
        import difflib

        pool = list(self.modules.get(component, {})) or [m for mods in self.modules.values() for m in mods]
        return difflib.get_close_matches(name, pool, n=n, cutoff=0.5)


def _scalar(t: torch.Tensor) -> float:
    return float(t.reshape(-1)[0].item())


def _pairs(tensors: dict[str, torch.Tensor], down_suffix: str, up_suffix: str, path: str | None) -> dict[str, tuple]:
    """stem → (down, up, alpha or None); a half without its partner is an error naming the key."""
    stems: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for part, suffix in (("down", down_suffix), ("up", up_suffix), ("alpha", ".alpha")):
            if key.endswith(suffix):
                stems.setdefault(key[: -len(suffix)], {})[part] = value
                break
    out = {}
    for stem, parts in stems.items():
        if "down" not in parts or "up" not in parts:
            have, missing = ("down", "up") if "down" in parts else ("up", "down")
            if "down" not in parts and "up" not in parts:
                continue  # a stray alpha; reported as unmatched below
            suffix = {"down": down_suffix, "up": up_suffix}
            raise ParityInputError(
                f"{have} weight without its {missing} partner ({stem}{suffix[missing]} missing)",
                path=path,
                key=stem + suffix[have],
            )
        alpha = _scalar(parts["alpha"]) if "alpha" in parts else None
        out[stem] = (parts["down"], parts["up"], alpha)
    return out


def _metadata_alphas(metadata: dict[str, str], path: str | None) -> dict[str, dict]:
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        packed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ParityInputError(f"header metadata is not JSON ({exc})", path=path, key=METADATA_KEY) from None
    per_component: dict[str, dict] = {}
    for key, value in packed.items():
        component, _, field_name = key.partition(".")
        per_component.setdefault(component, {})[field_name] = value
    return per_component


def _alpha_from_config(config: dict, module: str) -> float | None:
    if "lora_alpha" not in config:
        return None
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return float(value)
    return float(config["lora_alpha"])


def _check_shapes(m: LoraModule, target: nn.Module, path: str | None, key: str) -> None:
    w = target.weight
    if m.down.shape[0] != m.up.shape[1]:
        raise ParityInputError(
            f"rank mismatch: down has rank {m.down.shape[0]}, up has rank {m.up.shape[1]}", path=path, key=key
        )
    if m.down.shape[1] != w.shape[1] or m.up.shape[0] != w.shape[0]:
        raise ParityInputError(
            f"shape mismatch with module {m.component}.{m.module} (weight {tuple(w.shape)}): "
            f"down {tuple(m.down.shape)}, up {tuple(m.up.shape)}",
            path=path,
            key=key,
        )
    if m.down.ndim != w.ndim or m.up.ndim != w.ndim:
        raise ParityInputError(
            f"a {w.ndim}-d weight needs {w.ndim}-d down/up tensors, got {m.down.ndim}-d/{m.up.ndim}-d",
            path=path,
            key=key,
        )
    for part, t in (("down", m.down), ("up", m.up)):
        if not torch.isfinite(t).all():
            raise ParityInputError(f"{part} weight holds NaN or Inf", path=path, key=key)


def read_lora(
    source: str | os.PathLike | dict[str, torch.Tensor],
    components: Mapping[str, nn.Module],
    metadata: dict[str, str] | None = None,
    strict: bool = True,
) -> LoraFile:
    """Parse a LoRA file (or state dict) against the model it is meant for.

    With ``strict``, a key that resolves to no module is an error naming it and the closest module
    names; otherwise such keys are listed in ``LoraFile.unmatched``.
    """
    if isinstance(source, dict):
        tensors, path = source, None
        metadata = metadata or {}
    else:
        path = str(source)
        tensors, metadata = load_tensors(path)
    keys = list(tensors)
    layout = detect_layout(keys, path)
    resolver = _Resolver(components)
    modules: dict[tuple[str, str], LoraModule] = {}
    unmatched: list[str] = []

    if layout == "kohya":
        prefix_to_component = {v + "_": k for k, v in kohya_prefixes(list(components)).items()}
        for stem, (down, up, alpha) in _pairs(tensors, ".lora_down.weight", ".lora_up.weight", path).items():
            key = stem + ".lora_down.weight"
            component = next((c for p, c in prefix_to_component.items() if stem.startswith(p)), None)
            name = None
            if component is not None:
                prefix = next(p for p, c in prefix_to_component.items() if c == component)
                name = resolver.underscore(component, stem[len(prefix):], path, key)
            if name is None:
                unmatched.append(key)
                continue
            modules[(component, name)] = LoraModule(component, name, down, up, alpha)
    else:
        per_component_cfg = _metadata_alphas(metadata, path) if layout == "diffusers" else {}
        for stem, (down, up, alpha) in _pairs(tensors, ".lora_A.weight", ".lora_B.weight", path).items():
            key = stem + ".lora_A.weight"
            if layout == "diffusion_model":
                component, rest = "transformer", stem.removeprefix("diffusion_model.")
            else:
                component, _, rest = stem.partition(".")
            name = resolver.dotted(component, rest) if component in components else None
            if name is None:
                unmatched.append(key)
                continue
            if alpha is None and component in per_component_cfg:
                alpha = _alpha_from_config(per_component_cfg[component], name)
            modules[(component, name)] = LoraModule(component, name, down, up, alpha)

    known_suffixes = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha")
    unmatched += [k for k in keys if not k.endswith(known_suffixes)]
    for (component, name), m in modules.items():
        target = resolver.modules[component][name]
        _check_shapes(m, target, path, f"{component}.{name}")
    if strict and unmatched:
        first = unmatched[0]
        hint = resolver.closest(next(iter(components)), first.split(".")[0])
        raise ParityInputError(
            f"{len(unmatched)} key(s) match no module of this model"
            + (f"; closest module names: {', '.join(hint)}" if hint else ""),
            path=path,
            key=first,
        )
    if not modules:
        raise ParityInputError("no key matches a module of this model", path=path, key=keys[0])
    return LoraFile(modules=modules, layout=layout, path=path, unmatched=unmatched)
