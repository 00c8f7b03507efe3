"""The recompile guard: dynamo's error_on_recompile plus its frame counters, readable on failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

BACKENDS = ("eager", "aot_eager", "inductor")


def default_backend(device: str) -> str:
    # eager traces in seconds on CPU (the tiny sd15 UNet ~8 s); inductor on 2 CPU cores takes minutes.
    return "inductor" if torch.device(device).type == "cuda" else "eager"


@dataclass
class CompileWatch:
    """What dynamo compiled while the watch was open."""

    new_graphs: int = 0
    new_frames: int = 0
    recompiled: bool = False
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.recompiled and self.new_graphs == 0:
            return "no recompile"
        return f"{self.new_graphs} new graph(s); " + " | ".join(self.reasons or ["no reason recorded"])


def _stats() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], counters["frames"]["total"]


@contextmanager
def watch_compiles(raise_on_recompile: bool = False) -> Iterator[CompileWatch]:
    """Turn on ``error_on_recompile`` and count graphs compiled inside the block.

    dynamo's RecompileError (with its guard-failure reason) is recorded on the watch, and re-raised
    only when ``raise_on_recompile``: a check wants to assert with the reason, not crash on it.
    """
    import torch._dynamo as dynamo
    from torch._dynamo.exc import RecompileError

    watch = CompileWatch()
    graphs0, frames0 = _stats()
    try:
        with dynamo.config.patch(error_on_recompile=True):
            yield watch
    except RecompileError as exc:
        watch.recompiled = True
        watch.reasons.append(" ".join(str(exc).split()))
        if raise_on_recompile:
            raise
    finally:
        graphs1, frames1 = _stats()
        watch.new_graphs = graphs1 - graphs0
        watch.new_frames = frames1 - frames0
        watch.recompiled = watch.recompiled or watch.new_graphs > 0


def compile_in_place(model: nn.Module, backend: str, mode: str | None = None) -> nn.Module:
    """``model.compile(...)``: in place, so pipelines keep seeing their ModelMixin, not an OptimizedModule.

    ``torch.compile(pipe.unet)`` returns a wrapper that diffusers' pipeline-level ``set_adapters``
    and ``get_list_adapters`` do not recognise as a model (diffusers issue #11408).
    """
    if backend not in BACKENDS:
        from parity.errors import ParityInputError

        raise ParityInputError(f"unknown compile backend {backend!r}; choose from {', '.join(BACKENDS)}")
    model.compile(backend=backend, mode=mode if backend == "inductor" else None)
    return model


def reset() -> None:
    """Forget every compiled graph and counter: each hotswap case starts from a cold cache."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
