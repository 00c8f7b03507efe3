"""Issue 15's memory bound, measured: `lora-parity check` on a full-width FLUX.1 transformer with one
double- and two single-stream blocks (0.81 B parameters; memory is linear in blocks) peaks within the
model's own bytes × 1.25 + 2 GiB of host memory, in float32 and bfloat16, each on a folder stored in
its dtype as published checkpoints are (a bfloat16 check of a float32 folder holds the file diffusers
maps while it loads beside the model it builds: docs/checking-files.md, Memory). The negative control is the same
check keeping one full copy of the model, which must exceed the bound. Each run is a subprocess so its
peak (VmHWM, tests/support/peak_memory.py) is its own. Slow: building the folders and three checks take about 6 minutes.
"""

from __future__ import annotations


import pytest
import torch

from parity.lora.synth import write_lora
from parity.zoo import get_family
from parity.zoo.published import ensure_folder, meta_components, published
from tests.support.peak_memory import peak_of

pytestmark = pytest.mark.slow

GIB = 2**30


@pytest.fixture(scope="module")
def flux_one_block(tmp_path_factory):
    fam = get_family("flux")
    root = tmp_path_factory.mktemp("memory-bound")
    folders = {}
    for name in ("float32", "bfloat16"):
        model = published(fam, blocks=1, folder=str(root / f"flux-1-block-{name}"), dtype=getattr(torch, name))
        folders[name] = ensure_folder(fam, model)
    components = meta_components(fam, blocks=1)
    lora = write_lora(components, fam.default_targets, root / "lora.safetensors", rank=8, alpha=4.0)
    return folders, lora, model.parameters  # every model in the folder: the check loads them all


def bound(parameters: int, dtype: torch.dtype) -> float:
    return 1.25 * parameters * torch.empty((), dtype=dtype).element_size() + 2 * GIB


def check_args(folder: str, lora: str, dtype: str) -> list[str]:
    return ["check", "--family", "flux", "--model-path", folder, "--lora", str(lora), "--dtype", dtype, "-q"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_check_peaks_within_the_model_and_a_quarter_plus_two_gib(flux_one_block, dtype):
    folders, lora, parameters = flux_one_block
    code, peak, out = peak_of(*check_args(folders[dtype], lora, dtype))
    assert code == 0, out[-2000:]
    limit = bound(parameters, getattr(torch, dtype))
    assert peak <= limit, f"peak {peak / GIB:.2f} GiB over the bound {limit / GIB:.2f} GiB"


def test_a_check_keeping_a_full_copy_of_the_model_exceeds_the_bound(flux_one_block):
    folders, lora, parameters = flux_one_block
    code, peak, out = peak_of("--keep-full-copy", *check_args(folders["float32"], lora, "float32"))
    assert code == 0, out[-2000:]
    assert peak > bound(parameters, torch.float32)
