"""The adapter API on Wan 2.2's experts: adapters loaded into the low-noise expert (transformer_2, with
load_into_transformer_2=True) and into both (two loads of one adapter name) are weighted by
set_adapters, disabled, deleted, unloaded, listed and saved as adapters in transformer are."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft.utils import get_peft_model_state_dict

from parity.checks import hotswap as hs
from parity.checks.cases import api_expert_cases, api_fuse_default_cases
from parity.checks.fuse import fuse_and_measure, snapshot
from parity.lora.reader import read_lora
from parity.pytest.cases import params
from parity.zoo import FAMILIES, build_pipeline
from parity.zoo.experts import components_of, load_kwargs
from tests.support.adapters import Loaded, assert_same_tensors, differing, holders, load, lora_layers, lora_params


def load_into(family_name: str, expert: str, directory: Any, names: tuple[str, ...] = ("a", "b")) -> Loaded:
    return load(family_name, directory, names, expert=expert)


def only(loaded: Loaded, expert: str) -> dict:
    return {c: loaded.components[c] for c in components_of(loaded.family, expert)}


@pytest.mark.parametrize("case", params(api_expert_cases()))
def test_adapters_loaded_into_the_experts_are_listed_there_and_nowhere_else(case, tmp_path):
    loaded = load_into(case.family, case.expert, tmp_path)
    experts = components_of(loaded.family, case.expert)

    assert loaded.pipe.get_list_adapters() == {c: ["a", "b"] for c in experts}
    others = [c for c in loaded.components if c not in experts]
    assert lora_layers({c: loaded.components[c] for c in others}) == []
    assert loaded.pipe.get_active_adapters() == ["b"]  # diffusers activates the newest adapter


@pytest.mark.parametrize("case", params(api_expert_cases()))
def test_set_adapters_weights_scale_the_experts_fused_deltas_linearly(case, tmp_path):
    loaded = load_into(case.family, case.expert, tmp_path)
    weights = (0.7, -0.3)
    loaded.pipe.set_adapters(["a", "b"], adapter_weights=list(weights))

    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, [loaded.loras["a"], loaded.loras["b"]],
                              weights, 1.0)

    assert {r.name.split(".", 1)[0] for r in result.reports} == set(components_of(loaded.family, case.expert))
    assert result.ok, result.failures()


@pytest.mark.parametrize("case", params(api_expert_cases(levels=("model", "pipeline"))))
def test_disable_lora_gives_the_base_output_and_enable_lora_the_experts_lora_output(case, tmp_path):
    fam, expert = FAMILIES[case.family], case.expert
    base = hs.run(fam, build_pipeline(fam), case.level, expert=expert)
    loaded = load_into(case.family, expert, tmp_path)
    with_lora = hs.run(fam, loaded.pipe, case.level, expert=expert)
    assert not torch.equal(with_lora, base), "the LoRA did not change the output: the check could not fail"

    loaded.pipe.disable_lora()
    disabled = hs.run(fam, loaded.pipe, case.level, expert=expert)
    loaded.pipe.enable_lora()
    enabled = hs.run(fam, loaded.pipe, case.level, expert=expert)

    assert torch.equal(disabled, base), f"disabled output differs from base by {(disabled - base).abs().max():.3g}"
    assert torch.equal(enabled, with_lora), f"re-enabled output differs by {(enabled - with_lora).abs().max():.3g}"


@pytest.mark.parametrize("case", params(api_expert_cases()))
def test_delete_adapters_removes_a_from_the_experts_and_leaves_b_as_a_fresh_load(case, tmp_path):
    loaded = load_into(case.family, case.expert, tmp_path)
    assert holders(only(loaded, case.expert), "a")

    loaded.pipe.delete_adapters("a")

    assert holders(loaded.components, "a") == []
    (tmp_path / "fresh").mkdir()
    fresh = load_into(case.family, case.expert, tmp_path / "fresh", names=("b",))
    after, again = (hs.run(loaded.family, p, "model", expert=case.expert) for p in (loaded.pipe, fresh.pipe))
    assert torch.equal(after, again), f"differs from a fresh load of b by {(after - again).abs().max():.3g}"


@pytest.mark.parametrize("case", params(api_expert_cases()))
def test_unload_lora_weights_restores_the_experts_base_weights_and_output(case, tmp_path):
    fam = FAMILIES[case.family]
    base = hs.run(fam, build_pipeline(fam), "model", expert=case.expert)
    loaded = load_into(case.family, case.expert, tmp_path)

    loaded.pipe.unload_lora_weights()

    assert not lora_layers(loaded.components) and loaded.pipe.get_list_adapters() == {}
    assert differing(loaded.before, snapshot(loaded.components)) == []
    assert torch.equal(hs.run(fam, loaded.pipe, "model", expert=case.expert), base)


@pytest.mark.parametrize("case", params(api_expert_cases()))
def test_an_expert_s_adapter_saved_with_save_lora_weights_loads_back_into_it_bit_exact(case, tmp_path):
    """WanPipeline.save_lora_weights takes transformer_lora_layers only: a low expert's adapter is saved
    under those (as its trainer's file names transformer) and loaded back with its expert's kwargs."""
    loaded = load_into(case.family, case.expert, tmp_path, names=("a",))
    fam = loaded.family
    source = loaded.components[components_of(fam, case.expert)[-1]]
    out = tmp_path / "saved"
    type(loaded.pipe).save_lora_weights(str(out), transformer_lora_layers=get_peft_model_state_dict(source, adapter_name="a"),
                                        transformer_lora_adapter_metadata=source.peft_config["a"].to_dict())
    saved = str(out / "pytorch_lora_weights.safetensors")

    fresh = build_pipeline(fam)
    again = read_lora(saved, fam.components(fresh))  # the file names transformer, as trainers' files do
    original = {m: lora for (_, m), lora in loaded.loras["a"].modules.items()}
    assert again.components() == ["transformer"] and sorted(m for _, m in again.modules) == sorted(original)
    for (_, m), n in again.modules.items():
        assert torch.equal(n.down, original[m].down) and torch.equal(n.up, original[m].up), m
        assert n.effective_alpha == original[m].effective_alpha, m
    for kwargs in load_kwargs(fam, case.expert):
        fresh.load_lora_weights(saved, adapter_name="a", **kwargs)
    for c in components_of(fam, case.expert):
        assert_same_tensors(lora_params(fam.components(fresh)[c]), lora_params(loaded.components[c]))
    assert torch.equal(hs.run(fam, fresh, "model", expert=case.expert),
                       hs.run(fam, loaded.pipe, "model", expert=case.expert))


@pytest.mark.parametrize("case", params(api_fuse_default_cases()))
def test_fuse_lora_then_unload_lora_weights_keeps_every_expert_s_lora(case, tmp_path):
    """The bake-in idiom with fuse_lora's defaults: each expert that held the LoRA must still run it,
    fused, after the unload (tolerance: the fuse rounds each merged weight once; measured 7.2e-07 on the
    high expert against an effect of 2.2). A lost LoRA leaves the base step: off by the LoRA's effect."""
    fam = FAMILIES[case.family]
    base = hs.run(fam, build_pipeline(fam), "model", expert=case.expert)
    loaded = load_into(case.family, case.expert, tmp_path, names=("a",))
    with_lora = hs.run(fam, loaded.pipe, "model", expert=case.expert)

    loaded.pipe.fuse_lora()
    loaded.pipe.unload_lora_weights()

    after = hs.run(fam, loaded.pipe, "model", expert=case.expert)
    effect = float((with_lora - base).abs().max())
    assert effect > 0.1, "the LoRA did not change the output: the check could not fail"
    assert float((after - with_lora).abs().max()) < 1e-3 * effect, (
        f"after fuse_lora() + unload_lora_weights() the {case.expert} expert's step is "
        f"{float((after - base).abs().max()):.3g} from the base step and {float((after - with_lora).abs().max()):.3g} "
        "from the LoRA's")
