"""Where diffusers put an adapter is read from PEFT's tuner layers of every kind it builds: LoRA (lora_A),
and the LoKr / LoHa layers of the LyCORIS files the Z-Image and FLUX.2 loaders convert. Before, only lora_A
was looked at, and a FLUX.2 LoKr file diffusers loaded was reported as nothing loaded."""

from __future__ import annotations

import pytest
from torch import nn

from parity.checks.fuse import placements
from parity.modules import held_adapters


def _tuned(config) -> nn.Module:
    from peft import inject_adapter_in_model

    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    return inject_adapter_in_model(config, model, adapter_name="a")


@pytest.mark.parametrize("kind", ["lora", "lokr", "loha"])
def test_every_peft_tuner_layer_diffusers_builds_is_a_placement(kind):
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    config = {"lora": LoraConfig, "lokr": LoKrConfig, "loha": LoHaConfig}[kind](r=2, target_modules=["0"])
    model = _tuned(config)
    assert placements({"transformer": model}, "a") == {("transformer", "0")}
    assert held_adapters(model[0]) == {"a"}


def test_another_adapter_or_a_plain_layer_is_no_placement():
    # negative control: the adapter asked for is not the one held, and an untuned Linear holds none
    from peft import LoKrConfig

    model = _tuned(LoKrConfig(r=2, target_modules=["0"]))
    assert placements({"transformer": model}, "b") == set()
    assert held_adapters(model[1]) == set()
