"""The memory model predicts a check's peak from the model it loaded and the files it read, prints it
before the run, and refuses a run that would not fit with one line (exit 2) before any fuse. Its
coefficients are measured (parity/checks/memory.py): here, its arithmetic and its refusal."""

from __future__ import annotations

import pytest
import torch

from parity.checks.fresh_copies import FREE_HEAP_LIMIT
from parity.checks.memory import BASELINE, BLOCK_BYTES, MEMORY_ENV, READ_BYTES, predict_check
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.fused_comparison import CHUNK_ELEMENTS
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    fam = get_family("sd15")
    components = fam.components(build_pipeline(fam))
    path = write_lora(components, {"unet": ("to_q",)}, tmp_path_factory.mktemp("memory") / "a.safetensors")
    return components, path


def test_the_prediction_is_the_model_and_its_targeted_copy_plus_one_weight_or_the_truth_in_float64(sd15):
    components, path = sd15
    lora = read_lora(path, components)
    p = sum(x.numel() for m in components.values() for x in m.parameters())
    largest_tensor = max(x.numel() for m in components.values() for x in m.parameters())
    sizes = [m.up.shape[0] * m.down.shape[1] for m in lora.modules.values()]
    t, largest = sum(sizes), max(sizes)
    a = sum(m.up.numel() + m.down.numel() for m in lora.modules.values())
    block = BLOCK_BYTES * min(largest, CHUNK_ELEMENTS)

    f32 = predict_check(components, [lora], {"float32": torch.float32})
    f32_first = predict_check(components, [lora], {"float32": torch.float32, "bfloat16": torch.bfloat16})
    bf16_first = predict_check(components, [lora], {"bfloat16": torch.bfloat16, "float32": torch.float32})

    assert (f32.parameters, f32.targeted) == (p, t)
    truth32 = READ_BYTES * largest_tensor + FREE_HEAP_LIMIT  # computed in float64 module by module
    assert f32.peak == BASELINE + (p + t) * 4 + a * 8 + max(2 * largest * 4 + block, truth32)
    # the truth is taken once, in the first dtype: a second dtype adds no truth of its own
    assert f32_first.peak == f32.peak and f32_first.dtype == "float32"
    # first in bfloat16, the truth is a float64 copy filled from the float32 build, with the adapters in float64
    truth16 = truth32 + a * 8 + p * 4
    assert bf16_first.peak == BASELINE + (p + t) * 2 + a * 6 + max(2 * largest * 2 + block, truth16)
    assert bf16_first.dtype == "bfloat16"


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
