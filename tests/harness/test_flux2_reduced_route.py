"""FLUX.2 files of published width without --model-path (parity/zoo/route.py, parity/zoo/published.py).
FLUX.2 [dev] is 32 B: its whole needs more than 60 GiB even in bfloat16, far more than this machine's 24
GiB in any dtype, so a file is checked on a published-width model holding only the double- and single-stream
blocks it targets, renumbered, and the run says so. FLUX.2 [klein] files go to
4B or 9B by their shapes; 4B fits whole in bfloat16. Planned on the meta device (predicted sizes, nothing
built). The files are saved by diffusers' ``save_lora_weights`` (what diffusers' trainers write), never by
parity.lora.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from parity.checks.memory import GIB, MEMORY_ENV, predict_check
from parity.errors import ParityInputError
from parity.zoo import build_pipeline, get_family
from parity.zoo import published as pub
from parity.zoo import route as rt
from tests.support.diffusers_saved import diffusers_saved
from tests.support.families import needs

pytestmark = needs("flux2", "flux2-klein")

(DEV,) = (v.name for v in pub.VARIANTS["flux2"])
KLEIN_4B, KLEIN_9B = (v.name for v in pub.VARIANTS["flux2-klein"])
NAMES = ["transformer_blocks.3.attn.to_q", "transformer_blocks.3.ff.linear_in",
         "single_transformer_blocks.{last}.attn.to_qkv_mlp_proj"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pub.CACHE_ENV, str(root))
    return root


def saved(folder: Path, family: str, variant: str, names: list[str], seed: int = 8) -> Path:
    transformer = pub.meta_components(get_family(family), variant=variant)["transformer"]
    return diffusers_saved(folder, "Flux2Pipeline", transformer, names, seed)


_TINY: dict[str, dict] = {}


def route_of(family: str, paths: list[Path], dtype: torch.dtype = torch.bfloat16) -> rt.Route | None:
    fam = get_family(family)
    if family not in _TINY:  # what the files are compared with first: built once a family
        _TINY[family] = fam.components(build_pipeline(fam))

    def predict(components, loras, hint):
        return predict_check(components, loras, {"run": dtype} if hint is None else {"hint": hint},
                             copies_targeted=False)

    return rt.published_route(fam, [str(p) for p in paths], _TINY[family], [dtype], False, predict)


def names(last: int) -> list[str]:
    return [n.format(last=last) for n in NAMES]


@pytest.mark.parametrize("dtype", [
    torch.bfloat16,
    pytest.param(torch.float32, marks=pytest.mark.slow),  # the same route from a wider whole: 1.2 s on 2 cores
])
def test_flux2_dev_takes_the_reduced_route_in_either_dtype_and_says_so(tmp_path, cache, monkeypatch, dtype):
    path = saved(tmp_path / "a", "flux2", DEV, names(47))
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("flux2", [path], dtype)
    assert route is not None and route.whole is not None and route.reduction is not None
    # the whole: 32.2 B transformer parameters and the encoder, over 60 GiB even in bfloat16
    assert route.whole.peak > 60 * GIB and route.prediction.peak < 22.3 * GIB
    assert route.model.variant == DEV and (route.model.blocks, route.model.single) == (1, 1)
    assert route.reduction.kept == {"transformer_blocks": (3,), "single_transformer_blocks": (47,)}
    transformer = route.components["transformer"]
    assert (len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)) == (1, 1)
    renumbered = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.ff.linear_in",
                  "single_transformer_blocks.0.attn.to_qkv_mlp_proj"]
    assert {m for _, m in route.loras[0].modules} == set(renumbered)
    text = route.describe()
    assert "FLUX.2 [dev], 1 of 8 double and 1 of 48 single blocks" in text
    assert "(double block 3 as 0, single block 47 as 0)" in text
    with safe_open(route.paths[0], "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert sorted(header["transformer.target_modules"]) == sorted(renumbered)


@pytest.mark.slow  # 56 modules saved and read at 6144 wide, the hint's predictions: 2 s on 2 cores
def test_a_flux2_dev_file_on_every_block_is_refused_with_what_would_fit(tmp_path, cache, monkeypatch):
    # negative control of the route: nothing to leave out, so no reduced model, and the hint says how many fit
    every = [f"transformer_blocks.{b}.attn.to_q" for b in range(8)] + \
        [f"single_transformer_blocks.{b}.attn.to_out" for b in range(48)]
    path = saved(tmp_path / "a", "flux2", DEV, every)
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("flux2", [path])
    assert route.reduction is None and "target every block of the published flux2 architecture" in route.hint
    assert "blocks would fit" in route.hint


def test_klein_files_go_to_the_published_model_their_shapes_fit(tmp_path, cache, monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    four = route_of("flux2-klein", [saved(tmp_path / "4b", "flux2-klein", KLEIN_4B, names(19))])
    assert four.model.variant == KLEIN_4B and four.reduction is None  # 4 B whole in bfloat16
    assert "FLUX.2 [klein] 4B" in four.describe()
    nine = route_of("flux2-klein", [saved(tmp_path / "9b", "flux2-klein", KLEIN_9B, names(23))])
    assert nine.model.variant == KLEIN_9B


def test_a_file_fitting_no_published_klein_is_refused_naming_what_does_not_fit(tmp_path, cache):
    # negative control: the 4B file's up factor one row short fits neither 4B nor 9B
    from safetensors.torch import load_file, save_file

    path = saved(tmp_path / "a", "flux2-klein", KLEIN_4B, names(19))
    tensors = load_file(path)
    key = "transformer.transformer_blocks.3.ff.linear_in.lora_B.weight"
    tensors[key] = tensors[key][:-1].contiguous()
    save_file(tensors, path)
    with pytest.raises(ParityInputError, match="transformer_blocks.3.ff.linear_in"):
        route_of("flux2-klein", [path])


def test_published_names_and_depths():
    dev, klein = get_family("flux2"), get_family("flux2-klein")
    assert pub.published(dev, 2).describe().startswith(
        "published flux2 architecture (FLUX.2 [dev], 2 of 8 double and 12 of 48 single blocks)")
    assert pub.published(klein, 1, variant=KLEIN_9B).describe().startswith(
        "published flux2-klein architecture (FLUX.2 [klein] 9B, 1 of 8 double and 3 of 24 single blocks)")
    assert rt.published_depth("flux2-klein", KLEIN_4B) == (5, 20)
    with pytest.raises(ParityInputError, match="--blocks 9: FLUX.2 \\[dev\\] takes 1 to 8"):
        pub.published(dev, 9)
    with pytest.raises(ParityInputError,
                       match="--published flux.2-pro: flux2-klein has flux.2-klein-4b, flux.2-klein-9b"):
        pub.published(klein, variant="flux.2-pro")
