"""The hotswap memory model predicts the peak from the pipeline and the files, is printed before the
first compile, and refuses a run that would not fit with one line (exit 2) before anything is
compiled. Its coefficients are measured (parity/checks/memory.py, docs/checking-files.md, Memory): here, its
arithmetic, the LoRA layers it counts against what PEFT allocates, and its refusal."""

from __future__ import annotations

import pytest
import torch

from parity.checks import hotswap as hs
from parity.checks.fresh_copies import FREE_HEAP_LIMIT
from parity.checks.memory import (
    BASELINE,
    MEMORY_ENV,
    PER_WEIGHT_HOTSWAP,
    READ_BYTES,
    predict_hotswap,
)
from parity.cli import main
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.modules import pipeline_models
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error

FAMILY = get_family("sd15")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pipe = build_pipeline(FAMILY)
    d = tmp_path_factory.mktemp("hotswap-memory")
    targets = {"unet": FAMILY.default_targets["unet"]}
    paths = [write_lora(FAMILY.components(pipe), targets, d / f"{rank}.safetensors", seed=rank, rank=rank,
                        alpha=float(rank)) for rank in (8, 4)]
    return pipe, paths, [read_lora(p, FAMILY.components(pipe)) for p in paths]


def test_the_prediction_is_the_pipeline_its_lora_layers_and_one_weight_in_float64(files):
    pipe, _, loras = files
    models = pipeline_models(pipe)
    p = sum(x.numel() for m in models.values() for x in m.parameters())
    largest = max(x.numel() for m in models.values() for x in m.parameters())
    largest_targeted = max(m.up.shape[0] * m.down.shape[1] for m in loras[0].modules.values())
    # the LoRA layers as PEFT allocates them, padded to the target rank
    prepared = build_pipeline(FAMILY)
    hs.prepare_for_hotswap(prepared, FAMILY, "model", 8)
    hs._load(prepared, FAMILY, "model", loras[0], hotswap=False)
    f = sum(x.numel() for n, x in prepared.unet.named_parameters() if "lora_" in n)

    f32 = predict_hotswap(models, loras, torch.float32, 8, "unet")
    bf16 = predict_hotswap(models, loras, torch.bfloat16, 8, "unet", float32_build=True)

    per_weight = max(READ_BYTES * largest, PER_WEIGHT_HOTSWAP * 8 * largest_targeted)
    assert f32.peak == BASELINE + p * 4 + f * (2 * 4 + 8) + per_weight + FREE_HEAP_LIMIT
    # bfloat16 on the tiny zoo builds a float32 pipeline for the float64 values
    assert bf16.peak == BASELINE + p * 2 + f * (2 * 2 + 8) + per_weight + FREE_HEAP_LIMIT + p * 4
    assert (f32.parameters, f32.dtype, bf16.dtype) == (p, "float32", "bfloat16")


def test_a_hotswap_that_would_not_fit_is_refused_before_it_compiles(files, monkeypatch, capsys):
    _, paths, _ = files
    monkeypatch.setenv(MEMORY_ENV, "0.5")  # GiB: below the baseline alone
    code = main(["hotswap", "--family", "sd15", "--lora", str(paths[0]), "--lora", str(paths[1]), "-q"])
    assert_one_line_error(capsys, code, "too little memory for this check", "0.5 GiB are available")


@pytest.fixture(scope="module")
def flux_files(tmp_path_factory):
    flux = get_family("flux")
    d = tmp_path_factory.mktemp("hotswap-memory-flux")
    components = flux.components(build_pipeline(flux))
    return [write_lora(components, {"transformer": flux.default_targets["transformer"]}, d / f"{rank}.safetensors",
                       seed=rank, rank=rank, alpha=float(rank)) for rank in (8, 4)]


def test_the_prediction_is_printed_before_the_steps_and_a_run_that_fits_is_not_refused(flux_files, monkeypatch,
                                                                                        capsys):
    # the run that fits compiles and swaps: on the tiny FLUX.1, whose compiled session costs a third of
    # sd15's UNet's (the prediction and the gate are the same code for every family)
    monkeypatch.setenv(MEMORY_ENV, "1000")
    assert main(["hotswap", "--family", "flux", "--lora", str(flux_files[0]), "--lora", str(flux_files[1])]) == 0
    err = capsys.readouterr().err.splitlines()
    memory = next(i for i, line in enumerate(err) if line.startswith("memory: predicted peak memory"))
    first_step = next(i for i, line in enumerate(err) if line.startswith("[1/"))
    assert memory < first_step
    assert "1000.0 GiB available" in err[memory]
