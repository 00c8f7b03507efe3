"""save_lora_weights and save_lora_adapter write files that load back to bit-identical LoRA parameters,
with the alpha kept."""

from __future__ import annotations

import pytest
import torch
from peft.utils import get_peft_model_state_dict

from parity.checks import hotswap as hs
from parity.checks.cases import api_family_cases
from parity.lora.reader import read_lora
from parity.lora.tensors import load_tensors
from parity.pytest.cases import params
from parity.zoo import build_pipeline
from tests.support.adapters import assert_same_tensors, load, lora_params

CASES = params(api_family_cases(text_encoder=True))


@pytest.mark.parametrize("case", CASES)
def test_save_lora_weights_then_load_round_trips_every_tensor_bit_exact(case, tmp_path):
    loaded = load(case.family, tmp_path, names=("a",))
    fam, pipe = loaded.family, loaded.pipe
    layers = {
        f"{c}_lora_layers": get_peft_model_state_dict(m, adapter_name="a")
        for c, m in loaded.components.items()
        if hasattr(m, "peft_config")
    }
    metadata = {
        f"{c}_lora_adapter_metadata": m.peft_config["a"].to_dict()
        for c, m in loaded.components.items()
        if hasattr(m, "peft_config")
    }
    out = tmp_path / "saved"
    type(pipe).save_lora_weights(str(out), **layers, **metadata)
    saved = str(out / "pytorch_lora_weights.safetensors")

    # the file: every tensor and alpha equal to the original file's
    fresh = build_pipeline(fam)
    original, again = loaded.loras["a"], read_lora(saved, fam.components(fresh))
    assert sorted(again.modules) == sorted(original.modules)
    for key, m in original.modules.items():
        n = again.modules[key]
        assert torch.equal(n.down, m.down) and torch.equal(n.up, m.up), key
        assert n.effective_alpha == m.effective_alpha, key

    # the model: LoRA parameters after loading the saved file equal those after loading the original
    fresh.load_lora_weights(saved, adapter_name="a")
    for c in loaded.components:
        assert_same_tensors(lora_params(fam.components(fresh)[c]), lora_params(loaded.components[c]))
    assert torch.equal(hs.run(fam, fresh, "model"), hs.run(fam, pipe, "model"))


@pytest.mark.parametrize("case", CASES)
def test_save_lora_adapter_then_load_lora_adapter_round_trips_bit_exact(case, tmp_path):
    loaded = load(case.family, tmp_path, names=("a",))
    fam = loaded.family
    denoiser = getattr(loaded.pipe, fam.denoiser)
    denoiser.save_lora_adapter(str(tmp_path / "saved"), adapter_name="a")
    saved = str(tmp_path / "saved" / "pytorch_lora_weights.safetensors")

    tensors, _ = load_tensors(saved)
    original, _ = load_tensors(loaded.paths["a"])
    prefix = f"{fam.denoiser}."
    expected = {k.removeprefix(prefix): v for k, v in original.items() if k.startswith(prefix)}
    assert_same_tensors(tensors, expected)

    fresh = build_pipeline(fam)
    getattr(fresh, fam.denoiser).load_lora_adapter(saved, prefix=None, adapter_name="a", use_safetensors=True)
    assert_same_tensors(lora_params(getattr(fresh, fam.denoiser)), lora_params(denoiser))
    assert getattr(fresh, fam.denoiser).peft_config["a"].lora_alpha == denoiser.peft_config["a"].lora_alpha
