"""The published architecture a real-size file is checked against without --model-path
(parity/zoo/published.py): which files go there, how its folder is built once, and that a run which
would not fit is refused before anything is built.

The files here are written by hand or by tests/support/trainer_files.py and trainer_flux.py, never by parity.lora."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity.checks.memory import MEMORY_ENV
from parity.cli import main
from parity.errors import ParityInputError
from parity.zoo import build_pipeline, get_family
from parity.zoo import published as pub
from parity.zoo.weights import fill_deterministic
from tests.support.cli import assert_one_line_error
from tests.support.trainer_files import kohya_sd15
from tests.support.trainer_flux import kohya_flux_modules

CLIP_L_Q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def one_module_file(path: Path, stem: str, width: int, rank: int = 4) -> Path:
    """A kohya file on one CLIP q_proj of the given width: as narrow as a file can be and still be real-size."""
    gen = torch.Generator().manual_seed(3)
    save_file({f"{stem}.lora_down.weight": torch.randn(rank, width, generator=gen),
               f"{stem}.lora_up.weight": torch.randn(width, rank, generator=gen) * 0.01,
               f"{stem}.alpha": torch.tensor(float(rank))}, str(path))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pub.CACHE_ENV, str(root))
    return root


def tiny_of(family: str):
    fam = get_family(family)
    return fam, fam.components(build_pipeline(fam))


def test_a_file_for_the_tiny_model_stays_on_the_tiny_model(tmp_path):
    fam, tiny = tiny_of("sd15")
    path = kohya_sd15(tmp_path / "tiny.safetensors")
    assert not pub.made_for_published(fam, [str(path)], tiny)


def test_a_file_wider_than_the_tiny_model_is_made_for_the_published_one(tmp_path):
    fam, tiny = tiny_of("sd15")
    path = one_module_file(tmp_path / "real.safetensors", CLIP_L_Q, 768)
    assert pub.made_for_published(fam, [str(path)], tiny)


def test_an_unreadable_file_is_left_to_the_reader(tmp_path, capsys):
    fam, tiny = tiny_of("sd15")
    path = one_module_file(tmp_path / "cut.safetensors", CLIP_L_Q, 768)
    path.write_bytes(path.read_bytes()[:100])
    assert not pub.made_for_published(fam, [str(path)], tiny)
    code = main(["check", "--family", "sd15", "--lora", str(path), "-q"])
    assert_one_line_error(capsys, code, "cut.safetensors", "not a readable safetensors file")


def test_a_real_size_file_that_fits_no_published_layer_is_named_against_it(tmp_path, cache, capsys):
    # CLIP-bigG's width (SDXL's second encoder) given as SD1.5's only text encoder
    path = one_module_file(tmp_path / "sdxl_te.safetensors", CLIP_L_Q, 1280)
    code = main(["check", "--family", "sd15", "--lora", str(path), "-q"])
    assert_one_line_error(capsys, code, "sdxl_te.safetensors", CLIP_L_Q)
    assert not cache.exists()  # refused on the meta device: nothing was built


def every_flux_block(path: Path) -> Path:
    """A kohya file on one module of each of FLUX.1's 19 + 38 blocks: no block can be left out."""
    transformer = pub.meta_components(get_family("flux"))["transformer"]
    names = [f"double_blocks.{i}.img_attn.proj" for i in range(19)] + [f"single_blocks.{i}.linear2" for i in range(38)]
    return kohya_flux_modules(path, transformer, names)


def test_a_published_model_that_would_not_fit_is_refused_before_it_is_built(tmp_path, cache, monkeypatch, capsys):
    path = every_flux_block(tmp_path / "flux_dense.safetensors")
    monkeypatch.setenv(MEMORY_ENV, "20")
    code = main(["check", "--family", "flux", "--lora", str(path), "-q"])
    line = assert_one_line_error(capsys, code, "too little memory for this check", "20.0 GiB are available",
                                 "the files target every block")
    assert "12." in line  # the published transformer's 12 B parameters are what it predicted for
    assert not cache.exists()


def test_the_run_says_it_checks_the_published_architecture(tmp_path, cache, monkeypatch, capsys):
    path = one_module_file(tmp_path / "real.safetensors", CLIP_L_Q, 768)
    monkeypatch.setenv(MEMORY_ENV, "0.5")
    main(["check", "--family", "sd15", "--lora", str(path)])
    err = capsys.readouterr().err
    assert "checking them against the published sd15 architecture, synthetic weights" in err


def small_builders(monkeypatch, intermediate: int = 48) -> list[str]:
    """sd15's published entry swapped for a text encoder a few kilobytes big; returns the build calls."""
    calls: list[str] = []

    def text_encoder(blocks):
        if torch.empty(0).device.type != "meta":  # built for real, not only measured on the meta device
            calls.append("text_encoder")
        return pub._clip_text(16, 1, 2, intermediate, "quick_gelu", projection=False)

    monkeypatch.setitem(pub.PUBLISHED, "sd15", {"text_encoder": text_encoder})
    return calls


