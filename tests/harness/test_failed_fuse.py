"""A fuse that fails leaves the model exactly as it was: no layer half-fused, no merge recorded.

diffusers fuses layer by layer, so its own failure leaves the earlier layers fused (pinned in
tests/test_findings.py); ``parity.checks.fuse.fuse_all_or_nothing`` is what the suite fuses through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.lora import layer as lora_layer

from parity.errors import ParityInputError
from parity.lora.formats import to_state_dict
from parity.checks.fuse import fuse_all_or_nothing, snapshot
from parity.lora.synth import synth_lora
from parity.zoo import build_pipeline, get_family


@dataclass
class Loaded:
    pipe: Any
    components: dict
    before: dict  # every base tensor after loading, before any fuse
    poisoned: str | None  # component.module whose LoRA B holds a NaN


def _loaded(poison: bool) -> Loaded:
    family = get_family("sd15")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    lora = synth_lora(components, family.default_targets, seed=11, rank=4, alpha=4.0)
    sd, _ = to_state_dict(lora, "diffusers")
    poisoned = None
    if poison:
        # Past the first layers diffusers fuses, so a non-atomic fuse has fused some before refusing.
        keys = sorted(k for k in sd if k.startswith("unet.") and ".lora_B." in k)
        key = keys[len(keys) // 2]
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = float("nan")
        poisoned = key.removesuffix(".lora_B.weight")
    # A state dict, not our reader: the reader refuses NaN before diffusers ever sees it.
    pipe.load_lora_weights(sd, adapter_name="a0")
    return Loaded(pipe, components, snapshot(components), poisoned)


def changed_tensors(before: dict, after: dict) -> list[str]:
    return [f"{c}.{k}" for c in before for k, t in before[c].items() if not torch.equal(t, after[c][k])]


def merged_layers(components: dict) -> list[str]:
    return [name for m in components.values() for name, layer in m.named_modules()
            if isinstance(layer, LoraLayer) and layer.merged_adapters]


@pytest.fixture
def poisoned() -> Iterator[Loaded]:
    yield _loaded(poison=True)


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
    loaded = _loaded(poison=False)
    calls = fail_on_call(monkeypatch, 10)

    with pytest.raises(RuntimeError, match="injected failure"):
        fuse_all_or_nothing(loaded.pipe, loaded.components)

    assert len(calls) == 10, "the failure must come after some layers fused, or this shows nothing"
    assert changed_tensors(loaded.before, snapshot(loaded.components)) == []
    assert merged_layers(loaded.components) == []


def test_a_fuse_after_a_refused_one_fuses_from_the_untouched_base(monkeypatch):
    loaded = _loaded(poison=False)
    fail_on_call(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        fuse_all_or_nothing(loaded.pipe, loaded.components)
    monkeypatch.undo()

    fresh = _loaded(poison=False)
    fuse_all_or_nothing(loaded.pipe, loaded.components)
    fuse_all_or_nothing(fresh.pipe, fresh.components)

    assert changed_tensors(snapshot(fresh.components), snapshot(loaded.components)) == []
