"""The DuckDB store: one file holding sessions, orders, fills, balance snapshots, the audit log
and the kill switch.

Paper rows and real rows live apart (``paper_*`` and ``real_*`` tables); the ``orders``,
``fills`` and ``balances`` views union them with a ``mode`` column. Writes go through a queue
to one writer thread that commits them in batches (each table's rows of a batch in one
statement), so the event loop never waits on disk; a crash loses at most the batch in flight,
never a committed fill. Fills are keyed by trade id and order rows only move forward, so a
repeated or late event changes nothing.

Every store of a process is a file attached to one DuckDB instance of that process (starting an
instance costs tens of milliseconds); a new file starts as a copy of an empty store made once.

The queue is bounded: a producer faster than the disk (a long replay) waits for room, so the
writer keeps up and a drain ends soon after the last write. Waits last as long as the writer
makes progress; one that makes none for ``stall`` seconds, or a writer thread that died, is a
:class:`StoreError` that says so. The file is never closed under a running writer, also not when
the interpreter exits with a store left open.

A row that must be on disk at once (a real order, before it is sent) is also appended to a
journal beside the file (``<store>.journal``, one fsynced JSON line, well under a millisecond)
instead of waiting for a commit; the store replays the journal when it opens, so a crash between
the two loses nothing, and empties it once every journaled row is committed.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import itertools
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from workbench.config import TradingMode
from workbench.errors import WorkbenchError
from workbench.model import (
    Balance,
    ContingencyType,
    Fill,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

_AMOUNT = "DECIMAL(38, 18)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id VARCHAR PRIMARY KEY, mode VARCHAR, venue VARCHAR, strategy VARCHAR, params JSON,
    symbols VARCHAR[], started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, status VARCHAR, summary JSON,
    sweep_id VARCHAR, shadow_of VARCHAR
);
CREATE SEQUENCE IF NOT EXISTS audit_seq;
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT DEFAULT nextval('audit_seq') PRIMARY KEY, ts TIMESTAMPTZ, session_id VARCHAR,
    mode VARCHAR, kind VARCHAR, detail JSON
);
CREATE TABLE IF NOT EXISTS kill_switch (
    ts TIMESTAMPTZ, tripped BOOLEAN, reason VARCHAR, source VARCHAR
);
"""

_TRADING_TABLES = f"""
CREATE TABLE IF NOT EXISTS {{p}}_orders (
    session_id VARCHAR, client_order_id VARCHAR, {{mode}} order_id VARCHAR, symbol VARCHAR,
    side VARCHAR, type VARCHAR, time_in_force VARCHAR, amount {_AMOUNT}, quote_amount {_AMOUNT},
    price {_AMOUNT}, stop_price {_AMOUNT}, status VARCHAR, status_rank TINYINT, filled {_AMOUNT},
    cost {_AMOUNT}, average {_AMOUNT}, signal_price {_AMOUNT}, arrival_price {_AMOUNT},
    signal_time TIMESTAMPTZ, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
    PRIMARY KEY (session_id, client_order_id)
);
CREATE TABLE IF NOT EXISTS {{p}}_fills (
    session_id VARCHAR, trade_id VARCHAR, {{mode}} order_id VARCHAR, client_order_id VARCHAR,
    symbol VARCHAR, side VARCHAR, price {_AMOUNT}, amount {_AMOUNT}, cost {_AMOUNT}, fee {_AMOUNT},
    fee_currency VARCHAR, is_maker BOOLEAN, timestamp TIMESTAMPTZ,
    PRIMARY KEY (session_id, symbol, trade_id)
);
CREATE TABLE IF NOT EXISTS {{p}}_order_lists (
    session_id VARCHAR, list_client_order_id VARCHAR, {{mode}} order_list_id BIGINT, symbol VARCHAR,
    contingency_type VARCHAR, list_status_type VARCHAR, list_order_status VARCHAR, status_rank TINYINT,
    legs VARCHAR[], signal_price {_AMOUNT}, signal_time TIMESTAMPTZ, created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    PRIMARY KEY (session_id, list_client_order_id)
);
CREATE TABLE IF NOT EXISTS {{p}}_balances (
    session_id VARCHAR, {{mode}} timestamp TIMESTAMPTZ, asset VARCHAR, free {_AMOUNT}, locked {_AMOUNT}
);
"""

_VIEWS = """
CREATE OR REPLACE VIEW orders AS
    SELECT 'paper' AS mode, * FROM paper_orders UNION ALL BY NAME SELECT * FROM real_orders;
CREATE OR REPLACE VIEW fills AS
    SELECT 'paper' AS mode, * FROM paper_fills UNION ALL BY NAME SELECT * FROM real_fills;
CREATE OR REPLACE VIEW order_lists AS
    SELECT 'paper' AS mode, * FROM paper_order_lists UNION ALL BY NAME SELECT * FROM real_order_lists;
CREATE OR REPLACE VIEW balances AS
    SELECT 'paper' AS mode, * FROM paper_balances UNION ALL BY NAME SELECT * FROM real_balances;
"""

