"""--compile-backend and --compile-mode for the torch.compile cases, validated as the CLI validates them."""

from __future__ import annotations

import pytest

from parity.options import COMPILE_BACKEND, COMPILE_MODE


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    COMPILE_BACKEND.add_to(group)
    COMPILE_MODE.add_to(group)


@pytest.fixture(scope="session")
def compile_options(request: pytest.FixtureRequest, device: str) -> tuple[str, str | None]:
    """(backend, mode): the named backend, or the device's default, and a mode only for inductor."""
    from parity.checks.dynamo import compile_options as resolved

    return resolved(request.config.getoption("--compile-backend"), request.config.getoption("--compile-mode"), device)
