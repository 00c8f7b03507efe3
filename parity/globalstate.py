"""The process-wide settings a check may change, declared once: each test starts from, and leaves,
the same values (``restore_global_state`` in parity/pytest/plugin.py runs every test inside ``isolated``).

A setting missing here can leak from one test into the next and make results depend on test
order; tests/harness/test_globalstate.py changes each one and checks that it comes back.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Setting:
    name: str
    get: Callable[[], Any]
    set: Callable[[Any], None]
    other: Callable[[Any], Any]  # a value different from the given one: for the restore test


def _deterministic() -> tuple[bool, bool]:
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


def _dynamo_config() -> dict[str, Any]:
    import torch._dynamo

    return torch._dynamo.config.get_config_copy()


def _set_dynamo_config(value: dict[str, Any]) -> None:
    import torch._dynamo

    # Only what differs: writing every key back would touch deprecated ones, which warn.
    now = torch._dynamo.config.get_config_copy()
    for key, v in value.items():
        if key in now and now[key] != v:
            setattr(torch._dynamo.config, key, v)


def _other_dynamo_config(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "error_on_recompile": not value["error_on_recompile"]}


def _attr(obj: Any, name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return (lambda: getattr(obj, name)), (lambda v: setattr(obj, name, v))


_matmul = torch.backends.cuda.matmul
SETTINGS: tuple[Setting, ...] = (
    Setting("default dtype", torch.get_default_dtype, torch.set_default_dtype,
            lambda v: torch.float64 if v != torch.float64 else torch.float32),
    Setting("deterministic algorithms", _deterministic, _set_deterministic, lambda v: (not v[0], v[1])),
    Setting("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision,
            lambda v: "medium" if v != "medium" else "highest"),
    Setting("cuda matmul allow_tf32", *_attr(_matmul, "allow_tf32"), lambda v: not v),
    Setting("cuda matmul fp16 reduced-precision reduction",
            *_attr(_matmul, "allow_fp16_reduced_precision_reduction"), lambda v: not v),
    Setting("cuda matmul bf16 reduced-precision reduction",
            *_attr(_matmul, "allow_bf16_reduced_precision_reduction"), lambda v: not v),
    Setting("cudnn deterministic", *_attr(torch.backends.cudnn, "deterministic"), lambda v: not v),
    Setting("cudnn benchmark", *_attr(torch.backends.cudnn, "benchmark"), lambda v: not v),
    Setting("cudnn allow_tf32", *_attr(torch.backends.cudnn, "allow_tf32"), lambda v: not v),
    Setting("torch CPU RNG", torch.random.get_rng_state, torch.random.set_rng_state,
            lambda v: torch.random.manual_seed(int(v.sum()) + 1).get_state()),
    Setting("numpy global RNG", np.random.get_state, np.random.set_state,
            lambda v: np.random.RandomState(int(v[2]) + 1).get_state()),
    Setting("python random", random.getstate, random.setstate, lambda v: random.Random(len(str(v))).getstate()),
    Setting("dynamo config", _dynamo_config, _set_dynamo_config, _other_dynamo_config),
)


def capture() -> dict[str, Any]:
    return {s.name: s.get() for s in SETTINGS}


def restore(saved: dict[str, Any]) -> None:
    for s in SETTINGS:
        s.set(saved[s.name])


@contextlib.contextmanager
def isolated(seed: int = 0) -> Iterator[None]:
    """Run with every RNG seeded to ``seed`` and true float32 products, then put every setting back."""
    saved = capture()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    # Merge bounds assume float32 products; TF32 would carry a 2^-11 unit roundoff instead.
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        restore(saved)
