"""A fuse that fails leaves the model exactly as it was: no layer half-fused, no merge recorded.

diffusers fuses layer by layer, so its own failure leaves the earlier layers fused (pinned in
tests/test_findings.py); ``parity.checks.fuse.fuse_all_or_nothing`` is what the suite fuses through.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peft.tuners.lora import layer as lora_layer

from parity.checks.fuse import fuse_all_or_nothing, snapshot
from parity.errors import ParityInputError
from tests.support.failed_fuse import Loaded, changed_tensors, loaded_sd15, merged_layers


@pytest.fixture
def poisoned() -> Iterator[Loaded]:
    yield loaded_sd15(poison=True)


def test_nan_refused_by_safe_fusing_leaves_every_weight_bit_identical(poisoned):
    with pytest.raises(ParityInputError) as info:
        fuse_all_or_nothing(poisoned.pipe, poisoned.components, safe_fusing=True)

    assert info.value.key == poisoned.poisoned, str(info.value)
    assert changed_tensors(poisoned.before, snapshot(poisoned.components)) == []
    assert merged_layers(poisoned.components) == []


def fail_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """PEFT's Linear delta raises on its n-th call (after n-1 layers fused); returns the calls seen."""
    original, calls = lora_layer.Linear.get_delta_weight, []

    def failing(self, adapter):
        calls.append(adapter)
        if len(calls) == n:
            raise RuntimeError("injected failure midway through the fuse")
        return original(self, adapter)

    monkeypatch.setattr(lora_layer.Linear, "get_delta_weight", failing)
    return calls


def test_error_midway_through_a_fuse_leaves_every_weight_bit_identical(monkeypatch):
    loaded = loaded_sd15(poison=False)
    calls = fail_on_call(monkeypatch, 10)

    with pytest.raises(RuntimeError, match="injected failure"):
        fuse_all_or_nothing(loaded.pipe, loaded.components)

    assert len(calls) == 10, "the failure must come after some layers fused, or this shows nothing"
    assert changed_tensors(loaded.before, snapshot(loaded.components)) == []
    assert merged_layers(loaded.components) == []


def test_a_fuse_after_a_refused_one_fuses_from_the_untouched_base(monkeypatch):
    loaded = loaded_sd15(poison=False)
    fail_on_call(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        fuse_all_or_nothing(loaded.pipe, loaded.components)
    monkeypatch.undo()

    fresh = loaded_sd15(poison=False)
    fuse_all_or_nothing(loaded.pipe, loaded.components)
    fuse_all_or_nothing(fresh.pipe, fresh.components)

    assert changed_tensors(snapshot(fresh.components), snapshot(loaded.components)) == []
