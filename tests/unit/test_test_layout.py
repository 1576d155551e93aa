"""The test suite's own layout: tests are named after the code they cover, and helpers shared by
test modules live in `tests/support/` (or a conftest), never in another test module."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("tests.unit", "tests.integration", "tests.acceptance")


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return names


def test_no_test_module_imports_from_another_test_module() -> None:
    offending = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _imported_modules(path)
        if name.startswith(TIERS) or name.rsplit(".", 1)[-1].startswith(("test_", "conftest"))
    ]
    assert offending == [], "move shared helpers to tests/support/ (fixtures to a conftest)"


def test_no_test_file_is_named_after_a_review_round() -> None:
    assert sorted(p.name for p in TESTS.rglob("test_review_*")) == []
