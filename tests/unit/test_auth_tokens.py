"""The tokens file: only hashes stored, tokens of 256 random bits, names and scopes validated, the
in-memory table reloaded when the file changes and kept when it becomes invalid."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from common.auth import tokens
from common.auth.table import TokenTable


def test_create_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "tokens.json"
    token = tokens.create(path, "ci", ["runs:read", "runs:write"], {"team": "core"})
    text = path.read_text()
    assert token not in text
    assert token.removeprefix(tokens.PREFIX) not in text
    (record,) = json.loads(text)["tokens"]
    assert record["sha256"] == tokens.digest(token)
    assert record["scopes"] == ["runs:read", "runs:write"]
    assert record["labels"] == {"team": "core"}
    assert path.stat().st_mode & 0o777 == 0o600
    raw = base64.urlsafe_b64decode(token.removeprefix(tokens.PREFIX) + "==")
    assert len(raw) * 8 >= 128


def test_tokens_are_unique_and_names_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = tokens.create(path, "a", ["admin"])
    second = tokens.create(path, "b", ["admin"])
    assert first != second
    with pytest.raises(tokens.TokenFileError):
        tokens.create(path, "a", ["admin"])


@pytest.mark.parametrize(
    ("name", "scopes", "labels"),
    [
        ("Bad Name", ["admin"], {}),
        ("ok", ["root"], {}),
        ("ok", [], {}),
        ("ok", ["admin"], {"Bad Key": "x"}),
    ],
)
def test_invalid_definitions_are_refused(
    tmp_path: Path, name: str, scopes: list[str], labels: dict[str, str]
) -> None:
    with pytest.raises(tokens.TokenFileError):
        tokens.create(tmp_path / "t.json", name, scopes, labels)


def test_revoke(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokens.create(path, "a", ["admin"])
    assert tokens.revoke(path, "a")
    assert not tokens.revoke(path, "a")
    assert tokens.read(path) == []


def test_table_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = tokens.create(path, "first", ["runs:read"], {"team": "core"})
    table = TokenTable(path)
    caller = table.lookup(first)
    assert caller is not None
    assert (caller.name, caller.labels) == ("first", {"team": "core"})
    assert table.lookup(first + "x") is None
    second = tokens.create(path, "second", ["admin"])
    assert table.lookup(second) is not None
    tokens.revoke(path, "first")
    assert table.lookup(first) is None


def test_an_invalid_file_keeps_the_last_good_table(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = tokens.create(path, "kept", ["runs:read"])
    table = TokenTable(path)
    path.write_text("{not json")
    assert table.lookup(token) is not None
    with pytest.raises(tokens.TokenFileError):
        TokenTable(path)
