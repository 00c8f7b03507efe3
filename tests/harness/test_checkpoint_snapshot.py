"""On a model folder the check keeps no copy of a targeted weight: it reads the base value back from
the folder's safetensors, having proved at snapshot time that the disk value is the loaded one bit for
bit. The control: a checkpoint that differs (another seed's folder) is not trusted, and copies are kept."""

from __future__ import annotations

import pytest
import torch

from parity.checks.fuse import OnDisk, snapshot, targeted_parameters
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from parity.zoo.checkpoint import CheckpointWeights

SD15 = get_family("sd15")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint")
    build_pipeline("sd15").save_pretrained(root / "model")
    build_pipeline("sd15", seed=1).save_pretrained(root / "other")
    components = SD15.components(build_pipeline(SD15, model_path=str(root / "model")))
    lora = write_lora(components, {"unet": ("to_q",), "text_encoder": ("q_proj",)}, root / "a.safetensors")
    return root, lora


def _targeted_snapshot(root, lora, checkpoint_folder):
    components = SD15.components(build_pipeline(SD15, model_path=str(root / "model")))
    keep = targeted_parameters([read_lora(lora, components)])
    return components, keep, snapshot(components, keep, CheckpointWeights(str(root / checkpoint_folder)))


def test_targeted_weights_are_read_back_from_the_folder_bit_for_bit(folders):
    root, lora = folders
    components, keep, snap = _targeted_snapshot(root, lora, "model")

    assert keep and all(isinstance(dict.__getitem__(snap[c], name), OnDisk) for c, name in keep)
    for c, name in keep:
        live = dict(components[c].named_parameters())[name]
        assert torch.equal(snap[c][name], live) and snap[c][name].dtype == live.dtype


def test_a_checkpoint_that_differs_from_the_loaded_model_is_not_trusted(folders):
    root, lora = folders
    _, keep, snap = _targeted_snapshot(root, lora, "other")
    assert all(isinstance(dict.__getitem__(snap[c], name), torch.Tensor) for c, name in keep)


def test_check_on_the_folder_passes(folders):
    root, lora = folders
    assert main(["check", "--family", "sd15", "--model-path", str(root / "model"), "--lora", str(lora), "-q"]) == 0
