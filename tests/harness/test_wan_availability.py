"""The wan family is left out with its reason under a diffusers without the two-expert WanPipeline
(before 0.35), and present under the gate's old diffusers (0.35.2) and this one."""

from __future__ import annotations

import pytest

from parity import versions
from parity.zoo.wan import FAMILY


@pytest.mark.parametrize("release", ["0.35.0", "0.35.2", "0.42.1"])
def test_wan_is_present_from_diffusers_0_35(monkeypatch, release):
    monkeypatch.setattr(versions.metadata, "version", lambda package: release)
    assert FAMILY.unavailable() is None


@pytest.mark.parametrize("release", ["0.34.0", "0.32.2"])
def test_wan_is_absent_with_its_reason_before_0_35(monkeypatch, release):
    # negative control: the version that lacks transformer_2 is refused, naming itself and what it lacks
    monkeypatch.setattr(versions.metadata, "version", lambda package: release)
    why = FAMILY.unavailable()
    assert why is not None and release in why and "transformer_2" in why


def test_wan_is_present_under_this_diffusers():
    assert FAMILY.unavailable() is None
