"""pytest plugin for the kill tests: a fast fake render, and a pause at a chosen point of an
``--update-golden`` run so the test can SIGKILL it there.

GOLDEN_KILL_AT=staged: pause after the second baseline is staged (mid-run, nothing committed).
GOLDEN_KILL_AT=commit: pause after the first staged PNG is moved into place (mid-commit).
The pause writes GOLDEN_KILL_READY, then sleeps until killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import parity.golden.render as rendering
import parity.golden.store as store

FAKE_VALUE = 0.25  # flat grey: unlike every committed baseline


def _pause() -> None:
    Path(os.environ["GOLDEN_KILL_READY"]).write_text(str(os.getpid()))
    time.sleep(600)


def pytest_configure(config) -> None:
    rendering.render = lambda case, dtype=None, device="cpu", model_path=None: np.full((32, 32, 3), FAKE_VALUE, np.float32)
    rendering.forward_error = lambda case, image, device="cpu", model_path=None: 0.0
    where = os.environ["GOLDEN_KILL_AT"]
    if where == "staged":
        original, staged = store.GoldenStore.write, []

        def write(self, case, image, entry):
            path = original(self, case, image, entry)
            staged.append(case.id)
            if len(staged) == 2:
                _pause()
            return path

        store.GoldenStore.write = write
    elif where == "commit":
        real_replace = os.replace

        class PausingOs:
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                real_replace(src, dst)
                if store.STAGING_PREFIX in str(src) and store.STAGING_PREFIX not in str(dst) and str(dst).endswith(".png"):
                    _pause()

        store.os = PausingOs()
