"""Z-Image files of published width without --model-path (parity/zoo/route.py, parity/zoo/published.py):
a file is read against Z-Image-Turbo (6.15 B: the whole needs about 24 GiB in float32, 12 in bfloat16); a
float32 run on a smaller machine is checked on a model holding only the main layers the file targets,
renumbered, with both refiners kept whole as the modules outside the layers are; a bfloat16 run takes the
whole. Planned on the meta device at the published widths. The files are saved by diffusers'
``ZImagePipeline.save_lora_weights`` (what diffusers' trainers write), never by parity.lora.
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

pytestmark = needs("zimage")

TURBO, BASE = (v.name for v in pub.VARIANTS["zimage"])
LAYERS = ["layers.{}.attention.to_q", "layers.{}.feed_forward.w1"]
REFINERS = ["noise_refiner.1.attention.to_k", "context_refiner.0.feed_forward.w2"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pub.CACHE_ENV, str(root))
    return root


@pytest.fixture(scope="module")
def tiny():
    fam = get_family("zimage")
    return fam.components(build_pipeline(fam))


def saved(folder: Path, names: list[str], seed: int = 8) -> Path:
    transformer = pub.meta_components(get_family("zimage"))["transformer"]
    return diffusers_saved(folder, "ZImagePipeline", transformer, names, seed)


def route_of(paths: list[Path], tiny, dtype: torch.dtype = torch.float32) -> rt.Route | None:
    def predict(components, loras, hint):
        dtypes = {"run": dtype} if hint is None else {"hint": hint}
        return predict_check(components, loras, dtypes, copies_targeted=False)

    return rt.published_route(get_family("zimage"), [str(p) for p in paths], tiny, [dtype], False, predict)


def sparse_file(tmp_path: Path) -> Path:
    return saved(tmp_path / "a", [n.format(b) for b in (5, 29) for n in LAYERS] + REFINERS)


def test_a_sparse_float32_file_is_checked_on_the_layers_it_targets_and_both_refiners(tmp_path, cache, monkeypatch,
                                                                                        tiny):
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of([sparse_file(tmp_path)], tiny)
    assert route is not None and route.whole is not None and route.prediction is not None
    assert route.whole.peak > 22.3 * GIB > route.prediction.peak
    assert route.model.variant == TURBO and route.reduction.kept == {"layers": (5, 29)} and route.model.blocks == 2
    transformer = route.components["transformer"]
    assert (len(transformer.layers), len(transformer.noise_refiner), len(transformer.context_refiner)) == (2, 2, 2)
    assert {m for _, m in route.loras[0].modules} == {n.format(b) for b in (0, 1) for n in LAYERS} | set(REFINERS)
    assert "Z-Image-Turbo, 2 of 30 blocks" in route.describe() and "(block 5 as 0, block 29 as 1)" in route.describe()
    # the header renumbered with the keys; the refiners' names are no main layer's and stay
    with safe_open(route.paths[0], "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert sorted(header["transformer.target_modules"]) == sorted(
        [n.format(b) for b in (0, 1) for n in LAYERS] + REFINERS)


def test_a_bfloat16_run_takes_the_whole_model(tmp_path, cache, monkeypatch, tiny):
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of([sparse_file(tmp_path)], tiny, torch.bfloat16)
    assert route.reduction is None and route.model.blocks is None and route.model.dtype == torch.bfloat16
    assert route.prediction.peak < 22.3 * GIB


def test_a_file_fitting_no_published_zimage_is_refused_naming_what_does_not_fit(tmp_path, cache, tiny):
    # negative control: the up factor of layer 3's w1 one row short fits neither name's shapes
    from safetensors.torch import load_file, save_file

    path = saved(tmp_path / "a", [n.format(3) for n in LAYERS])
    tensors = load_file(path)
    key = "transformer.layers.3.feed_forward.w1.lora_B.weight"
    tensors[key] = tensors[key][:-1].contiguous()
    save_file(tensors, path)
    with pytest.raises(ParityInputError, match="layers.3.feed_forward.w1"):
        route_of([path], tiny)


def test_a_header_is_renumbered_only_in_the_reduced_block_lists():
    header = {"meta": json.dumps({"target_modules": ["layers.5.attention.to_q", "noise_refiner.1.attention.to_q",
                                                     "text_model.encoder.layers.5.self_attn.q_proj",
                                                     "transformer_blocks.5.attn.to_q"]})}
    zimage = json.loads(rt._header_renamed(header, rt.Reduction("zimage", {"layers": (5,)}))["meta"])
    assert zimage["target_modules"][:2] == ["layers.0.attention.to_q", "noise_refiner.1.attention.to_q"]
    # negative control: a FLUX.1 reduction renumbers its transformer block and leaves a CLIP layer of the same
    # index alone, though "layers" is in the pattern now
    flux = json.loads(rt._header_renamed(header, rt.Reduction("flux", {"transformer_blocks": (5,),
                                                                       "single_transformer_blocks": ()}))["meta"])
    assert flux["target_modules"][2:] == ["text_model.encoder.layers.5.self_attn.q_proj",
                                          "transformer_blocks.0.attn.to_q"]


def test_published_names_and_depths():
    fam = get_family("zimage")
    assert pub.published(fam, 3).describe().startswith("published zimage architecture (Z-Image-Turbo, 3 of 30 blocks)")
    assert pub.published(fam, variant=BASE).describe().startswith("published zimage architecture (Z-Image)")
    # the same shapes under both names: a file always goes to the first
    assert pub.published(fam).component_parameters == pub.published(fam, variant=BASE).component_parameters
    with pytest.raises(ParityInputError, match="--blocks 31: Z-Image-Turbo takes 1 to 30"):
        pub.published(fam, 31)
    with pytest.raises(ParityInputError, match="--published z-image-edit: zimage has z-image-turbo, z-image"):
        pub.published(fam, variant="z-image-edit")


def test_the_whole_prediction_counts_the_6b_transformer_and_a_qwen3_4b_layer():
    with torch.device("meta"):
        models = {c: build(None) for c, build in pub.builders_of("zimage").items()}
    counts = {c: sum(p.numel() for p in m.parameters()) for c, m in models.items()}
    assert counts["transformer"] == 6_154_908_736
    # one Qwen3-4B layer: q 2560 -> 4096, k and v 2560 -> 1024, o 4096 -> 2560, MLP 3 x 2560 x 9728, norms
    # (2 x 2560, q/k norms 2 x 128), the final norm 2560, over the tiny tokenizer's embedding
    layer = 2560 * 4096 * 2 + 2560 * 1024 * 2 + 3 * 2560 * 9728 + 2 * 2560 + 2 * 128
    assert counts["text_encoder"] == layer + 2560 + models["text_encoder"].embed_tokens.weight.numel()
