"""The adapter-API checks must reject wrong behaviour: each control breaks exactly one thing."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from parity.checks import hotswap as hs
from parity.checks.cases import WeightedCase
from parity.checks.fuse import fuse_and_measure
from parity.lora.tensors import load_tensors
from parity.reference import weighted
from parity.zoo import FAMILIES, build_pipeline
from tests.support.adapters import (
    add_weighted,
    assert_same_tensors,
    compare_weighted,
    holders,
    load,
    lora_layers,
    ours_for,
)


def test_disable_check_fails_when_one_lora_layer_stays_active(tmp_path):
    fam = FAMILIES["flux"]
    base = hs.run(fam, build_pipeline(fam), "model")
    loaded = load("flux", tmp_path)
    name, layer = next((n, m) for n, m in lora_layers(loaded.components) if n.startswith("transformer."))
    layer.enable_adapters = lambda enabled: None  # this one layer ignores disable_lora

    loaded.pipe.disable_lora()
    disabled = hs.run(fam, loaded.pipe, "model")

    assert not torch.equal(disabled, base), f"{name} stayed active yet the output equals the base"


def test_delete_check_fails_when_a_layer_keeps_the_deleted_adapter(tmp_path):
    loaded = load("flux", tmp_path)
    name, layer = next((n, m) for n, m in lora_layers(loaded.components) if "a" in m.lora_A)
    layer.delete_adapter = lambda adapter_name: None

    loaded.pipe.delete_adapters("a")

    assert holders(loaded.components, "a") == [name]


def one_ulp_up(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    flat = out.view(-1)
    flat[0] = torch.nextafter(flat[0], torch.tensor(math.inf, dtype=t.dtype))
    return out


def test_round_trip_check_fails_on_a_file_with_one_tensor_one_ulp_off(tmp_path):
    loaded = load("sd15", tmp_path, names=("a",))
    tensors, metadata = load_tensors(loaded.paths["a"])
    key = sorted(tensors)[0]
    perturbed = dict(tensors, **{key: one_ulp_up(tensors[key])})
    path = str(tmp_path / "perturbed.safetensors")
    save_file(perturbed, path, metadata=metadata)

    again, _ = load_tensors(path)

    with pytest.raises(AssertionError, match="1 tensors differ"):
        assert_same_tensors(again, tensors)


@pytest.fixture(scope="module")
def weighted_runs(tmp_path_factory):
    out = {}
    for case in (WeightedCase("sd15", "linear", (0.7, 0.4)), WeightedCase("sd15", "ties", (0.7, 0.4), 0.5)):
        out[case.combination] = (case, *add_weighted(case, tmp_path_factory.mktemp(case.combination)))
    return out


def failing(reports):
    return [r for r in reports if not r.ok]


@pytest.mark.parametrize("combination", ["linear", "ties"])
def test_weighted_check_passes_with_the_true_weights(weighted_runs, combination):
    case, snapshot_ab, new, rng = weighted_runs[combination]
    assert not failing(compare_weighted(new, ours_for(snapshot_ab, case, rng), combination))


@pytest.mark.parametrize("combination", ["linear", "ties"])
def test_weighted_check_fails_when_a_weight_is_off_by_one_percent(weighted_runs, combination):
    case, snapshot_ab, new, rng = weighted_runs[combination]

    reports = compare_weighted(new, ours_for(snapshot_ab, case, rng, weight_error=1.01), combination)

    assert len(failing(reports)) == len(reports)


def test_weighted_check_fails_when_the_ties_majority_sign_is_flipped(weighted_runs):
    case, snapshot_ab, new, rng = weighted_runs["ties"]

    def flipped(trimmed):
        return -weighted.elect_sign(trimmed)

    reports = compare_weighted(new, ours_for(snapshot_ab, case, rng, elect=flipped), "ties")

    assert len(failing(reports)) == len(reports)


def test_weighted_check_fails_when_dare_masks_come_from_another_seed(tmp_path):
    case = WeightedCase("sd15", "dare_linear", (0.7, 0.4), 0.5)
    snapshot_ab, new, rng = add_weighted(case, tmp_path)
    other = torch.Generator().manual_seed(12345).get_state()

    reports = compare_weighted(new, ours_for(snapshot_ab, case, other), "dare_linear")

    assert len(failing(reports)) == len(reports)


@pytest.mark.parametrize("factor", [1.01, 1.0])
def test_linearity_check_fails_when_the_scaling_is_w_times_1_01(tmp_path, factor):
    weight = 0.25
    loaded = load("sd15", tmp_path, names=("a",))
    loaded.pipe.set_adapters(["a"], adapter_weights=[weight])
    for _, layer in lora_layers(loaded.components):
        layer.scaling["a"] = layer.scaling["a"] * factor  # as if set_adapters applied w·1.01

    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, [loaded.loras["a"]], (weight,), 1.0)

    if factor == 1.0:
        assert result.ok, result.failures()  # the control's own set-up passes untouched
    else:
        assert not result.ok
        assert all(not r.ok for r in result.reports)
