"""The one-pass comparison converts a wide weight a block of rows at a time (to bound the host copy of a
bfloat16 or CUDA weight): it must judge every weight exactly as in one block, and still find one bad
element in the last block, at its index in the whole weight."""

from __future__ import annotations

import pytest
import torch

from parity import fused_comparison
from parity.checks.cases import LayoutCase, LoraSpec
from parity.checks.fuse import fuse_and_measure, load_adapters, measure_merge, snapshot
from parity.checks.prepare import prepare
from parity.reference.merge import reference_merge
from parity.tolerances import detectable_ulps, operand_magnitude, ulp

CASE = LayoutCase("sd15", "kohya", "default")
SPEC = (LoraSpec(seed=2, rank=4, alpha=2.0),)
FEW_ELEMENTS = 7  # a block of one row, or of a few: every weight is cut into many blocks


@pytest.fixture
def fused(tmp_path):
    prep = prepare(CASE, SPEC, "float32", "cpu", str(tmp_path))
    load_adapters(prep.pipe, prep.paths)
    fuse_and_measure(prep.pipe, prep.components, prep.before, prep.loras, (1.0,), 1.0)
    return prep, snapshot(prep.components)


def summary(result):
    return [(r.name, r.numel, r.max_abs, r.max_ulps, r.max_bound_ratio, r.n_over, r.worst_index)
            for r in result.reports]


def test_blocks_of_rows_cover_the_weight_once():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_comparison, "CHUNK_ELEMENTS", FEW_ELEMENTS)
        blocks = fused_comparison.row_blocks(10, 3)
    assert [(b.start, b.stop) for b in blocks] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]


def test_blocks_judge_every_weight_as_the_whole_does(fused, monkeypatch):
    prep, after = fused
    refs = reference_merge(prep.before, [(prep.loras[0], 1.0)], 1.0)
    whole = measure_merge(prep.before, after, refs, torch.float32)
    monkeypatch.setattr(fused_comparison, "CHUNK_ELEMENTS", FEW_ELEMENTS)
    blocks = measure_merge(prep.before, after, refs, torch.float32)
    assert whole.ok and summary(blocks) == summary(whole)


def test_blocks_find_one_bad_element_in_the_last_row(fused, monkeypatch):
    prep, after = fused
    refs = reference_merge(prep.before, [(prep.loras[0], 1.0)], 1.0)
    (component, module), ref = next(iter(refs.items()))
    weight = after[component][f"{module}.weight"]
    row, col = weight.shape[0] - 1, 1
    step = detectable_ulps(torch.float32, rank=SPEC[0].rank) * ulp(operand_magnitude(ref.steps, ref.base),
                                                                   torch.float32)
    weight[row, col] = (weight.double() + step)[row, col].float()
    monkeypatch.setattr(fused_comparison, "CHUNK_ELEMENTS", FEW_ELEMENTS)
    result = measure_merge(prep.before, after, refs, torch.float32)
    failing = [r for r in result.reports if not r.ok]
    assert [(r.name, r.n_over, r.worst_index[:2]) for r in failing] == [(ref.key, 1, (row, col))]
