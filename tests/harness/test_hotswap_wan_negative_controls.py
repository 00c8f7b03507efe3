"""The hotswap check on Wan 2.2's two experts must fail when a swap lands in the wrong expert, and when
the compiled low-noise expert recompiles; and diffusers refuses a hotswap that forgot which expert.

Model level, where one expert's step is compared with a fresh load at budget 0 (eager backend): the
cheapest session that shows each. The experts are ``transformer`` (high) and ``transformer_2`` (low).
"""

from __future__ import annotations

import pytest

from parity.checks import hotswap as hs
from parity.checks.dynamo import compile_in_place, reset, watch_compiles
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from parity.zoo.experts import LOAD_INTO_SECOND

FAMILY = get_family("wan")
pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("hotswap-wan-negative-controls")]


@pytest.fixture
def lora_files(tmp_path):
    """Files as Wan trainers write them: ``transformer.`` keys whichever expert they are for."""
    components = FAMILY.components(build_pipeline(FAMILY))
    targets = {"transformer": FAMILY.default_targets["transformer"]}

    def write(seed: int, rank: int) -> str:
        return write_lora(components, targets, tmp_path / f"wan-{seed}-r{rank}.safetensors", seed=seed, rank=rank,
                          alpha=2.0 * rank)

    yield write
    reset()


def test_a_file_for_the_low_expert_swapped_into_the_high_one_fails_the_output_check(lora_files, monkeypatch):
    """The session compiled transformer_2 with the first file; the faulty swap puts the next file into
    transformer instead (a plain load: diffusers refuses a hotswap there, next test). The low expert
    still runs the first file, which a fresh load of the new file into the low expert shows."""
    session = hs.start(FAMILY, lora_files(1, 4), target_rank=8, level="model", expert="low")
    new = lora_files(2, 4)
    load = hs._load

    def into_the_high_expert(pipe, family, level, source, hotswap, expert=None, reading=None):
        load(pipe, family, level, source, False, expert="high") if hotswap else load(
            pipe, family, level, source, hotswap, expert=expert)

    monkeypatch.setattr(hs, "_load", into_the_high_expert)
    result = hs.swap(session, new)
    monkeypatch.setattr(hs, "_load", load)

    assert result.error is None and not result.watch.recompiled  # silent: only the output can tell
    assert "hot" in session.pipe.transformer.peft_config  # the file went into the high expert
    report = hs.check_swap_output(session, new, result.output)
    assert not report.ok
    assert report.fresh_budget == 0.0 and report.vs_fresh > 1e-2, report
    # the control's own control: the same swap into the low expert passes
    assert hs.check_swap_output(session, new, hs.swap(session, new).output).ok


def test_a_hotswap_without_load_into_transformer_2_is_refused_when_the_adapter_is_in_the_low_expert(lora_files):
    """What diffusers does with the forgotten kwarg (measured): load_lora_weights(hotswap=True) goes to
    transformer, which holds no adapter of that name, and raises; the low expert keeps its file."""
    pipe = build_pipeline(FAMILY)
    pipe.enable_lora_hotswap(target_rank=8)
    pipe.load_lora_weights(lora_files(1, 4), adapter_name=hs.ADAPTER, **LOAD_INTO_SECOND)

    with pytest.raises(ValueError, match="no existing adapter by that name"):
        pipe.load_lora_weights(lora_files(2, 4), adapter_name=hs.ADAPTER, hotswap=True)

    assert pipe.get_list_adapters() == {"transformer_2": [hs.ADAPTER]}


# make slow (4 s): the same recompile guard as test_hotswap_negative_controls.py's, on the second expert
@pytest.mark.slow
def test_hotswapping_another_rank_into_the_compiled_low_expert_without_enable_lora_hotswap_is_caught(lora_files):
    reset()
    pipe = build_pipeline(FAMILY)
    pipe.load_lora_weights(lora_files(1, 4), adapter_name=hs.ADAPTER, **LOAD_INTO_SECOND)
    compile_in_place(pipe.transformer_2, "eager")
    hs.run(FAMILY, pipe, "model", expert="low")

    with watch_compiles() as watch:
        pipe.load_lora_weights(lora_files(3, 8), adapter_name=hs.ADAPTER, hotswap=True, **LOAD_INTO_SECOND)
        hs.run(FAMILY, pipe, "model", expert="low")

    assert watch.recompiled, "a rank change without enable_lora_hotswap went unnoticed in transformer_2"
    assert "guard failure" in watch.reasons[0] and "lora_A" in watch.reasons[0]
