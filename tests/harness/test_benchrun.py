"""The benchmark runner: compiles inside timed rounds fail a case; records reach extra_info."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from parity.bench import record as rec
from parity.bench.run import ROUNDS, Rounds, rounds_for, time_target
from parity.checks.dynamo import reset


class Pedantic:
    """What the runner needs of pytest-benchmark's fixture: pedantic rounds, group, extra_info."""

    disabled = False

    def __init__(self) -> None:
        self.group: str | None = None
        self.extra_info: dict[str, Any] = {}
        self.calls = 0

    def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        for _ in range(warmup_rounds + rounds):
            if setup is not None:
                setup()
            target()
            self.calls += 1


def _info() -> rec.BenchInfo:
    return rec.BenchInfo(kind=rec.FORWARD, family="f", mode="compiled-base", dtype="float32", device="cpu",
                         device_name="cpu", device_class="cpu", size="tiny")


def test_a_compile_inside_the_timed_rounds_fails_the_case() -> None:
    # negative control: a new input shape every round makes dynamo compile inside the timing
    reset()
    fn = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    sizes = iter(range(1, 100))
    with pytest.raises(AssertionError, match="torch.compile ran inside the timed rounds"):
        time_target(Pedantic(), _info(), lambda: fn(torch.ones(next(sizes))), "cpu", Rounds(3, 0))
    reset()


def test_a_warmed_up_compiled_call_passes_and_records_its_info() -> None:
    reset()
    fn = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    x = torch.ones(4)
    fn(x)
    bench = Pedantic()
    time_target(bench, _info(), lambda: fn(x), "cpu", Rounds(3, 1))
    assert bench.calls == 4
    assert bench.group == "f/tiny/float32/cpu/forward"
    assert bench.extra_info["mode"] == "compiled-base"
    assert bench.extra_info["memory_kind"] == "cpu-rss-peak"
    reset()


def test_expected_compiles_are_allowed() -> None:
    reset()
    sizes = iter(range(1, 100))

    def compile_and_call() -> None:
        torch.compile(lambda x: x + 1, backend="eager")(torch.ones(next(sizes)))

    time_target(Pedantic(), _info(), compile_and_call, "cpu", Rounds(2, 0), expect_compile=True)
    reset()


def test_rounds_for_gives_compiling_targets_few_rounds_and_honours_an_override() -> None:
    assert rounds_for("tiny", rec.OPERATION, compiling=True).rounds < rounds_for("tiny", rec.OPERATION).rounds
    assert rounds_for("full", rec.FORWARD, override=7).rounds == 7
    assert rounds_for("model-path", rec.FORWARD) == rounds_for("full", rec.FORWARD)


def test_the_small_size_has_rounds_of_its_own_for_a_forward_and_full_sizes_rounds_otherwise() -> None:
    assert rounds_for("small", rec.FORWARD) == ROUNDS[("small", rec.FORWARD)] != rounds_for("full", rec.FORWARD)
    assert rounds_for("small", rec.OPERATION) == rounds_for("full", rec.OPERATION)
