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
* A trade (:func:`trades`) runs from flat to flat per symbol; a position worth less than the
  symbol's minimum notional (the dust a fee in the base asset leaves) counts as flat.
* :func:`bar_equity` and :func:`performance` mark the session at every bar close it saw (the bars
  it recorded live, or its historical data reloaded), a fill counting from the bar that signalled
  its order; ratios are empyrical's, annualised for 1m bars around the clock. These, like
  :func:`data_source`, :func:`open_positions` and :mod:`workbench.explain`, are pandas only; trades,
  fees and refusals are also views.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from workbench.lookup import AnalysisError, UnknownSession, connect, resolve
from workbench.lookup import literal as _literal
from workbench.lookup import where as _where
from workbench.store import Store

Source = Store | duckdb.DuckDBPyConnection | str | os.PathLike[str]
Sessions = str | Sequence[str] | None
Mark = float | Mapping[str, float] | None


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

# fifo_pnl brings the arithmetic out of the SQL windows (their DECIMAL arithmetic is what costs) into
# numpy: units as integers of 1e-8 (Binance's precision for every asset), exact when each fill's are
# (``whole``), so a position closed is exactly zero; values in double, as the windows have them.
UNITS_PER_ONE = 100_000_000
_FIFO_GROUPS = """
SELECT session_id, any_value(mode) AS mode, symbol, count(*) AS fills,
       min("timestamp") AS first_fill, max("timestamp") AS last_fill
FROM fills {where}
GROUP BY session_id, symbol
ORDER BY session_id, symbol
"""
_FIFO_FILLS = """
SELECT side = 'buy' AS buy, coalesce(fee_currency = split_part(symbol, '/', 1), false) AS base_fee,
       coalesce(fee_currency = split_part(symbol, '/', 2), false) AS quote_fee,
       coalesce(fee <> 0 AND fee_currency NOT IN (split_part(symbol, '/', 1), split_part(symbol, '/', 2)), false)
           AS unconverted,
       CAST(price AS DOUBLE) AS price, CAST(amount AS DOUBLE) AS amount, CAST(cost AS DOUBLE) AS cost,
       CAST(coalesce(fee, 0) AS DOUBLE) AS fee,
       round(amount, 8) = amount
           AND (fee_currency IS DISTINCT FROM split_part(symbol, '/', 1) OR round(fee, 8) = fee) AS whole
FROM fills {where}
ORDER BY session_id, symbol, "timestamp", trade_id
"""
# Beyond this many units a double no longer holds every multiple of 1e-8 exactly.
_EXACT_UNITS = 2.0**52 / UNITS_PER_ONE

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
WITH fp AS MATERIALIZED ({fills_pnl}), pnl AS ({pnl}), eq AS ({equity}), rt AS ({round_trips}), ex AS ({execution}),
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

