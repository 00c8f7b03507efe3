"""Configs diffusers accepts with optional fields null (issue 30): a full-size SD1.5 folder whose
``unet/config.json`` has ``"sample_size": null`` ended check and hotswap in a TypeError. Which fields
may be null is found from each family's own model (tests/support/nullable_config.py: the field's
default is None, and diffusers builds the same model and runs it with the field None), so a new family
is covered without a list to keep."""

from __future__ import annotations

import pytest

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline, get_family
from tests.support.nullable_config import null_in_folder, nullable_fields, nulled


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_denoiser_inputs_take_every_field_diffusers_allows_null(family):
    fam = get_family(family)
    pipe = build_pipeline(fam)
    denoiser = getattr(pipe, fam.denoiser)
    fields = nullable_fields(denoiser, fam.denoiser_inputs(pipe, 0, denoiser.dtype))
    setattr(pipe, fam.denoiser, nulled(denoiser, fields))
    inputs = fam.denoiser_inputs(pipe, 0, denoiser.dtype)  # raised TypeError on sample_size None
    getattr(pipe, fam.denoiser)(**inputs)


def test_the_unets_sample_size_is_found_nullable():
    """The control of the discovery above: it must find the field the issue reports, else the test
    over every family would pass on an empty list."""
    fam = get_family("sd15")
    pipe = build_pipeline(fam)
    assert "sample_size" in nullable_fields(pipe.unet, fam.denoiser_inputs(pipe, 0, pipe.unet.dtype))


def test_a_field_diffusers_cannot_run_without_is_not_called_nullable():
    """SDXL's addition_time_embed_dim has a None default, but its UNet cannot run without it (the
    control that the discovery runs the model, not only reads the signature); addition_embed_type None
    builds another model (no add_embedding), so it is not a null the same folder can have."""
    fam = get_family("sdxl")
    pipe = build_pipeline(fam)
    fields = nullable_fields(pipe.unet, fam.denoiser_inputs(pipe, 0, pipe.unet.dtype))
    assert "sample_size" in fields
    assert "addition_time_embed_dim" not in fields and "addition_embed_type" not in fields


@pytest.fixture(scope="module")
def null_folder(tmp_path_factory):
    """The tiny sd15 pipeline saved with every nullable UNet field null, and a LoRA for it."""
    root = tmp_path_factory.mktemp("nullable")
    fam = get_family("sd15")
    pipe = build_pipeline(fam)
    fields = nullable_fields(pipe.unet, fam.denoiser_inputs(pipe, 0, pipe.unet.dtype))
    lora = write_lora(fam.components(pipe), {"unet": ("to_q", "conv1")}, root / "lora.safetensors")
    pipe.save_pretrained(root / "model")
    null_in_folder(root / "model", "unet", fields)
    return root / "model", lora


def test_check_passes_on_a_folder_whose_unet_sample_size_is_null(null_folder, capsys):
    folder, lora = null_folder
    code = main(["check", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora), "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, out + err


@pytest.mark.slow  # 8-16 s: a compiled session; its inputs come from the same unet_grid the check above runs
def test_hotswap_passes_on_a_folder_whose_unet_sample_size_is_null(null_folder, capsys):
    folder, lora = null_folder
    code = main(["hotswap", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora),
                 "--lora", str(lora), "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, out + err
