"""A model larger than the machine (issue 30, item 8; parity/zoo/route.py): without --model-path, a
real-size file the whole published architecture cannot hold in memory is checked on a published-width
model holding only the blocks it targets, renumbered, and the run says so; a file that targets every
block is refused up front with the prediction and how many blocks would fit.

Routes are planned on the meta device (no memory); the checks that run end to end use FLUX.1's
published entry swapped for a narrow one (the tiny widths x4, all 19 + 38 blocks), with the baseline
memory terms zeroed so a few MiB stand in for a small machine. The files are written by
tests/support/trainer_flux.py and trainer_files.py (the trainers' own key names), never by parity.lora.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from parity.checks import memory
from parity.checks.memory import GIB, MEMORY_ENV, predict_check
from parity.cli import main
from parity.errors import ParityInputError
from parity.zoo import build_pipeline, get_family
from parity.zoo import published as pub
from parity.zoo import route as rt
from tests.support.cli import assert_one_line_error
from tests.support.peak_memory import MARKER
from tests.support.trainer_files import qwen_file
from tests.support.trainer_flux import kohya_flux_modules, dreambooth_flux_modules

# 4 modules in 2 blocks, the last single block among them: kept at their indices that is 38 single blocks
FOUR = ["double_blocks.3.img_attn.qkv", "double_blocks.3.img_attn.proj", "single_blocks.37.linear1",
        "single_blocks.37.linear2"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pub.CACHE_ENV, str(root))
    return root


@functools.cache
def published_transformer(family: str) -> torch.nn.Module:
    """The published transformer on the meta device, built once per worker (a 60-block Qwen-Image takes
    a quarter of a second each time): the files below read its module names and shapes only."""
    return pub.meta_components(get_family(family))["transformer"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def route_of(family: str, paths: list[Path], dtypes: tuple[str, ...] = ("float32",)) -> rt.Route | None:
    fam = get_family(family)
    by_name = {name: getattr(torch, name) for name in dtypes}
    def predict(components, loras, dtype):
        return predict_check(components, loras, by_name if dtype is None else {"hint": dtype}, copies_targeted=False)

    return rt.published_route(fam, [str(p) for p in paths], fam.components(build_pipeline(fam)),
                              list(by_name.values()), False, predict)


def real_flux_file(path: Path, names: list[str] = FOUR) -> Path:
    return kohya_flux_modules(path, published_transformer("flux"), names)


def test_a_sparse_flux_file_is_routed_to_the_blocks_it_targets(tmp_path, cache, monkeypatch):
    path = real_flux_file(tmp_path / "four.safetensors")
    before = digest(path)
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("flux", [path])
    assert route is not None and route.whole is not None and route.prediction is not None
    assert route.whole.peak > 22.3 * GIB > route.prediction.peak  # issue 30's 47.1 GiB, now a few
    assert route.reduction.kept == {"transformer_blocks": (3,), "single_transformer_blocks": (37,)}
    assert (route.model.blocks, route.model.single) == (1, 1)
    assert {m.split(".")[0] + "." + m.split(".")[1] for c, m in route.loras[0].modules} == \
        {"transformer_blocks.0", "single_transformer_blocks.0"}
    text = route.describe()
    assert "only the 2 of its 57 blocks the files target (double block 3 as 0, single block 37 as 0)" in text
    assert "47.1 GiB" in text and route.paths[0] in text
    # the derived copy: the same tensors under renumbered keys, the user's file untouched
    assert digest(path) == before and route.paths[0].startswith(str(cache / "derived"))
    with safe_open(route.paths[0], "pt") as new, safe_open(str(path), "pt") as old:
        keys = {k.replace("blocks_3_", "blocks_0_").replace("blocks_37_", "blocks_0_"): k for k in old.keys()}
        assert sorted(new.keys()) == sorted(keys)
        assert all(torch.equal(new.get_tensor(k), old.get_tensor(v)) for k, v in keys.items())
        assert new.metadata() == old.metadata()
    assert not (cache / "published").exists()  # planned on the meta device: nothing built


def test_the_modules_outside_the_blocks_keep_their_published_shapes(tmp_path, cache, monkeypatch):
    whole = published_transformer("flux")
    path = dreambooth_flux_modules(tmp_path / "outside.safetensors", whole,
                                   ["single_transformer_blocks.20.proj_out", *OUTSIDE])
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("flux", [path])
    assert (route.model.blocks, route.model.single) == (0, 1)
    reduced = dict(route.components["transformer"].named_modules())
    published_modules = dict(whole.named_modules())
    assert {m for _, m in route.loras[0].modules} == {"single_transformer_blocks.0.proj_out", *OUTSIDE}
    for name in OUTSIDE:
        assert reduced[name].weight.shape == published_modules[name].weight.shape


def test_where_the_whole_architecture_fits_it_is_used_as_it_is(tmp_path, cache, monkeypatch):
    path = real_flux_file(tmp_path / "four.safetensors")
    monkeypatch.setenv(MEMORY_ENV, "64")
    route = route_of("flux", [path])
    assert route.reduction is None and route.paths == [str(path)] and route.model.blocks is None


def qwen_to_q(path: Path, blocks: list[int], style: str) -> Path:
    transformer = published_transformer("qwenimage")
    wanted = {f"transformer_blocks.{b}.attn.to_q" for b in blocks}
    return qwen_file(path, style, modules=[(n, m) for n, m in transformer.named_modules() if n in wanted])


@pytest.mark.parametrize("style", ["musubi", "comfy", "diffsynth"])
def test_qwen_image_blocks_are_renumbered_in_each_layout(tmp_path, cache, monkeypatch, style):
    path = qwen_to_q(tmp_path / "qwen.safetensors", [5, 59], style)
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.reduction.kept == {"transformer_blocks": (5, 59)} and route.model.blocks == 2
    assert set(route.loras[0].modules) == {("transformer", "transformer_blocks.0.attn.to_q"),
                                           ("transformer", "transformer_blocks.1.attn.to_q")}
    assert "(block 5 as 0, block 59 as 1)" in route.describe()


def diffusers_saved(folder: Path, blocks: list[int]) -> Path:
    """A Qwen-Image file as diffusers' training scripts save it: save_lora_weights with the LoraConfig as
    its header (lora_adapter_metadata), an alpha_pattern naming the last block."""
    from diffusers import QwenImagePipeline
    from peft import LoraConfig

    transformer = published_transformer("qwenimage")
    names = [f"transformer_blocks.{b}.attn.to_q" for b in blocks]
    gen, layers = torch.Generator().manual_seed(8), {}
    for name in names:
        module = transformer.get_submodule(name)
        layers[f"{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=gen) / 64
        layers[f"{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=gen) / 64
    config = LoraConfig(r=4, lora_alpha=4, target_modules=names, alpha_pattern={re.escape(names[-1]): 8})
    QwenImagePipeline.save_lora_weights(str(folder), transformer_lora_layers=layers,
                                        transformer_lora_adapter_metadata=config.to_dict())
    return folder / "pytorch_lora_weights.safetensors"


def test_the_header_names_are_renumbered_with_the_keys(tmp_path, cache, monkeypatch):
    path = diffusers_saved(tmp_path, [5, 59])
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.model.blocks == 2
    assert {m: lora.alpha for (_, m), lora in route.loras[0].modules.items()} == \
        {"transformer_blocks.0.attn.to_q": 4.0, "transformer_blocks.1.attn.to_q": 8.0}  # proven against the file
    with safe_open(route.paths[0], "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert sorted(header["transformer.target_modules"]) == ["transformer_blocks.0.attn.to_q",
                                                            "transformer_blocks.1.attn.to_q"]
    assert header["transformer.alpha_pattern"] == {re.escape("transformer_blocks.1.attn.to_q"): 8}


def test_a_copy_whose_header_is_not_renumbered_is_not_used(tmp_path, cache, monkeypatch):
    # negative control: the alpha_pattern left naming block 2, so the copy's block 1 (the file's 2) would get 4, not 8
    path = diffusers_saved(tmp_path, [1, 2])
    monkeypatch.setattr(rt, "_header_renamed", lambda metadata, reduction: metadata)
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.paths == [str(path)] and route.model.blocks == 3  # at their indices, the file as it is


def test_a_peft_adapter_keeps_its_blocks_at_their_indices(tmp_path, cache, monkeypatch):
    """PEFT's save_pretrained layout (adapter_model.safetensors under base_model.model. + adapter_config.json):
    a renumbered copy of the tensors alone would lose the config its alphas come from, so none is used."""
    from safetensors.torch import save_file

    transformer = published_transformer("qwenimage")
    names = ["transformer_blocks.1.attn.to_q", "transformer_blocks.2.attn.to_q"]
    gen, tensors = torch.Generator().manual_seed(9), {}
    for name in names:
        module = transformer.get_submodule(name)
        tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=gen) / 64
        tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=gen) / 64
    folder = tmp_path / "adapter"
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                            "target_modules": names}))
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [folder])
    assert route.paths == [str(folder)] and route.model.blocks == 3 and not route.derived
    assert {m.alpha for m in route.loras[0].modules.values()} == {8.0}


def test_low_blocks_need_no_copy(tmp_path, cache, monkeypatch):
    path = qwen_to_q(tmp_path / "qwen.safetensors", [0, 1, 2], "musubi")
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.paths == [str(path)] and route.model.blocks == 3 and not route.derived
    assert "blocks 0-2 at their indices" in route.describe()


def test_keys_that_cannot_be_renamed_keep_their_indices(tmp_path, cache, monkeypatch):
    path = qwen_to_q(tmp_path / "qwen.safetensors", [1, 2], "musubi")
    monkeypatch.setattr(rt, "_KEY_INDEX", rt.re.compile(r"no block index here"))
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.paths == [str(path)] and route.model.blocks == 3  # blocks 0, 1, 2: the file's 1 and 2 kept
    assert "only its first 3 of 60 blocks, through the last the files target (blocks 0-2 at their indices)" \
        in route.describe()


def test_keys_that_cannot_be_renamed_and_blocks_too_deep_to_keep_are_refused_saying_both(tmp_path, cache,
                                                                                         monkeypatch):
    path = qwen_to_q(tmp_path / "qwen.safetensors", [5, 59], "musubi")
    monkeypatch.setattr(rt, "_KEY_INDEX", rt.re.compile(r"no block index here"))
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    route = route_of("qwenimage", [path])
    assert route.reduction is None and route.paths == [str(path)]  # the whole: the caller's gate refuses it
    assert route.hint.startswith("the files' keys could not be renumbered; with the blocks at their indices "
                                 "(the first 60) it needs ")
    assert "blocks would fit" in route.hint
    assert not (cache / "derived").exists() or not any((cache / "derived").iterdir())


def crossed_renames(monkeypatch) -> None:
    """A key renaming that crosses the two blocks over: its copy holds block 2's tensors in block 0."""
    original = rt._key_renames

    def crossed(lora, keys, reduction):
        return {k: v.replace("_0_", "_9_").replace("_1_", "_0_").replace("_9_", "_1_")
                for k, v in original(lora, keys, reduction).items()}

    monkeypatch.setattr(rt, "_key_renames", crossed)


