"""get_list_adapters and get_active_adapters report what each component holds and runs."""

from __future__ import annotations

import pytest

from parity.checks.cases import api_family_cases
from parity.checks.findings import ACTIVE_ADAPTERS
from parity.pytest.cases import params
from tests.support.adapters import active_per_component, load


@pytest.mark.parametrize("case", params(api_family_cases()))
def test_get_list_adapters_reports_each_component_s_adapters(case, tmp_path):
    loaded = load(case.family, tmp_path)
    te = [c for c in loaded.components if c != loaded.family.denoiser and c in loaded.family.default_targets]
    expected = {loaded.family.denoiser: ["a", "b"], **{c: ["a"] for c in te}}

    assert loaded.pipe.get_list_adapters() == expected
    loaded.pipe.set_adapters(["a", "b"], adapter_weights=[0.5, 0.7])
    assert loaded.pipe.get_active_adapters() == ["a", "b"]
    loaded.pipe.delete_adapters("a")
    assert loaded.pipe.get_list_adapters() == {loaded.family.denoiser: ["b"]}
    assert loaded.pipe.get_active_adapters() == ["b"]


def test_loading_b_activates_b_in_the_denoiser_and_keeps_a_in_the_text_encoder(tmp_path):
    loaded = load("sd15", tmp_path)
    assert active_per_component(loaded.components) == {"unet": {"b"}, "text_encoder": {"a"}}


@pytest.mark.parametrize("case", params(api_family_cases(text_encoder=True, known=ACTIVE_ADAPTERS)))
def test_get_active_adapters_reports_every_adapter_a_component_runs(case, tmp_path):
    loaded = load(case.family, tmp_path)
    running = set().union(*active_per_component(loaded.components).values())
    assert set(loaded.pipe.get_active_adapters()) == running
