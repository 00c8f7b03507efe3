"""Each process-wide setting a test can change comes back after it (parity/globalstate.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo

from parity.globalstate import SETTINGS, Setting, capture, isolated, restore


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_a_setting_changed_inside_isolated_comes_back(setting: Setting):
    before = setting.get()
    with isolated():
        setting.set(setting.other(setting.get()))
        assert not same(setting.get(), before), "other() must change the setting, or this shows nothing"
    assert same(setting.get(), before)


def test_isolated_seeds_every_rng_the_same_way_each_time():
    draws = []
    for _ in range(2):
        with isolated(seed=3):
            draws.append((torch.rand(3), np.random.rand(3), __import__("random").random()))
    assert same(draws[0], draws[1])


def test_negative_control_a_setting_left_out_of_the_table_leaks():
    saved = capture()
    torch.set_default_dtype(torch.float64)
    restore({**saved, "default dtype": torch.float64})  # as if the table had no default-dtype entry
    try:
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(saved["default dtype"])


def test_the_plugin_fixture_restores_what_the_previous_test_changed_part_1():
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    torch._dynamo.config.error_on_recompile = not torch._dynamo.config.error_on_recompile


def test_the_plugin_fixture_restores_what_the_previous_test_changed_part_2():
    # Runs after part 1 in file order; in random order or on another xdist worker it checks the
    # same defaults, so it holds either way.
    assert torch.get_default_dtype() == torch.float32
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch._dynamo.config.error_on_recompile is False
