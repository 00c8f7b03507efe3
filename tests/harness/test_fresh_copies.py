"""The hotswap check's fresh loads are copies of the session's pipeline that cost no copy of the model
(parity/checks/fresh_copies.py): a float64 copy computes bit for bit what a float64 pipeline computes,
at both levels and on every family, while holding no float64 weights between forwards; an aliased copy
shares every weight and a load into it leaves the original alone; and the float64 values a bfloat16
session reads from its folder are a float64 load's. Controls: a float64 copy whose values are off in
one weight differs, and the float32 pipeline differs from the float64 one."""

from __future__ import annotations

import os

import pytest
import torch

from parity.checks import fresh_copies as fc
from parity.checks import hotswap as hs
from parity.checks.cases import family_cases
from parity.checks.dynamo import reset
from parity.lora.synth import write_lora
from parity.modules import pipeline_models
from parity.pytest.cases import family_params
from parity.zoo import FAMILIES, build_pipeline


def _denoiser_lora(fam, pipe, directory) -> str:
    return write_lora(fam.components(pipe), {fam.denoiser: fam.default_targets[fam.denoiser]},
                      os.path.join(directory, f"{fam.name}.safetensors"), seed=1, rank=4, alpha=2.0)


def _values(pipe):
    tensors = {c: {**dict(m.named_parameters()), **dict(m.named_buffers())} for c, m in pipeline_models(pipe).items()}
    return lambda component, name: tensors[component][name].double()


def _stored_base_bytes(pipe) -> int:
    return sum(p.untyped_storage().nbytes() for m in pipeline_models(pipe).values()
               for n, p in m.named_parameters() if "lora_" not in n and p.is_floating_point())


@pytest.mark.parametrize("level", hs.LEVELS)
@pytest.mark.parametrize("family", family_params(family_cases()))
def test_a_float64_copy_computes_bit_for_bit_what_a_float64_pipeline_computes(family, level, tmp_path):
    fam = FAMILIES[family]
    float32 = build_pipeline(fam)
    path = _denoiser_lora(fam, float32, str(tmp_path))
    replay = hs.drawn_latents(fam, float32) if level == "pipeline" else None
    copy64 = fc.float64_copy(fc.pristine_copy(float32), _values(float32))
    hs._load(copy64, fam, level, path, hotswap=False)
    float64 = build_pipeline(fam, dtype=torch.float64)
    hs._load(float64, fam, level, path, hotswap=False)
    stand_ins = sum(1 for m in pipeline_models(copy64).values() for n, p in m.named_parameters()
                    if "lora_" not in n and p.is_floating_point())

    streamed = hs.run(fam, copy64, level, replay=replay)

    assert torch.equal(streamed, hs.run(fam, float64, level, replay=replay))
    # Between forwards every base weight is back to its stand-in: one float64 element each.
    assert _stored_base_bytes(copy64) == 8 * stand_ins
    hs._load(float32, fam, level, path, hotswap=False)
    assert not torch.equal(streamed, hs.run(fam, float32, level).to(streamed.dtype))


def test_a_float64_copy_given_one_weight_off_computes_something_else():
    fam = FAMILIES["sd15"]
    pipe = build_pipeline(fam)
    values = _values(pipe)
    name = next(n for n, _ in pipe.unet.named_parameters() if n.endswith("to_q.weight"))

    def nudged(component: str, parameter: str) -> torch.Tensor:
        value = values(component, parameter)
        return value * (1 + 1e-9) if (component, parameter) == ("unet", name) else value

    off = fc.float64_copy(fc.pristine_copy(pipe), nudged)
    right = fc.float64_copy(fc.pristine_copy(pipe), values)

    assert not torch.equal(hs.run(fam, off, "model"), hs.run(fam, right, "model"))


def test_an_aliased_copy_shares_every_weight_and_a_load_into_it_leaves_the_original_alone(tmp_path):
    fam = FAMILIES["sd15"]
    pipe = build_pipeline(fam)
    path = _denoiser_lora(fam, pipe, str(tmp_path))
    before, loaded = hs.run(fam, pipe, "model"), fc.digests(pipe)
    copy = fc.aliased_copy(fc.pristine_copy(pipe))

    hs.prepare_for_hotswap(copy, fam, "model", 8)
    hs._load(copy, fam, "model", path, hotswap=False)

    originals = {n: p for n, p in pipe.unet.named_parameters()}
    shared = {n.replace(".base_layer", ""): p for n, p in copy.unet.named_parameters() if "lora_" not in n}
    assert shared.keys() == originals.keys()
    assert all(shared[n].data_ptr() == p.data_ptr() and shared[n] is not p for n, p in originals.items())
    assert not hasattr(pipe.unet, "peft_config") and hasattr(copy.unet, "peft_config")
    assert not torch.equal(hs.run(fam, copy, "model"), before)
    assert torch.equal(hs.run(fam, pipe, "model"), before) and fc.changed_tensors(pipe, loaded) == []


def test_a_changed_base_tensor_is_named():
    pipe = build_pipeline("sd15")
    loaded = fc.digests(pipe)
    name, weight = next((n, p) for n, p in pipe.unet.named_parameters() if n.endswith("to_k.weight"))

    with torch.no_grad():
        weight.view(-1)[0] += 1e-3

    assert fc.changed_tensors(pipe, loaded) == [f"unet.{name}"]


# make slow (7 s: a model folder written and hotswapped in bfloat16); the float64 copies' bit-exactness
# on every family runs by default above
@pytest.mark.compile
@pytest.mark.slow
def test_a_bfloat16_session_on_a_folder_takes_a_float64_loads_values_from_its_checkpoint(tmp_path):
    fam = FAMILIES["sd15"]
    build_pipeline(fam).save_pretrained(tmp_path / "model")
    path = _denoiser_lora(fam, build_pipeline(fam), str(tmp_path))
    try:
        session = hs.start(fam, path, 4, dtype=torch.bfloat16, model_path=str(tmp_path / "model"))
    finally:
        reset()
    float64 = build_pipeline(fam, dtype=torch.float64, model_path=str(tmp_path / "model"))

    values = fc.stored_values(session.pristine, session.family, session.dtype, session.model_path, session.device)

    for component, model in pipeline_models(float64).items():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point():
                assert torch.equal(values(component, name), t), f"{component}.{name}"
    # the control: the session's own bfloat16 weights, upcast, are not those values
    name, weight = next((n, p) for n, p in session.pristine.unet.named_parameters() if n.endswith("to_q.weight"))
    assert not torch.equal(weight.double(), values("unet", name))