_DDL = _SCHEMA + _TRADING_TABLES.format(p="paper", mode="") + _TRADING_TABLES.format(p="real", mode="mode VARCHAR,")
_DDL += _VIEWS

_ORDER_COLUMNS = (
    "session_id",
    "client_order_id",
    "order_id",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "amount",
    "quote_amount",
    "price",
    "stop_price",
    "status",
    "status_rank",
    "filled",
    "cost",
    "average",
    "signal_price",
    "arrival_price",
    "signal_time",
    "created_at",
    "updated_at",
)
_FILL_COLUMNS = (
    "session_id",
    "trade_id",
    "order_id",
    "client_order_id",
    "symbol",
    "side",
    "price",
    "amount",
    "cost",
    "fee",
    "fee_currency",
    "is_maker",
    "timestamp",
)


def utc(timestamp_ms: int | None) -> datetime | None:
    """A Binance millisecond timestamp as an aware UTC datetime."""
    return None if timestamp_ms is None else datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


_audit_json = json.JSONEncoder(default=str, sort_keys=True).encode  # _json's text, one encoder for every row


@dataclass(frozen=True)
class _Write:
    """One statement, run on its own in queue order."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class _Row:
    """One row for a table; a batch's rows for one table go in one multi-row INSERT. Rows with the
    same ``key`` in one batch become one: ``merge`` combines them, or else the first stays."""

    table: str
    columns: tuple[str, ...]
    values: tuple[Any, ...]
    conflict: str = ""
    key: tuple[Any, ...] | None = None
    merge: Callable[[tuple[str, ...], tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]] | None = None
    journaled: bool = False


_FRAME_ROWS = 100  # from this many rows of one table in a batch, insert them from a DataFrame

_FIRST_KNOWN = ("signal_price", "arrival_price", "signal_time", "created_at")


@functools.cache
def _order_conflict(table: str) -> str:
    """An order row's upsert: it only moves forward; the first signal and arrival price, signal and
    creation time known stay."""
    updates = ", ".join(
        f"{c} = coalesce({table}.{c}, excluded.{c})" if c in _FIRST_KNOWN else f"{c} = excluded.{c}"
        for c in _ORDER_COLUMNS[2:]
    )
    return (
        f"ON CONFLICT (session_id, client_order_id) DO UPDATE SET {updates} "
        f"WHERE excluded.status_rank > {table}.status_rank "
        f"OR (excluded.status_rank = {table}.status_rank AND excluded.filled >= {table}.filled)"
    )


@functools.cache
def _order_positions(columns: tuple[str, ...]) -> tuple[int, int, tuple[bool, ...]]:
    """Where an order row's status rank and filled amount are, and which columns are first-known."""
    return columns.index("status_rank"), columns.index("filled"), tuple(c in _FIRST_KNOWN for c in columns)


def _merge_orders(columns: tuple[str, ...], old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two updates of one order in one batch: the more advanced one, with the first-known fields
    (signal and arrival price, signal and creation time) of either."""
    rank, filled, first = _order_positions(columns)
    ahead = new if (new[rank], new[filled]) >= (old[rank], old[filled]) else old
    behind = old if ahead is new else new
    return tuple(
        (o if o is not None else n) if f else a if a is not None else b
        for f, o, n, a, b in zip(first, old, new, ahead, behind, strict=True)
    )


_LIST_COLUMNS = (
    "session_id",
    "list_client_order_id",
    "order_list_id",
    "symbol",
    "contingency_type",
    "list_status_type",
    "list_order_status",
    "status_rank",
    "legs",
    "signal_price",
    "signal_time",
    "created_at",
    "updated_at",
)
_LIST_FIRST_KNOWN = ("signal_price", "signal_time", "created_at")


def list_rank(order_list: OrderList) -> int:
    """How far an order list has come: 0 journaled but not acknowledged (``id`` -1), 1 executing,
    2 done (ALL_DONE or REJECT)."""
    if not order_list.is_open:
        return 2
    return 0 if order_list.id < 0 else 1


@functools.cache
def _list_conflict(table: str) -> str:
    """An order list row's upsert: it only moves forward; the first signal and creation time stay."""
    updates = ", ".join(
        f"{c} = coalesce({table}.{c}, excluded.{c})" if c in _LIST_FIRST_KNOWN else f"{c} = excluded.{c}"
        for c in _LIST_COLUMNS[2:]
    )
    return (
        f"ON CONFLICT (session_id, list_client_order_id) DO UPDATE SET {updates} "
        f"WHERE excluded.status_rank >= {table}.status_rank"
    )


def _merge_lists(columns: tuple[str, ...], old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two updates of one order list in one batch: the more advanced (the later of equals), with
    the first-known fields of either."""
    rank = columns.index("status_rank")
    ahead = new if new[rank] >= old[rank] else old
    first = {columns.index(c) for c in _LIST_FIRST_KNOWN}
    return tuple((old[i] if old[i] is not None else new[i]) if i in first else ahead[i] for i in range(len(columns)))


_TYPES: dict[str, dict[str, str]] = {}


def _column_types(cursor: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Each column's SQL type (the schema is this module's, the same in every file)."""
    if table not in _TYPES:
        rows = cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_catalog = current_database()",
            [table],
        ).fetchall()
        _TYPES[table] = dict(rows)
    return _TYPES[table]


def _insert_frame(cursor: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, conflict: str = "") -> None:
    """Insert ``frame``'s rows into ``table``, each column cast to the table's type (exact decimals)."""
    types = _column_types(cursor, table)
    cursor.register("rows_in", frame)  # replaces the frame of a batch that failed, if any
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(frame.columns)}) "
        f"SELECT {', '.join(f'CAST({c} AS {types[c]})' for c in frame.columns)} FROM rows_in {conflict}"
    )
    cursor.unregister("rows_in")


