"""Alpha from diffusers' safetensors header (``lora_adapter_metadata``: LoraConfig kwargs per
component), checked where it is read: a malformed header is bad input naming the key."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from parity.errors import ParityInputError

METADATA_KEY = "lora_adapter_metadata"


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


def metadata_alphas(metadata: Mapping[str, str], path: str | None) -> dict[str, dict]:
    """component → its checked alpha fields; {} for a file without the header."""
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


def alpha_from_config(config: dict, module: str) -> float | None:
    """The alpha PEFT gives ``module`` under this LoraConfig: alpha_pattern first, then lora_alpha."""
    if config["lora_alpha"] is None:
        return None
    for regex, value in config["alpha_pattern"]:
        if regex.match(module):
            return value
    return float(config["lora_alpha"])

