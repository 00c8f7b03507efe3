"""A pytest plugin that makes a fused model 20% slower on purpose: after ``fuse_lora``, every forward of
a fused component runs extra matmuls for a fifth of that forward's own time.

Loaded with ``-p tests.support.slow_fuse`` it stands in for a "new" library version whose fused
forward regressed, so the benchmark comparison's negative control can show that a 20% slowdown is
caught by ``ratio:10%`` (tests/harness/test_bench_noise.py). The weights and outputs are untouched.
"""

from __future__ import annotations

import time

import pytest

SLOWDOWN = 0.20


def _slow_down(module) -> None:
    import torch

    work = torch.randn(64, 64)

    def start(mod, args, kwargs):
        mod._parity_slow_start = time.perf_counter()

    def stall(mod, args, kwargs, output):
        elapsed = time.perf_counter() - mod.__dict__.pop("_parity_slow_start", time.perf_counter())
        until = time.perf_counter() + SLOWDOWN * elapsed
        while time.perf_counter() < until:  # the extra matmul, repeated for a fifth of the forward
            torch.mm(work, work)
        return output

    module.register_forward_pre_hook(start, with_kwargs=True)
    module.register_forward_hook(stall, with_kwargs=True)


def pytest_configure(config: pytest.Config) -> None:
    from diffusers.loaders.lora_base import LoraBaseMixin

    original = LoraBaseMixin.fuse_lora

    def fuse_lora(self, components=(), *args, **kwargs):
        out = original(self, components, *args, **kwargs)
        for name in components or getattr(self, "_lora_loadable_modules", []):
            module = getattr(self, name, None)
            if module is not None and not getattr(module, "_parity_slowed", False):
                _slow_down(module)
                module._parity_slowed = True
        return out

    LoraBaseMixin.fuse_lora = fuse_lora
