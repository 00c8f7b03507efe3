"""The package keeps the shape docs/architecture.md's Layout section describes: no import cycle anywhere in
parity/, no module over about 500 lines without the reason at its top, CLI modules that only parse,
call a check and print, and tests that import support code, never each other. Each rule runs on the
real tree, and on a planted violation that it must catch."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 500
LONG_MODULE_REASON = "Over 500 lines because"
# What a CLI module may not touch: loading, fusing and compiling belong to the checks it calls.
CLI_FORBIDDEN_IMPORTS = ("torch", "diffusers", "peft", "parity.checks.fuse", "parity.checks.hotswap",
                         "parity.checks.dynamo", "parity.checks.prepare", "parity.lora.reader", "parity.zoo.family")
CLI_FORBIDDEN_NAMES = ("build_pipeline", "fuse_lora", "unfuse_lora", "load_lora_weights", "load_lora_adapter",
                       "compile_in_place", "fuse_and_measure", "read_lora")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str, known: Iterable[str]) -> set[str]:
    """The known modules ``module`` imports anywhere in its body (functions included): a lazy import
    inside a function is as much a dependency as one at the top."""
    known = set(known)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {name for name in names if name in known and name != module}
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    files = sorted(package.rglob("*.py"))
    modules = {module_name(f): f for f in files}
    return {m: imported_modules(ast.parse(f.read_text()), m, modules) for m, f in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as the list of modules around it), or None. A package's __init__ importing its
    own submodules is not a cycle unless a submodule imports the package back."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def long_modules(root: Path) -> list[str]:
    return [f"{p.relative_to(REPO)}: {len(p.read_text().splitlines())} lines" for p in sorted(root.rglob("*.py"))
            if len(p.read_text().splitlines()) > MAX_LINES and LONG_MODULE_REASON not in (ast.get_docstring(
                ast.parse(p.read_text())) or "")]


def cli_logic(source: str) -> list[str]:
    """What a CLI module does that is not parsing, calling a check or printing."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in ("torch", "diffusers", "peft")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if any(node.module == m or node.module.startswith(m + ".") for m in CLI_FORBIDDEN_IMPORTS):
                found.append(f"from {node.module} import ...")
            found += [f"imports {a.name}" for a in node.names if a.name in CLI_FORBIDDEN_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in CLI_FORBIDDEN_NAMES:
            found.append(f"calls .{node.attr}")
    return found


def test_parity_has_no_import_cycle() -> None:
    assert find_cycle(import_graph(REPO / "parity")) is None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph(REPO / "parity")
    assert "parity.golden.store" in graph["parity.pytest.golden"]
    graph["parity.golden.store"] = graph["parity.golden.store"] | {"parity.pytest.golden"}  # store → plugin → store
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and {"parity.golden.store", "parity.pytest.golden"} <= set(cycle)


def test_no_module_is_over_500_lines_without_its_reason() -> None:
    assert long_modules(REPO / "parity") + long_modules(REPO / "tests") + long_modules(REPO / "benchmarks") == []


def test_a_long_module_without_its_reason_is_caught(tmp_path: Path) -> None:
    global REPO
    (tmp_path / "long.py").write_text('"""A module."""\n' + "x = 1\n" * MAX_LINES)
    (tmp_path / "explained.py").write_text(f'"""{LONG_MODULE_REASON} it is one table."""\n' + "x = 1\n" * MAX_LINES)
    repo, REPO = REPO, tmp_path
    try:
        assert long_modules(tmp_path) == [f"long.py: {MAX_LINES + 1} lines"]
    finally:
        REPO = repo


@pytest.mark.parametrize("path", sorted((REPO / "parity" / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_hold_no_load_fuse_or_compile_logic(path: Path) -> None:
    assert cli_logic(path.read_text()) == []


def test_the_cli_rule_catches_a_verb_that_fuses() -> None:
    planted = "from parity.zoo import build_pipeline\n\ndef run(args):\n    build_pipeline('sd15').fuse_lora()\n"
    assert cli_logic(planted) == ["imports build_pipeline", "calls .fuse_lora"]


def cross_test_imports(files: Iterable[Path], root: Path) -> list[str]:
    """Imports of a test module or a conftest (absolute or relative): tests share code through
    tests/support only."""
    bad = []
    for f in sorted(files):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tests.")):
                target = "." * node.level + (node.module or "")
                names = [target.rsplit(".", 1)[-1], *(f"{target}.{a.name}".rsplit(".", 1)[-1] for a in node.names)]
                if any(n.startswith("test_") or n == "conftest" for n in names) or ".harness" in target:
                    bad.append(f"{f.relative_to(root)}: from {target}")
    return bad


def test_tests_import_support_code_not_each_other() -> None:
    files = [*(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    assert cross_test_imports(files, REPO) == []


def test_the_import_rule_catches_a_test_importing_a_test(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text("from tests.test_b import helper\nfrom tests.support.cli import ok\n")
    (tmp_path / "test_c.py").write_text("from .conftest import BenchCase\nfrom tests.harness import test_d\n")
    assert cross_test_imports(tmp_path.glob("*.py"), tmp_path) == [
        "test_a.py: from tests.test_b", "test_c.py: from .conftest", "test_c.py: from tests.harness"]
