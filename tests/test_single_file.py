"""Single-file checkpoints as A1111, ComfyUI and Civitai distribute them (tests/support/ldm_files.py writes
them in the original repositories' names): loaded with diffusers' from_single_file and the family's configs,
offline; the check's base weights read back from the file through the original names. Controls: a file
whose tensor changes under the check fails it; a file of another family, or of none, is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from parity.checks import fuse
from parity.checks.fuse import OnDisk, snapshot, targeted_parameters
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline, get_family
from parity.zoo.checkpoint import CheckpointWeights, header_shapes
from parity.zoo.published import CACHE_ENV
from parity.zoo.source import ModelPath
from tests.support.cli import assert_one_line_error
from tests.support.ldm_files import sd_checkpoint, single_file, write

SD15 = get_family("sd15")
TARGETS = {"sd15": {"unet": ("to_q", "to_k", "proj_in", "conv1"), "text_encoder": ("q_proj",)},
           "sdxl": {"unet": ("to_q", "to_k"), "text_encoder": ("q_proj",), "text_encoder_2": ("q_proj", "v_proj")},
           "qwenimage": {"transformer": ("to_q", "add_k_proj", "img_mlp.net.0.proj")}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # the configs folders are written into the cache: a test's own, never the user's
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "single-file-cache"))


@pytest.fixture(scope="module")
def sd15_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15-single")
    tiny = get_family("sd15").build_tiny(0)
    lora = write_lora(SD15.components(tiny), TARGETS["sd15"], root / "lora.safetensors")
    return {"fp16": single_file("sd15", root / "model-fp16.safetensors", torch.float16),
            "fp32": single_file("sd15", root / "model.safetensors"), "lora": lora, "root": root}


def _check(model, lora, family="sd15", *extra):
    return main(["check", "--family", family, "--model-path", str(model), "--lora", str(lora), "-q", *extra])


@pytest.mark.parametrize("kind", ["fp16", "fp32"])
def test_single_file_checkpoint_passes_the_check(sd15_files, kind, capsys):
    assert _check(sd15_files[kind], sd15_files["lora"]) == 0
    out = capsys.readouterr().out
    assert "(single-file checkpoint, configs: the tiny sd15 zoo's" in out and "PASS" in out


def test_every_base_weight_is_read_back_through_the_original_names(sd15_files):
    """UNet, VAE (its 1x1 attention convs read as linears) and CLIP, bit for bit: so the check keeps no
    copy of a targeted weight (each is OnDisk)."""
    path = str(sd15_files["fp32"])
    pipe = build_pipeline(SD15, model_path=path)
    checkpoint = CheckpointWeights(path)
    for component in ("unet", "vae", "text_encoder"):
        for name, t in getattr(pipe, component).named_parameters():
            stored = checkpoint.read(component, name, t)
            assert stored is not None and torch.equal(stored, t), f"{component}.{name}"
    components = SD15.components(pipe)
    keep = targeted_parameters([read_lora(sd15_files["lora"], components)])
    snap = snapshot(components, keep, checkpoint)
    assert keep and all(isinstance(dict.__getitem__(snap[c], n), OnDisk) for c, n in keep)
    assert not checkpoint.disagreed


def _rewrite_one_tensor(path, key):
    """The file with ``key`` changed, rewritten in place at the same offsets (same header)."""
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    state[key] = state[key] + 0.25
    save_file(state, str(path))


def test_control_a_file_changed_under_the_check_fails_it(sd15_files, tmp_path, monkeypatch, capsys):
    """The read-back must read the file, not trust it: the file's to_q changes after the snapshot proved
    it equal to the loaded model, so the reference merge (built from the disk value) differs from what
    diffusers fused, and the check FAILs rather than passing on a base it never checked."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(sd15_files["fp32"].read_bytes())
    key = "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn1.to_q.weight"
    assert key in header_shapes(str(path))
    real = fuse.snapshot
    changed = []

    def snapshot_then_change(*args, **kwargs):
        out = real(*args, **kwargs)
        if not changed and args[2] is not None:
            _rewrite_one_tensor(path, key)
            changed.append(key)
        return out

    monkeypatch.setattr(fuse, "snapshot", snapshot_then_change)
    assert _check(path, sd15_files["lora"]) == 1 and changed
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" in capsys.readouterr().out