# A trade runs from flat to flat, per session and symbol; the fills' slippage is against their
# order's signal and arrival prices, in quote (positive = worse for the trader).
_TRADES = """
WITH p AS ({fills_pnl}), {dust}, o AS (
    SELECT session_id, client_order_id, CAST(signal_price AS DOUBLE) AS signal_price,
           CAST(arrival_price AS DOUBLE) AS arrival_price
    FROM orders {where}
), n AS (
    SELECT p.*, o.signal_price, o.arrival_price,
           CASE WHEN p.side = 'buy' THEN 1 ELSE -1 END AS sign,
           coalesce(dust.notional, 0) AS dust,
           CASE WHEN abs(coalesce(lag(p.position) OVER w, 0)) * p.price <= coalesce(dust.notional, 0) + 1e-12
                THEN 1 ELSE 0 END AS opens
    FROM p LEFT JOIN o USING (session_id, client_order_id) LEFT JOIN dust USING (symbol)
    WINDOW w AS (PARTITION BY p.session_id, p.symbol ORDER BY p.seq)
), k AS (
    SELECT *, sum(opens) OVER (PARTITION BY session_id, symbol ORDER BY seq
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS trade
    FROM n
), g AS (
    SELECT session_id, any_value(mode) AS mode, symbol, trade,
           CASE WHEN any_value(opening) = 'buy' THEN 'long' ELSE 'short' END AS direction,
           min("timestamp") AS entry_time,
           CASE WHEN abs(arg_max(position, seq)) * arg_max(price, seq) <= any_value(dust) + 1e-12
                THEN max("timestamp") END AS exit_time,
           sum(amount) FILTER (WHERE side = opening) AS units,
           sum(cost) FILTER (WHERE side = opening) / sum(amount) FILTER (WHERE side = opening) AS entry_price,
           sum(cost) FILTER (WHERE side <> opening) / sum(amount) FILTER (WHERE side <> opening) AS exit_price,
           sum(cost) FILTER (WHERE side = opening) AS entry_value,
           sum(realised_delta) AS pnl, sum(fee_quote) AS fees, count(*) AS fills,
           sum(sign * (price - signal_price) * amount) AS slippage_signal_quote,
           sum(sign * (price - arrival_price) * amount) AS slippage_arrival_quote,
           sum(signal_price * amount) AS signal_notional, sum(arrival_price * amount) AS arrival_notional,
           abs(arg_max(position, seq)) * arg_max(price, seq) > any_value(dust) + 1e-12 AS open
    FROM (SELECT *, first_value(side) OVER (PARTITION BY session_id, symbol, trade ORDER BY seq) AS opening FROM k)
    GROUP BY session_id, symbol, trade
)
SELECT session_id, mode, symbol, CAST(trade AS BIGINT) AS trade, direction, entry_time, exit_time,
       epoch_ms(exit_time) - epoch_ms(entry_time) AS holding_ms, units, entry_price, exit_price, pnl,
       pnl / nullif(entry_value, 0) AS return_pct, fees, fills, open,
       slippage_signal_quote, slippage_signal_quote / nullif(signal_notional, 0) * 1e4 AS slippage_signal_bps,
       slippage_arrival_quote, slippage_arrival_quote / nullif(arrival_notional, 0) * 1e4 AS slippage_arrival_bps
FROM g
"""

_FEES = """
WITH {units}
SELECT session_id, any_value(mode) AS mode, coalesce(fee_currency, '') AS fee_currency,
       CASE WHEN is_maker THEN 'maker' ELSE 'taker' END AS liquidity,
       count(*) AS fills, sum(CAST(fee AS DOUBLE)) AS fee, sum(fee_quote) AS fee_quote,
       sum(CAST(cost AS DOUBLE)) AS turnover, sum(fee_quote) / nullif(sum(CAST(cost AS DOUBLE)), 0) * 1e4 AS fee_bps,
       bool_or(fee_unconverted) AS unconverted
FROM u
GROUP BY session_id, fee_currency, liquidity
"""

# Orders the session refused before the venue (invalid, risk checks, kill switch) or the venue refused,
# and rebalances it dropped as too small to be an order (below a lot step, the minimum quantity or notional).
_REFUSALS_SQL = """
SELECT session_id, any_value(mode) AS mode,
       CASE kind WHEN 'order.invalid' THEN 'invalid order' WHEN 'risk.rejected' THEN 'risk check or filter'
                 WHEN 'order.dropped' THEN 'too small to trade' ELSE 'venue' END AS stage,
       CASE WHEN kind = 'order.dropped' THEN 'dropped' WHEN detail->>'rule' IN ({not_sent}) THEN 'not sent'
            ELSE 'refused' END AS outcome,
       coalesce(detail->>'symbol', '') AS symbol,
       coalesce(detail->>'rule', '') AS reason, count(*) AS orders, min(ts) AS first, max(ts) AS last,
       any_value(detail->>'error') AS example
FROM audit_log
WHERE kind IN ('order.invalid', 'risk.rejected', 'order.rejected', 'order.dropped') {and_where}
GROUP BY session_id, stage, outcome, symbol, reason
"""


