"""The all-or-nothing fuse checks can fail: without the write-back, a refused fuse leaves layers fused."""

from __future__ import annotations

import pytest

import parity.checks.fuse
from parity.checks.fuse import fuse_all_or_nothing, snapshot
from parity.errors import ParityInputError
from tests.support.failed_fuse import changed_tensors, loaded_sd15, merged_layers


def test_without_the_write_back_a_refused_fuse_is_seen_half_applied(monkeypatch):
    loaded = loaded_sd15(poison=True)
    monkeypatch.setattr(parity.checks.fuse, "_write_back", lambda saved: None)

    with pytest.raises(ParityInputError):
        fuse_all_or_nothing(loaded.pipe, loaded.components, safe_fusing=True)

    assert changed_tensors(loaded.before, snapshot(loaded.components)), "the check would miss a half-fused model"
    assert merged_layers(loaded.components)