def test_a_renumbered_copy_is_proven_before_it_is_used(tmp_path, cache, monkeypatch):
    path = qwen_to_q(tmp_path / "qwen.safetensors", [1, 2], "musubi")
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    copy = route_of("qwenimage", [path])
    assert copy.model.blocks == 2 and rt.proven(copy.loras[0], rt._renamed(
        rt.read_against_published(pub.meta_components(get_family("qwenimage")), [str(path)], False)[0],
        copy.reduction)) is None
    # negative control: a crossed renaming is caught, and never used: the blocks stay at their indices
    crossed_renames(monkeypatch)
    monkeypatch.setenv(pub.CACHE_ENV, str(tmp_path / "other-cache"))
    route = route_of("qwenimage", [path])
    assert route.paths == [str(path)] and route.model.blocks == 3 and not route.derived
    assert not any((tmp_path / "other-cache" / "derived").iterdir())  # written, read back, refused, removed


def test_a_file_on_every_block_of_a_20b_model_is_refused_with_what_would_fit(tmp_path, cache, monkeypatch, capsys):
    path = qwen_to_q(tmp_path / "dense.safetensors", list(range(60)), "musubi")
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    code = main(["check", "--family", "qwenimage", "--lora", str(path), "-q"])
    line = assert_one_line_error(capsys, code, "too little memory for this check", "22.3 GiB are available",
                                 "the files target every block of the published qwenimage architecture",
                                 "blocks would fit")
    assert "20." in line  # Qwen-Image's 20 B parameters
    assert not cache.exists()


