"""A LoRA on a quantized base from the user's own pipeline folder: the denoiser loaded from its subfolder with
the quantizer's config, as users write it (``from_pretrained(folder, subfolder="transformer",
quantization_config=TorchAoConfig(...))``), and a LoRA file written by diffusers' own save_lora_weights."""

from __future__ import annotations

import pytest
import torch

from parity.cli import main
from parity.zoo import get_family
from tests.support.diffusers_saved import diffusers_saved
from tests.support.families import needs
from tests.support.quantizers import needs_quantizers

pytestmark = [needs("zimage"), pytest.mark.xdist_group("quant-folders"), needs_quantizers()]


def test_a_users_bfloat16_folder_is_quantized_from_its_subfolder_and_checked(tmp_path, capsys):
    family = get_family("zimage")
    pipe = family.build_tiny(0)
    folder = tmp_path / "zimage"
    pipe.to(dtype=torch.bfloat16).save_pretrained(folder)
    names = [n for n, m in pipe.transformer.named_modules() if n.endswith(("attention.to_q", "attention.to_v"))]
    lora = diffusers_saved(tmp_path / "lora", "ZImagePipeline", pipe.transformer, names)

    code = main(["check", "--family", "zimage", "--model-path", str(folder), "--lora", str(lora),
                 "--quantization", "torchao-int8wo", "--dtype", "bfloat16", "--cycles", "2", "-q"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"model {folder}" in out and "torchao Int8Tensor int8" in out and "compute dtype bfloat16" in out


@pytest.mark.slow  # builds the published SD1.5 (0.98 B parameters) once into the cache, ~1.5 min on 2 cores
def test_files_wider_than_the_tiny_model_are_checked_on_the_published_architecture(tmp_path, capsys):
    from parity.lora.synth import write_lora
    from parity.zoo.published import meta_components

    family = get_family("sd15")
    lora = write_lora(meta_components(family), family.default_targets, str(tmp_path / "wide.safetensors"), rank=4,
                      alpha=4.0)

    code = main(["check", "--family", "sd15", "--lora", str(lora), "--quantization", "torchao-int8wo", "-q"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "published sd15 architecture" in out and "torchao Int8Tensor int8" in out and "not quantized" in out
    assert str(lora) in out  # the file as given, not the route's renumbered copy
