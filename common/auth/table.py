"""The tokens in memory, keyed by hash, reloaded when the tokens file changes (no restart)."""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path

import structlog

from common.auth import tokens
from common.auth.caller import Caller

log = structlog.get_logger(__name__)
_Stamp = tuple[int, int, int] | None


class TokenTable:
    """Looks up presented tokens among those of `path`.

    The file's identity (inode, size, mtime) is checked on every lookup — one `stat`, no read —
    and the file is read again when it changed: a revoked token stops working with the next call.
    A file that became invalid keeps the last good table (and logs why), so a typo while editing
    never locks everyone out nor lets everyone in.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: _Stamp = None
        self._by_hash: dict[str, tokens.TokenRecord] = {}
        self.reload()

    def _current_stamp(self) -> _Stamp:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def reload(self) -> None:
        """Read the file now (raises `TokenFileError` at start-up if it is invalid)."""
        stamp = self._current_stamp()
        records = tokens.read(self.path)
        with self._lock:
            self._by_hash = {record.sha256: record for record in records}
            self._stamp = stamp
        log.info("auth.tokens_loaded", path=str(self.path), tokens=len(records))

    def _refresh(self) -> None:
        if self._current_stamp() == self._stamp:
            return
        try:
            self.reload()
        except (tokens.TokenFileError, OSError) as exc:
            log.error("auth.tokens_invalid", path=str(self.path), error=str(exc))
            with self._lock:
                self._stamp = self._current_stamp()

    def lookup(self, token: str) -> Caller | None:
        """The caller `token` authenticates, or None."""
        self._refresh()
        presented = tokens.digest(token)
        record = self._by_hash.get(presented)
        if record is None or not hmac.compare_digest(record.sha256, presented):
            return None
        return Caller(record.name, frozenset(record.scopes), dict(record.labels))
