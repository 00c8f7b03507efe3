"""Hotswapping into a compiled model never recompiles and gives the output a fresh load gives.

One compiled session per family × level is shared by the cases swapping into it (compiling is the
expensive part); the case table puts a session's cases on one xdist worker. Each case is independent
of what the session held before: it swaps its own LoRA in, then checks recompiles and output against
fresh loads of that LoRA alone, so order does not matter.
"""

from __future__ import annotations

import os

import pytest

from parity.checks import hotswap as hs
from parity.checks.cases import (
    FIRST_SWAP,
    LAYOUT_FIRST,
    HOTSWAP_REFUSALS_COVERED_BY,
    HOTSWAP_TARGET_RANK,
    SEQUENCE,
    SUBSET_TARGETS,
    SWAPS,
    HotswapCase,
    SwapSpec,
    hotswap_cases,
    text_encoder_families,
)
from parity.checks.dynamo import reset
from parity.checks.swaps import swap_and_check
from parity.lora.synth import write_lora
from parity.pytest.cases import marks_of
from parity.pytest.models import option_model_path
from parity.zoo import FAMILIES, build_pipeline


def write_swap_lora(family: str, spec: SwapSpec, directory: str, layout: str = "diffusers") -> str:
    fam = FAMILIES[family]
    targets = SUBSET_TARGETS if spec.subset else fam.default_targets[fam.denoiser]
    return write_lora(fam.components(build_pipeline(fam)), {fam.denoiser: targets},
                      os.path.join(directory, f"{family}-{spec.name}-{layout}.safetensors"), layout, seed=spec.seed,
                      rank=spec.rank, alpha=spec.alpha)


def refusal_params(families: list[str]) -> list:
    """One case per family; slow where another family's default case runs the same loader's refusal
    (HOTSWAP_REFUSALS_COVERED_BY)."""
    return [pytest.param(f, marks=[pytest.mark.slow] if f in HOTSWAP_REFUSALS_COVERED_BY else []) for f in families]


def session_params(cases: list[HotswapCase]) -> list:
    # The session key is a plain tuple, so pytest groups every case of one session, across both
    # tests below, around one set-up of the module-scoped fixture.
    return [pytest.param((c.family, c.level, c.layout, c.expert), c, id=c.id, marks=[*marks_of(c), pytest.mark.compile])
            for c in cases]


@pytest.fixture(scope="module")
def session(request, tmp_path_factory, compile_options, device):
    """A compiled session of one family × level (× expert); pytest runs the cases using it, then tears it down.

    Only one compiled model may be alive at a time: diffusers' forward wrapper is one code object
    for every model instance, so a second compiled instance fails the first one's guards — a
    recompile the checks would rightly report.
    """
    family, level, layout, expert = request.param
    backend, mode = compile_options
    directory = str(tmp_path_factory.mktemp(f"hotswap-{family}-{level}-{expert}-{layout}"))
    first = write_swap_lora(family, FIRST_SWAP if layout == "diffusers" else LAYOUT_FIRST, directory, layout)
    live = hs.start(
        family, first, HOTSWAP_TARGET_RANK, level=level, backend=backend, mode=mode,
        device=device, model_path=option_model_path(request.config), expert=expert,
    )
    yield live, directory, layout
    reset()


@pytest.mark.parametrize(("session", "case"), session_params(hotswap_cases()), indirect=["session"], scope="module")
def test_hotswap_does_not_recompile_and_matches_a_fresh_load(session, case, parity_record):
    # The per-swap check of `lora-parity hotswap` (parity.checks.swaps.swap_and_check).
    live, directory, layout = session
    path = write_swap_lora(live.family.name, case.swap, directory, layout)

    record = swap_and_check(live, path, hs.parameter_footprint(live))

    assert record.refused is None and not record.recompiled, "; ".join(record.failures)
    budget = record.vs_fresh_budget
    parity_record(
        "hotswap", "float32", record.vs_fresh, record.vs_fresh / budget if budget else 0.0,
        f"{live.backend}; e_fwd {record.forward_error:.2g}; "
        f"LoRA forward vs our merge (float64) {record.errors['vs_reference']:.2g}",
        timing=f"swap {1000 * record.swap_seconds:.0f} ms vs compile {live.compile_seconds:.1f} s",
    )
    assert record.ok, "; ".join(record.failures)