def test_a_sparse_file_whose_blocks_still_do_not_fit_is_refused(tmp_path, cache, monkeypatch, capsys):
    path = qwen_to_q(tmp_path / "third.safetensors", list(range(0, 60, 3)), "musubi")
    monkeypatch.setenv(MEMORY_ENV, "22.3")
    code = main(["hotswap", "--family", "qwenimage", "--lora", str(path), "--lora", str(path), "-q"])
    assert_one_line_error(capsys, code, "too little memory for this check",
                          "the files target 20 of its 60 blocks, and a model with only those needs",
                          "with the blocks at their indices (the first 58) it needs", "blocks would fit",
                          "--dtype bfloat16 would fit")
    assert not cache.exists()


# ---------------------------------------------------------------- end to end, on a narrow FLUX.1


def narrow_flux(blocks: int | None = None, single: int | None = None) -> torch.nn.Module:
    """FLUX.1 at the tiny model's outer widths and 4x its inner width (64), with the published 19 + 38
    blocks: a file for it is wider than the tiny model, and the whole of it is a few MiB."""
    from diffusers import FluxTransformer2DModel

    from parity.zoo.flux import tiny_transformer

    config = dict(tiny_transformer().config)
    double = 19 if blocks is None else blocks
    config.update(num_layers=double, num_single_layers=single if single is not None else 38 if blocks is None
                  else 2 * blocks, attention_head_dim=16, num_attention_heads=4, axes_dims_rope=(4, 4, 8))
    return FluxTransformer2DModel.from_config(config)


