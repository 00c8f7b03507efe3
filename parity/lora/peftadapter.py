"""PEFT adapters as ``save_pretrained`` writes them: a folder with ``adapter_model.safetensors`` (keys
``base_model.model.<module>.lora_A.weight``, no adapter name) and ``adapter_config.json`` (the LoraConfig:
``r``, ``lora_alpha``, ``rank_pattern``, ``alpha_pattern``, ``use_rslora``, ``use_dora``…).

The file holds no α: PEFT takes each module's rank and α from the config (peft tuners/lora/model.py
``_create_and_replace``: ``get_pattern_key`` over the pattern dicts, in order, matching
``(.*\\.)?(<pattern>)$`` against the module's name, else ``r``/``lora_alpha``), and scales by α/r, or by
α/√r with ``use_rslora`` (tuners/lora/layer.py ``update_layer``). That is re-implemented here, not
called, so the reference's α stays independent of PEFT. The file never says which model it was made
on either (``get_peft_model`` wraps one model: a UNet, a transformer or a text encoder): the reader
decides from which component's module tree the keys fit (parity/lora/reader.py).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

from parity.errors import ParityInputError

CONFIG_NAME = "adapter_config.json"
# What PEFT's save_pretrained writes (safe_serialization=True, its default) and the pickle it wrote before.
WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."
# PEFT's LoraConfig defaults, for a field the config leaves out (LoraConfig(**json) then has these).
DEFAULT_R = 8
DEFAULT_ALPHA = 8


def adapter_file(path: str) -> str:
    """The file ``--lora path`` means: ``path`` itself, or a PEFT adapter folder's ``adapter_model``."""
    if not os.path.isdir(path):
        return path
    for name in WEIGHT_NAMES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ParityInputError(f"is a directory without {WEIGHT_NAMES[0]} (a PEFT adapter folder holds one beside "
                           f"its {CONFIG_NAME}); pass the LoRA .safetensors file itself", path=path)


def is_peft_keys(keys: list[str]) -> bool:
    return any(k.startswith(PREFIX) for k in keys)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _patterns(config: dict, field: str, path: str, integer: bool) -> tuple[tuple[re.Pattern, str, float], ...]:
    raw = config.get(field) or {}
    if not isinstance(raw, dict):
        raise ParityInputError(f"{field} is a {type(raw).__name__}, not an object", path=path, key=field)
    out = []
    for pattern, value in raw.items():
        try:
            regex = re.compile(rf"(.*\.)?({pattern})$")  # peft utils/other.py get_pattern_key
        except (re.error, RecursionError, OverflowError) as exc:
            raise ParityInputError(f"{field} {pattern!r} is not a valid regular expression ({exc})",
                                   path=path, key=field) from None
        if not _number(value) or (integer and (int(value) != value or value <= 0)):
            kind = "a positive integer" if integer else "a finite number"
            raise ParityInputError(f"{field} {pattern!r} maps to {value!r}, not {kind}", path=path, key=field)
        out.append((regex, pattern, float(value)))
    return tuple(out)


@dataclass(frozen=True)
class AdapterConfig:
    """The fields of ``adapter_config.json`` that decide a module's scale, checked where read."""

    path: str
    r: int
    lora_alpha: float
    rank_pattern: tuple[tuple[re.Pattern, str, float], ...]
    alpha_pattern: tuple[tuple[re.Pattern, str, float], ...]
    use_rslora: bool
    base_model_class: str | None  # auto_mapping's base_model_class: the class get_peft_model wrapped

    @staticmethod
    def _match(patterns: tuple[tuple[re.Pattern, str, float], ...], module: str) -> tuple[str, float] | None:
        # the first pattern in the file's order wins, as get_pattern_key returns the first match
        return next(((p, v) for regex, p, v in patterns if regex.match(module)), None)

    def rank_of(self, module: str) -> tuple[int, str]:
        """(rank, which field gave it) for ``module``."""
        hit = self._match(self.rank_pattern, module)
        return (int(hit[1]), f"rank_pattern {hit[0]!r}") if hit else (self.r, "r")

    def alpha_of(self, module: str) -> float:
        hit = self._match(self.alpha_pattern, module)
        return hit[1] if hit else self.lora_alpha

    def stored_alpha(self, module: str) -> float:
        """The α that makes the neutral form's α/r PEFT's scale for ``module``: α itself, or α·√r under
        rsLoRA (whose scale is α/√r)."""
        rank, _ = self.rank_of(module)
        alpha = self.alpha_of(module)
        return alpha * math.sqrt(rank) if self.use_rslora else alpha


