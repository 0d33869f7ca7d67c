"""Fetch klines from an exchange with ccxt's ``fetch_ohlcv`` into DuckDB, incrementally.

:func:`fetch_klines` takes any ccxt exchange object (sync or ``ccxt.async_support``: Binance, its
testnet, or the local exchange), continues from the last bar already in the ``klines`` table (the
layout :func:`~workbench.data.klines_to_duckdb` writes, which :func:`workbench.replay.load_bars`
reads), never writes a bar twice, keeps only closed bars and reports the gaps it finds.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

KLINES_TABLE = (
    "CREATE TABLE IF NOT EXISTS klines (symbol VARCHAR, interval VARCHAR, open_time TIMESTAMPTZ, open DOUBLE, "
    "high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, PRIMARY KEY (symbol, interval, open_time))"
)


@dataclass(frozen=True)
class FetchReport:
    """What a fetch did: bars ``received`` from the exchange and ``inserted`` (new ones), the open
    times of the first and last bar now stored, and ``gaps`` (``after``, ``before``, ``missing``
    bars) between stored bars of the symbol and interval."""

    symbol: str
    interval: str
    received: int
    inserted: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    gaps: pd.DataFrame


async def fetch_klines(
    exchange: Any,
    symbol: str,
    con: duckdb.DuckDBPyConnection,
    *,
    interval: str = "1m",
    since: int | str | pd.Timestamp | None = None,
    until: int | str | pd.Timestamp | None = None,
    limit: int = 1000,
    max_requests: int = 1000,
) -> FetchReport:
    """Fetch ``symbol``'s ``interval`` klines into ``con``'s ``klines`` table and report.

    Starts one bar after the last stored bar of the symbol and interval, or at ``since`` (default:
    ``limit`` bars before now), pages ``limit`` bars a request until ``until`` (default: now) or the
    exchange has no more, and keeps only bars that have closed. ccxt errors (network, rate limit)
    propagate; what was inserted before stays.
    """
    step = int(exchange.parse_timeframe(interval) * 1000)
    now = int(exchange.milliseconds())
    end = _ms(until) if until is not None else now
    con.execute(KLINES_TABLE)
    stored = con.execute(
        "SELECT epoch_ms(max(open_time)) FROM klines WHERE symbol = ? AND interval = ?", [symbol, interval]
    ).fetchall()[0][0]
    start = stored + step if stored is not None else _ms(since) if since is not None else now - limit * step
    received = inserted = 0
    for _ in range(max_requests):
        if start > end:
            break
        rows = await _maybe_await(exchange.fetch_ohlcv(symbol, interval, since=start, limit=limit))
        rows = [r for r in rows if start <= r[0] <= end and r[0] + step <= now]  # closed bars in range only
        if not rows:
            break
        received += len(rows)
        inserted += _insert(con, symbol, interval, rows)
        start = int(rows[-1][0]) + step
    first, last = con.execute(
        "SELECT min(open_time), max(open_time) FROM klines WHERE symbol = ? AND interval = ?", [symbol, interval]
    ).fetchall()[0]
    return FetchReport(
        symbol, interval, received, inserted, _stamp(first), _stamp(last), find_gaps(con, symbol, interval, step)
    )


def find_gaps(con: duckdb.DuckDBPyConnection, symbol: str, interval: str, step_ms: int) -> pd.DataFrame:
    """Gaps between consecutive stored bars: ``after`` and ``before`` (open times) and ``missing`` bars."""
    return con.execute(
        "SELECT after, before, CAST((epoch_ms(before) - epoch_ms(after)) / ? AS BIGINT) - 1 AS missing FROM ("
        "  SELECT open_time AS before, lag(open_time) OVER (ORDER BY open_time) AS after"
        "  FROM klines WHERE symbol = ? AND interval = ?"
        ") WHERE epoch_ms(before) - epoch_ms(after) > ? ORDER BY after",
        [step_ms, symbol, interval, step_ms],
    ).df()


def _insert(con: duckdb.DuckDBPyConnection, symbol: str, interval: str, rows: list[list[Any]]) -> int:
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    frame.insert(0, "interval", interval)
    frame.insert(0, "symbol", symbol)
    before = con.execute(
        "SELECT count(*) FROM klines WHERE symbol = ? AND interval = ?", [symbol, interval]
    ).fetchall()[0]
    con.register("fetched", frame)
    con.execute(
        "INSERT INTO klines SELECT symbol, interval, make_timestamptz(ts * 1000), open, high, low, close, volume "
        "FROM fetched ON CONFLICT DO NOTHING"
    )
    con.unregister("fetched")
    after = con.execute("SELECT count(*) FROM klines WHERE symbol = ? AND interval = ?", [symbol, interval]).fetchall()[
        0
    ]
    return int(after[0] - before[0])


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _ms(when: int | str | pd.Timestamp) -> int:
    if isinstance(when, int):
        return when
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp
    return int(stamp.timestamp() * 1000)


def _stamp(value: Any) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")
