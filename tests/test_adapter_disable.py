"""disable_lora gives the base output bit-exactly (a skipped LoRA branch is the base forward), and
enable_lora gives the LoRA output back."""

from __future__ import annotations

import pytest
import torch

from parity.checks import hotswap as hs
from parity.checks.cases import api_output_cases
from parity.pytest.cases import params
from parity.zoo import FAMILIES, build_pipeline
from tests.support.adapters import load


@pytest.mark.parametrize("case", params(api_output_cases()))
def test_disable_lora_gives_base_output_and_enable_lora_restores_lora_output(case, tmp_path):
    fam = FAMILIES[case.family]
    base = hs.run(fam, build_pipeline(fam), case.level)
    loaded = load(case.family, tmp_path)
    with_lora = hs.run(fam, loaded.pipe, case.level)
    assert not torch.equal(with_lora, base), "the LoRA did not change the output: the check could not fail"

    loaded.pipe.disable_lora()
    disabled = hs.run(fam, loaded.pipe, case.level)
    loaded.pipe.enable_lora()
    enabled = hs.run(fam, loaded.pipe, case.level)

    assert torch.equal(disabled, base), f"disabled output differs from base by {(disabled - base).abs().max():.3g}"
    assert torch.equal(enabled, with_lora), f"re-enabled output differs by {(enabled - with_lora).abs().max():.3g}"
