"""Behaviour of diffusers/peft that departs from the reference, pinned as strict expected failures.

Each test asserts what the reference semantics demand. While the library behaves as found, the test
xfails; the day an upgrade changes the behaviour it XPASSes, and strict mode turns that into a
failure: the upgrade changed what users' LoRAs produce, which is what this suite must surface.

Findings that a generic check shows on a particular case are data on that case instead
(``known`` in parity/checks/cases.py: a second fuse at the same scale, Flux diffusion_model files,
kohya text-encoder files on q_proj only, unload after fuse, get_active_adapters); these are the
behaviours no generic check covers.
"""

from __future__ import annotations

import pytest
import torch

from parity.checks.fuse import fuse_components, snapshot
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family


def _denoiser_lora(family_name: str, directory, seed: int, rank: int, targets=None) -> str:
    family = get_family(family_name)
    components = family.components(build_pipeline(family))
    targets = targets or family.default_targets[family.denoiser]
    return write_lora(components, {family.denoiser: targets}, directory / f"{family_name}-{seed}.safetensors",
                      seed=seed, rank=rank, alpha=2.0 * rank)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: ModelMixin.load_lora_adapter(path, prefix=...) without use_safetensors=True reads the "
        "file through load_state_dict and drops its lora_adapter_metadata header, so the alpha stored "
        "there is ignored (scaling 1.0 instead of alpha/r); pipe.load_lora_weights sets "
        "use_safetensors=True and applies it"
    ),
)
def test_model_level_load_applies_the_alpha_in_the_file_header(tmp_path):
    family = get_family("sd15")
    path = _denoiser_lora("sd15", tmp_path, seed=41, rank=4)  # alpha 8 → scaling 2
    pipe = build_pipeline(family)

    pipe.unet.load_lora_adapter(path, prefix="unet", adapter_name="x")

    scalings = {m.scaling["x"] for m in pipe.unet.modules() if hasattr(m, "scaling") and "x" in m.scaling}
    assert scalings == {2.0}, scalings


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: after hotswap, set_adapters(adapter_weights=...) recompiles: peft's "
        "prepare_model_for_compiled_hotswap turned each scaling into a tensor so scales can change "
        "without recompiling, but LoraLayer.set_scale writes a Python float back and dynamo's guard "
        "on the tensor type fails"
    ),
)
def test_changing_the_adapter_weight_after_hotswap_does_not_recompile(tmp_path):
    from parity.checks import hotswap as hs

    first = _denoiser_lora("sd15", tmp_path, seed=42, rank=4)
    second = _denoiser_lora("sd15", tmp_path, seed=43, rank=8)
    session = hs.start("sd15", first, target_rank=8, level="pipeline")
    swapped = hs.swap(session, second)
    if swapped.error is not None or swapped.watch.recompiled:
        pytest.fail(f"the hotswap itself failed: {swapped.error or swapped.watch.summary()}")

    from parity.checks.dynamo import reset, watch_compiles

    with watch_compiles() as watch:
        session.pipe.set_adapters([hs.ADAPTER], adapter_weights=[0.5])
        hs.run(session.family, session.pipe, "pipeline")
    reset()

    assert not watch.recompiled, watch.summary()


@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason=(
        "finding: a refused hotswap (the new file targets modules the first did not) makes "
        "load_lora_adapter delete the whole adapter, config and layers: the model silently runs "
        "without the LoRA it had, and a later, valid hotswap fails with 'no existing adapter by that name'"
    ),
)
def test_a_refused_hotswap_leaves_the_adapter_hotswappable(tmp_path):
    from parity.checks import hotswap as hs

    family = get_family("sd15")
    pipe = build_pipeline(family)
    hs.prepare_for_hotswap(pipe, family, "pipeline", 8)
    pipe.load_lora_weights(_denoiser_lora("sd15", tmp_path, seed=44, rank=4, targets=("to_q",)), adapter_name="x")
    wider = _denoiser_lora("sd15", tmp_path, seed=45, rank=4, targets=("to_q", "to_k"))
    with pytest.raises(RuntimeError, match="unexpected keys"):
        pipe.load_lora_weights(wider, adapter_name="x", hotswap=True)

    valid = _denoiser_lora("sd15", tmp_path, seed=46, rank=4, targets=("to_q",))
    pipe.load_lora_weights(valid, adapter_name="x", hotswap=True)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: load_lora_weights(..., hotswap=True) with a file that has text-encoder keys swaps the "
        "UNet first and only then refuses the text encoder (ValueError 'hotswapping is not supported "
        "for text encoders'): the pipeline is left half-swapped, UNet on the new LoRA, text encoder "
        "on the old"
    ),
)
def test_a_refused_text_encoder_hotswap_leaves_the_unet_unchanged(tmp_path):
    family = get_family("sd15")
    pipe = build_pipeline(family)
    components = family.components(pipe)
    targets = {c: family.default_targets[c] for c in ("unet", "text_encoder")}
    first, second = (write_lora(components, targets, tmp_path / f"{s}.safetensors", seed=s, rank=4, alpha=4.0)
                     for s in (51, 52))
    pipe.enable_lora_hotswap(target_rank=8)
    pipe.load_lora_weights(first, adapter_name="x")
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items() if "lora_" in k}

    with pytest.raises(ValueError, match="not supported for text encoders"):
        pipe.load_lora_weights(second, adapter_name="x", hotswap=True)

    after = pipe.unet.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"{len(changed)} of {len(before)} UNet LoRA tensors were swapped before the refusal"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "finding: fuse_lora(safe_fusing=True) refuses a NaN adapter only when it reaches that layer; "
        "the layers fused before stay fused (12 of the tiny sd15's 48 with the NaN in the middle one) "
        "and num_fused_loras stays 0. The suite fuses through parity.checks.fuse.fuse_all_or_nothing"
    ),
)
def test_refused_safe_fuse_leaves_the_base_weights_as_they_were():
    from tests.support.failed_fuse import changed_tensors, loaded_sd15

    loaded = loaded_sd15(poison=True)
    with pytest.raises(ValueError, match="NaN"):
        loaded.pipe.fuse_lora(components=fuse_components(loaded.pipe, loaded.components), safe_fusing=True)

    assert changed_tensors(loaded.before, snapshot(loaded.components)) == []
