"""Tiny weights depend on (seed, name, shape) only: not on construction order or the global RNG."""

from __future__ import annotations

import torch

from parity.zoo import build_pipeline
from parity.zoo.sd15 import tiny_unet
from parity.zoo.weights import deterministic_tensor, fill_deterministic


def test_same_seed_gives_identical_weights_whatever_the_global_rng_state():
    torch.manual_seed(1)
    a = fill_deterministic(tiny_unet(), 0, "unet").state_dict()
    torch.manual_seed(12345)
    torch.randn(1000)
    b = fill_deterministic(tiny_unet(), 0, "unet").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_tensor_depends_on_its_name_shape_and_seed():
    base = deterministic_tensor(0, "x", (4, 4))
    assert not torch.equal(base, deterministic_tensor(0, "y", (4, 4)))
    assert not torch.equal(base, deterministic_tensor(1, "x", (4, 4)))
    assert not torch.equal(base.flatten(), deterministic_tensor(0, "x", (16,)))


def test_tiny_pipelines_are_rebuilt_identically():
    first = build_pipeline("sd15").unet.state_dict()
    second = build_pipeline("sd15").unet.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
