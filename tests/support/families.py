"""A test of a family this diffusers lacks is skipped with the registry's reason (the gate's old env runs
diffusers 0.35, which has no Z-Image or FLUX.2 pipeline), rather than failing on an import."""

from __future__ import annotations

import pytest

from parity.zoo import FAMILIES, UNAVAILABLE


def needs(*families: str) -> pytest.MarkDecorator:
    missing = [f for f in families if f not in FAMILIES]
    reason = "; ".join(f"{f}: {UNAVAILABLE.get(f, 'not a registered family')}" for f in missing)
    return pytest.mark.skipif(bool(missing), reason=reason or "present")
