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


def major_version(package: str) -> int:
    """The installed major version (0 when not installed): for code paths that differ across majors."""
    try:
        return int(metadata.version(package).split(".")[0])
    except metadata.PackageNotFoundError:
        return 0


def version_at_least(package: str, minimum: tuple[int, ...]) -> bool:
    """Whether the installed release (its leading numbers, read from the metadata without importing the
    package) is at least ``minimum``; False when not installed."""
    try:
        release = metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    numbers = []
    for part in release.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(int(digits))
        if not part.isdigit():  # 0.36.0rc1, 1.0.0.dev0: the numbers so far
            break
    return tuple(numbers) >= minimum