def _decode(value: Any, sql_type: str) -> Any:
    """A journaled value (JSON: decimals and times as text) as the column's Python type."""
    if value is None:
        return None
    if sql_type.startswith("DECIMAL"):
        return Decimal(value)
    if sql_type.startswith("TIMESTAMP"):
        return datetime.fromisoformat(value)
    return value


# the tables whose rows may be journaled: their upsert and their merge of two updates in one batch
_JOURNALED = {
    "paper_orders": (_order_conflict, _merge_orders),
    "real_orders": (_order_conflict, _merge_orders),
    "paper_order_lists": (_list_conflict, _merge_lists),
    "real_order_lists": (_list_conflict, _merge_lists),
}


class StoreError(WorkbenchError):
    """A write to the store failed; the batch it was in was rolled back."""


COMMIT_RETRIES = (0.05, 0.2, 0.5, 1.0)  # seconds before each retry of a commit the disk failed
_POLL = 0.1  # seconds between looks at the writer while waiting for it
_OPEN: weakref.WeakSet[Store] = weakref.WeakSet()  # stores to close before the interpreter exits


def _disk_fault(error: Exception) -> bool:
    """Whether a failed commit is the disk's fault (full, or an I/O error), so a retry may pass."""
    text = str(error)
    return isinstance(error, duckdb.IOException | OSError) or "Could not write" in text or "No space left" in text


def _failure(path: Path, error: Exception, retries: int) -> str:
    """One line about a commit that failed: its cause named (ENOSPC for a full disk) and what to do."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "No space left" in text or getattr(error, "errno", None) == errno.ENOSPC:
        cause = f"the disk is full (ENOSPC): {text}. Free space on {path.parent}; the rows are kept and commit then"
    elif retries:
        cause = f"the disk failed: {text}. The rows are kept and commit once it works again"
    else:
        cause = f"{text}. That batch was rolled back"
    tried = f" (tried {retries + 1} times)" if retries else ""
    return f"A write to the store {path} failed{tried}: {cause}."


_INSTANCES: dict[int, duckdb.DuckDBPyConnection] = {}  # per process: a forked child starts its own
_ATTACHED: dict[tuple[int, str], list[Any]] = {}  # (process, file): [its catalog, how many stores use it]
_EMPTY: dict[int, tuple[tempfile.TemporaryDirectory[str], Path]] = {}  # per process: see _empty()
_CATALOGS = itertools.count(1)
_ATTACH = threading.Lock()
# One thread: a store's statements are small, and a bulk write of tens of thousands of rows costs
# more CPU on two than it saves. Its blocks' memory is kept, not faulted in anew by every bulk write.
_SETTINGS = {"threads": 1, "block_allocator_memory": "32MB"}


def _connect(path: Path, wait: float) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A read-write connection to ``path`` and the catalog its cursors use, waiting up to ``wait``
    seconds for another process's lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return _attach(path)
        except duckdb.IOException as e:
            text = str(e)
            if "Permission denied" in text or "Read-only file system" in text:
                raise StoreError(f"The store {path} is not writable ({text.splitlines()[0]}): fix its permissions "
                                 "or choose another --store.") from None  # fmt: skip
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"Cannot open the store {path}: {text}. Another process may hold it open; DuckDB allows "
                    "one writer process per file, so give each process its own store file."
                ) from None
            time.sleep(0.1)


def _instance(pid: int) -> duckdb.DuckDBPyConnection:
    """The process's DuckDB instance (hold ``_ATTACH``)."""
    if pid not in _INSTANCES:
        _INSTANCES[pid] = duckdb.connect(":memory:", config=_SETTINGS)
    return _INSTANCES[pid]


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _created(path: Path) -> bool:
    """Whether ``path`` was just made as a copy of this process's empty store (the schema's sixteen
    statements cost a new file about 7 ms, a copy a fraction); False if a file is there already or
    the copy cannot be linked into place, which is then left to DuckDB and the schema."""
    if path.exists():
        return False
    spare = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        shutil.copyfile(_empty(), spare)
        os.link(spare, path)  # never over a file another process made meanwhile
    except (OSError, duckdb.Error):
        return False
    finally:
        spare.unlink(missing_ok=True)
    return True