@cache
def _dust() -> str:
    """Per symbol, the notional below which a position is dust (cannot be sold: Binance's minimum
    notional), so a trade ends when only dust is left (a fee paid in the base asset leaves some)."""
    from workbench.data import load_rules

    rows = ", ".join(
        f"({_literal(s)}, {float((r.filter('NOTIONAL') or r.filter('MIN_NOTIONAL') or {}).get('minNotional', 0))!r})"
        for s, r in load_rules().items()
    )
    return f"dust(symbol, notional) AS (VALUES {rows})"


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
        "trades": _TRADES.format(fills_pnl=fills_pnl, where=where, dust=_dust()),
        "fees": _FEES.format(units=units),
        "refusals": _REFUSALS_SQL.format(
            not_sent=", ".join(map(_literal, NOT_SENT_RULES)), and_where=where.replace("WHERE", "AND", 1)
        ),
    }
    if kind == "metrics":  # the equity and the round trips from one evaluation of the per-fill PnL
        shared = {
            "equity": _EQUITY.format(fills_pnl="FROM fp"),
            "round_trips": _ROUND_TRIPS.format(fills_pnl="FROM fp"),
        }
        return _METRICS.format(where=where, **(parts | shared))
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
    "analysis_trades": "trades",
    "analysis_fees": "fees",
    "analysis_refusals": "refusals",
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
    con = source if isinstance(source, duckdb.DuckDBPyConnection) else connect(source, read_only=False)
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        if con is not source:
            con.close()
    return list(VIEWS)


# -- reading --------------------------------------------------------------------------------------

Reader = Callable[[str], pd.DataFrame]


@contextmanager
def _reader(source: Source) -> Iterator[Reader]:
    """A function running one query on ``source`` and returning a DataFrame."""
    if isinstance(source, Store):
        source.flush()
        yield lambda sql: source.query(sql)
    elif isinstance(source, duckdb.DuckDBPyConnection):
        yield lambda sql: source.execute(sql).df()
    else:
        con = connect(source, read_only=True)
        try:
            yield lambda sql: con.execute(sql).df()
        finally:
            con.close()


def _resolve(read: Reader, sessions: Sessions, sweep_id: str | None) -> list[str] | None:
    """The session ids asked for, checked against the sessions table (``None``: every session)."""
    return resolve(lambda sql: list(read(sql).itertuples(index=False, name=None)), sessions, sweep_id)


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
    with _reader(source) as read:
        ids = _resolve(read, sessions, sweep_id)
        where = _where("session_id", ids)
        groups = read(_FIFO_GROUPS.format(where=where))
        frame = _fifo(groups, read(_FIFO_FILLS.format(where=where))) if len(groups) else None
        if frame is None:  # no fill, or units finer than 1e-8: the same figures from the SQL, in DECIMAL
            frame = _tidy(read(f"SELECT * FROM ({_sql('pnl', ids)}) ORDER BY session_id, symbol"))
    frame["mark_price"] = _marks(frame, mark)
    frame["unrealised_pnl"] = frame["mark_price"] * frame["position"] - frame["open_cost"]
    frame["total_pnl"] = frame["realised_pnl"] + frame["unrealised_pnl"]
    frame["avg_open_price"] = (frame["open_cost"] / frame["position"]).where(frame["position"].abs() > 1e-12)
    return frame


