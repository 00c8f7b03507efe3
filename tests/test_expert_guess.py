"""guess_expert on Wan files written the way their trainers write them (tests/support/trainer_wan.py):
ai-toolkit's split pair is told apart by its file names, musubi-tuner's one-expert runs by the
timestep range (or the high-noise --dit) recorded in their metadata; a file that says nothing gives None.
The controls (names and metadata that must not be read as an expert) are in
tests/harness/test_expert_guess_controls.py."""

from __future__ import annotations

import pytest
from safetensors import safe_open

from parity.lora.expertguess import guess_expert
from tests.support import trainer_wan as tw


def header(path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def guess(path):
    return guess_expert(str(path), header(path))


@pytest.mark.parametrize("expert", ["high", "low"])
def test_aitoolkit_pair_is_told_apart_by_its_file_names(tmp_path, expert):
    path = tw.aitoolkit_wan(tmp_path, "my_wan22_lora_000002000", expert)
    assert path.name.endswith(f"_{expert}_noise.safetensors")
    got = guess(path)
    assert got is not None and got[0] == expert
    assert "ai-toolkit" in got[1] and f"_{expert}_noise" in got[1]


def test_aitoolkit_pair_carries_one_metadata_so_only_the_name_tells():
    """Both halves hold the job's metadata: read without the name, neither says which it is."""
    assert guess_expert(None, {"ss_base_model_version": "wan_2.2_14b", "format": "pt"}) is None


@pytest.mark.parametrize("expert,range_", [("high", (875, 1000)), ("low", (0, 875))])
def test_musubi_one_expert_run_is_read_from_its_timestep_range(tmp_path, expert, range_):
    """docs/wan.md's table for T2V: --min_timestep 875 --max_timestep 1000 (high), 0 / 875 (low); the
    file's name says nothing."""
    dit = tw.DIT_HIGH if expert == "high" else tw.DIT_LOW
    path = tw.musubi_wan(tmp_path / "wan22_run.safetensors", timestep_range=range_, dit=dit)
    got = guess(path)
    assert got is not None and got[0] == expert
    assert "modelspec.timestep_range" in got[1] and "musubi-tuner" in got[1]


def test_musubi_high_noise_dit_without_a_range_is_high(tmp_path):
    path = tw.musubi_wan(tmp_path / "wan22_run.safetensors", dit=tw.DIT_HIGH)
    got = guess(path)
    assert got is not None and got == ("high", got[1]) and "ss_sd_model_name" in got[1]


def test_musubi_low_noise_dit_without_a_range_says_nothing(tmp_path):
    """A two-expert run (--dit low, --dit_high_noise high) records the low-noise --dit too: a file for
    both experts must not be read as low."""
    path = tw.musubi_wan(tmp_path / "wan22_run.safetensors", dit=tw.DIT_LOW)
    assert guess(path) is None


def test_i2v_boundary(tmp_path):
    """I2V's boundary is 900: 0,900 is the low expert there, and says nothing at T2V's 875."""
    assert guess_expert(None, {"modelspec.timestep_range": "0,900"}, boundary=900)[0] == "low"
    assert guess_expert(None, {"modelspec.timestep_range": "0,900"}) is None
    assert guess_expert(None, {"modelspec.timestep_range": "900,1000"})[0] == "high"


def test_lightning_release_names():
    assert guess_expert("/loras/Wan2.2-T2V-A14B-4steps-lora/high_noise_model.safetensors", {})[0] == "high"
    assert guess_expert("low_noise_model.safetensors", {})[0] == "low"


@pytest.mark.parametrize("writer", ["comfy", "lightx2v", "diffsynth", "diffusers"])
def test_files_that_record_no_expert_give_none(tmp_path, writer):
    path = {"comfy": lambda: tw.comfy_loraextract_wan(tmp_path / "ComfyUI_extracted_lora_00001_.safetensors"),
            "lightx2v": lambda: tw.lightx2v_wan(tmp_path / "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora.safetensors"),
            "diffsynth": lambda: tw.diffsynth_wan(tmp_path / "epoch-4.safetensors"),
            "diffusers": lambda: tw.diffusers_wan(tmp_path)}[writer]()
    assert guess(path) is None


def test_name_wins_over_metadata(tmp_path):
    """ai-toolkit's name is the file's own; a range in metadata copied along cannot override it."""
    got = guess_expert("x_low_noise.safetensors", {"modelspec.timestep_range": "875,1000"})
    assert got[0] == "low"