def test_the_folder_is_built_once_with_the_published_shapes_and_deterministic_weights(cache, monkeypatch):
    calls = small_builders(monkeypatch)
    fam = get_family("sd15")
    model = pub.published(fam)
    folder = pub.ensure_folder(fam, model)
    assert folder == model.folder and calls == ["text_encoder"]
    pipe = build_pipeline(fam, model_path=folder)
    loaded = pipe.text_encoder.state_dict()
    expected = fill_deterministic(pub._clip_text(16, 1, 2, 48, "quick_gelu", False), pub.SEED,
                                  "sd15/published/text_encoder").state_dict()
    assert loaded["encoder.layers.0.mlp.fc1.weight"].shape == (48, 16)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items() if v.is_floating_point())
    assert pub.ensure_folder(fam, model) == folder and calls == ["text_encoder"]  # not built again
    assert [p.name for p in Path(folder).parent.iterdir()] == [Path(folder).name]  # no staging left


def test_a_bfloat16_folder_stores_the_same_values_rounded_in_another_folder(cache, monkeypatch):
    small_builders(monkeypatch)
    fam = get_family("sd15")
    model = pub.published(fam, dtype=torch.bfloat16)
    assert model.folder != pub.published(fam).folder and "stored in bfloat16" in model.describe()
    folder = pub.ensure_folder(fam, model)
    stored = load_file(str(Path(folder) / "text_encoder" / "model.safetensors"))
    expected = fill_deterministic(pub._clip_text(16, 1, 2, 48, "quick_gelu", False), pub.SEED,
                                  "sd15/published/text_encoder").state_dict()
    weight = "encoder.layers.0.mlp.fc1.weight"
    assert stored[weight].dtype == torch.bfloat16
    assert torch.equal(stored[weight], expected[weight].to(torch.bfloat16))
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(Path(folder) / "unet" /
                                                                  "diffusion_pytorch_model.safetensors")).values()
               if t.is_floating_point())


def test_other_shapes_get_another_folder(cache, monkeypatch):
    small_builders(monkeypatch, 48)
    first = pub.published(get_family("sd15")).folder
    small_builders(monkeypatch, 64)
    assert pub.published(get_family("sd15")).folder != first


def test_too_little_disk_is_refused_and_leaves_nothing(cache, monkeypatch):
    small_builders(monkeypatch)
    fam = get_family("sd15")
    model = pub.published(fam)
    monkeypatch.setattr(pub.shutil, "disk_usage", lambda _: SimpleNamespace(total=10, used=0, free=10))
    with pytest.raises(ParityInputError, match="too little disk"):
        pub.ensure_folder(fam, model)
    assert not Path(model.folder).exists()


def denoiser_file(path: Path, module: str, width: int, rank: int = 4) -> Path:
    """A diffusers-layout file on one attention projection of the denoiser, at a published width."""
    gen = torch.Generator().manual_seed(5)
    save_file({f"{module}.lora_A.weight": torch.randn(rank, width, generator=gen),
               f"{module}.lora_B.weight": torch.randn(width, rank, generator=gen) * 0.01}, str(path))
    return path


def test_hotswap_says_it_runs_on_the_published_architecture(tmp_path, cache, monkeypatch, capsys):
    to_q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    paths = [str(denoiser_file(tmp_path / f"{n}.safetensors", to_q, 320, rank)) for n, rank in (("a", 4), ("b", 8))]
    monkeypatch.setenv(MEMORY_ENV, "0.5")
    code = main(["hotswap", "--family", "sd15", "--lora", paths[0], "--lora", paths[1]])
    err = capsys.readouterr().err
    assert code == 2 and "hotswapping them on the published sd15 architecture, synthetic weights" in err
    assert "too little memory" in err and not cache.exists()


def test_hotswap_refuses_a_published_model_that_would_not_fit_before_it_is_built(tmp_path, cache, monkeypatch,
                                                                                  capsys):
    paths = [str(every_flux_block(tmp_path / f"{n}.safetensors")) for n in "ab"]
    monkeypatch.setenv(MEMORY_ENV, "20")
    code = main(["hotswap", "--family", "flux", "--lora", paths[0], "--lora", paths[1], "-q"])
    line = assert_one_line_error(capsys, code, "too little memory for this check", "20.0 GiB are available")
    assert "12." in line
    assert not cache.exists()


def test_the_model_command_names_every_published_model():
    # the help is written out (importing the zoo there would cost every command its start-up); this keeps it
    # in step with VARIANTS. Control: a name no family has is not in it.
    import argparse

    from parity.cli import model

    parser = argparse.ArgumentParser()
    model.add_arguments(parser)
    text = model.DESCRIPTION + " ".join(a.help or "" for a in parser._actions)
    names = [v.name for variants in pub.VARIANTS.values() for v in variants]
    assert [n for n in names if n not in text] == [] and "wan3" not in text
