"""The merge and unfuse checks must reject wrong fuses: each control breaks exactly one thing."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from parity.checks.cases import LayoutCase, LoraSpec
from parity.checks.fuse import fuse_and_measure, fuse_unfuse_cycles, load_adapters, measure_merge, snapshot
from parity.checks.prepare import prepare
from parity.reference.merge import reference_merge
from parity.tolerances import detectable_ulps, operand_magnitude, ulp

CASE = LayoutCase("sd15", "diffusers", "default")
SPEC = (LoraSpec(seed=1, rank=4, alpha=2.0),)


@pytest.fixture(params=["float32", "bfloat16"])
def loaded(request, tmp_path):
    prep = prepare(CASE, SPEC, request.param, "cpu", str(tmp_path))
    load_adapters(prep.pipe, prep.paths)
    return prep


def lora_layers(prep):
    return [
        (f"{c}.{name}", m)
        for c, comp in prep.components.items()
        for name, m in comp.named_modules()
        if isinstance(m, BaseTunerLayer)
    ]


def test_merge_check_passes_on_an_untouched_fuse(loaded):
    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), 1.0)
    assert result.ok, result.failures()


def test_merge_check_fails_on_one_element_off_by_a_few_ulps(loaded):
    fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), 1.0)
    after = snapshot(loaded.components)
    refs = reference_merge(loaded.before, [(loaded.loras[0], 1.0)], 1.0)
    (component, module), ref = next(iter(refs.items()))
    weight = after[component][f"{module}.weight"]
    dtype = weight.dtype
    few = detectable_ulps(dtype, rank=SPEC[0].rank)
    step = few * ulp(operand_magnitude(ref.steps, ref.base), dtype)
    weight.view(-1)[5] = (weight.double() + step).to(dtype).view(-1)[5]

    result = measure_merge(loaded.before, after, refs, dtype)

    assert not result.ok
    failing = [r for r in result.reports if not r.ok]
    assert [r.name for r in failing] == [ref.key]
    assert failing[0].n_over == 1


def test_merge_check_fails_when_alpha_is_dropped(loaded):
    for _, layer in lora_layers(loaded):
        for adapter in layer.scaling:
            layer.scaling[adapter] = 1.0  # as if the file's alpha=2 were read as alpha=rank=4

    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), 1.0)

    assert not result.ok
    assert len([r for r in result.reports if not r.ok]) == len(result.reports)


def test_merge_check_fails_when_one_module_is_left_unmerged(loaded):
    name, layer = lora_layers(loaded)[3]
    layer.merge = lambda *args, **kwargs: None

    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), 1.0)

    assert [r.name for r in result.reports if not r.ok] == [f"{name}.weight"]


def test_merge_check_fails_when_an_untargeted_weight_changes(loaded):
    untargeted = loaded.components["unet"].conv_in.weight
    with torch.no_grad():
        first = untargeted.view(-1)[:1]
        first.copy_((first.double() + ulp(first, first.dtype)).to(first.dtype))  # one ULP up

    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), 1.0)

    assert result.changed_untargeted == ["unet.conv_in.weight"]
    assert not result.ok


def test_unfuse_check_fails_when_one_module_is_not_restored(loaded):
    name, layer = lora_layers(loaded)[0]
    layer.unmerge = lambda *args, **kwargs: None

    result = fuse_unfuse_cycles(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), cycles=1)

    assert not result.ok
    # the whole delta left in, against a bound of an ULP or two of |W| + P and the delta's own rounding
    assert result.bound_ratio[0] > 10


# How short a delta the unfuse bound must reject: 0.1% in float32; in bfloat16 the delta itself is
# rounded to 2^-8 of its size twice (merge and unmerge) and W to 2^-8 of |W| + P, so a few percent.
SHORT = {torch.float32: 1e-3, torch.bfloat16: 5e-2}


def test_unfuse_check_fails_when_the_unmerge_subtracts_a_delta_a_little_short(loaded):
    """The unfuse bound allows PEFT's recomputed delta to differ from the merge's by its rounding (another
    reduction order), not by a scale: an unmerge whose delta is a little short fails on that module."""
    name, layer = lora_layers(loaded)[0]
    delta = layer.get_delta_weight
    short_by = SHORT[layer.get_base_layer().weight.dtype]

    def short(*args, **kwargs):
        layer.get_delta_weight = lambda adapter: delta(adapter) * (1 - short_by)
        try:
            return type(layer).unmerge(layer)
        finally:
            del layer.get_delta_weight

    layer.unmerge = short
    result = fuse_unfuse_cycles(loaded.pipe, loaded.components, loaded.before, loaded.loras, (1.0,), cycles=1)

    assert not result.ok
    assert result.bound_ratio[0] > 1
