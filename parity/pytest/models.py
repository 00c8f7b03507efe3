"""Which models and LoRA files a run checks: --family (a filter over the case table), --model-path
(the user's pipeline folder instead of the tiny model), --lora, --expert and --allow-pickle (the user's
files, and for Wan 2.2 the expert they go into)."""

from __future__ import annotations

from typing import Any

import pytest

from parity.options import ALLOW_PICKLE, EXPERT, MODEL_CONFIG, MODEL_PATH, VARIANT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-parity")
    group.addoption("--family", action="append", default=None, help="run only these zoo families (repeatable)")
    MODEL_PATH.add_to(group)
    VARIANT.add_to(group)
    MODEL_CONFIG.add_to(group)
    group.addoption("--lora", action="append", default=[], help="a user LoRA file to check (repeatable)")
    EXPERT.add_to(group)
    ALLOW_PICKLE.add_to(group)


def case_family(item: pytest.Item) -> str | None:
    """The family a collected test runs on: a ``family`` parameter, or a case's ``family``."""
    for name, value in getattr(getattr(item, "callspec", None), "params", {}).items():
        if name == "family" and isinstance(value, str):
            return value
        family: Any = getattr(value, "family", None)
        if isinstance(family, str):
            return family
    return None


def pytest_configure(config: pytest.Config) -> None:
    # A folder is one family's model: the other families' cases would load it as theirs.
    families = set(config.getoption("--family") or [])
    if config.getoption("--model-path") is not None and len(families) != 1:
        raise pytest.UsageError(f"--model-path {config.getoption('--model-path')} is one family's model: give "
                                f"exactly one --family (got {', '.join(sorted(families)) or 'none'})")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    families = config.getoption("--family")
    if not families:
        return
    keep, drop = [], []
    for item in items:
        family = case_family(item)
        (drop if family is not None and family not in families else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def model_path(request: pytest.FixtureRequest) -> str | None:
    return option_model_path(request.config)


def option_model_path(config: pytest.Config) -> str | None:
    """--model-path with --variant and --model-config (parity/zoo/source.py)."""
    from parity.zoo.source import model_path as with_options

    return with_options(config.getoption("--model-path"), config.getoption("--variant"),
                        config.getoption("--model-config"))