@pytest.mark.parametrize(("session", "case"), session_params(hotswap_cases(sequence=True)), indirect=["session"], scope="module")
def test_ten_swaps_of_mixed_ranks_never_recompile_nor_grow(session, case):
    live, directory, _ = session
    footprint = hs.parameter_footprint(live)
    last_path, last = None, None

    for spec in SEQUENCE:
        last_path = write_swap_lora(live.family.name, spec, directory)
        last = hs.swap(live, last_path)
        assert last.error is None, f"{spec.name}: {last.error}"
        assert not last.watch.recompiled, f"{spec.name}: {last.watch.summary()}"
        assert hs.parameter_footprint(live) == footprint, f"{spec.name}: parameters grew"

    report = hs.check_swap_output(live, last_path, last.output)
    assert report.ok, "; ".join(report.failures())


@pytest.mark.parametrize("family", refusal_params(list(FAMILIES)))
def test_hotswap_onto_modules_the_first_lora_did_not_target_is_refused_loudly(family, tmp_path):
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    hs.prepare_for_hotswap(pipe, fam, "pipeline", HOTSWAP_TARGET_RANK)
    first = write_swap_lora(family, SwapSpec("subset-first", seed=21, rank=4, alpha=4.0, subset=True), str(tmp_path))
    wider = write_swap_lora(family, SwapSpec("wider", seed=22, rank=4, alpha=4.0), str(tmp_path))
    pipe.load_lora_weights(first, adapter_name=hs.ADAPTER)

    with pytest.raises(RuntimeError, match="unexpected keys"):
        pipe.load_lora_weights(wider, adapter_name=hs.ADAPTER, hotswap=True)


def write_text_encoder_lora(family: str, seed: int, directory: str) -> str:
    fam = FAMILIES[family]
    targets = {c: s for c, s in fam.default_targets.items() if c in (fam.denoiser, "text_encoder")}
    return write_lora(fam.components(build_pipeline(fam)), targets,
                      os.path.join(directory, f"{family}-te-{seed}.safetensors"), seed=seed, rank=4, alpha=4.0)


@pytest.mark.parametrize("family", refusal_params(text_encoder_families()))
def test_text_encoder_hotswap_is_refused_with_the_documented_message(family, tmp_path):
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    pipe.enable_lora_hotswap(target_rank=HOTSWAP_TARGET_RANK)
    pipe.load_lora_weights(write_text_encoder_lora(family, 31, str(tmp_path)), adapter_name=hs.ADAPTER)

    with pytest.raises(ValueError, match="hotswapping is not supported for text encoders"):
        pipe.load_lora_weights(write_text_encoder_lora(family, 32, str(tmp_path)), adapter_name=hs.ADAPTER, hotswap=True)


@pytest.mark.slow
@pytest.mark.compile
@pytest.mark.parametrize("level", hs.LEVELS)
def test_hotswap_with_inductor_does_not_recompile_and_matches_a_fresh_load(level, tmp_path):
    # inductor on 2 CPU cores takes ~100 s for the tiny sd15 UNet: slow, run by `tox -e slow`.
    first = write_swap_lora("sd15", FIRST_SWAP, str(tmp_path))
    live = hs.start("sd15", first, HOTSWAP_TARGET_RANK, level=level, backend="inductor")
    try:
        for spec in SWAPS[:2]:
            path = write_swap_lora("sd15", spec, str(tmp_path))
            result = hs.swap(live, path)
            assert result.error is None and not result.watch.recompiled, result.watch.summary()
            report = hs.check_swap_output(live, path, result.output)
            assert report.ok, "; ".join(report.failures())
    finally:
        reset()
