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


def compile_options(backend: str | None, mode: str | None, device: str) -> tuple[str, str | None]:
    """(backend, mode) to compile with: the device's default backend where none is named; a name torch
    does not know, or a mode for a backend other than inductor, is bad input."""
    from parity.errors import ParityInputError

    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ParityInputError(f"unknown compile backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if mode is None:
        return backend, None
    if backend != "inductor":
        # compile_in_place drops the mode for other backends; say so instead of ignoring it.
        raise ParityInputError(f"--compile-mode {mode!r} applies to the inductor backend only, not {backend!r}")
    import torch._inductor

    modes = list(torch._inductor.list_mode_options())
    if mode not in modes:
        raise ParityInputError(f"unknown compile mode {mode!r}; choose from {', '.join(modes)}")
    return backend, mode


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
