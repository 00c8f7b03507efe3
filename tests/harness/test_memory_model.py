"""The memory model predicts a check's peak from the model it loaded and the files it read, prints it
before the run, and refuses a run that would not fit with one line (exit 2) before any fuse. Its
coefficients are measured (parity/checks/memory.py): here, its arithmetic and its refusal."""

from __future__ import annotations

import pytest
import torch

from parity.checks.memory import BASELINE, MEMORY_ENV, PER_WEIGHT_FLOAT64, predict_check
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.reference.merge import CHUNK_ELEMENTS
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    fam = get_family("sd15")
    components = fam.components(build_pipeline(fam))
    path = write_lora(components, {"unet": ("to_q",)}, tmp_path_factory.mktemp("memory") / "a.safetensors")
    return components, path


def test_the_prediction_is_the_model_and_its_targeted_copy_plus_one_weight_in_float64(sd15):
    components, path = sd15
    lora = read_lora(path, components)
    p = sum(x.numel() for m in components.values() for x in m.parameters())
    sizes = [m.up.shape[0] * m.down.shape[1] for m in lora.modules.values()]
    t, largest = sum(sizes), max(sizes)

    f32 = predict_check(components, [lora], {"float32": torch.float32})
    both = predict_check(components, [lora], {"bfloat16": torch.bfloat16, "float32": torch.float32})

    assert (f32.parameters, f32.targeted) == (p, t)
    assert f32.peak == BASELINE + (p + t) * 4 + 2 * largest * 4 + PER_WEIGHT_FLOAT64 * 8 * min(largest, CHUNK_ELEMENTS)
    # the float64 truth runs on a float32 pipeline whatever is checked: bfloat16 peaks no lower
    assert both.peak == f32.peak


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
