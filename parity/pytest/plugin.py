"""The lora-parity pytest plugin: the root conftest loads this module, which loads the modules that
own the options, hooks and fixtures (each declares its own, as pytest's own _pytest/skipping.py does).

Here: the libraries are quieted, every test runs inside the global-state table's isolation, and bad
input (a user's file, path or option) fails its test with one line instead of a traceback.
"""

from __future__ import annotations

import pytest

from parity.quiet import quiet_libraries

pytest_plugins = [
    "parity.pytest.models",  # --family, --model-path, --lora, --allow-pickle
    "parity.pytest.devices",  # --device; GPU and CPU-thread share per xdist worker; gpu marker
    "parity.pytest.compiling",  # --compile-backend, --compile-mode
    "parity.pytest.reports",  # --parity-report, --overwrite-reports; the summary
    "parity.pytest.golden",  # --update-golden, --golden-dir, --golden-class, --golden-report
    "parity.pytest.bench",  # --bench-size, --bench-rounds, --bench-blocks
    "parity.pytest.watchdog",  # --hang-grace
]


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """The plugin users install (parity/pytest/userplugin.py: the lora_parity fixture, the --lora-parity-…
    options) runs here too: registered by its pytest11 entry point where this environment's metadata has
    it, else here, under the same name, so never twice (-p no:lora_parity still turns it off)."""
    from parity.pytest import userplugin

    if not pluginmanager.has_plugin(userplugin.PLUGIN_NAME) and not pluginmanager.is_blocked(userplugin.PLUGIN_NAME):
        pluginmanager.register(userplugin, userplugin.PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    quiet_libraries()


@pytest.fixture(autouse=True)
def restore_global_state():
    """Every check starts from the same seeds and torch settings, and leaves them as it found them
    (parity/globalstate.py lists them: default dtype, dynamo config, deterministic algorithms, …)."""
    from parity.globalstate import isolated

    with isolated(seed=0):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Bad input (a user's file, path or option) fails with its one line naming file and key, not a
    traceback through the harness."""
    outcome = yield
    report = outcome.get_result()
    from parity.errors import ParityInputError

    if call.excinfo is not None and report.failed and call.excinfo.errisinstance(ParityInputError):
        report.longrepr = f"bad input: {call.excinfo.value}"
