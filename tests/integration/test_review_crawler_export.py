"""Review: export file names keep the whole repository name (dots included)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from common.jobs import RecalculateSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.jobs.registry import StepContext
from crawler_service.jobs.steps.export import ExportStep


async def _ignore(step: str, current: int, total: int, message: str) -> None:
    return None


async def test_repositories_whose_names_differ_after_a_dot_get_their_own_files(
    tmp_path: Path,
) -> None:
    names = ("octo/next.js", "octo/next.py", "octo/next")
    spec = RecalculateSpec(repositories=names, steps=("export",))
    ctx = StepContext("run-1", 1, spec, "export", MappingProxyType({}), _ignore)
    exports = tmp_path / "exports"
    async with await CrawlerStore.open(f"sqlite:///{tmp_path}/c.db", migrate=True) as store:
        output = await ExportStep(store, exports).run(ctx)
    expected = [str(exports / f"{name}.{ext}") for name in names for ext in ("csv", "jsonl")]
    assert output["exports"] == expected
    assert sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*.*")) == sorted(
        f"{name}.{ext}" for name in names for ext in ("csv", "jsonl")
    )
