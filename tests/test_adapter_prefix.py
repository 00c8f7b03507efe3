"""load_lora_adapter(prefix=...) loads only that component's part of a file."""

from __future__ import annotations

import pytest

from parity.checks.cases import api_family_cases
from parity.pytest.cases import params
from parity.zoo import FAMILIES, build_pipeline
from tests.support.adapters import lora_layers, write_pair


@pytest.mark.parametrize("case", params(api_family_cases(text_encoder=True)))
def test_load_lora_adapter_with_prefix_loads_only_that_component(case, tmp_path):
    fam = FAMILIES[case.family]
    paths, loras = write_pair(fam, str(tmp_path))
    assert {"text_encoder", fam.denoiser} <= set(loras["a"].components())
    pipe = build_pipeline(fam)
    components = fam.components(pipe)

    getattr(pipe, fam.denoiser).load_lora_adapter(paths["a"], prefix=fam.denoiser, adapter_name="a", use_safetensors=True)

    assert not lora_layers({"text_encoder": components["text_encoder"]})
    loaded_modules = {n.removeprefix(f"{fam.denoiser}.") for n, _ in lora_layers({fam.denoiser: components[fam.denoiser]})}
    assert loaded_modules == {m for c, m in loras["a"].modules if c == fam.denoiser}
