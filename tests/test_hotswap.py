"""Hotswapping into a compiled model never recompiles and gives the output a fresh load gives.

One compiled session per family × level is shared by the swap cases (compiling is the expensive
part). Each case is independent of what the session held before: it swaps its own LoRA in, then
checks recompiles and output against fresh loads of that LoRA alone, so order does not matter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from parity.checks import hotswap as hs
from parity.checks.swaps import swap_and_check
from parity.checks.dynamo import default_backend, reset
from parity.lora.formats import save_lora
from parity.lora.synth import mixed_rank, synth_lora
from parity.zoo import FAMILIES, build_pipeline

TARGET_RANK = 8


@dataclass(frozen=True)
class SwapSpec:
    name: str
    seed: int
    rank: int | tuple[int, int]
    alpha: float
    subset: bool = False  # target only the attention projections of the first LoRA's modules


FIRST = SwapSpec("first", seed=1, rank=4, alpha=8.0)
SWAPS = (
    SwapSpec("same-rank", seed=11, rank=4, alpha=2.0),  # case 1: new weights and alpha
    SwapSpec("rank-up", seed=12, rank=8, alpha=16.0),  # case 2: 4 -> 8 = target_rank
    SwapSpec("rank-down", seed=13, rank=2, alpha=1.0),  # case 2: below the first rank
    SwapSpec("subset", seed=14, rank=4, alpha=4.0, subset=True),  # case 3
)
SEQUENCE = tuple(SwapSpec(f"seq{i}", seed=100 + i, rank=r, alpha=float(2 * r)) for i, r in enumerate((1, 8, 3, 8, 2, 5, 4, 7, 6, 1)))
SUBSET_TARGETS = ("to_q", "to_k")


def write_lora(family: str, spec: SwapSpec, directory: str) -> str:
    fam = FAMILIES[family]
    components = fam.components(build_pipeline(fam))
    targets = SUBSET_TARGETS if spec.subset else fam.default_targets[fam.denoiser]
    rank = spec.rank if isinstance(spec.rank, int) else mixed_rank(*spec.rank)
    lora = synth_lora(components, {fam.denoiser: targets}, seed=spec.seed, rank=rank, alpha=spec.alpha)
    return save_lora(lora, os.path.join(directory, f"{family}-{spec.name}.safetensors"), "diffusers")


@dataclass(frozen=True)
class SessionKey:
    family: str
    level: str


SESSION_KEYS = [
    pytest.param(
        SessionKey(f, level),
        id=f"{f}-{level}",
        # loadgroup keeps a session's cases on one xdist worker, so it compiles once.
        marks=[pytest.mark.compile, pytest.mark.xdist_group(f"hotswap-{f}-{level}")],
    )
    for f in sorted(FAMILIES)
    for level in hs.LEVELS
]


@pytest.fixture(scope="module", params=SESSION_KEYS)
def session(request, tmp_path_factory, compile_options, device):
    """A compiled session per family × level; pytest groups the cases using one, then tears it down.

    Only one compiled model may be alive at a time: diffusers' forward wrapper is one code object
    for every model instance, so a second compiled instance fails the first one's guards — a
    recompile the checks would rightly report.
    """
    key: SessionKey = request.param
    backend, mode = compile_options
    directory = str(tmp_path_factory.mktemp(f"hotswap-{key.family}-{key.level}"))
    first = write_lora(key.family, FIRST, directory)
    live = hs.start(
        key.family, first, TARGET_RANK, level=key.level, backend=backend or default_backend(device), mode=mode,
        device=device, model_path=request.config.getoption("--model-path"),
    )
    yield live, directory
    reset()


@pytest.mark.parametrize("spec", SWAPS, ids=[s.name for s in SWAPS])
def test_hotswap_does_not_recompile_and_matches_a_fresh_load(session, spec, parity_record):
    # The per-swap check of `lora-parity hotswap` (parity.checks.swaps.swap_and_check).
    live, directory = session
    path = write_lora(live.family.name, spec, directory)

    record = swap_and_check(live, path, hs.parameter_footprint(live.denoiser))

    assert record.refused is None and not record.recompiled, "; ".join(record.failures)
    budget = record.vs_fresh_budget
    parity_record(
        "hotswap", "float32", record.vs_fresh, record.vs_fresh / budget if budget else 0.0,
        f"{live.backend}; e_fwd {record.forward_error:.2g}; "
        f"LoRA forward vs our merge (float64) {record.errors['vs_reference']:.2g}",
        timing=f"swap {1000 * record.swap_seconds:.0f} ms vs compile {live.compile_seconds:.1f} s",
    )
    assert record.ok, "; ".join(record.failures)


def test_ten_swaps_of_mixed_ranks_never_recompile_nor_grow(session):
    live, directory = session
    footprint = hs.parameter_footprint(live.denoiser)
    last_path, last = None, None

    for spec in SEQUENCE:
        last_path = write_lora(live.family.name, spec, directory)
        last = hs.swap(live, last_path)
        assert last.error is None, f"{spec.name}: {last.error}"
        assert not last.watch.recompiled, f"{spec.name}: {last.watch.summary()}"
        assert hs.parameter_footprint(live.denoiser) == footprint, f"{spec.name}: parameters grew"

    report = hs.check_swap_output(live, last_path, last.output)
    assert report.ok, "; ".join(report.failures())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hotswap_onto_modules_the_first_lora_did_not_target_is_refused_loudly(family, tmp_path):
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    hs.prepare_for_hotswap(pipe, fam, "pipeline", TARGET_RANK)
    first = write_lora(family, SwapSpec("subset-first", seed=21, rank=4, alpha=4.0, subset=True), str(tmp_path))
    wider = write_lora(family, SwapSpec("wider", seed=22, rank=4, alpha=4.0), str(tmp_path))
    pipe.load_lora_weights(first, adapter_name=hs.ADAPTER)

    with pytest.raises(RuntimeError, match="unexpected keys"):
        pipe.load_lora_weights(wider, adapter_name=hs.ADAPTER, hotswap=True)


TEXT_ENCODER_FAMILIES = sorted(f for f, fam in FAMILIES.items() if any(c.startswith("text_encoder") for c in fam.lora_components))


def write_text_encoder_lora(family: str, seed: int, directory: str) -> str:
    fam = FAMILIES[family]
    components = fam.components(build_pipeline(fam))
    targets = {c: s for c, s in fam.default_targets.items() if c in (fam.denoiser, "text_encoder")}
    lora = synth_lora(components, targets, seed=seed, rank=4, alpha=4.0)
    return save_lora(lora, os.path.join(directory, f"{family}-te-{seed}.safetensors"), "diffusers")


@pytest.mark.parametrize("family", TEXT_ENCODER_FAMILIES)
def test_text_encoder_hotswap_is_refused_with_the_documented_message(family, tmp_path):
    fam = FAMILIES[family]
    pipe = build_pipeline(fam)
    pipe.enable_lora_hotswap(target_rank=TARGET_RANK)
    pipe.load_lora_weights(write_text_encoder_lora(family, 31, str(tmp_path)), adapter_name=hs.ADAPTER)

    with pytest.raises(ValueError, match="hotswapping is not supported for text encoders"):
        pipe.load_lora_weights(write_text_encoder_lora(family, 32, str(tmp_path)), adapter_name=hs.ADAPTER, hotswap=True)


@pytest.mark.slow
@pytest.mark.compile
@pytest.mark.parametrize("level", hs.LEVELS)
def test_hotswap_with_inductor_does_not_recompile_and_matches_a_fresh_load(level, tmp_path):
    # inductor on 2 CPU cores takes ~100 s for the tiny sd15 UNet: slow, run by `tox -e slow`.
    first = write_lora("sd15", FIRST, str(tmp_path))
    live = hs.start("sd15", first, TARGET_RANK, level=level, backend="inductor")
    try:
        for spec in SWAPS[:2]:
            path = write_lora("sd15", spec, str(tmp_path))
            result = hs.swap(live, path)
            assert result.error is None and not result.watch.recompiled, result.watch.summary()
            report = hs.check_swap_output(live, path, result.output)
            assert report.ok, "; ".join(report.failures())
    finally:
        reset()
