"""The library versions a result was produced with: golden manifests, check reports and benchmarks name them."""

from __future__ import annotations

import sys
from importlib import metadata

VERSIONED_PACKAGES = ("torch", "diffusers", "peft", "transformers", "safetensors", "lora-parity")


def library_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = sys.version.split()[0]
    return out
