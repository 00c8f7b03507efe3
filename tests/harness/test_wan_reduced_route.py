"""Wan files of published width without --model-path (parity/zoo/route.py, parity/zoo/published.py): a
14 B-wide file is read against Wan 2.2 T2V A14B (two experts) and, where the whole does not fit, checked
on a model holding only the blocks it targets in both experts, renumbered; a 1.3 B-wide file goes to Wan
2.1 T2V 1.3B (one transformer); a file fitting neither is refused naming what does not fit.

Routes are planned on the meta device at the published widths. The end-to-end checks swap the published
Wan 2.2 model for a narrow one (the tiny widths x4, all 40 blocks in each expert), with the baseline
memory terms zeroed so a few MiB stand in for a small machine. The files are saved by diffusers'
``WanPipeline.save_lora_weights`` (what diffusers' trainers write), never by parity.lora.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from parity.checks import memory
from parity.checks.memory import GIB, MEMORY_ENV, predict_check
from parity.cli import main
from parity.errors import ParityInputError
from parity.zoo import build_pipeline, get_family
from parity.zoo import published as pub
from parity.zoo import route as rt
from tests.support.diffusers_saved import diffusers_saved

A14B, W14B, W1_3B = (v.name for v in pub.VARIANTS["wan"])


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pub.CACHE_ENV, str(root))
    return root


def saved(folder: Path, transformer: torch.nn.Module, names: list[str], seed: int = 8) -> Path:
    return diffusers_saved(folder, "WanPipeline", transformer, names, seed)


def meta_transformer(variant: str) -> torch.nn.Module:
    return pub.meta_components(get_family("wan"), variant=variant)["transformer"]


def route_of(paths: list[Path]) -> rt.Route | None:
    fam = get_family("wan")

    def predict(components, loras, dtype):
        dtypes = {"float32": torch.float32} if dtype is None else {"hint": dtype}
        return predict_check(components, loras, dtypes, copies_targeted=False)

    return rt.published_route(fam, [str(p) for p in paths], fam.components(build_pipeline(fam)), [torch.float32],
                              False, predict)


FFN = ["blocks.{}.ffn.net.0.proj", "blocks.{}.attn1.to_q"]


def test_a_sparse_14b_file_goes_to_both_experts_reduced_to_its_blocks(tmp_path, cache, monkeypatch):
    path = saved(tmp_path / "a", meta_transformer(A14B), [n.format(b) for b in (5, 39) for n in FFN])
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of([path])
    assert route is not None and route.whole is not None and route.prediction is not None
    assert route.whole.peak > 22.3 * GIB > route.prediction.peak  # two 14 B experts: 28.6 B parameters
    assert route.model.variant == A14B and route.reduction.kept == {"blocks": (5, 39)} and route.model.blocks == 2
    assert {c: len(m.blocks) for c, m in route.components.items()} == {"transformer": 2, "transformer_2": 2}
    assert {m for _, m in route.loras[0].modules} == {n.format(b) for b in (0, 1) for n in FFN}
    text = route.describe()
    assert "Wan 2.2 T2V A14B, 2 of 40 blocks" in text and "(block 5 as 0, block 39 as 1)" in text
    # the header's target_modules renumbered with the keys
    from safetensors import safe_open

    with safe_open(route.paths[0], "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert sorted(header["transformer.target_modules"]) == sorted(n.format(b) for b in (0, 1) for n in FFN)


def test_a_1_3b_file_goes_to_wan_2_1_1_3b_whole_where_it_fits(tmp_path, cache, monkeypatch):
    path = saved(tmp_path / "a", meta_transformer(W1_3B), [n.format(b) for b in (0, 29) for n in FFN])
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of([path])
    assert route.model.variant == W1_3B and route.reduction is None
    assert set(route.components) == {"transformer"}  # Wan 2.1: no transformer_2
    assert "Wan 2.1 T2V 1.3B" in route.describe()


def test_a_file_fitting_no_published_wan_is_refused_naming_what_does_not_fit(tmp_path, cache):
    # negative control: the 14 B file's up factor one row short fits neither 14 B nor 1.3 B
    from safetensors.torch import load_file, save_file

    path = saved(tmp_path / "a", meta_transformer(A14B), [n.format(3) for n in FFN])
    tensors = load_file(path)
    key = "transformer.blocks.3.ffn.net.0.proj.lora_B.weight"
    tensors[key] = tensors[key][:-1].contiguous()
    save_file(tensors, path)
    with pytest.raises(ParityInputError, match="blocks.3.ffn.net.0.proj"):
        route_of([path])


def test_published_names_and_depths():
    fam = get_family("wan")
    assert pub.published(fam, 3).describe().startswith("published wan architecture (Wan 2.2 T2V A14B, 3 of 40 blocks)")
    with pytest.raises(ParityInputError, match="--blocks 31: Wan 2.1 T2V 1.3B takes 1 to 30"):
        pub.published(fam, 31, variant=W1_3B)
    with pytest.raises(ParityInputError, match="--published wan3: wan has wan2.2-t2v-a14b, wan2.1-t2v-14b"):
        pub.published(fam, variant="wan3")
    with pytest.raises(ParityInputError, match="--published wan2.1-t2v-14b: flux has only its one"):
        pub.published(get_family("flux"), variant=W14B)


# ---------------------------------------------------------------- end to end, on a narrow Wan 2.2


def narrow_wan(blocks: int | None = None) -> torch.nn.Module:
    """The tiny widths x4 (4 heads of 16, ffn 128, text_dim 64) with Wan's 40 blocks."""
    from diffusers import WanTransformer3DModel

    from parity.zoo.wan import Z_DIM

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=16,
                                 in_channels=Z_DIM, out_channels=Z_DIM, text_dim=64, freq_dim=16, ffn_dim=128,
                                 num_layers=40 if blocks is None else blocks, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def narrow_umt5(blocks: int | None = None) -> torch.nn.Module:
    from parity.zoo.tokenizer import tiny_t5_tokenizer
    from parity.zoo.wan import tiny_umt5

    model = tiny_umt5(len(tiny_t5_tokenizer()))
    config = model.config
    config.d_model = 64
    return type(model)(config)


