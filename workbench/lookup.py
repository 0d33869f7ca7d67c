"""Which sessions a store holds: the check every analysis, report and explain makes first, light
enough (DuckDB, no pandas) that the command line answers a wrong store or session id at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import duckdb

Sessions = str | Sequence[str] | None
Rows = Callable[[str], list[tuple[Any, ...]]]


class AnalysisError(WorkbenchError):
    """The analysis cannot run: the store cannot be read, or the sessions asked for do not fit."""


class UnknownSession(AnalysisError):
    """No session with that id (or sweep id) is in the store."""


def literal(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def where(column: str, ids: Sequence[str] | None) -> str:
    """A WHERE clause keeping ``ids`` as literals: DuckDB prunes row groups on a constant filter."""
    if ids is None:
        return ""
    literals = ", ".join(map(literal, ids)) or "NULL"
    return f"WHERE {column} IN ({literals})"


def connect(path: str | os.PathLike[str], *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the store at ``path`` (in UTC); :class:`AnalysisError` if there is none or it
    cannot be opened."""
    if not Path(path).exists():
        raise AnalysisError(f"No store at {path}: give the path of a workbench DuckDB file.")
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except (duckdb.IOException, duckdb.ConnectionException, duckdb.ResourceInUseException) as e:
        raise AnalysisError(
            f"Cannot open the store {path}: {e}. If this process already has it open as a Store, pass "
            "that Store instead of the path; if another process is writing to it, wait until it ends."
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    return con


def resolve(rows: Rows, sessions: Sessions, sweep_id: str | None) -> list[str] | None:
    """The session ids asked for (``sessions``, or those of ``sweep_id``), checked against the
    sessions table that ``rows`` queries; ``None`` for every session. Raises :class:`UnknownSession`."""
    if sweep_id is not None:
        if sessions is not None:
            raise AnalysisError("Give either sessions or sweep_id, not both.")
        ids = [r[0] for r in rows(f"SELECT session_id FROM sessions {where('sweep_id', [sweep_id])} ORDER BY 1")]
        if not ids:
            raise UnknownSession(f"No session of sweep {sweep_id!r} in the store: check the sweep id.")
        return ids
    if sessions is None:
        return None
    wanted = [sessions] if isinstance(sessions, str) else list(sessions)
    known = {r[0] for r in rows(f"SELECT session_id FROM sessions {where('session_id', wanted)}")}
    missing = [s for s in wanted if s not in known]
    if missing:
        recent = rows("SELECT session_id FROM sessions ORDER BY started_at DESC NULLS LAST LIMIT 5")
        hint = ", ".join(r[0] for r in recent) or "none"
        raise UnknownSession(f"Unknown session id(s) {missing}: not in the store. Most recent sessions: {hint}.")
    return wanted


def check(path: str | os.PathLike[str], sessions: Sessions = None, sweep_id: str | None = None) -> list[str] | None:
    """:func:`resolve` against the store file at ``path``, opened read-only and closed again."""
    con = connect(path, read_only=True)
    import duckdb

    try:
        return resolve(lambda sql: con.execute(sql).fetchall(), sessions, sweep_id)
    except duckdb.CatalogException:
        raise AnalysisError(f"{path} is not a workbench store (it has no sessions table).") from None
    finally:
        con.close()
