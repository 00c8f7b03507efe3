"""The check's memory prediction (parity/checks/memory.py) holds on a Z-Image folder: `lora-parity check` on
the published Z-Image-Turbo architecture with one main layer (its 2 noise and 2 context refiners, the
embedders and the final layer at 3840 wide, and Qwen3-4B's widths in one layer: 1.04 B parameters; memory
is linear in layers) peaks below what ``predict_check`` predicts from every model the folder holds, the
Qwen3 included. The negative control keeps one full copy of the transformer, which must exceed the
prediction. Each run is a subprocess so its peak (VmHWM, tests/support/peak_memory.py) is its own. Slow:
building the folder and three checks at published widths take minutes on 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from parity.checks.memory import predict_check
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import get_family
from parity.zoo.published import builders_of, ensure_folder, meta_components, published
from tests.support.peak_memory import peak_of

pytestmark = pytest.mark.slow

GIB = 2**30


@pytest.fixture(scope="module")
def zimage_one_layer(tmp_path_factory):
    fam = get_family("zimage")
    root = tmp_path_factory.mktemp("zimage-memory-bound")
    model = published(fam, blocks=1, folder=str(root / "zimage-1-layer"))
    folder = ensure_folder(fam, model)
    lora = write_lora(meta_components(fam, blocks=1), fam.default_targets, root / "lora.safetensors", rank=8,
                      alpha=4.0)
    return folder, str(lora), model.parameters


def predicted(lora: str, drop: tuple[str, ...] = ()) -> object:
    """predict_check from every model the folder holds (on the meta device)."""
    fam = get_family("zimage")
    with torch.device("meta"):
        models = {c: build(1) for c, build in builders_of("zimage").items() if c not in drop}
    read = read_lora(lora, {c: m for c, m in models.items() if c in fam.lora_components}, strict=True)
    return predict_check(models, [read], {"float32": torch.float32}, copies_targeted=False)


def check_args(folder: str, lora: str) -> list[str]:
    return ["check", "--family", "zimage", "--model-path", folder, "--lora", lora, "--dtype", "float32", "-q"]


def test_the_prediction_counts_every_model_the_folder_holds(zimage_one_layer):
    folder, lora, parameters = zimage_one_layer
    # transformer, text_encoder (Qwen3, no tied weights in its state dict), vae: the folder's own count
    assert predicted(lora).parameters == parameters
    assert predicted(lora, drop=("text_encoder",)).parameters < parameters


def test_check_peaks_within_its_prediction(zimage_one_layer):
    folder, lora, _ = zimage_one_layer
    code, peak, out = peak_of(*check_args(folder, lora))
    assert code == 0, out[-2000:]
    limit = predicted(lora).peak
    print(f"zimage one-layer float32 check: peak {peak / GIB:.2f} GiB, prediction {limit / GIB:.2f} GiB")
    assert peak <= limit, f"peak {peak / GIB:.2f} GiB over the prediction {limit / GIB:.2f} GiB"


def test_a_check_keeping_a_full_copy_exceeds_the_prediction(zimage_one_layer):
    folder, lora, _ = zimage_one_layer
    code, peak, out = peak_of("--keep-full-copy", *check_args(folder, lora))
    assert code == 0, out[-2000:]
    print(f"zimage one-layer float32 check keeping a full copy: peak {peak / GIB:.2f} GiB")
    assert peak > predicted(lora).peak