def _fifo(groups: pd.DataFrame, fills: pd.DataFrame) -> pd.DataFrame | None:
    """The columns of the ``pnl`` SQL from :data:`_FIFO_GROUPS` and :data:`_FIFO_FILLS` (None if a
    fill's units are not whole multiples of 1e-8). The k-th unit bought is matched with the k-th unit
    sold, so the FIFO value of the ``matched`` units on each side is each lot's share of them (in
    integer units, a lot is taken exactly), summed per session and symbol."""
    amount, fee = fills["amount"].to_numpy(), fills["fee"].to_numpy()
    base_fee = fills["base_fee"].to_numpy(dtype=bool)
    if not fills["whole"].all() or max(np.abs(amount).max(), np.abs(fee[base_fee]).max(initial=0)) >= _EXACT_UNITS:
        return None
    counts = groups["fills"].to_numpy(dtype=np.int64)
    first = np.cumsum(counts) - counts
    group = np.repeat(np.arange(len(counts)), counts)
    buy, quote_fee = fills["buy"].to_numpy(dtype=bool), fills["quote_fee"].to_numpy(dtype=bool)
    price, cost = fills["price"].to_numpy(), fills["cost"].to_numpy()
    whole = np.rint(amount * UNITS_PER_ONE).astype(np.int64)
    whole_fee = np.where(base_fee, np.rint(fee * UNITS_PER_ONE).astype(np.int64), 0)
    units = np.where(buy, whole - whole_fee, whole + whole_fee)  # a fee in the base asset changes the units held
    value = np.where(buy, cost + np.where(quote_fee, fee, 0.0), cost - np.where(quote_fee, fee, 0.0))
    unit_value = np.divide(value, units / UNITS_PER_ONE, out=np.zeros(len(units)), where=units > 0)
    sides = [np.where(side, units, 0) for side in (buy, ~buy)]
    bought, sold = (np.add.reduceat(u, first) for u in sides)
    matched = np.minimum(bought, sold)
    shares = []
    for u in sides:
        # a lot starts after the units before it in its session; the running sum may wrap past 2**63
        # over many sessions, and its difference from the session's start stays right
        before = np.cumsum(u) - u
        taken = np.clip(matched[group] - (before - before[first][group]), 0, u)
        shares.append(np.add.reduceat(unit_value * (taken / UNITS_PER_ONE), first))
    matched_cost, matched_proceeds = shares
    paid, received = (np.add.reduceat(np.where(side, value, 0.0), first) for side in (buy, ~buy))
    position = (bought - sold) / UNITS_PER_ONE
    mark = price[first + counts - 1]
    open_cost = (paid - matched_cost) - (received - matched_proceeds)
    frame = groups[["session_id", "mode", "symbol", "fills"]].assign(
        turnover=np.add.reduceat(cost, first),
        fees=np.add.reduceat(np.where(quote_fee, fee, 0.0) + np.where(base_fee, fee, 0.0) * price, first),
        fees_unconverted=np.add.reduceat(fills["unconverted"].to_numpy(dtype=np.int64), first),
        position=position,
        bought=bought / UNITS_PER_ONE,
        sold=sold / UNITS_PER_ONE,
        open_cost=open_cost,
        mark_price=mark,
        realised_pnl=matched_proceeds - matched_cost,
        unrealised_pnl=mark * position - open_cost,
        total_pnl=received - paid + mark * position,
        first_fill=groups["first_fill"],
        last_fill=groups["last_fill"],
    )
    return _tidy(frame)


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


# -- what a trader reads: data, bars, trades, fees, refusals, performance -------------------------

# 1m bars trade around the clock: 365 days of 1,440 bars.
BARS_PER_YEAR = 365 * 24 * 60
# Refusals that never reached the venue because trading was stopped, not because the order was wrong.
NOT_SENT_RULES = ("kill_switch", "ban", "banned", "halted")


