"""The memory model predicts a check's peak from the model it loaded and the files it read, prints it
before the run, and refuses a run that would not fit with one line (exit 2) before any fuse. Its
coefficients are measured (parity/checks/memory.py): here, its arithmetic and its refusal."""

from __future__ import annotations

import pytest
import torch

from parity.checks.memory import BASELINE, MEMORY_ENV, predict_check
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    fam = get_family("sd15")
    components = fam.components(build_pipeline(fam))
    path = write_lora(components, {"unet": ("to_q",)}, tmp_path_factory.mktemp("memory") / "a.safetensors")
    return components, path


def test_the_prediction_is_the_larger_phase_of_the_largest_dtype(sd15):
    components, path = sd15
    lora = read_lora(path, components)
    p = sum(x.numel() for m in components.values() for x in m.parameters())
    t = sum(m.up.shape[0] * m.down.shape[1] for m in lora.modules.values())

    f32 = predict_check(components, [lora], {"float32": torch.float32})
    both = predict_check(components, [lora], {"bfloat16": torch.bfloat16, "float32": torch.float32})

    assert (f32.parameters, f32.targeted) == (p, t)
    assert f32.peak == BASELINE + max(3 * p * 4 + 32 * t, 8 * p + 2 * p * 4)
    assert both == f32 and both.dtype == "float32"


def test_a_check_that_would_not_fit_is_refused_before_it_runs(sd15, monkeypatch, capsys):
    _, path = sd15
    monkeypatch.setenv(MEMORY_ENV, "0.5")  # GiB: below the baseline alone
    code = main(["check", "--family", "sd15", "--lora", str(path), "-q"])
    assert_one_line_error(capsys, code, "too little memory for this check", "0.5 GiB are available")


def test_the_prediction_is_printed_before_the_steps(sd15, capsys):
    _, path = sd15
    assert main(["check", "--family", "sd15", "--lora", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    memory = next(i for i, line in enumerate(err) if line.startswith("memory: predicted peak memory"))
    first_step = next(i for i, line in enumerate(err) if line.startswith("[1/"))
    assert memory < first_step
