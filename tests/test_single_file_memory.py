"""A published-width FLUX.1 single file in BFL's names (one double- and one single-stream block: 0.55 B
parameters, 1.02 GiB in bfloat16; diffusers' converter needs the published width, memory is linear in
blocks): `lora-parity check` loads it with from_single_file, reads every transformer weight but the final
modulation (its halves swapped: no view of one stored tensor) back from the file through the fused-qkv row
blocks, and peaks within 1.25 x the file's bytes + 2 GiB (measured 2.77 GiB against a 3.27 GiB bound).
A full-size SD1.5 file in float16 (LDM names, 1.99 GiB) likewise: 2.91 GiB against 4.48 GiB.
The negative controls keep one full copy of the model and must exceed the bound. Each run is a subprocess
so its peak (VmHWM, tests/support/peak_memory.py) is its own. Slow: building the file takes about a minute,
each check about 50 s.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, fullsize
from parity.zoo.checkpoint import CheckpointWeights
from parity.zoo.published import CACHE_ENV, _no_init
from parity.zoo.source import ModelPath
from parity.zoo.weights import fill_deterministic
from tests.support.ldm_files import flux_checkpoint, write
from tests.support.peak_memory import peak_of

pytestmark = pytest.mark.slow

GIB = 2**30


@pytest.fixture(scope="module")
def flux_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("single-file-memory")
    os.environ[CACHE_ENV] = str(root / "cache")  # the subprocesses inherit it: configs in this test's cache
    from parity.zoo.single_file import config_folder

    with _no_init():
        transformer = fullsize.flux_transformer(1, single=1)
    fill_deterministic(transformer, 0, "flux/single-file")
    path = write(flux_checkpoint(transformer), root / "flux1-one-block.safetensors", torch.bfloat16)
    configs = root / "configs"  # the published configs, the transformer's at this block count
    shutil.copytree(config_folder("flux", "published"), configs)
    transformer.save_config(configs / "transformer")
    with torch.device("meta"):
        meta = fullsize.flux_transformer(1, single=1)
    lora = write_lora({"transformer": meta}, {"transformer": ("to_q", "to_k", "add_v_proj", "proj_mlp")},
                      root / "lora.safetensors", rank=8, alpha=4.0)
    del transformer
    yield str(path), str(configs), lora
    os.environ.pop(CACHE_ENV, None)


def _args(flux_file):
    path, configs, lora = flux_file
    return ["check", "--family", "flux", "--model-path", path, "--model-config", configs, "--lora", lora,
            "--dtype", "bfloat16", "-q"]


def _bound(path: str) -> float:
    return 1.25 * os.path.getsize(path) + 2 * GIB


def test_every_transformer_weight_but_the_swapped_modulation_is_read_back(flux_file):
    path = ModelPath(flux_file[0], config=flux_file[1])
    pipe = build_pipeline("flux", model_path=path, dtype=torch.bfloat16)
    checkpoint = CheckpointWeights(path)
    unread = []
    for name, t in pipe.transformer.named_parameters():
        stored = checkpoint.read("transformer", name, t)
        if stored is None:
            unread.append(name)
        else:
            assert torch.equal(stored, t), name
    assert unread == ["norm_out.linear.weight", "norm_out.linear.bias"]


@pytest.fixture(scope="module")
def sd15_file(tmp_path_factory):
    """A full-size SD1.5 single file as Civitai ships them: float16, LDM names, the published UNet, CLIP-L and
    VAE (1.99 GiB), written from the published architecture's folder (built once into the cache), and a
    rank-8 LoRA on the default targets (264 modules)."""
    from diffusers import AutoencoderKL

    from parity.zoo import get_family
    from parity.zoo.published import ensure_folder, meta_components, published
    from parity.zoo.single_file import PUBLISHED_VAE
    from tests.support.ldm_files import sd_checkpoint

    root = tmp_path_factory.mktemp("sd15-single-file-memory")
    fam = get_family("sd15")
    pipe = build_pipeline(fam, dtype=torch.float16, model_path=ensure_folder(fam, published(fam, dtype=torch.float16)))
    with _no_init():  # the folder's VAE is the tiny one sized to fit; a real file has the published one
        pipe.vae = fill_deterministic(AutoencoderKL(**PUBLISHED_VAE["sd15"]), 0, "sd15/vae").to(torch.float16)
    path = write(sd_checkpoint(pipe, "sd15"), root / "sd15-full.safetensors", torch.float16)
    del pipe
    lora = write_lora(meta_components(fam), fam.default_targets, root / "lora.safetensors", rank=8, alpha=4.0)
    return str(path), lora


def _sd15_args(sd15_file):
    path, lora = sd15_file
    return ["check", "--family", "sd15", "--model-path", path, "--lora", lora, "--dtype", "float16", "-q"]


@pytest.fixture(params=["flux", "sd15"])
def measured(request):
    """(the single file, the check's arguments) of each measured file."""
    files = request.getfixturevalue(f"{request.param}_file")
    return files[0], (_args if request.param == "flux" else _sd15_args)(files)


def test_single_file_check_peaks_within_the_file_and_a_quarter_plus_two_gib(measured):
    # measured 2026-12-06 on 2 cores: FLUX.1 2.77 GiB against 3.27 GiB; SD1.5 2.91 GiB against 4.48 GiB
    path, args = measured
    code, peak, out = peak_of(*args)
    assert code == 0, out[-2000:]
    assert "single-file checkpoint" in out
    assert peak <= _bound(path), f"peak {peak / GIB:.2f} GiB over {_bound(path) / GIB:.2f} GiB"


def test_control_a_check_keeping_a_full_copy_exceeds_the_bound(measured):
    path, args = measured
    code, peak, out = peak_of("--keep-full-copy", *args)
    assert code == 0, out[-2000:]
    assert peak > _bound(path)