def _empty() -> Path:
    """This process's empty store: the schema, checkpointed (detached), in a temporary folder of its own."""
    pid = os.getpid()
    if pid not in _EMPTY:
        folder = tempfile.TemporaryDirectory(prefix="workbench-store-")
        path = Path(folder.name) / "empty.duckdb"
        con, catalog = _attach(path)
        _make_schema(con)
        con.close()
        _detach(catalog)  # type: ignore[arg-type]  # a new file: never one opened elsewhere in the process
        _EMPTY[pid] = (folder, path)
    return _EMPTY[pid][1]


def _make_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views a file lacks, in one commit (not one per table)."""
    con.execute(f"BEGIN TRANSACTION; {_DDL} COMMIT")


def _attach(path: Path) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """``path`` attached to the process's one DuckDB instance (starting an instance costs tens of
    milliseconds, attaching a file about one), as a new catalog or the one a store of the same file
    uses; or, if this process has the file open through a ``duckdb.connect`` of its own, a
    connection to that instance (no catalog: its default is the file)."""
    key = (os.getpid(), str(path.resolve()))
    with _ATTACH:
        shared = _instance(key[0])
        if key not in _ATTACHED:
            catalog = f"store_{next(_CATALOGS)}"
            try:
                shared.execute(f"ATTACH {_quoted(path)} AS {catalog}")
            except duckdb.ResourceInUseException:
                return duckdb.connect(str(path)), None
            _ATTACHED[key] = [catalog, 0]
        _ATTACHED[key][1] += 1
        con = shared.cursor()
        con.execute(f"USE {_ATTACHED[key][0]}")
        return con, _ATTACHED[key][0]


def _detach(catalog: str) -> None:
    """Let go of a file's catalog; the last store of the file detaches it (a checkpoint)."""
    with _ATTACH:
        key = next(key for key, (name, _) in _ATTACHED.items() if name == catalog)
        _ATTACHED[key][1] -= 1
        if not _ATTACHED[key][1]:
            del _ATTACHED[key]
            _INSTANCES[key[0]].execute(f"DETACH {catalog}")


