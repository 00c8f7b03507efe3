"""Benchmark modes do what their names say, and leaving one restores the base pipeline exactly.

A benchmark that times a no-op (an adapter that never became active, a fuse that did not happen)
reports a number that means nothing; these checks make such a mode fail.
"""

from __future__ import annotations

import pytest
import torch

from parity.bench import record as rec
from parity.bench.flops import counted_flops
from parity.bench.modes import (
    BENCH_RANK,
    MODES,
    MODES_BY_NAME,
    Subject,
    build_subject,
    call_of,
    enter,
    flop_fields,
    leave,
)
from parity.zoo import get_family

CHEAP = [m for m in MODES if not m.compiled] + [MODES_BY_NAME[rec.COMPILED_FUSED], MODES_BY_NAME["compiled-hotswap-ready-r64"]]


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    return build_subject(get_family("flux"), "tiny", torch.float32, "cpu", str(tmp_path_factory.mktemp("bench")))


@pytest.fixture(scope="module")
def base_output(subject: Subject) -> torch.Tensor:
    return subject.forward().clone()


@pytest.mark.parametrize("mode", CHEAP, ids=lambda m: m.name)
def test_leaving_a_mode_restores_the_base_output_bit_exact(subject: Subject, base_output: torch.Tensor, mode) -> None:
    enter(subject, mode)
    subject.forward()
    leave(subject)
    assert torch.equal(subject.forward(), base_output)
    assert not subject.pipe.get_list_adapters().get("transformer")


@pytest.mark.parametrize("mode", [m for m in CHEAP if m.adapters and not m.compiled], ids=lambda m: m.name)
def test_lora_modes_change_the_output(subject: Subject, base_output: torch.Tensor, mode) -> None:
    enter(subject, mode)
    try:
        assert not torch.allclose(subject.forward(), base_output, atol=1e-3)
    finally:
        leave(subject)


def test_every_loaded_adapter_is_active_in_unfused_modes(subject: Subject) -> None:
    outputs = {}
    for n in (1, 2, 4):
        enter(subject, MODES_BY_NAME[rec.unfused_mode(n)])
        outputs[n] = subject.forward()
        assert subject.pipe.get_active_adapters() == [f"a{i}" for i in range(n)]
        leave(subject)
    assert not torch.allclose(outputs[1], outputs[2]) and not torch.allclose(outputs[2], outputs[4])


def test_fused_modes_give_the_unfused_output(subject: Subject) -> None:
    enter(subject, MODES_BY_NAME[rec.unfused_mode(1)])
    unfused = subject.forward()
    leave(subject)
    for name in (rec.FUSED, rec.FUSED_UNLOADED):
        enter(subject, MODES_BY_NAME[name])
        # fusing reorders one rounding per weight; the outputs agree to float32 forward accuracy
        torch.testing.assert_close(subject.forward(), unfused, rtol=1e-4, atol=1e-4)
        leave(subject)


def test_hotswap_ready_mode_pads_the_adapter_to_its_target_rank(subject: Subject, base_output: torch.Tensor) -> None:
    enter(subject, MODES_BY_NAME["compiled-hotswap-ready-r64"])
    try:
        ranks = {m.lora_A["a0"].weight.shape[0] for m in subject.denoiser.modules() if hasattr(m, "lora_A")}
        assert ranks == {64}
        assert not torch.allclose(subject.forward(), base_output, atol=1e-3)
    finally:
        leave(subject)
    assert BENCH_RANK < 64


@pytest.mark.parametrize("kind", [rec.FORWARD, rec.PIPELINE])
def test_the_flop_floor_is_what_torch_counts_for_the_unfused_adapters(subject: Subject, kind: str) -> None:
    # The floor's extra FLOPs come from our formula; torch's counter on the PEFT model must agree.
    mode = MODES_BY_NAME[rec.unfused_mode(2)]
    fields = flop_fields(subject, mode, kind)
    enter(subject, mode)
    try:
        counted = counted_flops(call_of(subject, kind))
    finally:
        leave(subject)
    assert fields["flops_lora"] > 0
    assert fields["flops_base"] + fields["flops_lora"] == counted
    assert flop_fields(subject, MODES_BY_NAME[rec.FUSED], kind)["flops_lora"] == 0


def test_leave_undoes_a_fuse_that_unload_would_keep(subject: Subject, base_output: torch.Tensor) -> None:
    # negative control for the snapshot: fuse + unload keeps fused weights (a diffusers behaviour),
    # so without the restore the base output would stay changed
    enter(subject, MODES_BY_NAME[rec.FUSED_UNLOADED])
    assert not torch.allclose(subject.forward(), base_output, atol=1e-3)
    saved, subject.saved = subject.saved, {}
    try:
        leave(subject)
        assert not torch.equal(subject.forward(), base_output)
    finally:
        subject.saved = saved
        leave(subject)
    assert torch.equal(subject.forward(), base_output)


def test_fresh_storage_moves_every_weight_of_a_group_and_keeps_each_mode_as_it_was(tmp_path) -> None:
    """parity/bench/groups.py moves every weight to new memory before each round at the small and full
    sizes: each mode must give what it gave before, fused included, from weights at new addresses."""
    from parity.bench.groups import build_group, fresh_storage

    subjects = build_group(get_family("flux"), "tiny", torch.float32, "cpu", str(tmp_path), rec.FORWARD,
                           modes=(rec.BASE, rec.FUSED))
    before = {name: (s.forward().clone(), {n: p.data_ptr() for n, p in s.denoiser.named_parameters()})
              for name, s in subjects.items()}
    fresh_storage(subjects)
    for name, s in subjects.items():
        output, pointers = before[name]
        assert torch.equal(s.forward(), output), name
        moved = {n for n, p in s.denoiser.named_parameters() if p.data_ptr() != pointers[n]}
        assert moved == set(pointers), f"{name}: {len(pointers) - len(moved)} weights stayed in place"
    assert not torch.equal(before[rec.BASE][0], before[rec.FUSED][0])  # the fused mode is still fused
