"""Post-trade analysis: PnL with FIFO lots, equity and drawdown, session metrics, execution quality,
comparisons across sessions and sweeps, and paper versus real.

Every function takes the store (a :class:`~workbench.store.Store`, a DuckDB connection or the path
of a store file) and which sessions to analyse (one id, a list of ids, ``None`` for all, or a
``sweep_id``), and returns a pandas DataFrame. The work is done in DuckDB SQL; :func:`create_views`
installs the same SQL as views (``analysis_*``) so the figures can be queried without Python.

Conventions, the same in the functions and the views:

* Lots are matched first in, first out, per session and symbol, in fill order (timestamp, then
  trade id). The k-th unit bought is matched with the k-th unit sold, which is FIFO on both sides:
  a sell beyond the position opens a short lot that the next buys cover.
* Fees are in the quote currency. A fee paid in the base asset is converted at the fill's price;
  it also changes the units the account holds: a buy receives ``amount - fee``, a sell gives
  ``amount + fee``, so the position always equals the change of the base balance. A fee in a third
  asset (BNB) cannot be converted without its price: it is counted in ``fees_unconverted``, not in
  the PnL.
* Fees are part of a lot's cost basis (a buy's unit cost is ``(cost + quote fee) / units received``,
  a sell's unit proceeds ``(cost - quote fee) / units given``), so ``realised_pnl`` is net of the
  fees of the units it closed and ``unrealised_pnl`` carries the fees of the open lots.
  ``realised_pnl + unrealised_pnl`` is the whole PnL: cash received - cash paid + position x mark.
* Unrealised PnL is marked at the symbol's last fill price unless a mark is given. The equity
  curve is marked at fill prices: the store holds fills, not the market between them.
* A round trip is closed by each order that reduces a position; its PnL is the FIFO PnL, fees
  included, of the units it closed. ``win_rate`` is the share of round trips with a PnL above zero.
* Slippage is in basis points, positive when worse for the trader: a buy filled above the
  reference price or a sell filled below it. References are the signal price (the bar close the
  strategy saw) and the arrival price (the last price when the order was sent).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.store import Store

Source = Store | duckdb.DuckDBPyConnection | str | os.PathLike[str]
Sessions = str | Sequence[str] | None
Mark = float | Mapping[str, float] | None


class AnalysisError(WorkbenchError):
    """The analysis cannot run: the store cannot be read, or the sessions asked for do not fit."""


class UnknownSession(AnalysisError):
    """No session with that id (or sweep id) is in the store."""


# -- the SQL, shared by the functions and the views ------------------------------------------------

_UNITS = """
f AS (
    SELECT mode, session_id, symbol, trade_id, client_order_id, side, "timestamp", is_maker, fee_currency,
           CAST(price AS DOUBLE) AS price, amount, cost, coalesce(fee, 0) AS fee,
           split_part(symbol, '/', 1) AS base, split_part(symbol, '/', 2) AS quote
    FROM fills {where}
), v AS (
    SELECT *,
           CASE WHEN fee_currency = quote THEN fee ELSE 0 END AS quote_fee,
           CASE WHEN fee_currency = base THEN fee ELSE 0 END AS base_fee
    FROM f
), u AS (
    -- units and values stay exact decimals, so that a position closed is exactly zero
    SELECT *,
           CAST(quote_fee AS DOUBLE) + CAST(base_fee AS DOUBLE) * price AS fee_quote,
           coalesce(fee <> 0 AND fee_currency NOT IN (base, quote), false) AS fee_unconverted,
           CASE WHEN side = 'buy' THEN amount - base_fee ELSE 0 END AS buy_units,
           CASE WHEN side = 'sell' THEN amount + base_fee ELSE 0 END AS sell_units,
           CASE WHEN side = 'buy' THEN cost + quote_fee ELSE 0 END AS buy_value,
           CASE WHEN side = 'sell' THEN cost - quote_fee ELSE 0 END AS sell_value
    FROM v
)"""

_FILLS_PNL = """
WITH {units}, c AS (
    SELECT *,
           row_number() OVER w AS seq,
           sum(buy_units) OVER w AS bought, sum(sell_units) OVER w AS sold,
           sum(buy_value) OVER w AS paid, sum(sell_value) OVER w AS received,
           least(bought, sold) AS matched
    FROM u
    WINDOW w AS (PARTITION BY session_id, symbol ORDER BY "timestamp", trade_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), buy_lots AS (
    SELECT session_id, symbol, bought - buy_units AS start_units, CAST(paid - buy_value AS DOUBLE) AS start_value,
           CAST(buy_value AS DOUBLE) / CAST(buy_units AS DOUBLE) AS unit_price
    FROM c WHERE side = 'buy' AND buy_units > 0
), sell_lots AS (
    SELECT session_id, symbol, sold - sell_units AS start_units, CAST(received - sell_value AS DOUBLE) AS start_value,
           CAST(sell_value AS DOUBLE) / CAST(sell_units AS DOUBLE) AS unit_price
    FROM c WHERE side = 'sell' AND sell_units > 0
), m AS (
    SELECT c.*,
           coalesce(b.start_value + b.unit_price * CAST(c.matched - b.start_units AS DOUBLE), 0) AS matched_cost,
           coalesce(s.start_value + s.unit_price * CAST(c.matched - s.start_units AS DOUBLE), 0) AS matched_proceeds
    FROM c
    ASOF LEFT JOIN buy_lots b ON c.session_id = b.session_id AND c.symbol = b.symbol AND c.matched >= b.start_units
    ASOF LEFT JOIN sell_lots s ON c.session_id = s.session_id AND c.symbol = s.symbol AND c.matched >= s.start_units
), p AS (
    SELECT mode, session_id, symbol, seq, trade_id, client_order_id, side, "timestamp", is_maker, price,
           CAST(amount AS DOUBLE) AS amount, CAST(cost AS DOUBLE) AS cost, CAST(fee AS DOUBLE) AS fee,
           fee_currency, fee_quote, fee_unconverted,
           CAST(bought - sold AS DOUBLE) AS position, CAST(bought AS DOUBLE) AS bought, CAST(sold AS DOUBLE) AS sold,
           CAST(paid AS DOUBLE) AS paid, CAST(received AS DOUBLE) AS received, matched,
           matched_proceeds - matched_cost AS realised_pnl,
           (CAST(paid AS DOUBLE) - matched_cost) - (CAST(received AS DOUBLE) - matched_proceeds) AS open_cost,
           CAST(received - paid AS DOUBLE) + price * CAST(bought - sold AS DOUBLE) AS equity
    FROM m
)
SELECT * EXCLUDE (matched),
       price * position - open_cost AS unrealised_pnl,
       realised_pnl - coalesce(lag(realised_pnl) OVER w, 0) AS realised_delta,
       CAST(matched - coalesce(lag(matched) OVER w, 0) AS DOUBLE) AS closed_units,
       equity - coalesce(lag(equity) OVER w, 0) AS equity_delta
FROM p
WINDOW w AS (PARTITION BY session_id, symbol ORDER BY seq)
"""

# Per session and symbol: the totals, and the FIFO value of the units matched so far, summed lot by
# lot (no per-fill lookup: what the summary needs is the state after the last fill).
_PNL = """
WITH {units}, c AS MATERIALIZED (
    SELECT *, row_number() OVER w AS seq,
           sum(buy_units) OVER w - buy_units AS buy_start, sum(sell_units) OVER w - sell_units AS sell_start
    FROM u
    WINDOW w AS (PARTITION BY session_id, symbol ORDER BY "timestamp", trade_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), t AS (
    SELECT session_id, any_value(mode) AS mode, symbol,
           count(*) AS fills, sum(CAST(cost AS DOUBLE)) AS turnover, sum(fee_quote) AS fees,
           count(*) FILTER (WHERE fee_unconverted) AS fees_unconverted,
           sum(buy_units) AS bought, sum(sell_units) AS sold, sum(buy_value) AS paid, sum(sell_value) AS received,
           least(sum(buy_units), sum(sell_units)) AS matched, arg_max(price, seq) AS mark_price,
           min("timestamp") AS first_fill, max("timestamp") AS last_fill
    FROM c
    GROUP BY session_id, symbol
), l AS (
    -- the FIFO value of the first `matched` units bought and sold: each lot's share of them
    SELECT c.session_id, c.symbol,
           sum(CASE WHEN c.buy_units > 0 THEN CAST(c.buy_value AS DOUBLE) / CAST(c.buy_units AS DOUBLE)
                    * CAST(greatest(0, least(c.buy_units, t.matched - c.buy_start)) AS DOUBLE) ELSE 0 END)
               AS matched_cost,
           sum(CASE WHEN c.sell_units > 0 THEN CAST(c.sell_value AS DOUBLE) / CAST(c.sell_units AS DOUBLE)
                    * CAST(greatest(0, least(c.sell_units, t.matched - c.sell_start)) AS DOUBLE) ELSE 0 END)
               AS matched_proceeds
    FROM c JOIN t ON c.session_id = t.session_id AND c.symbol = t.symbol
    GROUP BY c.session_id, c.symbol
)
SELECT t.session_id, t.mode, t.symbol, t.fills, t.turnover, t.fees, t.fees_unconverted,
       CAST(t.bought - t.sold AS DOUBLE) AS position, CAST(t.bought AS DOUBLE) AS bought,
       CAST(t.sold AS DOUBLE) AS sold,
       (CAST(t.paid AS DOUBLE) - l.matched_cost) - (CAST(t.received AS DOUBLE) - l.matched_proceeds) AS open_cost,
       t.mark_price, l.matched_proceeds - l.matched_cost AS realised_pnl,
       t.mark_price * CAST(t.bought - t.sold AS DOUBLE)
           - ((CAST(t.paid AS DOUBLE) - l.matched_cost) - (CAST(t.received AS DOUBLE) - l.matched_proceeds))
           AS unrealised_pnl,
       CAST(t.received - t.paid AS DOUBLE) + t.mark_price * CAST(t.bought - t.sold AS DOUBLE) AS total_pnl,
       t.first_fill, t.last_fill
FROM t JOIN l ON t.session_id = l.session_id AND t.symbol = l.symbol
"""

_EQUITY = """
WITH p AS ({fills_pnl}), e AS (
    SELECT session_id, mode, "timestamp", symbol, seq, trade_id, client_order_id, side, price,
           sum(equity_delta) OVER s AS equity,
           sum(realised_delta) OVER s AS realised_pnl,
           sum(fee_quote) OVER s AS fees
    FROM p
    WINDOW s AS (PARTITION BY session_id ORDER BY "timestamp", symbol, seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), d AS (
    SELECT *, equity - realised_pnl AS unrealised_pnl,
           greatest(max(equity) OVER s, 0) AS peak
    FROM e
    WINDOW s AS (PARTITION BY session_id ORDER BY "timestamp", symbol, seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT * EXCLUDE (seq), equity - peak AS drawdown FROM d
"""

_ROUND_TRIPS = """
WITH p AS ({fills_pnl})
SELECT session_id, any_value(mode) AS mode, symbol, client_order_id, any_value(side) AS side,
       sum(closed_units) AS closed_units, sum(realised_delta) AS pnl, sum(realised_delta) > 0 AS win,
       max("timestamp") AS closed_at
FROM p
GROUP BY session_id, symbol, client_order_id
HAVING sum(closed_units) > 0
"""

_EXECUTION = """
WITH o AS (
    SELECT mode, session_id, client_order_id, order_id, symbol, side, type, status,
           CAST(amount AS DOUBLE) AS amount, CAST(quote_amount AS DOUBLE) AS quote_amount,
           CAST(price AS DOUBLE) AS limit_price, CAST(signal_price AS DOUBLE) AS signal_price,
           CAST(arrival_price AS DOUBLE) AS arrival_price, signal_time, created_at, updated_at
    FROM orders {where}
), fo AS (
    SELECT session_id, client_order_id, count(*) AS fills,
           sum(CAST(amount AS DOUBLE)) AS filled, sum(CAST(cost AS DOUBLE)) AS filled_cost,
           sum(CASE WHEN fee_currency = split_part(symbol, '/', 2) THEN CAST(fee AS DOUBLE)
                    WHEN fee_currency = split_part(symbol, '/', 1) THEN CAST(fee AS DOUBLE) * CAST(price AS DOUBLE)
                    ELSE 0 END) AS fees,
           avg(CAST(is_maker AS INTEGER)) AS maker_share,
           min("timestamp") AS first_fill, max("timestamp") AS last_fill
    FROM fills {where}
    GROUP BY session_id, client_order_id
), q AS (
    SELECT o.*, coalesce(fo.fills, 0) AS fills, coalesce(fo.filled, 0) AS filled,
           coalesce(fo.filled_cost, 0) AS filled_cost, coalesce(fo.fees, 0) AS fees, fo.maker_share,
           fo.filled_cost / nullif(fo.filled, 0) AS avg_price, fo.first_fill, fo.last_fill,
           CASE WHEN o.side = 'buy' THEN 1 ELSE -1 END AS sign
    FROM o LEFT JOIN fo USING (session_id, client_order_id)
)
SELECT mode, session_id, client_order_id, order_id, symbol, side, type, status, amount, quote_amount,
       limit_price, signal_price, arrival_price, avg_price, fills, filled, filled_cost, fees, maker_share,
       CASE WHEN amount > 0 THEN filled / amount
            WHEN quote_amount > 0 THEN filled_cost / quote_amount END AS fill_ratio,
       sign * (avg_price / nullif(signal_price, 0) - 1) * 1e4 AS slippage_signal_bps,
       sign * (avg_price / nullif(arrival_price, 0) - 1) * 1e4 AS slippage_arrival_bps,
       sign * (avg_price - signal_price) * filled AS slippage_signal_quote,
       sign * (avg_price - arrival_price) * filled AS slippage_arrival_quote,
       signal_time, created_at, first_fill, last_fill, updated_at,
       CAST(epoch_ms(created_at) - epoch_ms(signal_time) AS DOUBLE) AS signal_to_ack_ms,
       CAST(epoch_ms(first_fill) - epoch_ms(created_at) AS DOUBLE) AS ack_to_first_fill_ms,
       CAST(epoch_ms(last_fill) - epoch_ms(created_at) AS DOUBLE) AS ack_to_last_fill_ms,
       CAST(epoch_ms(last_fill) - epoch_ms(signal_time) AS DOUBLE) AS signal_to_last_fill_ms
FROM q
"""

_METRICS = """
WITH pnl AS ({pnl}), eq AS ({equity}), rt AS ({round_trips}), ex AS ({execution}),
s AS (SELECT session_id, mode, status, strategy, sweep_id, shadow_of, started_at, ended_at FROM sessions {where}),
by_pnl AS (
    SELECT session_id, CAST(sum(fills) AS BIGINT) AS fills, sum(turnover) AS turnover, sum(fees) AS fees,
           sum(fees_unconverted) AS fees_unconverted, sum(realised_pnl) AS realised_pnl,
           sum(unrealised_pnl) AS unrealised_pnl, sum(total_pnl) AS total_pnl,
           min(first_fill) AS first_fill, max(last_fill) AS last_fill
    FROM pnl GROUP BY session_id
), by_eq AS (SELECT session_id, min(drawdown) AS max_drawdown FROM eq GROUP BY session_id),
by_rt AS (
    SELECT session_id, count(*) AS round_trips, count(*) FILTER (WHERE win) AS wins,
           sum(pnl) FILTER (WHERE win) AS gross_wins, sum(pnl) FILTER (WHERE NOT win) AS gross_losses
    FROM rt GROUP BY session_id
), by_ex AS (
    SELECT session_id, count(*) AS orders,
           sum(slippage_signal_quote) AS slippage_signal_quote,
           sum(slippage_arrival_quote) AS slippage_arrival_quote,
           sum(slippage_arrival_bps * filled_cost) / nullif(sum(filled_cost) FILTER (
               WHERE slippage_arrival_bps IS NOT NULL), 0) AS slippage_arrival_bps
    FROM ex GROUP BY session_id
)
SELECT s.session_id, s.mode, s.status, s.strategy, s.sweep_id, s.shadow_of, s.started_at, s.ended_at,
       coalesce(by_ex.orders, 0) AS orders, coalesce(by_pnl.fills, 0) AS fills,
       coalesce(by_pnl.turnover, 0) AS turnover, coalesce(by_pnl.fees, 0) AS fees,
       coalesce(by_pnl.fees_unconverted, 0) AS fees_unconverted,
       coalesce(by_pnl.realised_pnl, 0) AS realised_pnl, coalesce(by_pnl.unrealised_pnl, 0) AS unrealised_pnl,
       coalesce(by_pnl.total_pnl, 0) AS total_pnl,
       coalesce(by_rt.round_trips, 0) AS round_trips, coalesce(by_rt.wins, 0) AS wins,
       by_rt.wins / nullif(by_rt.round_trips, 0) AS win_rate,
       by_rt.gross_wins / nullif(-by_rt.gross_losses, 0) AS profit_factor,
       coalesce(by_eq.max_drawdown, 0) AS max_drawdown,
       by_ex.slippage_arrival_bps, by_ex.slippage_signal_quote, by_ex.slippage_arrival_quote,
       by_pnl.first_fill, by_pnl.last_fill
FROM s
LEFT JOIN by_pnl USING (session_id)
LEFT JOIN by_eq USING (session_id)
LEFT JOIN by_rt USING (session_id)
LEFT JOIN by_ex USING (session_id)
"""

_PAPER_VS_REAL = """
WITH pairs AS (
    SELECT shadow_of AS real_session_id, session_id AS paper_session_id
    FROM sessions WHERE shadow_of IS NOT NULL {and_real}
), ex AS ({execution}), r AS (
    SELECT pairs.real_session_id, pairs.paper_session_id, ex.*,
           row_number() OVER (PARTITION BY ex.session_id, symbol, side, signal_time
                              ORDER BY created_at, client_order_id) AS k
    FROM ex JOIN pairs ON ex.session_id = pairs.real_session_id
), p AS (
    SELECT pairs.real_session_id, pairs.paper_session_id, ex.*,
           row_number() OVER (PARTITION BY ex.session_id, symbol, side, signal_time
                              ORDER BY created_at, client_order_id) AS k
    FROM ex JOIN pairs ON ex.session_id = pairs.paper_session_id
), j AS (
    SELECT coalesce(r.real_session_id, p.real_session_id) AS real_session_id,
           coalesce(r.paper_session_id, p.paper_session_id) AS paper_session_id,
           coalesce(r.symbol, p.symbol) AS symbol, coalesce(r.side, p.side) AS side,
           coalesce(r.signal_time, p.signal_time) AS signal_time,
           coalesce(r.signal_price, p.signal_price) AS signal_price,
           r.client_order_id AS real_client_order_id, p.client_order_id AS paper_client_order_id,
           r.status AS real_status, p.status AS paper_status,
           r.filled AS real_filled, p.filled AS paper_filled,
           r.avg_price AS real_avg_price, p.avg_price AS paper_avg_price,
           r.fees AS real_fees, p.fees AS paper_fees,
           r.slippage_signal_bps AS real_slippage_bps, p.slippage_signal_bps AS paper_slippage_bps,
           r.signal_to_last_fill_ms AS real_latency_ms, p.signal_to_last_fill_ms AS paper_latency_ms,
           CASE WHEN coalesce(r.side, p.side) = 'buy' THEN 1 ELSE -1 END AS sign
    FROM r FULL OUTER JOIN p
      ON r.real_session_id = p.real_session_id AND r.symbol = p.symbol AND r.side = p.side
     AND r.signal_time = p.signal_time AND r.k = p.k
)
SELECT * EXCLUDE (sign),
       r_matched AND p_matched AS matched,
       sign * (real_avg_price / paper_avg_price - 1) * 1e4 AS gap_bps,
       sign * (real_avg_price - paper_avg_price) * real_filled AS gap_quote,
       real_filled - paper_filled AS filled_gap,
       real_fees - paper_fees AS fee_gap
FROM (SELECT *, real_client_order_id IS NOT NULL AS r_matched, paper_client_order_id IS NOT NULL AS p_matched FROM j)
"""


def _where(column: str, ids: Sequence[str] | None) -> str:
    """A WHERE clause keeping ``ids`` as literals: DuckDB prunes row groups on a constant filter."""
    if ids is None:
        return ""
    literals = ", ".join("'" + i.replace("'", "''") + "'" for i in ids) or "NULL"
    return f"WHERE {column} IN ({literals})"


def _sql(kind: str, ids: Sequence[str] | None = None, *, shadows: Sequence[str] = ()) -> str:
    """The SQL of one analysis, restricted to the sessions ``ids`` (all when ``None``); for
    ``paper_vs_real``, ``ids`` are real sessions and ``shadows`` their paper twins."""
    where = _where("session_id", ids)
    units = _UNITS.format(where=where)
    fills_pnl = _FILLS_PNL.format(units=units)
    execution = _EXECUTION.format(where=where)
    parts = {
        "fills_pnl": fills_pnl,
        "pnl": _PNL.format(units=units),
        "equity": _EQUITY.format(fills_pnl=fills_pnl),
        "round_trips": _ROUND_TRIPS.format(fills_pnl=fills_pnl),
        "execution": execution,
    }
    if kind == "metrics":
        return _METRICS.format(where=where, **{k: v for k, v in parts.items() if k != "fills_pnl"})
    if kind == "paper_vs_real":
        and_real = "" if ids is None else "AND " + _where("shadow_of", ids).removeprefix("WHERE ")
        both = None if ids is None else [*ids, *shadows]
        return _PAPER_VS_REAL.format(and_real=and_real, execution=_EXECUTION.format(where=_where("session_id", both)))
    return parts[kind]


VIEWS = {
    "analysis_fills_pnl": "fills_pnl",
    "analysis_pnl": "pnl",
    "analysis_equity": "equity",
    "analysis_round_trips": "round_trips",
    "analysis_execution_quality": "execution",
    "analysis_session_metrics": "metrics",
    "analysis_paper_vs_real": "paper_vs_real",
}


def create_views(source: Store | duckdb.DuckDBPyConnection | str | os.PathLike[str]) -> list[str]:
    """Create (or replace) the ``analysis_*`` views in the store, so the metrics can be queried
    without Python, e.g. ``SELECT * FROM analysis_session_metrics``. Returns the views' names.

    They use the conventions of this module and mark open positions at each symbol's last fill price.
    """
    statements = [f"CREATE OR REPLACE VIEW {name} AS {_sql(kind)}" for name, kind in VIEWS.items()]
    if isinstance(source, Store):  # the store's own connection: DuckDB allows one writer process per file
        source.flush()
        for statement in statements:
            source.sql(statement)
        return list(VIEWS)
    con = source if isinstance(source, duckdb.DuckDBPyConnection) else _open(source, read_only=False)
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        if con is not source:
            con.close()
    return list(VIEWS)


# -- reading --------------------------------------------------------------------------------------

Reader = Callable[[str], pd.DataFrame]


def _open(path: str | os.PathLike[str], *, read_only: bool) -> duckdb.DuckDBPyConnection:
    if not Path(path).exists():
        raise AnalysisError(f"No store at {path}: give the path of a workbench DuckDB file.")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except (duckdb.IOException, duckdb.ConnectionException) as e:
        raise AnalysisError(
            f"Cannot open the store {path}: {e}. If this process already has it open as a Store, pass "
            "that Store instead of the path; if another process is writing to it, wait until it ends."
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    return con


@contextmanager
def _reader(source: Source) -> Iterator[Reader]:
    """A function running one query on ``source`` and returning a DataFrame."""
    if isinstance(source, Store):
        source.flush()
        yield lambda sql: source.query(sql)
    elif isinstance(source, duckdb.DuckDBPyConnection):
        yield lambda sql: source.execute(sql).df()
    else:
        con = _open(source, read_only=True)
        try:
            yield lambda sql: con.execute(sql).df()
        finally:
            con.close()


def _resolve(read: Reader, sessions: Sessions, sweep_id: str | None) -> list[str] | None:
    """The session ids asked for, checked against the sessions table (``None``: every session)."""
    if sweep_id is not None:
        if sessions is not None:
            raise AnalysisError("Give either sessions or sweep_id, not both.")
        ids = read(f"SELECT session_id FROM sessions {_where('sweep_id', [sweep_id])} ORDER BY session_id")
        if ids.empty:
            raise UnknownSession(f"No session of sweep {sweep_id!r} in the store: check the sweep id.")
        return ids["session_id"].tolist()
    if sessions is None:
        return None
    wanted = [sessions] if isinstance(sessions, str) else list(sessions)
    known = set(read(f"SELECT session_id FROM sessions {_where('session_id', wanted)}")["session_id"])
    missing = [s for s in wanted if s not in known]
    if missing:
        recent = read("SELECT session_id FROM sessions ORDER BY started_at DESC NULLS LAST LIMIT 5")["session_id"]
        hint = ", ".join(recent) or "none"
        raise UnknownSession(f"Unknown session id(s) {missing}: not in the store. Most recent sessions: {hint}.")
    return wanted


def _query(source: Source, kind: str, sessions: Sessions, sweep_id: str | None, order: str) -> pd.DataFrame:
    with _reader(source) as read:
        ids = _resolve(read, sessions, sweep_id)
        return _tidy(read(f"SELECT * FROM ({_sql(kind, ids)}) ORDER BY {order}"))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps in UTC, whatever the connection's time zone; a fresh 0..n-1 index."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC")
    return frame.reset_index(drop=True)


def _marks(frame: pd.DataFrame, mark: Mark) -> pd.Series:
    """The mark price of each row: ``mark`` (one price, or one per symbol), else the last fill price."""
    if mark is None:
        return frame["mark_price"]
    if isinstance(mark, Mapping):
        given = frame["symbol"].map(lambda s: mark.get(s, np.nan)).astype(float)
        return given.fillna(frame["mark_price"])
    return pd.Series(float(mark), index=frame.index)


# -- public functions -----------------------------------------------------------------------------


def fills_pnl(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """One row per fill, in fill order per session and symbol: the fee in quote, the position and
    cumulative ``realised_pnl`` after it, ``unrealised_pnl`` and ``equity`` marked at its price,
    and what it changed (``realised_delta``, ``closed_units``, ``equity_delta``).

    Raises :class:`UnknownSession` for an id that is not in the store."""
    return _query(source, "fills_pnl", sessions, sweep_id, "session_id, symbol, seq")


def fifo_pnl(
    source: Source, sessions: Sessions = None, *, sweep_id: str | None = None, mark: Mark = None
) -> pd.DataFrame:
    """Realised and unrealised PnL with FIFO lots, per session and symbol, fees in quote.

    ``mark`` prices the open position: one price, a ``{symbol: price}`` mapping, or ``None`` for each
    symbol's last fill price. Columns: fills, turnover, fees, position, open_cost, mark_price,
    realised_pnl, unrealised_pnl, total_pnl. Raises :class:`UnknownSession` for an unknown id."""
    frame = _query(source, "pnl", sessions, sweep_id, "session_id, symbol")
    frame["mark_price"] = _marks(frame, mark)
    frame["unrealised_pnl"] = frame["mark_price"] * frame["position"] - frame["open_cost"]
    frame["total_pnl"] = frame["realised_pnl"] + frame["unrealised_pnl"]
    frame["avg_open_price"] = (frame["open_cost"] / frame["position"]).where(frame["position"].abs() > 1e-12)
    return frame


def equity_curve(
    source: Source, sessions: Sessions = None, *, sweep_id: str | None = None, capital: float | None = None
) -> pd.DataFrame:
    """The PnL of each session after each of its fills (all symbols, each marked at its last fill
    price): ``equity``, ``realised_pnl``, ``unrealised_pnl``, ``fees`` so far.

    With a starting ``capital`` in quote (by default inferred from the session's final balance
    snapshot, see :func:`starting_capital`), also ``value`` (capital + equity) and ``returns``
    (the change of value from the previous fill). Raises :class:`UnknownSession` for an unknown id."""
    frame = _query(source, "equity", sessions, sweep_id, 'session_id, "timestamp", symbol, trade_id')
    frame = frame.drop(columns=["peak", "drawdown"])
    base = _capital(source, frame, capital)
    frame["value"] = frame["session_id"].map(base) + frame["equity"]
    previous = frame.groupby("session_id")["value"].shift().fillna(frame["session_id"].map(base))
    frame["returns"] = frame["value"] / previous - 1
    return frame


def drawdown(
    source: Source, sessions: Sessions = None, *, sweep_id: str | None = None, capital: float | None = None
) -> pd.DataFrame:
    """The equity curve with its running ``peak`` (starting at 0: the session starts flat), the
    ``drawdown`` below it in quote (zero or negative), and ``drawdown_pct`` as a fraction of the
    peak value (capital + peak equity) when the capital is known."""
    frame = equity_curve(source, sessions, sweep_id=sweep_id, capital=capital)
    frame["peak"] = frame.groupby("session_id")["equity"].cummax().clip(lower=0)
    frame["drawdown"] = frame["equity"] - frame["peak"]
    peak_value = frame["value"] - frame["drawdown"]
    frame["drawdown_pct"] = frame["drawdown"] / peak_value
    return frame


def starting_capital(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.Series:
    """Each session's value in quote when it started, from its last balance snapshot: the quote
    assets and base assets of its symbols (bases at the last fill price), less the session's PnL.
    NaN for a session without a snapshot (the benchmark's, or one still running)."""
    with _reader(source) as read:
        ids = _resolve(read, sessions, sweep_id)
        return _starting_capital(read, ids)


def _starting_capital(read: Reader, ids: list[str] | None) -> pd.Series:
    where = _where("b.session_id", ids)
    frame = read(
        f"""
        WITH pnl AS ({_sql("pnl", ids)}),
        last AS (
            SELECT session_id, max("timestamp") AS ts FROM balances {_where("session_id", ids)} GROUP BY session_id
        ), snap AS (
            SELECT b.session_id, b.asset, CAST(b.free + b.locked AS DOUBLE) AS total
            FROM balances b JOIN last ON b.session_id = last.session_id AND b."timestamp" = last.ts {where}
        ), prices AS (
            SELECT session_id, split_part(symbol, '/', 1) AS asset, split_part(symbol, '/', 2) AS quote,
                   mark_price FROM pnl
        ), symbols AS (
            SELECT session_id, unnest(symbols) AS symbol FROM sessions {_where("session_id", ids)}
        ), quotes AS (
            SELECT DISTINCT session_id, split_part(symbol, '/', 2) AS asset FROM symbols
        ), valued AS (
            SELECT snap.session_id,
                   sum(CASE WHEN quotes.asset IS NOT NULL THEN snap.total
                            WHEN prices.asset IS NOT NULL THEN snap.total * prices.mark_price ELSE 0 END) AS value
            FROM snap
            LEFT JOIN quotes ON snap.session_id = quotes.session_id AND snap.asset = quotes.asset
            LEFT JOIN prices ON snap.session_id = prices.session_id AND snap.asset = prices.asset
            GROUP BY snap.session_id
        )
        SELECT valued.session_id, valued.value - coalesce(sum(pnl.total_pnl), 0) AS capital
        FROM valued LEFT JOIN pnl USING (session_id)
        GROUP BY valued.session_id, valued.value
        """
    )
    return frame.set_index("session_id")["capital"].astype(float)


def _capital(source: Source, frame: pd.DataFrame, capital: float | None) -> dict[str, float]:
    ids = sorted(frame["session_id"].unique())
    if capital is not None:
        return dict.fromkeys(ids, float(capital))
    if not ids:
        return {}
    with _reader(source) as read:
        inferred = _starting_capital(read, ids)
    return {i: float(inferred.get(i, np.nan)) for i in ids}


def round_trips(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """One row per order that closed units of a position: the units closed, their FIFO ``pnl``
    (fees included) and whether it is a ``win``."""
    return _query(source, "round_trips", sessions, sweep_id, "session_id, closed_at, client_order_id")


def execution_quality(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """One row per order: average fill price, ``fill_ratio`` (filled / amount, or cost / quote amount),
    slippage against the signal and arrival prices in bps and in quote (positive = worse for the
    trader), fees, and the latencies signal -> acknowledgement (``created_at``) -> first and last fill
    in milliseconds. Raises :class:`UnknownSession` for an unknown id."""
    return _query(source, "execution", sessions, sweep_id, "session_id, created_at, client_order_id")


def session_metrics(
    source: Source,
    sessions: Sessions = None,
    *,
    sweep_id: str | None = None,
    mark: Mark = None,
    capital: float | None = None,
) -> pd.DataFrame:
    """One row per session: orders, fills, turnover (quote traded), fees, realised, unrealised and
    total PnL, round trips, win rate, profit factor, max drawdown (quote, and as a fraction of the
    peak value when the capital is known), volume-weighted arrival slippage.

    ``mark`` and ``capital`` are as in :func:`fifo_pnl` and :func:`equity_curve`. Raises
    :class:`UnknownSession` for an unknown id."""
    frame = _query(source, "metrics", sessions, sweep_id, "session_id")
    ids = frame["session_id"].tolist()
    if mark is not None and ids:
        pnl = fifo_pnl(source, ids, mark=mark).groupby("session_id")[["unrealised_pnl"]].sum()
        frame["unrealised_pnl"] = frame["session_id"].map(pnl["unrealised_pnl"]).fillna(0.0)
        frame["total_pnl"] = frame["realised_pnl"] + frame["unrealised_pnl"]
    if ids:
        curve = drawdown(source, ids, capital=capital)
        worst = curve.groupby("session_id")["drawdown_pct"].min()
        capitals = curve.groupby("session_id")["value"].first() - curve.groupby("session_id")["equity"].first()
        frame["capital"] = float(capital) if capital is not None else frame["session_id"].map(capitals)
        frame["max_drawdown_pct"] = frame["session_id"].map(worst).fillna(0.0).where(frame["capital"].notna())
        frame["return_pct"] = frame["total_pnl"] / frame["capital"]
    else:
        frame["capital"] = frame["max_drawdown_pct"] = frame["return_pct"] = pd.Series(dtype=float)
    return frame


def compare_sessions(
    source: Source,
    sessions: Sessions = None,
    *,
    sweep_id: str | None = None,
    mark: Mark = None,
    capital: float | None = None,
) -> pd.DataFrame:
    """:func:`session_metrics` of several sessions (or a sweep's), one row each, with each session's
    parameters (``sessions.params``, e.g. a sweep's strategy parameters) as ``param_*`` columns."""
    frame = session_metrics(source, sessions, sweep_id=sweep_id, mark=mark, capital=capital)
    with _reader(source) as read:
        params = read(f"SELECT session_id, params FROM sessions {_where('session_id', frame['session_id'].tolist())}")
    flat = pd.json_normalize([_params(p) for p in params["params"]], sep=".")
    flat.columns = [f"param_{c}" for c in flat.columns]
    flat.index = params["session_id"]
    return frame.join(flat, on="session_id")


def _params(raw: Any) -> dict[str, Any]:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return {}
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {"value": value}


def shadow_of(source: Source, real_session_id: str) -> str:
    """The id of the paper session that shadowed ``real_session_id``; :class:`AnalysisError` if none."""
    with _reader(source) as read:
        _resolve(read, real_session_id, None)
        rows = read(f"SELECT session_id FROM sessions {_where('shadow_of', [real_session_id])} ORDER BY session_id")
    if rows.empty:
        raise AnalysisError(
            f"Session {real_session_id!r} has no paper shadow: run it with shadow=True "
            "(TradingSession.from_config(..., shadow=True)) to compare paper with real."
        )
    return str(rows["session_id"].iloc[0])


def paper_vs_real(source: Source, real_session_id: str) -> pd.DataFrame:
    """The orders of a real (testnet or mainnet) session beside its paper shadow's, paired by symbol,
    side and signal time: each side's fill, average price, slippage and latency, and the gap
    (``gap_bps`` and ``gap_quote``, positive when the real fill was worse than paper). Orders without
    a counterpart have ``matched`` False. :func:`paper_vs_real_summary` totals it.

    Raises :class:`UnknownSession` for an unknown id, :class:`AnalysisError` if it has no shadow."""
    paper_id = shadow_of(source, real_session_id)
    sql = _sql("paper_vs_real", [real_session_id], shadows=[paper_id])
    with _reader(source) as read:
        frame = read(f"SELECT * FROM ({sql}) ORDER BY signal_time, symbol, side")
    return _tidy(frame)


def paper_vs_real_summary(source: Source, real_session_id: str) -> pd.DataFrame:
    """One row: orders paired and unpaired, the total execution gap in quote and in bps of the paper
    notional, fee gap, and both sessions' PnL and its difference (real - paper)."""
    paper_id = shadow_of(source, real_session_id)
    pairs = paper_vs_real(source, real_session_id)
    metrics = session_metrics(source, [real_session_id, paper_id]).set_index("session_id")
    matched = pairs[pairs["matched"]]
    notional = float((matched["paper_avg_price"] * matched["real_filled"]).sum())
    gap = float(matched["gap_quote"].sum())
    row = {
        "real_session_id": real_session_id,
        "paper_session_id": paper_id,
        "orders_matched": int(len(matched)),
        "orders_real_only": int((pairs["real_client_order_id"].notna() & ~pairs["matched"]).sum()),
        "orders_paper_only": int((pairs["paper_client_order_id"].notna() & ~pairs["matched"]).sum()),
        "gap_quote": gap,
        "gap_bps": gap / notional * 1e4 if notional else np.nan,
        "fee_gap": float(matched["fee_gap"].sum()),
        "real_total_pnl": float(metrics.loc[real_session_id, "total_pnl"]),
        "paper_total_pnl": float(metrics.loc[paper_id, "total_pnl"]),
    }
    row["pnl_gap"] = row["real_total_pnl"] - row["paper_total_pnl"]
    return pd.DataFrame([row])