def data_source(source: Source, session_id: str) -> pd.DataFrame:
    """Where the bars a session traded came from, one row per symbol: ``source`` (as the loader or
    the venue labelled them), ``first`` and ``last`` bar open time, ``bars``, and ``synthetic``
    (True for the seeded sample, which is not market data). Read from what the session recorded:
    the historical data it was given (``session.data``) or the bars it saw live (``market.bar``)."""
    with _reader(source) as read:
        _resolve(read, session_id, None)
        sid = _literal(session_id)
        recorded = read(f"SELECT detail FROM audit_log WHERE session_id = {sid} AND kind = 'session.data' ORDER BY seq")
        live = read(
            f"""SELECT detail->>'symbol' AS symbol, count(*) AS bars,
                       min(CAST(detail->>'open_time' AS BIGINT)) AS first,
                       max(CAST(detail->>'open_time' AS BIGINT)) AS last
                FROM audit_log WHERE session_id = {sid} AND kind = 'market.bar' GROUP BY 1 ORDER BY 1"""
        )
        venue = read(f"SELECT venue, symbols FROM sessions WHERE session_id = {sid}")
    rows: dict[str, dict[str, Any]] = {}
    for detail in recorded["detail"]:
        for symbol, d in json.loads(detail).get("symbols", {}).items():
            rows[symbol] = {**rows.get(symbol, {}), **{k: v for k, v in d.items() if v not in (None, "")}}
    where = str(venue["venue"].iloc[0] or "the venue")
    for r in live.itertuples():
        row = rows.setdefault(r.symbol, {})
        row.setdefault("source", f"bars streamed by {where} (source not recorded)")
        row.update(first=pd.Timestamp(r.first, unit="ms", tz="UTC"), last=pd.Timestamp(r.last, unit="ms", tz="UTC"))
        row["bars"] = int(r.bars)
    for symbol in venue["symbols"].iloc[0] if len(venue) else []:
        rows.setdefault(symbol, {"source": "not recorded (the session predates data recording)", "bars": 0})
    frame = pd.DataFrame([{"symbol": s, **d} for s, d in sorted(rows.items())])
    for column in ("first", "last"):
        frame[column] = pd.to_datetime(frame.get(column), utc=True)
    frame["bars"] = frame.get("bars", 0).fillna(0).astype(int)
    frame["synthetic"] = frame["source"].str.contains("SYNTHETIC", case=False, na=False)
    return frame[["symbol", "source", "first", "last", "bars", "synthetic"]]


def session_bars(source: Source, session_id: str) -> dict[str, pd.DataFrame]:
    """The bars a session saw, per symbol (indexed by open time, with ``close_time``: when the bar was
    known closed, its signal time, see :meth:`TradingSession.on_bar`): the live bars it recorded,
    else its historical data reloaded from the same source. ``{}`` if neither can be had (the source
    is gone, or the session recorded no data)."""
    with _reader(source) as read:
        _resolve(read, session_id, None)
        live = read(
            f"""SELECT detail->>'symbol' AS symbol, CAST(detail->>'open_time' AS BIGINT) AS open_time,
                       CAST(coalesce(detail->>'signal_time', detail->>'close_time') AS BIGINT) AS close_time,
                       CAST(detail->>'open' AS DOUBLE) AS open, CAST(detail->>'high' AS DOUBLE) AS high,
                       CAST(detail->>'low' AS DOUBLE) AS low, CAST(detail->>'close' AS DOUBLE) AS close,
                       CAST(detail->>'volume' AS DOUBLE) AS volume
                FROM audit_log WHERE session_id = {_literal(session_id)} AND kind = 'market.bar' ORDER BY seq"""
        )
    if len(live):
        bars = {}
        for symbol, part in live.groupby("symbol", sort=True):
            frame = part.drop(columns="symbol").drop_duplicates("open_time", keep="last")
            frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms", utc=True).rename("open_time")
            frame["close_time"] = pd.to_datetime(frame["close_time"], unit="ms", utc=True)
            bars[str(symbol)] = frame.sort_index()
        return bars
    from workbench.data import load_klines

    bars = {}
    for row in data_source(source, session_id).itertuples():
        if not row.bars or pd.isna(row.first):
            continue
        frame = load_klines(row.symbol, start=row.first, end=row.last, allow_sample=True)
        if frame.attrs.get("source") == row.source and len(frame) == row.bars:
            bars[row.symbol] = frame
    return bars