def test_control_a_changed_tensor_is_not_trusted(sd15_files, tmp_path):
    """A file whose to_q is not the loaded model's: that weight is copied, the rest read back."""
    path = tmp_path / "changed.safetensors"
    path.write_bytes(sd15_files["fp32"].read_bytes())
    pipe = build_pipeline(SD15, model_path=str(sd15_files["fp32"]))
    _rewrite_one_tensor(path, "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn1.to_q.weight")
    components = SD15.components(pipe)
    keep = targeted_parameters([read_lora(sd15_files["lora"], components)])
    checkpoint = CheckpointWeights(str(path))
    with pytest.warns(UserWarning, match="differs from the loaded model"):
        snap = snapshot(components, keep, checkpoint)
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert isinstance(dict.__getitem__(snap["unet"], name), torch.Tensor)
    assert checkpoint.disagreed == [f"unet.{name}"]
    assert sum(isinstance(dict.__getitem__(snap[c], n), OnDisk) for c, n in keep) == len(keep) - 1


def test_keys_that_are_no_weights_are_ignored(sd15_files):
    keys = header_shapes(str(sd15_files["fp16"]))
    assert {"alphas_cumprod", "model_ema.decay", "cond_stage_model.transformer.text_model.embeddings.position_ids"} <= set(keys)


def test_a_file_of_another_family_says_which(tmp_path, capsys):
    sdxl = write(sd_checkpoint(get_family("sdxl").build_tiny(0), "sdxl"), tmp_path / "xl.safetensors")
    code = _check(sdxl, write_lora(SD15.components(SD15.build_tiny(0)), TARGETS["sd15"], tmp_path / "l.safetensors"))
    assert_one_line_error(capsys, code, str(sdxl), "a sdxl checkpoint, not sd15: try --family sdxl",
                          "conditioner.embedders")


def test_a_file_of_no_family_is_refused_naming_it(tmp_path, capsys):
    odd = tmp_path / "odd.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2), "decoder.weight": torch.zeros(2, 2)}, str(odd))
    code = _check(odd, write_lora(SD15.components(SD15.build_tiny(0)), TARGETS["sd15"], tmp_path / "l.safetensors"))
    assert_one_line_error(capsys, code, str(odd), "fit no family", "decoder.weight")


def test_a_pickled_checkpoint_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read")
    code = _check(ckpt, write_lora(SD15.components(SD15.build_tiny(0)), TARGETS["sd15"], tmp_path / "l.safetensors"))
    assert_one_line_error(capsys, code, str(ckpt), "never unpickled")


def _sdxl_apart(seed=0):
    """Tiny SDXL with its two encoders at different widths (16 and 24): diffusers' from_single_file tells
    them apart by width alone (CLIP-L 768 vs bigG 1280), so at the zoo's equal widths it loads the second
    from the first's keys (the refusal below)."""
    from diffusers import StableDiffusionXLPipeline

    from parity.zoo import sdxl
    from parity.zoo.sd15 import tiny_clip_text
    from parity.zoo.weights import fill_deterministic

    tiny = sdxl.build_tiny(seed)
    unet = sdxl.tiny_unet(cross_attention_dim=16 + 24, attention_head_dim=(2, 4), use_linear_projection=True,
                          transformer_layers_per_block=(1, 2), addition_embed_type="text_time",
                          addition_time_embed_dim=sdxl.TIME_EMBED_DIM,
                          projection_class_embeddings_input_dim=sdxl.N_TIME_IDS * sdxl.TIME_EMBED_DIM + 24)
    return StableDiffusionXLPipeline(
        unet=fill_deterministic(unet, seed, "apart/unet"), vae=tiny.vae, text_encoder=tiny.text_encoder,
        text_encoder_2=fill_deterministic(tiny_clip_text(24, projection=True), seed, "apart/text_encoder_2"),
        tokenizer=tiny.tokenizer, tokenizer_2=tiny.tokenizer_2, scheduler=tiny.scheduler, add_watermarker=False)


