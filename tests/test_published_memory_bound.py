"""The check's memory prediction (parity/checks/memory.py) holds on folders of the published architectures at
full width with one block (memory is linear in blocks): `lora-parity check` peaks below what ``predict_check``
predicts from every model the folder holds, text encoder included, and a check that keeps one full copy of
the LoRA-capable components (the negative control) exceeds it. Each run is a subprocess so its peak (VmHWM,
tests/support/peak_memory.py) is its own. Measured on 2 cores, 24 GiB (2026-12-06), float32:

- Wan 2.2 T2V A14B, one block in each expert (two 0.58 B transformers, UMT5-XXL's widths in one layer:
  1.36 B): peak 6.05 GiB, prediction 8.48 GiB, a kept copy 10.40 GiB; both experts and the UMT5 count,
  whichever expert the file goes into.
- Z-Image-Turbo, one main layer (both refiners, embedders, final layer at 3840 wide; Qwen3-4B's widths in one
  layer: 1.04 B): peak 4.33 GiB, prediction 5.87 GiB, a kept copy 7.71 GiB.
- FLUX.2 [klein] 4B, one double-stream block and the published ratio's four single-stream ones (Qwen3-4B's
  widths in three layers: 1.24 B): peak 5.06 GiB, prediction 7.21 GiB, a kept copy 8.53 GiB. FLUX.2 [dev]'s
  one-block folder (1 + 6 blocks, three Mistral-Small-3.1 layers: 6.4 B) would need about 26 GB in float32,
  more than this machine: its route is pinned on the meta device (tests/harness/test_flux2_reduced_route.py).

Slow: building a folder at published widths and its checks take minutes each on 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from parity.checks.memory import predict_check
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, experts, get_family
from parity.zoo.published import builders_of, ensure_folder, meta_components, published
from tests.support.peak_memory import peak_of

pytestmark = pytest.mark.slow

GIB = 2**30
# family → the experts a file is checked in (None: a one-denoiser family)
EXPERTS = {"wan": ("high", "both"), "zimage": (None,), "flux2-klein": (None,)}
FAMILY_NAMES = [f for f in EXPERTS if f in FAMILIES]


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def one_block(request, tmp_path_factory):
    """(family, folder, LoRA file, the folder's parameter count) of the published model with one block."""
    fam = get_family(request.param)
    root = tmp_path_factory.mktemp(f"{fam.name}-memory-bound")
    model = published(fam, blocks=1, folder=str(root / f"{fam.name}-1-block"))
    folder = ensure_folder(fam, model)
    lora = write_lora(meta_components(fam, blocks=1), fam.default_targets, root / "lora.safetensors", rank=8,
                      alpha=4.0)
    return fam.name, folder, str(lora), model.parameters


def predicted(family: str, lora: str, expert: str | None, drop: tuple[str, ...] = ()) -> object:
    """predict_check from every model the folder holds (on the meta device), the file placed in its expert."""
    fam = get_family(family)
    with torch.device("meta"):
        models = {c: build(1) for c, build in builders_of(family).items() if c not in drop}
    read = read_lora(lora, {c: m for c, m in models.items() if c in fam.lora_components}, strict=True)
    placed = experts.place(read, fam, expert) if expert is not None else read
    return predict_check(models, [placed], {"float32": torch.float32}, copies_targeted=False)


def not_parameters(family: str) -> int:
    """Elements of the folder's state-dict entries the prediction does not count as parameters: another
    entry's parameter (UMT5's shared input embedding, Qwen3-4B's tied lm_head) and buffers (FLUX.2's VAE
    BatchNorm statistics)."""
    with torch.device("meta"):
        models = [build(1) for build in builders_of(family).values()]
    total = 0
    for model in models:
        seen: set[int] = set()
        parameters = {id(p) for p in model.parameters()}
        for t in model.state_dict(keep_vars=True).values():
            total += t.numel() if id(t) in seen or id(t) not in parameters else 0
            seen.add(id(t))
    return total


def check_args(family: str, folder: str, lora: str, expert: str | None) -> list[str]:
    return ["check", "--family", family, "--model-path", folder, "--lora", lora, "--dtype", "float32", "-q",
            *(["--expert", expert] if expert else [])]


def test_the_prediction_counts_every_model_the_folder_holds(one_block):
    family, _, lora, parameters = one_block
    expert = EXPERTS[family][0]
    assert predicted(family, lora, expert).parameters == parameters - not_parameters(family)
    for component in ("text_encoder", *get_family(family).experts.values()):
        if component != get_family(family).denoiser:
            assert predicted(family, lora, expert, drop=(component,)).parameters < parameters


def test_check_peaks_within_its_prediction(one_block):
    family, folder, lora, _ = one_block
    for expert in EXPERTS[family]:
        code, peak, out = peak_of(*check_args(family, folder, lora, expert))
        assert code == 0, out[-2000:]
        limit = predicted(family, lora, expert).peak
        print(f"{family} one-block float32 check ({expert or 'its denoiser'}): peak {peak / GIB:.2f} GiB, "
              f"prediction {limit / GIB:.2f} GiB")
        assert peak <= limit, f"peak {peak / GIB:.2f} GiB over the prediction {limit / GIB:.2f} GiB"


def test_a_check_keeping_a_full_copy_exceeds_the_prediction(one_block):
    family, folder, lora, _ = one_block
    expert = EXPERTS[family][0]
    code, peak, out = peak_of("--keep-full-copy", *check_args(family, folder, lora, expert))
    assert code == 0, out[-2000:]
    print(f"{family} one-block float32 check keeping a full copy: peak {peak / GIB:.2f} GiB")
    assert peak > predicted(family, lora, expert).peak