@pytest.fixture
def small_machine(cache, monkeypatch):
    """The narrow FLUX.1 as the published one, on a machine with half the memory its whole check needs."""
    monkeypatch.setitem(pub.PUBLISHED, "flux", {"transformer": narrow_flux})
    for module in (memory, pub):
        monkeypatch.setattr(module, "BASELINE", 0)
    monkeypatch.setattr(memory, "FREE_HEAP_LIMIT", 0)
    fam = get_family("flux")
    with torch.device("meta"):
        whole = predict_check({"transformer": narrow_flux()}, [], {"float32": torch.float32}, copies_targeted=False)
    monkeypatch.setenv(MEMORY_ENV, str(whole.peak / 2 / GIB))
    return fam


# diffusers' own layout: its kohya converter splits a BFL linear1 at FLUX.1-dev's widths only, and refuses
# lora_transformer_ keys (known findings)
NARROW_FOUR = ["transformer_blocks.3.attn.to_q", "transformer_blocks.3.attn.add_k_proj",
               "single_transformer_blocks.37.proj_mlp", "single_transformer_blocks.37.proj_out"]
# modules outside the blocks: in every reduced model, at their published shapes
OUTSIDE = ["x_embedder", "context_embedder", "norm_out.linear", "proj_out",
           "time_text_embed.timestep_embedder.linear_1", "time_text_embed.guidance_embedder.linear_2"]


def narrow_file(path: Path) -> Path:
    with torch.device("meta"):
        transformer = narrow_flux()
    return dreambooth_flux_modules(path, transformer, NARROW_FOUR + OUTSIDE)


