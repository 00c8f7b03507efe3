"""Behaviour of diffusers/peft that departs from the reference, pinned as strict expected failures.

Each test asserts what the reference semantics demand. While the library behaves as found, the test
xfails; the day an upgrade changes the behaviour it XPASSes, and strict mode turns that into a
failure: the upgrade changed what users' LoRAs produce, which is what this suite must surface.
"""

from __future__ import annotations

import pytest
import torch

from parity.build import prepare
from parity.cases import LayoutCase, LoraSpec
from parity.formats import read_lora, save_lora
from parity.fuse import fuse_and_measure, fuse_components, load_adapters, snapshot
from parity.synth import synth_lora
from parity.zoo import build_pipeline, get_family

SPEC = (LoraSpec(seed=1, rank=4, alpha=2.0),)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: diffusers' _fuse_lora_apply calls peft scale_layer(lora_scale) on every fuse and "
        "unfuse_lora never undoes it, so fuse(0.5) → unfuse → fuse(0.5) merges 0.25·δ"
    ),
)
def test_second_fuse_at_same_lora_scale_matches_reference(tmp_path):
    prep = prepare(LayoutCase("sd15", "diffusers", "default"), SPEC, "float32", "cpu", str(tmp_path))
    load_adapters(prep.pipe, prep.paths)
    first = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, (1.0,), 0.5)
    if not first.ok:  # pytest.fail is no AssertionError: a broken first fuse must not pass as the finding
        pytest.fail(f"the first fuse already differs: {first.failures()}")
    prep.pipe.unfuse_lora(components=fuse_components(prep.pipe, prep.components))

    second = fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, (1.0,), 0.5)

    assert second.ok, second.failures()


@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason=(
        "finding: a kohya text-encoder LoRA on q_proj only fails to load ('Could not automatically "
        "infer state dict type'): convert_state_dict_to_diffusers recognises the old format only by a "
        "to_out_lora key, which such a file does not have"
    ),
)
def test_kohya_text_encoder_lora_on_q_proj_only_loads(tmp_path):
    family = get_family("sd15")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    lora = synth_lora(components, {"unet": ("to_q",), "text_encoder": ("q_proj",)}, seed=3, rank=4, alpha=4.0)
    path = save_lora(lora, tmp_path / "q_only.safetensors", "kohya")
    parsed = read_lora(path, components)
    before = {c: {k: v.clone() for k, v in m.state_dict().items()} for c, m in components.items()}

    load_adapters(pipe, [path])
    result = fuse_and_measure(pipe, components, before, [parsed], (1.0,), 1.0)

    assert result.ok, result.failures()


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: FluxLoraLoaderMixin reads `diffusion_model.` only inside kohya files with BFL names "
        "(lora_conversion_utils: renamed to lora_unet_); a diffusion_model.<diffusers name>.lora_A file "
        "loses every key to the `transformer.` prefix filter and load_lora_weights only logs a warning"
    ),
)
def test_flux_diffusion_model_file_either_loads_or_raises(tmp_path):
    family = get_family("flux")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    lora = synth_lora(components, {"transformer": ("to_q",)}, seed=4, rank=4, alpha=4.0)
    path = save_lora(lora, tmp_path / "flux_dm.safetensors", "diffusion_model")
    before = snapshot(components)

    try:
        load_adapters(pipe, [path])
    except Exception:
        return  # refusing the file loudly is acceptable behaviour
    pipe.fuse_lora(components=fuse_components(pipe, components))

    after = snapshot(components)
    changed = [k for k, t in before["transformer"].items() if not torch.equal(t, after["transformer"][k])]
    assert changed, "the file loaded without error but changed no weight"
