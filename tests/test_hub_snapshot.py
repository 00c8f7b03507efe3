"""Hub snapshot folders as ``huggingface-cli download`` leaves them (tests/support/snapshots.py): the full
weights sharded beside an fp16 variant, .bin pickles beside the safetensors, SD1.5's safety checker and
feature extractor, README.md and .gitattributes. The check loads the variant asked for (or the full
weights), never unpickles anything, and reads base weights back from the very files from_pretrained
loaded, following the shard index. Control: reading the other variant than the loaded one is caught by
the snapshot proof and named."""

from __future__ import annotations

import pytest
import torch

from parity.checks.fuse import OnDisk, snapshot, targeted_parameters
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from parity.zoo.checkpoint import CheckpointWeights, loaded_files
from parity.zoo.source import ModelPath
from tests.support.cli import assert_one_line_error
from tests.support.snapshots import canary, hub_snapshot

SD15 = get_family("sd15")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    folder = hub_snapshot("sd15", root / "stable-diffusion-v1-5")
    lora = write_lora(SD15.components(SD15.build_tiny(0)), {"unet": ("to_q", "to_v", "conv2"),
                                                            "text_encoder": ("k_proj",)}, root / "l.safetensors")
    return folder, lora


@pytest.mark.parametrize("variant", [None, "fp16"])
def test_snapshot_passes_the_check_and_nothing_is_unpickled(hub, variant, capsys):
    folder, lora = hub
    args = ["check", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora), "-q"]
    assert main(args + (["--variant", variant] if variant else [])) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and (f"(variant {variant})" in out if variant else "(variant" not in out)
    assert not canary(folder).exists()


def test_read_back_follows_what_from_pretrained_loaded(hub):
    """Full weights: the shards the index lists (16 for the UNet); fp16: the one variant file."""
    folder, _ = hub
    shards = loaded_files(str(folder / "unet"), None)
    assert len(shards) > 1 and all("-of-" in s and ".fp16" not in s for s in shards)
    assert [p.rsplit("/", 1)[1] for p in loaded_files(str(folder / "unet"), "fp16")] == \
        ["diffusion_pytorch_model.fp16.safetensors"]
    assert [p.rsplit("/", 1)[1] for p in loaded_files(str(folder / "text_encoder"), "fp16")] == ["model.fp16.safetensors"]


@pytest.mark.parametrize("variant", [None, "fp16"])
def test_every_targeted_weight_is_read_back_from_the_loaded_files(hub, variant):
    folder, lora = hub
    path = ModelPath(str(folder), variant=variant)
    components = SD15.components(build_pipeline(SD15, model_path=path))
    keep = targeted_parameters([read_lora(lora, components)])
    checkpoint = CheckpointWeights(path)
    snap = snapshot(components, keep, checkpoint)
    assert keep and all(isinstance(dict.__getitem__(snap[c], n), OnDisk) for c, n in keep)
    assert not checkpoint.disagreed


def test_control_the_other_variant_read_back_is_caught_and_named(hub):
    """The fp16 variant loaded, the full float32 weights read back (what a glob over *.safetensors, or a
    picker ignoring --variant, would do): the snapshot proof finds every targeted weight differing, keeps
    copies, and names them; nothing passes on a base the check never compared."""
    folder, lora = hub
    components = SD15.components(build_pipeline(SD15, model_path=ModelPath(str(folder), variant="fp16")))
    keep = targeted_parameters([read_lora(lora, components)])
    wrong = CheckpointWeights(str(folder))
    with pytest.warns(UserWarning, match="differs from the loaded model"):
        snap = snapshot(components, keep, wrong)
    assert not any(isinstance(dict.__getitem__(snap[c], n), OnDisk) for c, n in keep)
    assert sorted(wrong.disagreed) == sorted(f"{c}.{n}" for c, n in keep)


def test_a_variant_the_folder_lacks_is_refused(hub, capsys):
    folder, lora = hub
    code = main(["check", "--family", "sd15", "--model-path", str(folder), "--variant", "bf16", "--lora", str(lora)])
    assert_one_line_error(capsys, code, str(folder), "'bf16' variant")


def test_a_component_held_only_as_a_pickle_is_refused_not_unpickled(tmp_path, capsys):
    folder = hub_snapshot("sd15", tmp_path / "model")
    for f in (folder / "unet").glob("*.safetensors*"):
        f.unlink()
    lora = write_lora(SD15.components(SD15.build_tiny(0)), {"unet": ("to_q",)}, tmp_path / "l.safetensors")
    code = main(["check", "--family", "sd15", "--model-path", str(folder), "--lora", str(lora)])
    assert_one_line_error(capsys, code, str(folder))
    assert not canary(folder).exists()


def test_variant_options_need_a_model_path(capsys, tmp_path):
    lora = write_lora(SD15.components(SD15.build_tiny(0)), {"unet": ("to_q",)}, tmp_path / "l.safetensors")
    assert_one_line_error(capsys, main(["check", "--family", "sd15", "--variant", "fp16", "--lora", str(lora)]),
                          "--variant describes a --model-path")


def test_full_and_variant_load_different_values(hub):
    """The fixture is what it claims: the fp16 variant is another model than the full weights."""
    folder, _ = hub
    full = build_pipeline(SD15, model_path=str(folder)).unet.conv_in.weight
    half = build_pipeline(SD15, model_path=ModelPath(str(folder), variant="fp16")).unet.conv_in.weight
    assert full.dtype == half.dtype == torch.float32 and not torch.equal(full, half)
