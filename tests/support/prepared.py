"""Prepared pipelines for the merge and unfuse cases, loaded once and handed out as deep copies.

A case's pipeline is its family's tiny model with the case's LoRA files loaded (set_adapters at the
case's weights when there is more than one); the cases that differ only in what they then do with
it (lora_scale, a fuse/unfuse cycle, drift over cycles) share one load. A deep copy is the loaded
pipeline as a fresh load leaves it: measured bit-identical fused weights against a fresh load, at a
sixth of its cost. The user's own model (--model-path) is never copied: it is prepared afresh.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.checks.cases import LoadsFiles
from parity.checks.fuse import load_files
from parity.checks.prepare import Prepared, fresh_copy, prepare


class PreparedCache:
    def __init__(self, directory: Path, model_path: str | None) -> None:
        self.directory, self.model_path = directory, model_path
        self.loaded: dict[tuple, Prepared] = {}

    def _prepare(self, case: LoadsFiles) -> Prepared:
        folder = self.directory / case.group
        folder.mkdir(parents=True, exist_ok=True)
        prep = prepare(case.layout, case.specs, case.dtype, case.device, str(folder), self.model_path)
        # load_files, as the check does: a file diffusers refuses raises LoaderRefused (a case's finding)
        load_files(prep.pipe, prep.family, prep.loras, case.weights if len(case.specs) > 1 else None)
        return prep

    def get(self, case: LoadsFiles) -> Prepared:
        """The case's pipeline with its files loaded: a fresh load's equal, for the caller to change."""
        if self.model_path is not None:
            return self._prepare(case)
        if case.group not in self.loaded:
            self.loaded[case.group] = self._prepare(case)
        return fresh_copy(self.loaded[case.group])


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> PreparedCache:
    return PreparedCache(tmp_path_factory.mktemp("prepared"), request.config.getoption("--model-path"))
