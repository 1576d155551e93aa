"""The architecture, checked: the layers (import-linter contracts in pyproject.toml), no import
cycle between modules, and the shape rules of STYLE.md (module length, name prefixes, package
width).

Imports count wherever they are written: at module level, inside functions and under
`TYPE_CHECKING` (grimp, which import-linter runs on, counts them all by default).

A package's `__init__` is a module like any other. A re-export (`pkg/__init__` imports `pkg.sub`)
while `pkg.sub` imports a name through the package (`from pkg import X`) is a cycle here, as it is
for the interpreter's import order: submodules import their siblings directly
(`from pkg.sibling import X`), never through their package's `__init__`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ghpulse", "common", "scheduler_service", "crawler_service")
#: Generated protobuf code: not written by hand, so not held to the shape rules.
GENERATED = ROOT / "common" / "proto"
MAX_LINES = 400
MAX_MODULES = 14
MAX_SHARED_PREFIX = 2
#: Parts whose subpackages say in their `__init__` docstring what they own.
DOCUMENTED = ("ghpulse", "common", "scheduler_service", "crawler_service")


def test_layer_contracts_are_kept() -> None:
    """`lint-imports` (the CLI, as a developer runs it) keeps every contract in pyproject.toml."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts['contracts'])} kept, 0 broken." in result.stdout


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = [_cycle_through(graph, component) for component in _components(graph)]
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def _components(graph: grimp.ImportGraph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component: set[str] = set()
            while module not in component:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
            if len(component) > 1:
                found.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def _cycle_through(graph: grimp.ImportGraph, component: set[str]) -> tuple[str, ...]:
    """One shortest cycle inside `component`, from its first module back to it."""
    start = min(component)
    successors = sorted(graph.find_modules_directly_imported_by(start) & component)
    back = [graph.find_shortest_chain(importer=after, imported=start) for after in successors]
    return (start, *min((chain for chain in back if chain), key=len))


def _packages() -> Iterator[Path]:
    """Every hand-written package directory (one holding modules) of the four top packages."""
    for top in PACKAGES:
        for folder in sorted({path.parent for path in (ROOT / top).rglob("*.py")}):
            if not folder.is_relative_to(GENERATED):
                yield folder


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_module_is_over_400_lines() -> None:
    long = {
        _name(module): lines
        for package in _packages()
        for module in package.glob("*.py")
        if (lines := len(module.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, "a module past ~400 lines is two modules inside its part"


def test_no_three_modules_of_a_package_share_a_name_prefix() -> None:
    crowded: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for package in _packages():
        names = [p.stem for p in package.glob("*.py") if not p.stem.startswith("__")]
        prefixes = Counter(name.lstrip("_").split("_")[0] for name in names)
        for prefix, count in prefixes.items():
            if count > MAX_SHARED_PREFIX:
                crowded[_name(package)][prefix] = sorted(
                    n for n in names if n.lstrip("_").split("_")[0] == prefix
                )
    assert dict(crowded) == {}, "modules sharing a prefix are a part asking for a subpackage"


def test_no_package_root_holds_more_than_14_modules() -> None:
    wide = {
        _name(package): count
        for package in _packages()
        if (count := len(list(package.glob("*.py")))) > MAX_MODULES
    }
    assert wide == {}


def test_subpackages_say_what_they_own() -> None:
    undocumented = [
        _name(init)
        for top in DOCUMENTED
        for init in sorted((ROOT / top).rglob("__init__.py"))
        if not init.parent.is_relative_to(GENERATED)
        and not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert undocumented == []
