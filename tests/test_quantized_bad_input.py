"""Bad input to the quantized check: one line naming the file or option, exit 2, no traceback; and a
user's own GGUF denoiser, written here with gguf-py as city96's converter writes one, checked as given."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from parity.checks.cases import targets_for
from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error
from tests.support.families import needs
from tests.support.quantizers import needs_quantizers

pytestmark = [needs("zimage", "flux"), pytest.mark.xdist_group("quant-bad-input"), needs_quantizers()]


@pytest.fixture(scope="module")
def zimage_lora(tmp_path_factory):
    family = get_family("zimage")
    pipe = build_pipeline(family)
    path = str(tmp_path_factory.mktemp("quant-bad") / "z.safetensors")
    write_lora({"transformer": pipe.transformer}, {"transformer": targets_for(family, "default")["transformer"]},
               path, "diffusers", seed=1, rank=4)
    return path


def _gguf(path, tensors: dict) -> str:
    """A GGUF as city96's convert.py writes one: Q8_0 where a row is whole 32-blocks, F32 elsewhere."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="zimage")
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim == 2 and name.endswith(".weight") and array.shape[1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def _check(*argv: str) -> int:
    return main(["check", "--family", "zimage", *argv])


def test_an_unknown_quantization_is_one_line(zimage_lora, capsys):
    code = _check("--lora", zimage_lora, "--quantization", "int3")
    assert_one_line_error(capsys, code, "--quantization", "int3")


def test_a_quantizer_whose_package_is_not_installed_is_one_line(zimage_lora, capsys, monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("optimum") else find(name, *a))
    code = _check("--lora", zimage_lora, "--quantization", "quanto-int8")
    assert_one_line_error(capsys, code, "optimum.quanto", "pip install optimum-quanto")


def test_a_quantizer_that_needs_cuda_is_one_line_on_cpu(zimage_lora, capsys):
    code = _check("--lora", zimage_lora, "--quantization", "bnb-nf4")
    assert_one_line_error(capsys, code, "bnb-nf4 needs a CUDA device", "No GPU found")


def test_a_gguf_whose_tensors_fit_no_denoiser_names_the_file_and_the_family_they_look_like(zimage_lora, tmp_path,
                                                                                           capsys):
    flux = build_pipeline("flux").transformer
    path = _gguf(tmp_path / "flux.gguf", {k: v.numpy() for k, v in flux.state_dict().items()})
    code = _check("--lora", zimage_lora, "--quantization", "gguf", "--model-path", path)
    line = assert_one_line_error(capsys, code, path, "fit no ZImageTransformer2DModel")
    assert "look like flux's denoiser" in line, line


def test_a_file_that_is_not_gguf_is_one_line(zimage_lora, tmp_path, capsys):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF but not really" * 10)
    code = _check("--lora", zimage_lora, "--quantization", "gguf", "--model-path", str(path))
    assert_one_line_error(capsys, code, str(path))


def test_a_users_gguf_denoiser_is_checked_as_given(zimage_lora, tmp_path, capsys):
    transformer = build_pipeline("zimage").transformer
    path = _gguf(tmp_path / "z.gguf", {k: v.numpy() for k, v in transformer.state_dict().items()})
    before = open(path, "rb").read()

    code = _check("--lora", zimage_lora, "--quantization", "gguf", "--model-path", path, "-q")

    out = capsys.readouterr().out
    assert code == 1, out  # the GGUF findings: float16 dequantization, fuse raises
    assert "GGUF Q8_0" in out and "LoRA contribution" in out and "fuse_lora" in out
    assert "known diffusers behaviour: fuse_lora on a GGUF-quantized base raises" in out
    assert open(path, "rb").read() == before  # the user's file is untouched
