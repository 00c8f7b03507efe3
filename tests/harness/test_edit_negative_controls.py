"""The edit workflow check can fail: a fuse that merges nothing, a fused weight one step off, an
adapter with no effect, and a safe fuse turned off each fail it."""

from __future__ import annotations

import pytest
import torch

import parity.checks.edit as edit
from parity.checks.edit import EditRequest, refused_fuse, run_edit
from parity.tolerances import ulp
from tests.support.edit_files import edit_lora, with_nan, with_zero_effect


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return edit_lora(tmp_path_factory.mktemp("edit-controls"))


def test_a_fuse_that_merges_nothing_fails_on_the_image(lora_file, monkeypatch):
    def fuse_nothing(pipe, request):
        pipe.load_lora_weights(request.lora, adapter_name=edit.ADAPTER)
        pipe.set_adapters(edit.ADAPTER, adapter_weights=[0.0])  # loaded, off, nothing merged

    monkeypatch.setattr(edit, "_fuse_block", fuse_nothing)
    report = run_edit(EditRequest(lora_file))
    assert any("fused image differs" in f for f in report.failures), report.failures


def test_a_fused_weight_one_step_off_fails_the_merge(lora_file, monkeypatch):
    original = edit._fuse_block

    def fuse_then_nudge(pipe, request):
        original(pipe, request)
        weight = pipe.transformer.transformer_blocks[0].attn.to_q.weight
        with torch.no_grad():  # 64 ULPs of one element: past any bound, invisible in the image
            weight.view(-1)[0] += 64 * ulp(weight.view(-1)[:1], weight.dtype)[0]

    monkeypatch.setattr(edit, "_fuse_block", fuse_then_nudge)
    report = run_edit(EditRequest(lora_file))
    assert any(f.startswith("merge: transformer.transformer_blocks.0.attn.to_q.weight") for f in report.failures), \
        report.failures


def test_an_adapter_with_no_effect_proves_nothing(lora_file):
    report = run_edit(EditRequest(with_zero_effect(lora_file)))
    assert any("would prove nothing" in f for f in report.failures), report.failures


def test_an_unsafe_fuse_of_a_nan_adapter_fails_the_refusal_check(lora_file, monkeypatch):
    monkeypatch.setattr(edit, "SAFE_FUSING", False)
    result = refused_fuse(EditRequest(with_nan(lora_file, "img_in")))
    assert not result.ok and result.raised is None and result.changed
