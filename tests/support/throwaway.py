"""A pytest plugin that registers one throwaway family and one throwaway layout, as a new registry
entry would, before the suite is collected: tests/harness/test_case_table.py collects the suite
with it and finds both in every check, no test file changed."""

from __future__ import annotations

from dataclasses import replace

FAMILY = "sd15copy"  # sd15's tiny model under another name
LAYOUT = "diffusers-copy"  # the diffusers writer under another name, published by the throwaway family


def entries() -> tuple[dict, dict]:
    """(the layout entry, the family entry): what a new layout and a new family each add."""
    from parity.lora.layouts import LAYOUTS
    from parity.zoo import FAMILIES

    sd15 = FAMILIES["sd15"]
    return {LAYOUT: LAYOUTS["diffusers"]}, {FAMILY: replace(sd15, name=FAMILY, layouts=(*sd15.layouts, LAYOUT))}


def pytest_configure(config) -> None:
    from parity.lora.layouts import LAYOUTS
    from parity.zoo import FAMILIES

    layout, family = entries()
    LAYOUTS.update(layout)
    FAMILIES.update(family)
