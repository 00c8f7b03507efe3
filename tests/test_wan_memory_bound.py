"""The check's memory prediction (parity/checks/memory.py) holds on a Wan 2.2 folder: `lora-parity check`
on the published Wan 2.2 T2V A14B architecture with one block in each expert (two 0.58 B-parameter
14 B-wide transformers, UMT5-XXL's widths in one layer, 1.36 B parameters; memory is linear in blocks)
peaks below what ``predict_check`` predicts from every model the folder holds: both experts and the
UMT5 count, whichever expert the file goes into. The negative control keeps one full copy of the
LoRA-capable components (both experts), which must exceed the prediction. Each run is a subprocess so its
peak (VmHWM, tests/support/peak_memory.py) is its own. Slow: building the folder (70 s) and three checks
take about 6 minutes on 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from parity.checks.memory import predict_check
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import experts, get_family
from parity.zoo.published import builders_of, ensure_folder, meta_components, published
from tests.support.peak_memory import peak_of

pytestmark = pytest.mark.slow

GIB = 2**30


@pytest.fixture(scope="module")
def wan_one_block(tmp_path_factory):
    fam = get_family("wan")
    root = tmp_path_factory.mktemp("wan-memory-bound")
    model = published(fam, blocks=1, folder=str(root / "wan-1-block"))
    folder = ensure_folder(fam, model)
    lora = write_lora(meta_components(fam, blocks=1), fam.default_targets, root / "lora.safetensors", rank=8,
                      alpha=4.0)
    return folder, str(lora), model.parameters


def predicted(lora: str, expert: str, drop: tuple[str, ...] = ()) -> object:
    """predict_check from every model the folder holds (on the meta device), the file placed in its expert."""
    fam = get_family("wan")
    with torch.device("meta"):
        models = {c: build(1) for c, build in builders_of("wan").items() if c not in drop}
    read = read_lora(lora, {c: m for c, m in models.items() if c in fam.lora_components}, strict=True)
    placed = experts.place(read, fam, expert)
    return predict_check(models, [placed], {"float32": torch.float32}, copies_targeted=False)


def tied_elements() -> int:
    """Elements of the state-dict entries that are another entry's parameter (tied weights)."""
    with torch.device("meta"):
        models = [build(1) for build in builders_of("wan").values()]
    total = 0
    for model in models:
        seen: set[int] = set()
        for t in model.state_dict(keep_vars=True).values():
            total += t.numel() if id(t) in seen else 0
            seen.add(id(t))
    return total


def check_args(folder: str, lora: str, expert: str) -> list[str]:
    return ["check", "--family", "wan", "--model-path", folder, "--lora", lora, "--dtype", "float32",
            "--expert", expert, "-q"]


def test_the_prediction_counts_both_experts_and_the_umt5(wan_one_block):
    folder, lora, parameters = wan_one_block
    prediction = predicted(lora, "high")
    # transformer, transformer_2, text_encoder (UMT5), vae: the folder's count is its state dicts', where
    # UMT5's tied input embedding (shared.weight = encoder.embed_tokens.weight) stands twice
    assert prediction.parameters == parameters - tied_elements()
    assert predicted(lora, "high", drop=("transformer_2",)).parameters < parameters
    assert predicted(lora, "high", drop=("text_encoder",)).parameters < parameters


@pytest.mark.parametrize("expert", ["high", "both"])
def test_check_peaks_within_its_prediction(wan_one_block, expert):
    folder, lora, _ = wan_one_block
    code, peak, out = peak_of(*check_args(folder, lora, expert))
    assert code == 0, out[-2000:]
    limit = predicted(lora, expert).peak
    assert peak <= limit, f"peak {peak / GIB:.2f} GiB over the prediction {limit / GIB:.2f} GiB"


def test_a_check_keeping_a_full_copy_of_both_experts_exceeds_the_prediction(wan_one_block):
    folder, lora, _ = wan_one_block
    code, peak, out = peak_of("--keep-full-copy", *check_args(folder, lora, "high"))
    assert code == 0, out[-2000:]
    assert peak > predicted(lora, "high").peak
