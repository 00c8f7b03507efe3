"""fal's FLUX.2 [klein] files (issue 32 item 2): PEFT's own keys (``base_model.model.`` + BFL's FLUX.2 names,
lora_A / lora_B), published alone, with no adapter_config.json and no alpha (diffusers #13169 "FAL trained loras
use the default peft key naming"; Flux2LoraLoaderMixin.lora_state_dict renames base_model.model. to
diffusion_model. and loads them at α = r). The writer is tests/support/trainer_flux2.py fal_flux2; the verdict
on flux2-klein is the trainer-file table's. The controls (names decide, not the missing config) are in
tests/harness/test_fal_flux2_controls.py."""

from __future__ import annotations

import json

from parity.lora.layouts import save_lora
from parity.lora.neutral import LoraModule
from parity.lora.reader import read_lora
from tests.support import trainer_flux2
from tests.support.trainer_common import RANK, tiny_components
from tests.support.families import needs

pytestmark = needs("flux2-klein")

# the tiny klein's block Linears: 2 double blocks x 8 BFL Linears (img/txt qkv fused), 2 single x 2
DIFFUSERS_MODULES = 2 * (8 + 4) + 2 * 2


def test_a_lone_fal_file_is_read_at_alpha_r_into_the_transformer(tmp_path):
    lora = read_lora(trainer_flux2.fal_flux2(tmp_path / "flux-spritesheet-lora.safetensors"),
                     tiny_components("flux2-klein"))
    assert lora.layout == "fal-flux2" and lora.components() == ["transformer"] and lora.unmatched == []
    assert len(lora.modules) == DIFFUSERS_MODULES
    assert all(isinstance(m, LoraModule) and m.alpha is None and m.effective_alpha == m.rank == RANK
               for m in lora.modules.values())


def test_with_an_adapter_config_beside_it_the_configs_alpha_rules(tmp_path):
    """A PEFT adapter folder on BFL's names is still PEFT's: its lora_alpha, not α = r."""
    path = trainer_flux2.fal_flux2(tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": RANK, "lora_alpha": 3.0}))
    lora = read_lora(tmp_path, tiny_components("flux2-klein"))
    assert lora.layout == "fal-flux2"
    assert {m.effective_alpha for m in lora.modules.values()} == {3.0}


def test_the_registry_writer_round_trips_a_fal_file(tmp_path):
    """layouts.save_lora in fal-flux2 (BFL names, q|k|v fused, α/r into the up factor) reads back module for module."""
    comps = tiny_components("flux2-klein")
    lora = read_lora(trainer_flux2.fal_flux2(tmp_path / "fal.safetensors"), comps)
    back = read_lora(save_lora(lora, tmp_path / "again.safetensors", "fal-flux2", comps), comps)
    assert back.layout == "fal-flux2" and set(back.modules) == set(lora.modules)
    for key, m in lora.modules.items():
        assert _delta(m).equal(_delta(back.modules[key])), key


def _delta(m: LoraModule):
    return (m.effective_alpha / m.rank) * (m.up.double() @ m.down.double())
