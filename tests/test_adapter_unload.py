"""unload_lora_weights removes every LoRA layer and restores every base weight and the base output;
after a fuse it keeps the fused weights instead (a finding, pinned on its case)."""

from __future__ import annotations

import pytest
import torch

from parity.checks import hotswap as hs
from parity.checks.cases import api_family_cases, unload_cases
from parity.checks.fuse import snapshot
from parity.pytest.cases import params
from parity.zoo import FAMILIES, build_pipeline
from tests.support.adapters import differing, load, lora_layers


@pytest.mark.parametrize("case", params(unload_cases()))
def test_unload_lora_weights_restores_every_base_weight_and_the_base_output(case, tmp_path):
    fam = FAMILIES[case.family]
    base = hs.run(fam, build_pipeline(fam), case.level)
    loaded = load(case.family, tmp_path, names=("a",) if case.after_fuse else ("a", "b"))
    if case.after_fuse:
        loaded.pipe.fuse_lora(components=list(loaded.components))

    loaded.pipe.unload_lora_weights()

    assert not lora_layers(loaded.components), "LoRA layers left after unload"
    assert differing(loaded.before, snapshot(loaded.components)) == []
    assert loaded.pipe.get_list_adapters() == {}
    assert torch.equal(hs.run(fam, loaded.pipe, case.level), base)


@pytest.mark.parametrize("case", params(api_family_cases()))
def test_unload_after_fuse_keeps_the_fused_weights(case, tmp_path):
    """What diffusers does (recurse_remove_peft_layers swaps each LoraLayer for its base_layer, which
    holds the fused weight, with no unmerge): unload after fuse leaves the fused weights in place."""
    loaded = load(case.family, tmp_path, names=("a",))
    loaded.pipe.fuse_lora(components=list(loaded.components))
    fused = snapshot(loaded.components)

    loaded.pipe.unload_lora_weights()

    assert not lora_layers(loaded.components)
    assert differing(fused, snapshot(loaded.components)) == []
