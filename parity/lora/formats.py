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
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.familyguess import describe_guess
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
    # The tensors as torch.load(weights_only=True) returned them, for a pickle read with allow_pickle:
    # handed to diffusers instead of the path, so diffusers never unpickles the file itself.
    raw: dict[str, torch.Tensor] | None = field(default=None, repr=False)

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

# What a LoRA weight may be stored as: the dtypes diffusers/PEFT train and save in, and that the
# float64 reference merge can upcast exactly. float8/float4, integers, bool and complex are refused.
LORA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# kohya trainers sometimes store alpha as an integer; any exact real scalar will do.
ALPHA_DTYPES = (*LORA_DTYPES, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
# The components a LoRA file can address in some zoo family; a key for one the model lacks means
# the file was made for another family (SDXL's text_encoder_2, a transformer on a UNet model).
KNOWN_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")
KOHYA_COMPONENT_PREFIXES = {"lora_unet_": "unet", "lora_te2_": "text_encoder_2", "lora_transformer_": "transformer"}
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container, a bare pickle protocol 2+


def is_pickle_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(PICKLE_SUFFIXES)


def _load_pickle(path: str) -> dict[str, torch.Tensor]:
    """A torch.save'd state dict through torch's weights-only unpickler: it rebuilds tensors and
    containers and refuses every other global, so a malicious __reduce__ never runs."""
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...: all say "not loadable"
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ParityInputError(
            f"torch.load(weights_only=True) refused it ({type(exc).__name__}: {first_line})", path=path
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ParityInputError("is not a state dict of named tensors", path=path)
    return obj


def _read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ParityInputError(f"not a readable safetensors file ({exc}){_pickle_hint(path)}", path=path) from None
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, which derives from BaseException and is
        # not importable by name; anything else (KeyboardInterrupt, SystemExit) goes on up.
        if type(exc).__name__ != "PanicException":
            raise
        raise ParityInputError(f"not a readable safetensors file (reader panicked: {exc})", path=path) from None
    return tensors, metadata


def _pickle_hint(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:  # unreadable: the error being raised already says so
        return ""
    if head.startswith(PICKLE_MAGIC):
        return "; it looks like a torch pickle: give it a .pt suffix and pass --allow-pickle, or convert it"
    return ""


def load_tensors(
    path: str | os.PathLike, allow_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file (or, with ``allow_pickle``, of a
    .bin/.pt/.pth/.ckpt/.pkl loaded weights-only); every failure is a ParityInputError naming the file."""
    path = str(path)
    if os.path.isdir(path):
        raise ParityInputError("is a directory, expected a .safetensors file", path=path)
    if not os.path.exists(path):
        raise ParityInputError("no such file", path=path)
    if os.path.getsize(path) == 0:
        raise ParityInputError("file is empty", path=path)
    if is_pickle_path(path):
        if not allow_pickle:
            raise ParityInputError(
                "pickle checkpoints are refused (unpickling runs arbitrary code); convert it to .safetensors, "
                "or pass --allow-pickle to load it with torch.load(weights_only=True)",
                path=path,
            )
        tensors, metadata = _load_pickle(path), {}
    else:
        tensors, metadata = _read_safetensors(path)
    if not tensors:
        raise ParityInputError("holds no tensors", path=path)
    return tensors, metadata


def safetensors_copy(path: str, folder: str, tag: str = "") -> str:
    """A pickle read weights-only and written back as ``folder/<tag><name>.safetensors``: for code that
    can only take paths, so that nothing downstream ever unpickles the original."""
    from safetensors.torch import save_file

    tensors, _ = load_tensors(path, allow_pickle=True)
    out = os.path.join(folder, f"{tag}{os.path.basename(path)}.safetensors")
    # torch.save keeps views and shared storage; safetensors wants each tensor on its own.
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, out)
    return out


def diffusers_source(lora: LoraFile) -> str | dict[str, torch.Tensor]:
    """What to hand diffusers' loader for ``lora``: the path of a safetensors file, or a copy of the
    weights-only-loaded tensors of a pickle (a copy: diffusers' kohya conversion pops keys)."""
    if lora.raw is not None:
        return dict(lora.raw)
    if lora.path is None:
        raise ValueError("a LoraFile read from a state dict has no source to hand diffusers")
    return lora.path


def detect_layout(keys: list[str], path: str | None = None) -> str:
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")) for k in keys):
        return "kohya"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "diffusion_model"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    raise ParityInputError("unrecognised LoRA layout (no lora_A/lora_B or lora_down/lora_up keys)"
                           + describe_guess(keys), path=path, key=sorted(keys)[0] if keys else None)


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
