"""A published-width FLUX.1 single file in BFL's names (one double- and one single-stream block: 0.55 B
parameters, 1.02 GiB in bfloat16; diffusers' converter needs the published width, memory is linear in
blocks): `lora-parity check` loads it with from_single_file, reads every transformer weight but the final
modulation (its halves swapped: no view of one stored tensor) back from the file through the fused-qkv row
blocks, and peaks within 1.25 x the file's bytes + 2 GiB (measured 2.77 GiB against a 3.27 GiB bound).
The negative control keeps one full copy of the model and must exceed the bound. Each run is a subprocess
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


def test_single_file_check_peaks_within_the_file_and_a_quarter_plus_two_gib(flux_file):
    code, peak, out = peak_of(*_args(flux_file))
    assert code == 0, out[-2000:]
    assert "single-file checkpoint" in out
    assert peak <= _bound(flux_file[0]), f"peak {peak / GIB:.2f} GiB over {_bound(flux_file[0]) / GIB:.2f} GiB"


def test_control_a_check_keeping_a_full_copy_exceeds_the_bound(flux_file):
    code, peak, out = peak_of("--keep-full-copy", *_args(flux_file))
    assert code == 0, out[-2000:]
    assert peak > _bound(flux_file[0])


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
