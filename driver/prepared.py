"""Core statements compiled once and run as driver SQL (``exec_driver_sql``).

The job store makes a few one-row writes per job, several times per job. For those,
SQLAlchemy's per-execution work (cache-key lookup, parameter processing, result
set-up) costs more CPU than SQLite's own. ``Prepared`` compiles a Core statement once
per set of parameter names for the engine's dialect and afterwards only applies each
bind's own type processing (the same ``bind_processor`` SQLAlchemy would apply) and
hands SQL and values to the driver, in the caller's transaction.

Only for positional paramstyles (SQLite's qmark); anything it cannot plan exactly
(a bind with no value and no parameter, e.g. a Python-side column default) runs
through ``Connection.execute`` as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql import Executable

_Bind = tuple[str, Any, Callable[[Any], Any] | None]
_NO_PLAN = ("", ())


class Prepared:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.enabled = bool(dialect.positional)
        self._plans: dict[tuple[int, tuple[str, ...]], tuple[str, Sequence[_Bind]]] = {}

    def execute(self, conn: Connection, stmt: Executable, params: dict[str, Any]) -> CursorResult[Any]:
        """``conn.execute(stmt, params)``, cheaper."""
        plan = self._plan(stmt, params) if self.enabled else _NO_PLAN
        if not plan[0]:
            return conn.execute(stmt, params)
        sql, binds = plan
        return conn.exec_driver_sql(sql, _values(binds, params))

    def executemany(self, conn: Connection, stmt: Executable, rows: list[dict[str, Any]]) -> CursorResult[Any]:
        """``conn.execute(stmt, rows)`` for rows with the same keys, cheaper."""
        plan = self._plan(stmt, rows[0]) if self.enabled and rows else _NO_PLAN
        if not plan[0] or any(r.keys() != rows[0].keys() for r in rows):
            return conn.execute(stmt, rows)
        sql, binds = plan
        return conn.exec_driver_sql(sql, [_values(binds, r) for r in rows])

    def _plan(self, stmt: Executable, params: dict[str, Any]) -> tuple[str, Sequence[_Bind]]:
        key = (id(stmt), tuple(params))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(stmt, list(params))
        return plan

    def _compile(self, stmt: Executable, keys: list[str]) -> tuple[str, Sequence[_Bind]]:
        compiled = stmt.compile(dialect=self.dialect, column_keys=keys)  # type: ignore[attr-defined]
        names = compiled.positiontup
        if not compiled.positional or names is None or compiled.literal_execute_params or compiled.post_compile_params:
            return _NO_PLAN
        binds: list[_Bind] = []
        for name in names:
            bp = compiled.binds[name]
            if name not in keys and (bp.required or bp.value is None or bp.callable is not None):
                return _NO_PLAN  # a default SQLAlchemy would compute: not planned here
            binds.append((name, bp.value, bp.type.dialect_impl(self.dialect).bind_processor(self.dialect)))
        return compiled.string, tuple(binds)


def _values(binds: Sequence[_Bind], params: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for name, value, proc in binds:
        v = params.get(name, value)
        out.append(proc(v) if proc is not None else v)
    return tuple(out)