class Store:
    """The workbench's DuckDB file. Open it once per process: ``Store("data/workbench.duckdb")``.

    The writer commits what arrives within ``linger`` seconds (at most ``batch_size`` rows) in one
    transaction; :meth:`flush` commits at once. At most ``max_queue`` writes wait for the writer:
    a producer that finds the queue full waits for room (backpressure)."""

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 500,
        linger: float = 0.02,
        wait: float = 0.0,
        max_queue: int = 50_000,
        stall: float = 60.0,
    ) -> None:
        """``wait``: seconds to keep trying while another process holds the file (one that is dying).
        ``stall``: seconds a producer or :meth:`flush` waits for a writer that makes no progress
        (commits nothing, takes nothing from the queue) before it raises :class:`StoreError`."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = _created(self.path)
        self._con, self._catalog = _connect(self.path, wait)
        self._readers = threading.local()
        try:
            self._con.execute("SET TimeZone = 'UTC'")
            if not created:  # a file of an earlier version may lack a table or view: add them
                _make_schema(self._con)
        except BaseException:
            self._release()
            raise
        self._error: StoreError | None = None
        self._held: list[_Write | _Row] = []  # a batch the disk refused, committed with the next one
        self._journal_path = Path(f"{self.path}.journal")
        self._replay_journal()
        self._journal_fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._journal_lock = threading.Lock()
        self._journal_pending = 0  # journaled rows not yet committed
        self._batch_size = batch_size
        self._linger = linger
        self._stall = stall
        self._queue: queue.Queue[_Write | _Row | threading.Event | None] = queue.Queue(max(max_queue, 1))
        self._progress = time.monotonic()  # when the writer last took an item or finished a commit
        self._died: BaseException | None = None
        self._closed = False
        self._pid = os.getpid()  # a forked child has the connection but not the writer: it leaves both alone
        self._writer = threading.Thread(target=self._write_loop, name=f"store-writer:{self.path.name}", daemon=True)
        self._writer.start()
        _OPEN.add(self)

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every write queued before it is committed, as long as the writer makes
        progress. Raises :class:`StoreError` if one failed, the writer died or stalled."""
        done = threading.Event()
        self._enqueue(done)
        self._wait_for(lambda: done.wait(_POLL), "flushing")
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the file. Raises :class:`StoreError`,
        and keeps the file open, if a write failed or the writer stalled; a writer that died is
        reported too, after the file is closed."""
        if self._closed:
            return
        if self._writer.is_alive():
            self.flush()
            self._enqueue(None)
            self._wait_for(lambda: (self._writer.join(_POLL), not self._writer.is_alive())[1], "closing")
        self._closed = True
        _OPEN.discard(self)
        os.close(self._journal_fd)
        self._release()
        if self._died is not None:
            raise self._gone()

    def _release(self) -> None:
        self._con.close()
        if self._catalog is not None:
            _detach(self._catalog)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to this store's file (a thread's or a transaction's own)."""
        cursor = self._con.cursor()
        if self._catalog is not None:
            cursor.execute(f"USE {self._catalog}")
        return cursor

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection for reads, made once (a new one per query costs more than most
        queries here)."""
        if self._closed:
            raise self._gone()
        cursor = getattr(self._readers, "cursor", None)
        if cursor is None:
            cursor = self._readers.cursor = self._cursor()
        return cursor

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame:
        """Run a read query on committed data and return a DataFrame."""
        return self._reader().execute(sql, list(params)).df()

    def sql(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on committed data and return its rows."""
        return self._reader().execute(sql, list(params)).fetchall()

    # -- writing ----------------------------------------------------------------------------

    def start_session(
        self,
        session_id: str,
        mode: TradingMode,
        *,
        venue: str = "",
        strategy: str = "",
        params: Mapping[str, Any] | None = None,
        symbols: Iterable[str] = (),
        sweep_id: str | None = None,
        shadow_of: str | None = None,
    ) -> None:
        """Record a session (again, when it restarts). ``sweep_id`` groups the runs of a sweep;
        ``shadow_of`` names the session whose signals this one mirrors (paper beside testnet)."""
        self._put(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 'running', NULL, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET status = 'running', ended_at = NULL",
            (session_id, mode.value, venue, strategy, _json(params or {}), list(symbols), _now(), sweep_id, shadow_of),
        )

    def end_session(self, session_id: str, status: str, summary: Mapping[str, Any] | None = None) -> None:
        self._put(
            "UPDATE sessions SET ended_at = ?, status = ?, summary = ? WHERE session_id = ?",
            (_now(), status, _json(summary or {}), session_id),
        )

    def record_order(
        self,
        session_id: str,
        mode: TradingMode,
        order: Order,
        *,
        signal_price: Decimal | None = None,
        arrival_price: Decimal | None = None,
        signal_time: int | None = None,
        durable: bool = False,
    ) -> None:
        """Insert or advance an order row; an update never moves an order backwards. ``durable``:
        on disk (in the journal) when this returns, not only when the batch commits."""
        table, extra, values = self._trading_table("orders", mode)
        row = (
            session_id,
            order.client_order_id,
            order.id,
            order.symbol,
            order.side.value,
            order.type.value,
            order.time_in_force and order.time_in_force.value,
            order.amount,
            order.quote_amount,
            order.price,
            order.stop_price,
            order.status.value,
            order.status.rank,
            order.filled,
            order.cost,
            order.average,
            signal_price,
            arrival_price,
            utc(signal_time),
            utc(order.timestamp),
            utc(order.last_update),
        )
        columns = (*_ORDER_COLUMNS[:2], *extra, *_ORDER_COLUMNS[2:])
        item = _Row(table, columns, (*row[:2], *values, *row[2:]), _order_conflict(table), row[:2], _merge_orders)
        if durable:
            self._journal(item)
        else:
            self._enqueue(item)

    def record_fill(self, session_id: str, mode: TradingMode, fill: Fill) -> None:
        """Insert a fill once; the same trade id again is ignored."""
        table, extra, values = self._trading_table("fills", mode)
        row = (
            session_id,
            fill.trade_id,
            fill.order_id,
            fill.client_order_id,
            fill.symbol,
            fill.side.value,
            fill.price,
            fill.amount,
            fill.cost,
            fill.fee,
            fill.fee_currency,
            fill.is_maker,
            utc(fill.timestamp),
        )
        columns = (*_FILL_COLUMNS[:2], *extra, *_FILL_COLUMNS[2:])
        self._put_row(table, columns, (*row[:2], *values, *row[2:]), "ON CONFLICT DO NOTHING")

    def record_balances(self, session_id: str, mode: TradingMode, balances: Iterable[Balance], timestamp: int) -> None:
        table, extra, values = self._trading_table("balances", mode)
        columns = ("session_id", *extra, "timestamp", "asset", "free", "locked")
        for b in balances:
            self._put_row(table, columns, (session_id, *values, utc(timestamp), b.asset, b.free, b.locked))

    def audit(
        self, kind: str, detail: Mapping[str, Any], *, session_id: str | None = None, mode: TradingMode | None = None
    ) -> None:
        """Append one row to the audit log: every request, decision, confirmation and response."""
        self._put_row(
            "audit_log",
            ("ts", "session_id", "mode", "kind", "detail"),
            (_now(), session_id, mode and mode.value, kind, _audit_json(detail)),
        )

    def session_orders(self, session_id: str, mode: TradingMode) -> list[Order]:
        """The orders a session recorded, as the workbench's Orders (for a restarted session)."""
        rows = self._session_rows(
            "orders",
            session_id,
            mode,
            "symbol, side, type, amount, price, stop_price, time_in_force, client_order_id, order_id, quote_amount, "
            "status, filled, cost, epoch_ms(created_at), epoch_ms(updated_at)",
        )
        return [
            Order(
                symbol,
                Side(side),
                OrderType(type_),
                amount,
                price,
                stop,
                TimeInForce(tif) if tif else None,
                cid,
                id=oid,
                quote_amount=quote,
                status=OrderStatus(status),
                filled=filled,
                cost=cost,
                timestamp=created or 0,
                last_update=updated or 0,
            )
            for (
                symbol,
                side,
                type_,
                amount,
                price,
                stop,
                tif,
                cid,
                oid,
                quote,
                status,
                filled,
                cost,
                created,
                updated,
            ) in rows
        ]

    def fill_totals(self, session_id: str, mode: TradingMode) -> dict[str, tuple[int, Decimal]]:
        """Per symbol: how many fills the session recorded and their total cost."""
        rows = self._session_rows("fills", session_id, mode, "symbol, count(*), sum(cost)", "GROUP BY symbol")
        return {symbol: (n, cost) for symbol, n, cost in rows}

    def session_fills(self, session_id: str, mode: TradingMode) -> list[Fill]:
        """The fills a session recorded, in the order they happened (for a restarted session)."""
        rows = self._session_rows(
            "fills",
            session_id,
            mode,
            "trade_id, order_id, client_order_id, symbol, side, price, amount, cost, fee, fee_currency, is_maker, "
            "epoch_ms(timestamp)",
            "ORDER BY timestamp, trade_id",
        )
        return [Fill(*row[:4], Side(row[4]), *row[5:]) for row in rows]

    def record_order_list(
        self,
        session_id: str,
        mode: TradingMode,
        order_list: OrderList,
        legs: Iterable[str],
        *,
        signal_price: Decimal | None = None,
        signal_time: int | None = None,
        durable: bool = False,
    ) -> None:
        """Insert or advance an order list row (``legs``: its orders' client order ids, in the
        request's order); an update never moves a list backwards. ``durable`` as for orders."""
        table, extra, values = self._trading_table("order_lists", mode)
        row = (
            session_id,
            order_list.list_client_order_id,
            order_list.id if order_list.id >= 0 else None,
            order_list.symbol,
            order_list.kind.value,
            order_list.list_status_type.value,
            order_list.list_order_status.value,
            list_rank(order_list),
            list(legs),
            signal_price,
            utc(signal_time),
            utc(order_list.timestamp),
            utc(order_list.last_update),
        )
        columns = (*_LIST_COLUMNS[:2], *extra, *_LIST_COLUMNS[2:])
        item = _Row(table, columns, (*row[:2], *values, *row[2:]), _list_conflict(table), row[:2], _merge_lists)
        if durable:
            self._journal(item)
        else:
            self._enqueue(item)

    def session_order_lists(self, session_id: str, mode: TradingMode) -> list[tuple[OrderList, tuple[str, ...]]]:
        """The order lists a session recorded, each with its legs' client order ids (for a restart).
        A list never acknowledged reads ``id`` -1; its ``orders`` (venue ids) are empty."""
        rows = self._session_rows(
            "order_lists",
            session_id,
            mode,
            "list_client_order_id, order_list_id, symbol, contingency_type, list_status_type, list_order_status, "
            "legs, epoch_ms(created_at), epoch_ms(updated_at)",
            "ORDER BY created_at, list_client_order_id",
        )
        return [
            (
                OrderList(
                    -1 if list_id is None else list_id,
                    lcid,
                    symbol,
                    ContingencyType(kind),
                    (),
                    ListStatusType(status_type),
                    ListOrderStatus(order_status),
                    created or 0,
                    updated or 0,
                ),
                tuple(legs),
            )
            for lcid, list_id, symbol, kind, status_type, order_status, legs, created, updated in rows
        ]

    def _session_rows(
        self, kind: str, session_id: str, mode: TradingMode, columns: str, order: str = ""
    ) -> list[tuple[Any, ...]]:
        table, extra, values = self._trading_table(kind, mode)
        where = "session_id = ?" + "".join(f" AND {c} = ?" for c in extra)
        sql = f"SELECT {columns} FROM {table} WHERE {where} {order}"
        return self._reader().execute(sql, [session_id, *values]).fetchall()

    def set_kill_switch(self, tripped: bool, reason: str, source: str) -> None:
        """Record the kill switch's new state and wait until it is on disk."""
        self._put("INSERT INTO kill_switch VALUES (?, ?, ?, ?)", (_now(), tripped, reason, source))
        self.flush()

    def kill_switch_state(self) -> tuple[bool, str]:
        """Whether the kill switch is tripped, and why (its latest record)."""
        rows = self.sql("SELECT tripped, reason FROM kill_switch ORDER BY ts DESC LIMIT 1")
        return (bool(rows[0][0]), rows[0][1]) if rows else (False, "")

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _trading_table(kind: str, mode: TradingMode) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
        if mode is TradingMode.PAPER:
            return f"paper_{kind}", (), ()
        return f"real_{kind}", ("mode",), (mode.value,)

    def _put(self, sql: str, params: tuple[Any, ...]) -> None:
        self._enqueue(_Write(sql, params))

    def _put_row(
        self,
        table: str,
        columns: tuple[str, ...],
        values: tuple[Any, ...],
        conflict: str = "",
        *,
        key: tuple[Any, ...] | None = None,
        merge: Callable[[tuple[str, ...], tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]] | None = None,
    ) -> None:
        self._enqueue(_Row(table, columns, values, conflict, key, merge))

    def _journal(self, row: _Row) -> None:
        """Append ``row`` to the journal and fsync it, then queue it: on disk when this returns.
        It is queued outside the lock, which the writer takes to empty the journal: a full queue
        must not hold the writer up."""
        line = json.dumps({"table": row.table, "columns": row.columns, "values": row.values}, default=str) + "\n"
        with self._journal_lock:
            os.write(self._journal_fd, line.encode())
            os.fsync(self._journal_fd)
            self._journal_pending += 1  # counted before it can commit: the journal is kept until it has
        self._enqueue(replace(row, journaled=True))

    def _journal_committed(self, batch: list[_Write | _Row]) -> None:
        """Forget the journal's lines once every journaled row is committed."""
        done = sum(isinstance(item, _Row) and item.journaled for item in batch)
        if done:
            with self._journal_lock:
                self._journal_pending -= done
                if self._journal_pending == 0:
                    os.ftruncate(self._journal_fd, 0)

    def _replay_journal(self) -> None:
        """Commit the rows a crashed process journaled (replaying a committed row changes nothing:
        order rows only move forward), then empty the journal. A torn last line was never fsynced,
        so its order was never sent: it is skipped."""
        if not self._journal_path.exists():
            return
        cursor = self._cursor()
        rows: list[_Write | _Row] = []
        for line in self._journal_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            table, columns = entry["table"], tuple(entry["columns"])
            if table not in _JOURNALED:
                raise StoreError(f"The journal {self._journal_path} names the table {table!r}; move it aside.")
            types = _column_types(cursor, table)
            values = tuple(_decode(v, types[c]) for c, v in zip(columns, entry["values"], strict=True))
            conflict, merge = _JOURNALED[table]
            rows.append(_Row(table, columns, values, conflict(table), values[:2], merge))
        if rows:
            self._commit(cursor, rows)
            if self._error is not None:
                raise StoreError(f"Replaying the journal {self._journal_path} failed: {self._error}")
        cursor.close()
        self._journal_path.write_bytes(b"")

    def _enqueue(self, item: _Write | _Row | threading.Event | None) -> None:
        """Queue ``item`` for the writer, waiting for room while the queue is full (backpressure)."""
        if self._closed or not self._writer.is_alive():
            raise self._gone()
        try:
            self._queue.put(item, timeout=_POLL)
        except queue.Full:
            self._wait_for(lambda: _put(self._queue, item), "waiting for room in its queue")

    def _wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Call ``done`` (which waits up to ``_POLL`` seconds) until it is true, as long as the
        writer is alive and makes progress; else raise :class:`StoreError` saying which."""
        started = time.monotonic()
        while not done():
            if not self._writer.is_alive():
                if done():  # it finished the work, then stopped
                    return
                raise self._gone()
            idle = time.monotonic() - max(self._progress, started)
            if idle > self._stall:
                raise StoreError(
                    f"The store writer of {self.path} made no progress for {idle:.0f}s while {what} "
                    f"({self._queue.qsize()} writes queued): is the disk stalled? The rows are kept; "
                    "flush() again once the disk answers, or pass a larger stall= to Store."
                )

    def _gone(self) -> StoreError:
        """Why the store takes no writes: it is closed, or its writer thread died (the cause chained)."""
        if self._died is None:
            return StoreError(f"The store {self.path} is closed.")
        error = StoreError(
            f"The store writer of {self.path} died ({type(self._died).__name__}: {self._died}); writes queued "
            "since its last commit are lost (committed rows and journaled orders are safe). Open the store again."
        )
        error.__cause__ = self._died
        return error

    def _write_loop(self) -> None:
        try:
            self._write()
        except BaseException as e:  # noqa: BLE001 - reported by every later write, flush() and close()
            self._died = e
            log.error("The store writer of %s died.", self.path, exc_info=True)

    def _write(self) -> None:
        cursor = self._cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        while True:
            item: _Write | _Row | threading.Event | None = self._queue.get()
            self._progress = time.monotonic()
            batch: list[_Write | _Row] = []
            waiters: list[threading.Event] = []
            stop = False
            due = time.monotonic() + self._linger
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if stop or waiters or len(batch) >= self._batch_size:
                    break
                try:  # gather what comes within the linger: fewer, larger commits hold the GIL less
                    item = self._queue.get(timeout=max(due - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                self._progress = time.monotonic()
            if batch or (waiters and self._held):
                self._commit(cursor, batch)
            for waiter in waiters:
                waiter.set()
            if stop:
                cursor.close()
                return

    def _commit(self, cursor: duckdb.DuckDBPyConnection, batch: list[_Write | _Row]) -> None:
        """Commit ``batch`` in one transaction, retrying a failure of the disk (a full disk, an I/O
        error) ``COMMIT_RETRIES`` times; a batch that still fails stays queued for the next commit
        when the disk was at fault (nothing is lost once space returns), and the error is reported
        at the next :meth:`flush`."""
        held = self._held + batch
        for pause in (*COMMIT_RETRIES, None):
            try:
                self._commit_once(cursor, held)
                self._progress = time.monotonic()
            except Exception as e:  # noqa: BLE001 - reported to the caller at the next flush()
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("ROLLBACK")  # DuckDB may have ended the transaction itself
                if pause is not None and _disk_fault(e):
                    time.sleep(pause)
                    continue
                self._held = held if _disk_fault(e) else []
                self._error = StoreError(_failure(self.path, e, len(COMMIT_RETRIES) if _disk_fault(e) else 0))
                self._error.__cause__ = e
                return
            self._held = []
            self._journal_committed(held)
            return

    def _commit_once(self, cursor: duckdb.DuckDBPyConnection, batch: list[_Write | _Row]) -> None:
        cursor.execute("BEGIN TRANSACTION")
        groups: dict[tuple[str, tuple[str, ...], str], dict[Any, _Row]] = {}
        for item in batch:
            if isinstance(item, _Write):  # a statement of its own: rows queued before it go first
                self._insert(cursor, groups)
                cursor.execute(item.sql, item.params)
                continue
            rows = groups.setdefault((item.table, item.columns, item.conflict), {})
            key = item.key if item.key is not None else id(item)
            earlier = rows.get(key)
            if earlier is None:
                rows[key] = item
            elif item.merge is not None:
                rows[key] = _Row(
                    item.table,
                    item.columns,
                    item.merge(item.columns, earlier.values, item.values),
                    item.conflict,
                    item.key,
                    item.merge,
                )
        self._insert(cursor, groups)
        cursor.execute("COMMIT")

    @staticmethod
    def _insert(
        cursor: duckdb.DuckDBPyConnection, groups: dict[tuple[str, tuple[str, ...], str], dict[Any, _Row]]
    ) -> None:
        """One multi-row INSERT per table (DuckDB inserts rows in bulk far faster than one by one);
        from a DataFrame when there are many rows, where binding parameters one by one would cost
        more than the insert. Decimals go in as text, so DuckDB casts them exactly."""
        for (table, columns, conflict), rows in groups.items():
            names = ", ".join(columns)
            if len(rows) < _FRAME_ROWS:
                placeholders = f"({', '.join('?' * len(columns))})"
                cursor.execute(
                    f"INSERT INTO {table} ({names}) VALUES {', '.join([placeholders] * len(rows))} {conflict}",
                    [value for row in rows.values() for value in row.values],
                )
                continue
            values = zip(*(row.values for row in rows.values()), strict=True)
            frame = pd.DataFrame(
                {
                    column: [str(v) if isinstance(v, Decimal) else v for v in column_values]
                    for column, column_values in zip(columns, values, strict=True)
                },
                dtype=object,
            )
            _insert_frame(cursor, table, frame, conflict)
        groups.clear()

    def insert_frames(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        scales: Mapping[str, int] | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        """Insert whole tables of rows (``{table: frame}``) in one transaction, after every queued
        write: a replay's bulk write, which bypasses the writer thread. Decimals are text, or, in a
        column named in ``scales``, integers in units of ``10**-scales[column]`` (exact, and no
        text to build: 12345 at scale 2 is 123.45). A column named in ``texts`` holds integers,
        stored as that prefix and their digits (``{"client_order_id": "s-"}``: 7 is ``s-7``). One
        statement per table."""
        scales, texts = scales or {}, texts or {}
        self.flush()
        cursor = self._cursor()
        try:
            cursor.execute("BEGIN TRANSACTION")
            for table, frame in frames.items():
                types = _column_types(cursor, table)
                values = ", ".join(
                    f"CAST(CAST({c} AS DECIMAL(38, 0)) * {Decimal(1).scaleb(-scales[c]):f} AS {types[c]})"
                    if c in scales
                    else f"CAST(? || CAST({c} AS VARCHAR) AS {types[c]})"
                    if c in texts
                    else f"CAST({c} AS {types[c]})"
                    for c in frame.columns
                )
                prefixes = [texts[c] for c in frame.columns if c in texts and c not in scales]
                cursor.register("bulk_rows", frame)
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(frame.columns)}) SELECT {values} FROM bulk_rows", prefixes
                )
                cursor.unregister("bulk_rows")
            cursor.execute("COMMIT")
        except Exception:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()


def _put(target: queue.Queue[Any], item: Any) -> bool:
    """Put ``item`` in ``target`` if room frees within ``_POLL`` seconds; whether it went in."""
    try:
        target.put(item, timeout=_POLL)
    except queue.Full:
        return False
    return True


@atexit.register
def _close_open_stores() -> None:
    """At exit, close the stores left open, so that no writer thread is inside DuckDB while the
    interpreter tears the connection down (a C++ abort that loses the whole file's batch)."""
    for store in [s for s in _OPEN if s._pid == os.getpid()]:
        try:
            store.close()
        except StoreError as e:
            log.warning("Closing the store at exit: %s", e)