def trades(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """One row per trade (a position from flat back to flat, per symbol): direction, entry and exit
    time and average price, ``holding_ms``, units, FIFO ``pnl`` net of fees, ``return_pct`` (of the
    entry value), fees, and slippage against the signal and arrival prices in quote and bps
    (positive = worse). A trade still open at the end has ``open`` True and no exit."""
    return _query(source, "trades", sessions, sweep_id, "session_id, entry_time, symbol, trade")


def fees(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """Fees per session, asset paid in and liquidity (maker or taker): fills, the fee in its asset,
    in quote, the turnover and the fee in bps of it."""
    return _query(source, "fees", sessions, sweep_id, "session_id, fee_currency, liquidity")


def refusals(source: Source, sessions: Sessions = None, *, sweep_id: str | None = None) -> pd.DataFrame:
    """Orders that never traded because they were refused or dropped, per session, stage (invalid
    order, risk check or filter, venue, too small to trade), outcome (``refused``, ``dropped``, or
    ``not sent``: the kill switch or a ban), symbol and reason (the rule), with a count and an
    example message."""
    return _query(source, "refusals", sessions, sweep_id, "session_id, orders DESC, reason")


def ratios(returns: pd.Series, *, periods_per_year: float = BARS_PER_YEAR) -> dict[str, float]:
    """Return ratios of per-period simple ``returns`` (risk-free rate zero), as empyrical defines them:
    ``sharpe`` (mean / sample std, annualised by sqrt(periods)), ``sortino`` (annualised mean over
    the root mean square of the negative returns, annualised), ``annual_return`` (compounded) and
    ``calmar`` (annual return over the largest drawdown of the compounded value)."""
    r = pd.Series(returns, dtype=float).dropna()
    if r.empty:
        return {"sharpe": np.nan, "sortino": np.nan, "annual_return": np.nan, "calmar": np.nan}
    std = r.std(ddof=1)
    downside = float(np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(periods_per_year))
    growth = float((1 + r).prod())
    with np.errstate(over="ignore"):  # a few bars' gain, compounded over a year, may exceed a double: inf
        annual = float(np.power(growth, periods_per_year / len(r))) - 1 if growth > 0 else -1.0
    value = (1 + r).cumprod()
    worst = float((value / value.cummax() - 1).min())
    return {
        "sharpe": float(r.mean() / std * np.sqrt(periods_per_year)) if std > 0 else np.nan,
        "sortino": float(r.mean() * periods_per_year / downside) if downside > 0 else np.nan,
        "annual_return": annual,
        "calmar": annual / -worst if worst < 0 else np.nan,
    }


def bar_equity(
    source: Source,
    session_id: str,
    *,
    bars: Mapping[str, pd.DataFrame] | None = None,
    capital: float | None = None,
) -> pd.DataFrame:
    """The session's value at each bar close it saw (all symbols marked at their close), beside
    buy-and-hold of the same symbols (the capital split equally, bought at the first close).

    A fill counts from the bar whose close signalled its order (its ``signal_time``; the fill
    time for an order without one), so that venue and market clocks need not agree. Columns:
    ``value`` and ``buy_hold`` (quote), ``equity`` (value - capital), ``exposure`` (gross position
    value / value), ``in_market``, ``returns`` and ``buy_hold_returns`` (per bar); the starting
    capital is in ``attrs["capital"]``. Empty if no bars are known."""
    bars = session_bars(source, session_id) if bars is None else dict(bars)
    fills = market_fills(source, session_id)
    if capital is None:
        known = starting_capital(source, session_id)
        capital = float(known.get(session_id, np.nan))
    if not bars:
        return pd.DataFrame(columns=["value", "buy_hold", "equity", "exposure", "in_market", "returns"])
    capital = capital if np.isfinite(capital) else float(fills["cost"].max()) if len(fills) else 1.0
    closes = pd.concat({s: _closes(f) for s, f in bars.items()}, axis=1).sort_index().ffill()
    cash = pd.Series(0.0, index=closes.index)
    gross = pd.Series(0.0, index=closes.index)
    held = pd.Series(False, index=closes.index)
    for symbol in closes.columns:
        base, quote = symbol.split("/")
        f = fills[fills["symbol"] == symbol]
        buy = (f["side"] == "buy").to_numpy()
        base_fee = np.where(f["fee_currency"] == base, f["fee"], 0.0)
        quote_fee = np.where(f["fee_currency"] == quote, f["fee"], 0.0)
        units = np.where(buy, f["amount"] - base_fee, -(f["amount"] + base_fee))
        flow = np.where(buy, -(f["cost"] + quote_fee), f["cost"] - quote_fee)
        at = np.searchsorted(closes.index.to_numpy(), f["effect_ms"].to_numpy(), side="left")
        step = pd.DataFrame({"units": units, "flow": flow}).groupby(np.minimum(at, len(closes) - 1)).sum()
        position = pd.Series(0.0, index=range(len(closes))).add(step["units"], fill_value=0).cumsum().to_numpy()
        cash += pd.Series(0.0, index=range(len(closes))).add(step["flow"], fill_value=0).cumsum().to_numpy()
        marked = position * closes[symbol].to_numpy()
        cash += marked
        gross += np.abs(marked)
        held |= np.abs(position) > 1e-12
    frame = pd.DataFrame({"equity": cash.to_numpy()}, index=pd.to_datetime(closes.index, unit="ms", utc=True))
    frame.index.name = "close_time"
    frame["value"] = capital + frame["equity"]
    first = closes.bfill().iloc[0]
    frame["buy_hold"] = (capital / len(closes.columns) * closes.div(first)).sum(axis=1).to_numpy()
    frame["exposure"] = gross.to_numpy() / frame["value"]
    frame["in_market"] = held.to_numpy()
    frame["returns"] = frame["value"] / frame["value"].shift().fillna(capital) - 1
    frame["buy_hold_returns"] = frame["buy_hold"] / frame["buy_hold"].shift().fillna(capital) - 1
    frame.attrs["capital"] = capital
    return frame[["value", "buy_hold", "equity", "exposure", "in_market", "returns", "buy_hold_returns"]]


def market_fills(source: Source, session_id: str) -> pd.DataFrame:
    """A session's fills on the market's time axis: ``effect_ms`` (and ``at``) is the close of the bar
    that signalled the fill's order, or the fill's own time for an order without a signal, so that a
    venue's clock need not agree with the market's. Also symbol, side, price, amount, cost, fee."""
    with _reader(source) as read:
        _resolve(read, session_id, None)
        frame = read(
            f"""SELECT f.symbol, f.side, CAST(f.price AS DOUBLE) AS price, CAST(f.amount AS DOUBLE) AS amount,
                       CAST(f.cost AS DOUBLE) AS cost, CAST(coalesce(f.fee, 0) AS DOUBLE) AS fee, f.fee_currency,
                       epoch_ms(coalesce(o.signal_time, f."timestamp")) AS effect_ms
                FROM fills f LEFT JOIN orders o USING (session_id, client_order_id)
                WHERE f.session_id = {_literal(session_id)} ORDER BY effect_ms, f."timestamp", f.trade_id"""
        )
    frame["at"] = pd.to_datetime(frame["effect_ms"], unit="ms", utc=True)
    return frame


def _closes(bars: pd.DataFrame) -> pd.Series:
    """The bars' closes by the millisecond each was known closed; of bars known in the same millisecond
    (a replay streams them faster than the clock ticks), the last."""
    closes = bars.set_index(_close_ms(bars))["close"]
    return closes[~closes.index.duplicated(keep="last")]


def _close_ms(bars: pd.DataFrame) -> np.ndarray:
    if "close_time" in bars:
        return pd.to_datetime(bars["close_time"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    return bars.index.as_unit("ms").astype("int64").to_numpy() + 60_000 - 1


def performance(
    source: Source,
    session_id: str,
    *,
    bars: Mapping[str, pd.DataFrame] | None = None,
    capital: float | None = None,
    periods_per_year: float = BARS_PER_YEAR,
    curve: pd.DataFrame | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> pd.Series:
    """What a trader asks of a session, from :func:`bar_equity`: capital, final value, return and
    buy-and-hold return (fractions), :func:`ratios` of the per-bar returns (annualised with
    ``periods_per_year``, 1m bars around the clock by default), the largest drawdown as a fraction
    and in quote with its peak, trough and recovery times (recovery NaT if it never recovered),
    time in market (share of bars with a position) and average exposure (gross position value /
    value); gross and net PnL (net of the fees in quote). ``curve`` (its :func:`bar_equity`) and
    ``metrics`` (its row of :func:`session_metrics`) save computing them again."""
    curve = bar_equity(source, session_id, bars=bars, capital=capital) if curve is None else curve
    metrics = session_metrics(source, session_id).iloc[0] if metrics is None else metrics
    row: dict[str, Any] = {"session_id": session_id, "bars": len(curve)}
    row["net_pnl"] = float(metrics["total_pnl"])
    row["fees"] = float(metrics["fees"])
    row["gross_pnl"] = row["net_pnl"] + row["fees"]
    if curve.empty:
        return pd.Series(row)
    capital = float(curve.attrs["capital"])
    value = pd.concat([pd.Series([capital], index=[curve.index[0] - pd.Timedelta(minutes=1)]), curve["value"]])
    peak = value.cummax()
    dd = value / peak - 1
    trough = dd.idxmin()
    peak_at = value.loc[:trough].idxmax()
    recovered = value.loc[trough:][value.loc[trough:] >= value.loc[peak_at]]
    row.update(
        capital=capital,
        final_value=float(curve["value"].iloc[-1]),
        total_return=float(curve["value"].iloc[-1] / capital - 1),
        buy_hold_return=float(curve["buy_hold"].iloc[-1] / capital - 1),
        **ratios(curve["returns"], periods_per_year=periods_per_year),
        max_drawdown_pct=float(dd.min()),
        max_drawdown_quote=float((value - peak).min()),
        drawdown_peak=peak_at,
        drawdown_trough=trough,
        drawdown_recovery=recovered.index[0] if len(recovered) and dd.min() < 0 else pd.NaT,
        time_in_market=float(curve["in_market"].mean()),
        exposure=float(curve["exposure"].mean()),
        start=curve.index[0],
        end=curve.index[-1],
    )
    return pd.Series(row)


def open_positions(source: Source, session_id: str, *, bars: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The positions a session held at its end: units, average open price, the mark (the last bar's
    close when the bars are known, else the last fill price) and the unrealised PnL there."""
    bars = session_bars(source, session_id) if bars is None else bars
    marks = {s: float(f["close"].iloc[-1]) for s, f in bars.items() if len(f)}
    frame = fifo_pnl(source, session_id, mark=marks or None)
    frame = frame[frame["position"].abs() > 1e-12]
    frame = frame.assign(mark_source=frame["symbol"].map(lambda s: "last bar close" if s in marks else "last fill"))
    return frame[["symbol", "position", "avg_open_price", "mark_price", "mark_source", "unrealised_pnl"]].reset_index(
        drop=True
    )


SWEEP_COLUMNS = ("session_id", "status", "fills", "fees", "total_pnl", "return_pct", "max_drawdown")


def sweep_table(source: Source, sweep_id: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """A sweep's sessions, one row each, labelled by the parameters that vary: status, fills, fees,
    total PnL (quote), return and max drawdown. ``runs`` (what :func:`workbench.runs.sweep` returned)
    gives the rows instead, failed runs too, with the figures of those in the store beside them
    (its ``store_path`` and ``notebook`` columns left out: they run off a console)."""
    try:
        frame = compare_sessions(source, sweep_id=sweep_id)
    except UnknownSession:
        if runs is None:
            raise
        frame = pd.DataFrame(columns=list(SWEEP_COLUMNS))
    params = [c for c in frame.columns if c.startswith("param_")]
    varying = [c for c in params if frame[c].astype(str).nunique() > 1] or params
    table = frame[["session_id", *varying, *SWEEP_COLUMNS[1:]]]
    table = table.rename(columns={c: c.removeprefix("param_") for c in varying})
    if runs is None:
        return table.reset_index(drop=True)
    shown = runs.drop(columns=["store_path", "notebook"], errors="ignore")
    return shown.merge(
        table.drop(columns=[c for c in table if c in shown and c != "session_id"]), on="session_id", how="left"
    )
