"""The merge and unfuse cases share one load per (layout, dtype, device, adapters) and each gets a deep
copy of it (tests/support/prepared.py). A copy must be a fresh load's equal and must share nothing
with the next copy: otherwise a fuse in one case would leak into the next (the second-fuse finding
shows how much state a fuse leaves behind)."""

from __future__ import annotations

import torch

from parity.checks.cases import LayoutCase, MergeCase
from parity.checks.fuse import fuse_and_measure, load_adapters, snapshot
from parity.checks.prepare import prepare

CASE = MergeCase(LayoutCase("sd15", "kohya", "locon"), "bfloat16", "cpu", 0.5, 2)


def differing(a: dict, b: dict) -> list[str]:
    return [f"{c}.{k}" for c in a for k, t in a[c].items() if not torch.equal(t, b[c][k])]


def fused(prep) -> dict:
    fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, CASE.weights, CASE.lora_scale)
    return snapshot(prep.components)


def test_a_copy_fuses_to_exactly_what_a_fresh_load_fuses_to(prepared, tmp_path) -> None:
    fresh = prepare(CASE.layout, CASE.specs, CASE.dtype, CASE.device, str(tmp_path))
    load_adapters(fresh.pipe, fresh.paths, CASE.weights)

    assert differing(fused(prepared.get(CASE)), fused(fresh)) == []


def scalings(prep) -> dict[tuple[str, str, str], float]:
    return {(c, name, adapter): value for c, model in prep.components.items() for name, m in model.named_modules()
            if hasattr(m, "scaling") for adapter, value in m.scaling.items()}


def test_a_fuse_in_one_copy_leaves_the_next_copy_unfused(prepared) -> None:
    first = prepared.get(CASE)
    loaded = scalings(first)
    after_fuse = fused(first)
    # what a fuse leaves behind, so a shared pipeline would show: fused weights, scalings times 0.5
    assert differing(first.before, after_fuse) and scalings(first) != loaded

    second = prepared.get(CASE)

    assert differing(first.before, snapshot(second.components)) == []
    assert scalings(second) == loaded
    assert differing(fused(second), after_fuse) == []  # and it fuses as the first did