def test_sdxl_single_file_with_its_configs_passes(tmp_path, capsys):
    pipe = _sdxl_apart()
    pipe.save_pretrained(tmp_path / "configs")  # what --model-config reads: its config.json files
    model = write(sd_checkpoint(pipe, "sdxl"), tmp_path / "xl.safetensors", torch.float16)
    fam = get_family("sdxl")
    lora = write_lora(fam.components(pipe), TARGETS["sdxl"], tmp_path / "l.safetensors")
    assert _check(model, lora, "sdxl", "--model-config", str(tmp_path / "configs")) == 0
    assert f"configs: --model-config {tmp_path / 'configs'}" in capsys.readouterr().out
    # every targeted weight read back, OpenCLIP's stacked in_proj rows and transposed projection included
    path = ModelPath(str(model), config=str(tmp_path / "configs"))
    loaded = build_pipeline(fam, model_path=path)
    checkpoint = CheckpointWeights(path)
    for component in ("text_encoder_2", "unet"):
        for name, t in getattr(loaded, component).named_parameters():
            stored = checkpoint.read(component, name, t)
            assert stored is not None and torch.equal(stored, t), f"{component}.{name}"


def test_sdxl_at_the_zoo_widths_is_refused_naming_what_diffusers_left_unloaded(tmp_path, capsys):
    model = write(sd_checkpoint(get_family("sdxl").build_tiny(0), "sdxl"), tmp_path / "xl.safetensors")
    lora = write_lora(get_family("sdxl").components(get_family("sdxl").build_tiny(0)), TARGETS["sdxl"],
                      tmp_path / "l.safetensors")
    assert_one_line_error(capsys, _check(model, lora, "sdxl"), str(model), "left tensors unloaded",
                          "text_encoder_2", "text_projection")


def test_sd2_single_file_passes_its_text_encoder_read_back_from_open_clip_names(tmp_path, capsys):
    """SD 2.x: OpenCLIP-H under cond_stage_model.model. (in_proj rows split into q, k, v), v-prediction."""
    fam = get_family("sd2")
    model = single_file("sd2", tmp_path / "sd21.safetensors", torch.float16)
    lora = write_lora(fam.components(fam.build_tiny(0)), {"unet": ("to_q", "to_v"), "text_encoder": ("q_proj", "k_proj")},
                      tmp_path / "l.safetensors")
    assert _check(model, lora, "sd2") == 0
    assert "(single-file checkpoint, configs: the tiny sd2 zoo's" in capsys.readouterr().out
    pipe = build_pipeline(fam, model_path=str(model))
    checkpoint = CheckpointWeights(str(model))
    for name, t in pipe.text_encoder.named_parameters():
        stored = checkpoint.read("text_encoder", name, t)
        assert stored is not None and torch.equal(stored, t), name


def test_qwenimage_transformer_file_passes(tmp_path, capsys):
    fam = get_family("qwenimage")
    model = single_file("qwenimage", tmp_path / "qwen.safetensors", torch.bfloat16)
    lora = write_lora(fam.components(fam.build_tiny(0)), TARGETS["qwenimage"], tmp_path / "l.safetensors")
    assert _check(model, lora, "qwenimage", "--dtype", "bfloat16") == 0
    assert "(single-file checkpoint, configs: the tiny qwenimage zoo's" in capsys.readouterr().out


def test_flux_at_tiny_width_is_refused_naming_diffusers_converter(tmp_path, capsys):
    """diffusers' FLUX.1 converter assumes the published width (inner_dim 3072): a narrower BFL file is
    refused in one line, with its words and the file's width. A published-width file passes:
    tests/test_single_file_memory.py (slow)."""
    fam = get_family("flux")
    model = single_file("flux", tmp_path / "flux.safetensors")
    lora = write_lora(fam.components(fam.build_tiny(0)), {"transformer": ("to_q",)}, tmp_path / "l.safetensors")
    assert_one_line_error(capsys, _check(model, lora, "flux"), str(model), "from_single_file could not load it")


def test_configs_folder_holds_no_weights(sd15_files, tmp_path):
    from parity.zoo.single_file import config_folder

    folder = config_folder("sd15", "tiny")
    with open(f"{folder}/model_index.json") as f:
        assert json.load(f)["_class_name"] == "StableDiffusionPipeline"
    import glob

    assert not glob.glob(f"{folder}/**/*.safetensors", recursive=True)


# ---------------------------------------------------------------- the other verbs and the pytest options


