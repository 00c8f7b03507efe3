"""The case table is derived from the registries: a new family or layout is one entry there, and
every check picks it up with no test file changed. Shown with a throwaway family (sd15's model under
another name) and a throwaway layout (the diffusers writer under another name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parity.bench.modes import MODES
from parity.checks import cases
from tests.support import throwaway

REPO = Path(__file__).resolve().parents[2]
# The check modules and the node-id fragment a throwaway case carries in each.
CHECK_MODULES = {
    "tests/test_merge_parity.py": f"{throwaway.FAMILY}-{throwaway.LAYOUT}-float32-cpu",
    "tests/test_unfuse_identity.py": f"{throwaway.FAMILY}-{throwaway.LAYOUT}-float32",
    "tests/test_golden.py": f"{throwaway.FAMILY}-kohya-1.0",
    "tests/test_hotswap.py": f"{throwaway.FAMILY}-pipeline-same-rank",
    "tests/test_adapter_disable.py": f"{throwaway.FAMILY}-model",
    "tests/test_adapter_unload.py": f"{throwaway.FAMILY}-model-after-fuse",
    "tests/test_adapter_delete.py": f"{throwaway.FAMILY}-model",
    "tests/test_adapter_listing.py": f"[{throwaway.FAMILY}]",
    "tests/test_adapter_weights.py": f"{throwaway.FAMILY}-0.25",
    "tests/test_adapter_save_load.py": f"[{throwaway.FAMILY}]",
    "tests/test_adapter_prefix.py": f"[{throwaway.FAMILY}]",
    "tests/test_adapter_weighted.py": f"{throwaway.FAMILY}-ties",
    "benchmarks/test_bench_modes.py": f"{throwaway.FAMILY}-float32-fused",
    "benchmarks/test_bench_operations.py": f"{throwaway.FAMILY}-float32-fuse_lora",
}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from parity.lora.layouts import LAYOUTS
    from parity.zoo import FAMILIES

    layout, family = throwaway.entries()
    for registry, entry in ((LAYOUTS, layout), (FAMILIES, family)):
        for name, value in entry.items():
            monkeypatch.setitem(registry, name, value)


def families_in(table: list) -> set[str]:
    return {case.family for case in table}


def test_a_new_family_is_in_every_table(registered) -> None:
    tables = cases.all_tables()
    tables["bench"] = cases.bench_cases({m.name: m.compiled for m in MODES})
    missing = [name for name, table in tables.items() if throwaway.FAMILY not in families_in(table)]
    assert missing == []


def test_a_new_layout_is_in_the_layout_tables(registered) -> None:
    layouts = {(c.layout.family, c.layout.layout) for c in cases.merge_cases() + cases.unfuse_cases()}
    assert (throwaway.FAMILY, throwaway.LAYOUT) in layouts
    assert ("sd15", throwaway.LAYOUT) not in layouts  # only the families that name it publish it


def test_without_the_entry_the_tables_do_not_have_it() -> None:
    # negative control: the tables hold nothing the registries do not
    assert throwaway.FAMILY not in families_in(cases.merge_cases() + cases.golden_cases())


def test_collecting_the_suite_with_the_entries_finds_them_in_every_check_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tests.support.throwaway",
         "-m", "", *CHECK_MODULES],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ids = done.stdout.splitlines()
    missing = [module for module, fragment in CHECK_MODULES.items()
               if not any(i.startswith(module) and fragment in i for i in ids)]
    assert missing == []