@pytest.fixture
def small_machine(cache, monkeypatch):
    """The narrow Wan 2.2 as the published one, on a machine with half the memory its whole check needs."""
    narrow = pub.Variant(A14B, "Wan 2.2 T2V A14B", {"transformer": narrow_wan, "transformer_2": narrow_wan,
                                                    "text_encoder": narrow_umt5}, 40)
    monkeypatch.setitem(pub.VARIANTS, "wan", (narrow,))
    for module in (memory, pub):
        monkeypatch.setattr(module, "BASELINE", 0)
    monkeypatch.setattr(memory, "FREE_HEAP_LIMIT", 0)
    with torch.device("meta"):
        whole = predict_check({"transformer": narrow_wan(), "transformer_2": narrow_wan()}, [],
                              {"float32": torch.float32}, copies_targeted=False)
    monkeypatch.setenv(MEMORY_ENV, str(whole.peak / 2 / GIB))
    return get_family("wan")


def narrow_file(tmp_path: Path, seed: int = 8) -> Path:
    with torch.device("meta"):
        transformer = narrow_wan()
    return saved(tmp_path / f"narrow-{seed}", transformer, [n.format(b) for b in (7, 38) for n in FFN], seed)


@pytest.mark.slow  # three checks on a 40-block-per-expert narrow model: 4-7 s each on 2 cores
@pytest.mark.parametrize("expert", ["high", "low", "both"])
def test_the_check_runs_on_the_targeted_blocks_of_each_expert(tmp_path, small_machine, cache, capsys, expert):
    path = narrow_file(tmp_path)
    out = tmp_path / "report.json"
    code = main(["check", "--family", "wan", "--lora", str(path), "--expert", expert, "--json", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, printed[-3000:] + err[-3000:]
    assert "only the 2 of its 40 blocks the files target (block 7 as 0, block 38 as 1)" in err
    (folder,) = (cache / "published").iterdir()
    for component in ("transformer", "transformer_2"):
        assert json.loads((folder / component / "config.json").read_text())["num_layers"] == 2
    report = json.loads(out.read_text())
    assert report["ok"] and "block 7 as 0" in report["model"]


@pytest.mark.slow  # a check on the narrow model: 2.5 s
def test_negative_control_the_file_not_renumbered_fails(tmp_path, small_machine, cache, monkeypatch, capsys):
    from parity.checks import fuse

    path = narrow_file(tmp_path)
    monkeypatch.setattr(fuse, "diffusers_source", lambda lora: str(path))  # block 7 given to a 2-block model
    code = main(["check", "--family", "wan", "--lora", str(path), "--expert", "both", "-q"])
    printed = capsys.readouterr().out
    # refused by PEFT (its header names blocks 7 and 38) or, were it loaded, merged into no block
    assert code == 1 and "blocks.7." in printed, printed[-3000:]