@pytest.mark.compile
@pytest.mark.slow  # 14-20 s: a compiled session and two swaps
def test_hotswap_on_a_single_file(sd15_files, tmp_path, capsys):
    components = SD15.components(SD15.build_tiny(0))
    first, second = (write_lora(components, {"unet": ("to_q", "to_k")}, tmp_path / f"h{seed}.safetensors", seed=seed)
                     for seed in (1, 2))
    code = main(["hotswap", "--family", "sd15", "--model-path", str(sd15_files["fp16"]), "--lora", first,
                 "--lora", second])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(single-file checkpoint, configs: the tiny sd15 zoo's" in out and "PASS" in out


def test_golden_renders_a_single_file_as_its_folder(sd15_files, tmp_path):
    """The golden verb's render on the file is the render on the same weights saved as a folder, bit for bit:
    from_single_file and from_pretrained build the same pipeline; the manifest records the file."""
    from parity.checks.cases import golden_case
    from parity.golden.render import case_metadata, render

    SD15.build_tiny(0).save_pretrained(tmp_path / "folder")
    case = golden_case("sd15-base")
    assert (render(case, model_path=str(sd15_files["fp32"])) == render(case, model_path=str(tmp_path / "folder"))).all()
    assert case_metadata(case, str(sd15_files["fp32"]))["model"] == str(sd15_files["fp32"])


def test_pytest_options_take_a_single_file(sd15_files, pytester, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr("parity.pytest.reports._ROWS", [])  # the inner run's summary rows stay out of this run's
    before = sd15_files["fp16"].read_bytes()
    repo = Path(__file__).resolve().parents[1]
    result = pytester.runpytest_inprocess(
        f"{repo / 'tests' / 'test_merge_parity.py'}::test_user_lora_fuse_matches_reference_merge",
        "-k", "float32", "--family", "sd15", "--model-path", str(sd15_files["fp16"]), "--lora", str(sd15_files["lora"]),
        "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0", "-q")
    result.assert_outcomes(passed=1)
    assert sd15_files["fp16"].read_bytes() == before  # a user's file is never written


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_published_size_files_fit_the_published_configs(family):
    """A real A1111/Civitai file's shapes, in the original names (the writer above, on the published models
    built on the meta device), fit the published configs and not the tiny ones: the configs a real file
    is loaded with, checked with no 2-7 GB file written."""
    from types import SimpleNamespace

    from diffusers import AutoencoderKL

    from parity.zoo import fullsize
    from parity.zoo.published import clip_bigg, clip_l, open_clip_h
    from parity.zoo.single_file import PUBLISHED_VAE, config_folder, misfit

    with torch.device("meta"):
        unet = {"sd15": fullsize.sd15_unet, "sd2": fullsize.sd2_unet, "sdxl": fullsize.sdxl_unet}[family]()
        pipe = SimpleNamespace(unet=unet, vae=AutoencoderKL(**PUBLISHED_VAE[family]),
                               text_encoder=open_clip_h() if family == "sd2" else clip_l(),
                               text_encoder_2=clip_bigg() if family == "sdxl" else None)
        shapes = {k: tuple(t.shape) for k, t in sd_checkpoint(pipe, family).items()}
    assert misfit(family, config_folder(family, "published"), shapes) is None
    assert "in the configs, the file's" in misfit(family, config_folder(family, "tiny"), shapes)


@pytest.mark.skipif("qwenimage-edit" not in FAMILIES,
                    reason="qwenimage-edit needs a diffusers with QwenImageEditPlusPipeline")
def test_a_family_without_original_names_is_refused(sd15_files, capsys):
    """qwenimage-edit's single files are not read (no original names here, so no read-back): refused, named."""
    code = main(["check", "--family", "qwenimage-edit", "--model-path", str(sd15_files["fp16"]),
                 "--lora", str(sd15_files["lora"])])
    assert_one_line_error(capsys, code, str(sd15_files["fp16"]), "not qwenimage-edit")


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flux_names_with_and_without_comfyui_prefix_fit_the_configs(prefix):
    """BFL's names as published (no prefix) and as ComfyUI saves them (model.diffusion_model.): both fit
    (on the tiny configs, where diffusers' converter cannot load the file, the map itself is checked)."""
    from parity.zoo.single_file import config_folder, misfit
    from tests.support.ldm_files import flux_checkpoint

    shapes = {prefix + k: tuple(t.shape) for k, t in flux_checkpoint(get_family("flux").build_tiny(0).transformer).items()}
    assert misfit("flux", config_folder("flux", "tiny"), shapes) is None
    del shapes[prefix + "double_blocks.0.img_attn.qkv.weight"]
    assert f"no key {prefix}double_blocks.0.img_attn.qkv.weight" in misfit("flux", config_folder("flux", "tiny"), shapes)
