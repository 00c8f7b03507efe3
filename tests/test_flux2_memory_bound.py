"""The check's memory prediction (parity/checks/memory.py) holds on a FLUX.2 folder: `lora-parity check` on the
published FLUX.2 [klein] 4B architecture with one double-stream block (and the published ratio's four
single-stream ones, the embedders and modulations at 3072 wide, and Qwen3-4B's widths in three layers: 1.24 B
parameters; memory is linear in blocks) peaks below what ``predict_check`` predicts from every model the
folder holds, the Qwen3 included. The negative control keeps one full copy of the transformer, which must
exceed the prediction. Each run is a subprocess so its peak (VmHWM, tests/support/peak_memory.py) is its own.
Slow: building the folder and two checks at published widths take minutes on 2 cores. FLUX.2 [dev]'s one-block
folder (1 + 6 blocks, three Mistral-Small-3.1 layers: 6.4 B) would need about 26 GB in float32, more than this
machine: its route is pinned on the meta device (tests/harness/test_flux2_reduced_route.py).
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
FAMILY = "flux2-klein"


@pytest.fixture(scope="module")
def klein_one_block(tmp_path_factory):
    fam = get_family(FAMILY)
    root = tmp_path_factory.mktemp("flux2-memory-bound")
    model = published(fam, blocks=1, folder=str(root / "klein-1-block"))
    folder = ensure_folder(fam, model)
    lora = write_lora(meta_components(fam, blocks=1), fam.default_targets, root / "lora.safetensors", rank=8,
                      alpha=4.0)
    return folder, str(lora), model.parameters


def predicted(lora: str, drop: tuple[str, ...] = ()) -> object:
    """predict_check from every model the folder holds (on the meta device)."""
    fam = get_family(FAMILY)
    with torch.device("meta"):
        models = {c: build(1) for c, build in builders_of(FAMILY).items() if c not in drop}
    read = read_lora(lora, {c: m for c, m in models.items() if c in fam.lora_components}, strict=True)
    return predict_check(models, [read], {"float32": torch.float32}, copies_targeted=False)


def not_parameters() -> int:
    """Elements of the state-dict entries the prediction does not count as parameters: another entry's
    parameter (Qwen3-4B's tied lm_head) and buffers (the VAE's BatchNorm statistics, 2 x 128 + 1)."""
    with torch.device("meta"):
        models = [build(1) for build in builders_of(FAMILY).values()]
    total = 0
    for model in models:
        seen: set[int] = set()
        parameters = {id(p) for p in model.parameters()}
        for t in model.state_dict(keep_vars=True).values():
            total += t.numel() if id(t) in seen or id(t) not in parameters else 0
            seen.add(id(t))
    return total


def check_args(folder: str, lora: str) -> list[str]:
    return ["check", "--family", FAMILY, "--model-path", folder, "--lora", lora, "--dtype", "float32", "-q"]


def test_the_prediction_counts_every_model_the_folder_holds(klein_one_block):
    folder, lora, parameters = klein_one_block
    assert predicted(lora).parameters == parameters - not_parameters()
    assert predicted(lora, drop=("text_encoder",)).parameters < parameters - not_parameters()


def test_check_peaks_within_its_prediction(klein_one_block):
    folder, lora, _ = klein_one_block
    code, peak, out = peak_of(*check_args(folder, lora))
    assert code == 0, out[-2000:]
    limit = predicted(lora).peak
    print(f"flux2-klein one-block float32 check: peak {peak / GIB:.2f} GiB, prediction {limit / GIB:.2f} GiB")
    assert peak <= limit, f"peak {peak / GIB:.2f} GiB over the prediction {limit / GIB:.2f} GiB"


def test_a_check_keeping_a_full_copy_exceeds_the_prediction(klein_one_block):
    folder, lora, _ = klein_one_block
    code, peak, out = peak_of("--keep-full-copy", *check_args(folder, lora))
    assert code == 0, out[-2000:]
    print(f"flux2-klein one-block float32 check keeping a full copy: peak {peak / GIB:.2f} GiB")
    assert peak > predicted(lora).peak
