"""The pytest plugin users install: ``pip install lora-parity`` registers this module under the name
``lora_parity`` (the ``pytest11`` entry point in pyproject.toml), in every project of that environment.

So it must not change a run that does not ask for it: it declares three options, all prefixed
(``--lora-parity-…``), and one fixture, ``lora_parity``, that does nothing until a test requests it. No
autouse fixture, no hook that acts, and nothing heavy imported here: torch, diffusers and the checks load
when a test first calls the fixture (parity/pytest/fixture.py). ``-p no:lora_parity`` turns it off.

Inside this repository the root conftest loads the full in-repo plugin (parity/pytest/plugin.py, with
the unprefixed options); that registers this module under the same name only where the entry point has
not (an environment installed before the entry point existed), so it is never registered twice.
"""

from __future__ import annotations

import pytest

PLUGIN_NAME = "lora_parity"  # the entry point's name: what -p no:lora_parity blocks
GOLDEN_DIR = "lora_parity_golden"  # beside the test file, unless --lora-parity-golden-dir


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(PLUGIN_NAME, "lora-parity: the lora_parity fixture (docs/plugin.md)")
    group.addoption("--lora-parity-device", default="cpu", metavar="DEVICE",
                    help="device the lora_parity fixture's checks run on: cpu, cuda or auto (default: cpu); a "
                         "test asking for cuda where there is none skips")
    group.addoption("--lora-parity-golden-dir", default=None, metavar="DIR",
                    help=f"root of lora_parity.golden()'s images (default: {GOLDEN_DIR}/ beside each test file); "
                         "one folder per device class under it")
    group.addoption("--lora-parity-update-golden", action="store_true", default=False,
                    help="lora_parity.golden() renders, writes (or rewrites) the baselines the selected tests "
                         "compare with, and passes")


@pytest.fixture
def lora_parity(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The lora-parity checks for your own LoRA files: ``.check(...)`` (merge parity and unfuse drift),
    ``.hotswap(...)`` and ``.golden(...)``, each returning a report with ``.ok`` and ``.text`` (what the
    ``lora-parity`` CLI prints). See docs/plugin.md."""
    from parity.pytest.fixture import LoraParity

    return LoraParity.for_test(request, tmp_path_factory, GOLDEN_DIR)
