"""The LoRA API calls benchmarks time, declared once as data: the mode each starts from, what is
redone before every round, and the call that is timed (load, fuse, unfuse, set_adapters, hotswap,
and the first call after a hotswap against the first call after unloading, reloading, recompiling).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parity.bench import record as rec
from parity.bench.modes import BENCH_RANK, Subject, load, uncompile
from parity.checks.dynamo import compile_in_place

HOT = "a0"  # the adapter a hotswap replaces; enter() loads the first file under this name


@dataclass
class Operation:
    """What to set up once, what to redo before each round, and the call that is timed."""

    start_mode: str  # the mode entered before timing
    each_round: Callable[[Subject], None] | None
    target: Callable[[Subject], Any]
    compiles: bool = False  # the timed call compiles by design


def _unload(subject: Subject) -> None:
    subject.pipe.unload_lora_weights()


def _is_fused(subject: Subject) -> bool:
    return any(getattr(m, "merged", False) for m in subject.denoiser.modules())


def _fuse(subject: Subject) -> None:
    subject.pipe.fuse_lora(components=[subject.family.denoiser])


def _unfuse(subject: Subject) -> None:
    subject.pipe.unfuse_lora(components=[subject.family.denoiser])


def _make_alternating(values: list[Any]) -> Callable[[], Any]:
    cycle = itertools.cycle(values)
    return lambda: next(cycle)


def _hotswap_next(subject: Subject) -> None:
    # Alternate files 1 and 0 so every swap writes different weights into the hot adapter.
    index = subject.scratch.setdefault("next_file", _make_alternating([1, 0]))()
    load(subject, index, HOT, hotswap=True)


def _reload_and_recompile(subject: Subject) -> None:
    # The alternative to hotswap: forget the graph, swap the adapter by unload + load, compile again.
    uncompile(subject.denoiser)
    subject.pipe.unload_lora_weights()
    index = subject.scratch.setdefault("next_file", _make_alternating([1, 0]))()
    load(subject, index, HOT)
    compile_in_place(subject.denoiser, subject.backend, subject.compile_mode)


def _set_adapters(subject: Subject) -> None:
    weights = subject.scratch.setdefault("weights", _make_alternating([[1.0, 0.5], [0.5, 1.0]]))()
    subject.pipe.set_adapters(["a0", "a1"], adapter_weights=weights)


OPERATIONS: dict[str, Operation] = {
    "load_lora_weights": Operation(rec.BASE, _unload, lambda s: load(s, 0, HOT)),
    "fuse_lora": Operation(rec.unfused_mode(1), lambda s: _unfuse(s) if _is_fused(s) else None, _fuse),
    "unfuse_lora": Operation(rec.unfused_mode(1), lambda s: None if _is_fused(s) else _fuse(s), _unfuse),
    "set_adapters": Operation(rec.unfused_mode(2), None, _set_adapters),
    "hotswap": Operation(rec.hotswap_ready_mode(BENCH_RANK), None, _hotswap_next),
    "first-call-after-hotswap": Operation(rec.hotswap_ready_mode(BENCH_RANK), _hotswap_next, lambda s: s.forward()),
    "first-call-after-reload": Operation(
        rec.hotswap_ready_mode(BENCH_RANK), _reload_and_recompile, lambda s: s.forward(), compiles=True
    ),
}
assert set(OPERATIONS) == set(rec.OPERATIONS)