def test_the_check_runs_on_the_targeted_blocks_and_says_so(tmp_path, small_machine, cache, capsys):
    path = narrow_file(tmp_path / "four.safetensors")
    out = tmp_path / "report.json"
    code = main(["check", "--family", "flux", "--lora", str(path), "--json", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, printed[-3000:] + err[-3000:]
    assert "only the 2 of its 57 blocks the files target (double block 3 as 0, single block 37 as 0)" in err
    assert "renumbered copies of the files" in err
    (folder,) = (cache / "published").iterdir()
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert (config["num_layers"], config["num_single_layers"]) == (1, 1)
    report = json.loads(out.read_text())
    assert report["ok"] and "double block 3 as 0" in report["model"]
    assert [f["path"] for f in report["files"]] == [str(path)]  # the file given, not its renumbered copy


def wrong_source(monkeypatch, source: str) -> None:
    """diffusers handed ``source`` instead of the file the check read (and proved) for its reference."""
    from parity.checks import fuse

    monkeypatch.setattr(fuse, "diffusers_source", lambda lora: source)


def crossed_copy(route_path: str, tmp_path: Path) -> str:
    """The renumbered copy with two of double block 3's (now 0's) modules exchanged: to_q's pair on
    add_k_proj and back (the same shapes; a block's pair cannot go to a single block, whose widths differ)."""
    from safetensors.torch import load_file, save_file

    swap = {".attn.to_q.": ".attn.add_k_proj.", ".attn.add_k_proj.": ".attn.to_q."}
    crossed = {}
    for key, tensor in load_file(route_path).items():
        old = next((o for o in swap if o in key), None)
        crossed[key.replace(old, swap[old]) if old else key] = tensor
    path = str(tmp_path / "crossed.safetensors")
    save_file(crossed, path)
    return path


@pytest.mark.parametrize("control, symptom", [
    # the file's block 3 as it is, on a model whose block 0 the reference merges into: nothing lands there
    ("not renumbered", "transformer.transformer_blocks.0.attn.to_q.weight: 4096/4096 elements over bound, max "),
    ("streams crossed", "transformer.transformer_blocks.0.attn.to_q.weight: 4096/4096 elements over bound"),
    ("delta doubled", "2× the reference delta"),
], ids=["not renumbered", "streams crossed", "delta doubled"])
def test_negative_controls_a_wrong_mapping_or_merge_fails(tmp_path, small_machine, cache, monkeypatch, capsys,
                                                          control, symptom):
    path = narrow_file(tmp_path / "four.safetensors")
    if control == "not renumbered":  # the file's block 3 given to diffusers as it is, on a one-block model
        wrong_source(monkeypatch, str(path))
    elif control == "streams crossed":
        route = route_of("flux", [path])
        wrong_source(monkeypatch, crossed_copy(route.paths[0], tmp_path))
    else:
        from peft.tuners.lora import layer

        original = layer.Linear.get_delta_weight
        monkeypatch.setattr(layer.Linear, "get_delta_weight",
                            lambda self, adapter, *a, **k: 2 * original(self, adapter, *a, **k))
    code = main(["check", "--family", "flux", "--lora", str(path), "-q"])
    printed = capsys.readouterr().out
    assert code == 1 and symptom in printed, printed[-3000:]
    if control == "not renumbered":
        assert "dropped: diffusers merged nothing into it" in printed


def test_hotswap_runs_on_the_targeted_blocks_and_says_so(tmp_path, small_machine, cache, capsys):
    with torch.device("meta"):
        transformer = narrow_flux()
    paths = [str(dreambooth_flux_modules(tmp_path / f"{n}.safetensors", transformer, NARROW_FOUR, seed=seed))
             for n, seed in (("a", 1), ("b", 2))]
    code = main(["hotswap", "--family", "flux", "--lora", paths[0], "--lora", paths[1]])
    printed, err = capsys.readouterr()
    assert code == 0, printed[-3000:] + err[-3000:]
    assert "hotswapping them on the published flux architecture (1 of 19 double and 1 of 38 single blocks)" in err
    assert "(double block 3 as 0, single block 37 as 0)" in err
    assert len(list((cache / "derived").iterdir())) == 2  # one renumbered copy per file
    assert "swap b.safetensors" in err and "load a.safetensors" in err  # named as given


# ---------------------------------------------------------------- at real size


@pytest.mark.slow  # builds a 0.67 B-parameter FLUX.1 folder (2.5 GiB) and checks it: about 70 s on 2 cores
def test_a_real_size_flux_file_on_four_modules_is_checked_on_two_blocks_within_its_prediction(tmp_path):
    path = real_flux_file(tmp_path / "four.safetensors")
    env = {**os.environ, pub.CACHE_ENV: str(tmp_path / "cache"), MEMORY_ENV: "22.3"}
    run = subprocess.run([sys.executable, "-m", "tests.support.peak_memory", "check", "--family", "flux",
                          "--lora", str(path)], capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "only the 2 of its 57 blocks the files target (double block 3 as 0, single block 37 as 0)" in run.stderr
    assert "all of it would need 47.1 GiB" in run.stderr
    predicted = float(re.search(r"memory: predicted peak memory ([0-9.]+) GiB", run.stderr).group(1))
    peak = float(run.stderr.strip().splitlines()[-1].split()[1]) / GIB
    assert run.stderr.strip().splitlines()[-1].startswith(MARKER)
    assert peak <= predicted, f"measured {peak:.2f} GiB over the predicted {predicted:.1f} GiB"
