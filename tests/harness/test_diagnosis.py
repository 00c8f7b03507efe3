"""The diagnosis of a failing weight names what is off, on tensors broken by hand in one known way;
a weight that is a plain mis-merge (no such way) is not given a wrong name."""

from __future__ import annotations

import pytest
import torch

from parity.checks.diagnosis import diagnose
from parity.reference.merge import MergeReference, MergeStep

torch.manual_seed(0)
BASE = torch.randn(8, 6, dtype=torch.float64)


def _ref(*deltas: torch.Tensor, ratio: float = 0.5, module: str = "m") -> MergeReference:
    steps = [MergeStep(d, d.abs(), 4, torch.float32, ratio) for d in deltas]
    return MergeReference("c", module, BASE, BASE + sum(deltas), steps)


DELTA = torch.randn(8, 6, dtype=torch.float64)
OTHER = torch.randn(8, 6, dtype=torch.float64)


@pytest.mark.parametrize(("fused", "expected"), [
    (BASE, "dropped: diffusers merged nothing into it (keys k.down)"),
    (BASE - DELTA, "sign error"),
    (BASE + 2 * DELTA, "2× the reference delta: alpha not applied?"),
    (BASE + 0.5 * DELTA, "0.5× the reference delta: alpha applied twice?"),
    (BASE + 1.3 * DELTA, "1.3× the reference delta"),
    (BASE + torch.cat([DELTA[4:], DELTA[:4]]), "wrong split: its output halves are swapped"),
    (BASE + DELTA.to(torch.bfloat16).double(), "an extra rounding of the delta in bfloat16"),
], ids=["dropped", "sign", "alpha-ignored", "alpha-twice", "scale", "halves", "bf16-rounding"])
def test_one_departure_is_named(fused, expected):
    assert expected in diagnose(fused, _ref(DELTA), sources=("k.down",))


def test_a_wrong_split_names_the_module_whose_delta_it_holds():
    ref, sibling = _ref(DELTA, module="to_q"), _ref(OTHER, module="to_k")
    said = diagnose(BASE + OTHER, ref, {"c.to_q.weight": ref, "c.to_k.weight": sibling})
    assert said == "wrong split: it holds the reference delta of c.to_k.weight"


def test_with_two_adapters_the_one_that_is_off_is_named():
    said = diagnose(BASE + DELTA + 2 * OTHER, _ref(DELTA, OTHER))
    assert said == "adapter 1: 2× the reference delta: alpha not applied?"


def test_noise_that_is_no_known_departure_is_not_given_one():
    noisy = BASE + DELTA + 0.3 * torch.randn(8, 6, dtype=torch.float64)
    assert diagnose(noisy, _ref(DELTA)).startswith("not a multiple of the reference delta")
