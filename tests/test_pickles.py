"""Pickle checkpoints are refused unless asked for, then read weights-only: a pickle that would run
code runs nothing, and a torch.save'd LoRA checks like its safetensors twin, in check and hotswap.
diffusers is handed the tensors we read, never the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parity.cli import main
from parity.errors import ParityInputError
from parity.lora.layouts import to_state_dict
from parity.lora.reader import read_lora
from parity.lora.synth import synth_lora
from parity.zoo import get_family
from tests.support.badfiles import MARKER, Good, good_files, malicious_pickle, plain_pickle


@pytest.fixture(scope="module")
def good() -> Good:
    return good_files()


def test_allow_pickle_refuses_a_malicious_pickle_without_running_it(good, tmp_path, capsys):
    path = malicious_pickle("lora.pt")(good, tmp_path)

    with pytest.raises(ParityInputError, match=r"weights_only=True\) refused it") as err:
        read_lora(path, good.components, allow_pickle=True)
    assert str(path) in str(err.value)
    code = main(["check", "--family", "sd15", "--lora", str(path), "--allow-pickle"])

    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and str(path) in line and "refused it" in line
    assert not (tmp_path / MARKER).exists()


def test_allow_pickle_reads_a_torch_saved_state_dict_like_the_safetensors_file(good, tmp_path):
    path = plain_pickle("lora.pt")(good, tmp_path)
    save_file(torch.load(path, weights_only=True), tmp_path / "lora.safetensors")

    pickled = read_lora(path, good.components, allow_pickle=True)
    safetensors = read_lora(tmp_path / "lora.safetensors", good.components)

    assert pickled.layout == safetensors.layout == "kohya"
    assert set(pickled.modules) == set(safetensors.modules) == {k for k in good.lora.modules if k[0] == "unet"}
    for key, m in safetensors.modules.items():
        got = pickled.modules[key]
        assert torch.equal(got.down, m.down) and torch.equal(got.up, m.up) and got.alpha == m.alpha


def test_cli_allow_pickle_checks_a_torch_saved_lora_and_diffusers_never_unpickles(good, tmp_path, monkeypatch,
                                                                                  capsys):
    path = plain_pickle("lora.pt")(good, tmp_path)
    loads: list[tuple[str, object]] = []
    real_load = torch.load

    def spy(f, *args, **kwargs):
        loads.append((str(f), kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    code = main(["check", "--family", "sd15", "--lora", str(path), "--allow-pickle", "--quiet"])

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "PASS" in out and "kohya" in out
    # our one weights-only read; diffusers got the tensors, so it never opened the file
    assert loads == [(str(path), True)]


def _pickled_unet_loras(good: Good, d: Path) -> list[Path]:
    """Two torch.save'd diffusers-layout unet LoRAs of ranks 4 and 8 (what hotswap --level model reads)."""
    targets = get_family("sd15").default_targets["unet"]
    paths = []
    for seed, rank in ((1, 4), (2, 8)):
        sd, _ = to_state_dict(synth_lora(good.components, {"unet": targets}, seed=seed, rank=rank), "diffusers")
        torch.save(sd, d / f"rank{rank}.pt")
        paths.append(d / f"rank{rank}.pt")
    return paths


def test_hotswap_refuses_pickles_without_the_flag_and_names_it(good, tmp_path, capsys):
    first, second = _pickled_unet_loras(good, tmp_path)

    code = main(["hotswap", "--family", "sd15", "--lora", str(first), "--lora", str(second)])

    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and str(first) in line and "--allow-pickle" in line


def test_hotswap_allow_pickle_refuses_a_malicious_pickle_naming_it(good, tmp_path, capsys):
    first, _ = _pickled_unet_loras(good, tmp_path)
    bad = malicious_pickle("evil.pt")(good, tmp_path)

    code = main(["hotswap", "--family", "sd15", "--lora", str(first), "--lora", str(bad), "--allow-pickle"])

    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and str(bad) in line and "refused it" in line
    assert not (tmp_path / MARKER).exists()


@pytest.mark.slow
@pytest.mark.compile
def test_hotswap_allow_pickle_swaps_torch_saved_loras_and_reports_the_original_names(good, tmp_path, capsys):
    first, second = _pickled_unet_loras(good, tmp_path)

    code = main(["hotswap", "--family", "sd15", "--lora", str(first), "--lora", str(second), "--allow-pickle"])

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"first: {first} (rank 4)" in out
    assert any(line.lstrip().startswith(str(second)) for line in out.splitlines())
