"""The README's RPC -> scope table is the one the auth interceptor enforces."""

from __future__ import annotations

import re
from pathlib import Path

from common.auth.scopes import METHOD_SCOPES

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `(\w+)/(\w+)` \| (.+) \|$")


def test_readme_lists_every_rpc_with_its_scopes() -> None:
    documented = {}
    for line in README.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            service, method, scopes = match.groups()
            documented[f"/ghpulse.v1.{service}/{method}"] = frozenset(
                re.findall(r"`([^`]+)`", scopes)
            )
    assert documented == METHOD_SCOPES
