"""A pytest plugin that breaks PEFT's fuse on purpose: merged deltas lose their alpha/rank scale.

Loaded with ``-p tests.support.broken_fuse`` it stands in for a "new" library version with a fuse
bug, so the upgrade gate's negative control can show that such a version fails the gate. The
unfused forward is untouched: only what fuse_lora writes into the weights changes.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from peft.tuners.lora import layer

    for cls in (layer.Linear, layer.Conv2d):
        original = cls.get_delta_weight

        def without_alpha(self, adapter, *args, _original=original, **kwargs):
            # get_delta_weight multiplies by scaling = lora_alpha / r; undo it
            return _original(self, adapter, *args, **kwargs) / self.scaling[adapter]

        cls.get_delta_weight = without_alpha