def has_config(weights_path: str) -> bool:
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(weights_path)), CONFIG_NAME))


def read_config(weights_path: str) -> AdapterConfig:
    """The ``adapter_config.json`` beside a PEFT adapter file; bad input naming it where it is missing or wrong.

    A missing config is refused, not defaulted: PEFT's own loader needs it, and its defaults (r = α = 8)
    would be a guess at the scale the check then holds diffusers to."""
    folder = os.path.dirname(os.path.abspath(weights_path))
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise ParityInputError(f"a PEFT adapter (keys under {PREFIX}) keeps its rank and alpha in the "
                               f"{CONFIG_NAME} beside it, and there is none in {folder}", path=weights_path)
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ParityInputError(f"not a readable JSON file ({exc})", path=path) from None
    if not isinstance(config, dict):
        raise ParityInputError(f"is a JSON {type(config).__name__}, not an object", path=path)
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise ParityInputError(f"a PEFT {peft_type} adapter: only LoRA adapters (peft_type LORA) are read",
                               path=path, key="peft_type")
    r = config.get("r", DEFAULT_R)
    if not _number(r) or int(r) != r or r <= 0:
        raise ParityInputError(f"r is {r!r}, not a positive integer", path=path, key="r")
    alpha = config.get("lora_alpha", DEFAULT_ALPHA)
    if not _number(alpha):
        raise ParityInputError(f"lora_alpha is {alpha!r}, not a finite number", path=path, key="lora_alpha")
    for flag in ("use_rslora", "use_dora"):
        if not isinstance(config.get(flag, False), bool):
            raise ParityInputError(f"{flag} is {config[flag]!r}, not true or false", path=path, key=flag)
    mapping = config.get("auto_mapping")
    base_class = mapping.get("base_model_class") if isinstance(mapping, dict) else None
    return AdapterConfig(path, int(r), float(alpha), _patterns(config, "rank_pattern", path, True),
                         _patterns(config, "alpha_pattern", path, False), config.get("use_rslora", False),
                         base_class if isinstance(base_class, str) else None)


def adapter_component(bodies: list[str], components: dict[str, object], fits, config: AdapterConfig,
                      path: str | None, first_key: str) -> str:
    """The component a PEFT adapter was made on: the one whose module tree every key fits (``fits(component,
    body)``: the name is there and the tensors' shapes are its weight's). Where several fit (SDXL's two
    CLIP encoders share their module names), the config's ``auto_mapping.base_model_class`` decides if it
    names exactly one of them; else the file is refused, saying which ones. Where none fits every key,
    the best one: the reader then names the keys that do not fit."""
    counts = {c: sum(1 for body in bodies if fits(c, body)) for c in components}
    full = [c for c, n in counts.items() if n == len(bodies)]
    if len(full) > 1 and config.base_model_class is not None:
        named = [c for c in full if type(components[c]).__name__ == config.base_model_class]
        full = named if len(named) == 1 else full
    if len(full) > 1:
        raise ParityInputError(f"a PEFT adapter's keys fit {' and '.join(full)} alike (same module names and "
                               f"shapes), and {CONFIG_NAME}'s auto_mapping does not say which model it was made on",
                               path=path, key=first_key)
    if full:
        return full[0]
    return max(counts, key=lambda c: counts[c])
