"""Hot-path statements executed on the transaction's DBAPI cursor, compiled once.

A Core statement executed through `Connection.execute` costs 25-50 µs of Python per call in
SQLAlchemy (cache-key lookup, execution context, per-parameter processing, result metadata),
where the driver itself needs 3-5 µs; on a database thread that shares the GIL with the event
loop (the scheduler's run store, issue 13), that is most of a transaction's cost. `Prepared`
keeps the Core statement as the one description of the SQL, compiles it once per dialect and set
of parameter names into the driver's SQL with its bind and result processors (the ones SQLAlchemy
itself would apply), and runs it on the same DBAPI connection, in the same SQLAlchemy transaction.

What it keeps of `Connection.execute`: the engine's `before_cursor_execute` listeners see every
statement (the statement counts of issue 13 are measured with them), and a driver error is raised
as SQLAlchemy raises it (`IntegrityError`, `OperationalError`; a dead connection is invalidated
and the error says so, which `threads.reconnecting` relies on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ClauseElement, Connection, Dialect

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None
S = TypeVar("S", bound=ClauseElement)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Positional drivers (SQLite): the parameter names in order; None for named ones.
    order: tuple[str, ...] | None
    binds: dict[str, Processor]
    #: Values of the statement's own bound literals (e.g. `state = 'running'`).
    constants: dict[str, Any]
    columns: tuple[str, ...]
    results: tuple[Processor, ...]


def _compile(
    statement: ClauseElement, dialect: Dialect, keys: Sequence[str], many: bool
) -> _Compiled:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    if "POSTCOMPILE" in compiled.string:
        raise TypeError("an expanding IN parameter needs Connection.execute, not Prepared")
    binds = {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in compiled.binds.items()
    }
    constants = {
        name: bind.effective_value
        for name, bind in compiled.binds.items()
        if name not in keys and not bind.required
    }
    exported = list(getattr(statement, "exported_columns", ()))
    return _Compiled(
        sql=compiled.string,
        order=tuple(compiled.positiontup) if compiled.positional else None,
        binds=binds,
        constants=constants,
        columns=tuple(column.key for column in exported),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in exported
        ),
    )


class Prepared(Generic[S]):
    """`statement`, executed on a connection's DBAPI cursor (see the module's docstring)."""

    def __init__(self, statement: S) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str], bool], _Compiled] = {}
        self._lock = threading.Lock()

    def first(self, conn: Connection, params: Row) -> Row | None:
        """The first row of the result, as a dict by column key (None: no row)."""
        compiled, cursor = self._execute(conn, params)
        rows = cursor.fetchmany(1)
        return _row(compiled, rows[0]) if rows else None

    def all(self, conn: Connection, params: Row) -> list[Row]:
        compiled, cursor = self._execute(conn, params)
        return [_row(compiled, row) for row in cursor.fetchall()]

    def run(self, conn: Connection, params: Row) -> int:
        """Execute for its effect: the number of rows it changed."""
        return int(self._execute(conn, params)[1].rowcount)

    def many(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Execute once per parameter set of `rows` (which share their keys)."""
        if rows:
            self._execute(conn, rows[0], rows)

    def _get(self, dialect: Dialect, params: Row, many: bool) -> _Compiled:
        key = (dialect.name, frozenset(params), many)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = _compile(self.statement, dialect, sorted(params), many)
                self._compiled[key] = compiled
        return compiled

    def _execute(
        self, conn: Connection, params: Row, rows: Sequence[Row] | None = None
    ) -> tuple[_Compiled, Any]:
        compiled = self._get(conn.dialect, params, rows is not None)
        values = [_bound(compiled, row) for row in (rows or (params,))]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        sent: Any = values if rows is not None else values[0]
        if conn.dispatch.before_cursor_execute:
            conn.dispatch.before_cursor_execute(
                conn, cursor, compiled.sql, sent, None, rows is not None
            )
        try:
            if rows is not None:
                cursor.executemany(compiled.sql, sent)
            else:
                cursor.execute(compiled.sql, sent)
        except conn.dialect.loaded_dbapi.Error as exc:
            conn._handle_dbapi_exception(exc, compiled.sql, sent, cursor, None)
        return compiled, cursor


def _row(compiled: _Compiled, values: Sequence[Any]) -> Row:
    return {
        name: value if process is None else process(value)
        for name, process, value in zip(compiled.columns, compiled.results, values, strict=True)
    }


def _bound(compiled: _Compiled, params: Row) -> Any:
    given = {**compiled.constants, **params} if compiled.constants else params
    binds = compiled.binds
    names = compiled.order if compiled.order is not None else binds
    values = [given[n] if (process := binds[n]) is None else process(given[n]) for n in names]
    return tuple(values) if compiled.order is not None else dict(zip(binds, values, strict=True))
