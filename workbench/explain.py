"""Why did live differ from the backtest? A session's result against a replay of the bars it saw
(or against another session: its paper shadow, another run of a sweep), split into causes that add
up to the difference.

Both results are marked at the same prices (the last close the session saw, else its last fill
price), so each order's part of the PnL is ``sign * (units * mark - cost) - fees``, fees valued at
the mark, and a session's PnL is the sum over its orders. Orders are paired by symbol, side and the
bar that signalled them (and their rank among that bar's orders); each pair's difference splits
exactly into:

* **signals**: an order one side placed and the other did not (data, warm-up or strategy
  differences), and the part of a price difference due to different signal prices (different data);
* **refused**: the reference's order that the session tried and a filter, risk check or the venue
  refused; **not sent**: one it did not send because of the kill switch or a ban;
* **missed or partial fills**: units filled more or less than the reference, valued at the reference's
  price;
* **slippage**: the session's fill price against its arrival price, beside the reference's;
* **fees**; **timing**: the market moving between the signal and the order leaving (the arrival
  price against the signal price), beside the reference's.

Each price splits as signal price + (arrival - signal) + (fill - arrival); the pair's price
difference is the difference of each part, times the session's units.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import analysis
from workbench.analysis import NOT_SENT_RULES, AnalysisError, Source, _literal, _reader, _resolve

CAUSES = ("signals", "refused", "not sent", "missed or partial fills", "slippage", "fees", "timing")
_DETAIL = {
    "signals": "orders only one side placed, or placed at different signal prices",
    "refused": "orders a filter, risk check or the venue refused",
    "not sent": "orders stopped by the kill switch or a ban",
    "missed or partial fills": "units filled more or less than the reference",
    "slippage": "fill price against the reference's fill price",
    "fees": "fees paid against the reference's",
    "timing": "the market moving between the signal and the order leaving",
}


class ExplainError(AnalysisError):
    """The session cannot be explained: it recorded no bars, or its strategy cannot be rebuilt."""


@dataclass
class Explanation:
    """A session's PnL against a reference's, split into causes. ``lines`` has one row per cause
    (``cause``, ``orders`` involved, ``quote``, ``detail``) summing to ``difference``; ``pairs`` has
    one row per pair of orders with its part of each cause; ``first_divergence`` is the first bar
    where the two placed different orders (NaT if none)."""

    session_id: str
    reference_id: str
    reference: str
    pnl: float
    reference_pnl: float
    marks: dict[str, float]
    lines: pd.DataFrame
    pairs: pd.DataFrame
    first_divergence: pd.Timestamp | None

    @property
    def difference(self) -> float:
        return self.pnl - self.reference_pnl

    def sentence(self) -> str:
        """One paragraph a trader reads."""
        big = self.lines.loc[self.lines["quote"].abs().idxmax()] if len(self.lines) else None
        where = (
            f" They first diverge at the bar closing {self.first_divergence:%Y-%m-%d %H:%M} UTC."
            if self.first_divergence is not None and not pd.isna(self.first_divergence)
            else " They place the same orders on the same bars."
        )
        most = (
            f" The largest part is {big['cause']} ({big['quote']:,.4f})."
            if big is not None and abs(big["quote"]) > 0
            else ""
        )
        return (
            f"Session `{self.session_id}` made {self.pnl:,.4f} (quote, marked at the last close); "
            f"{self.reference} `{self.reference_id}` made {self.reference_pnl:,.4f}: a difference of "
            f"{self.difference:,.4f}.{most}{where}"
        )


def legs(source: Source, session_id: str, marks: Mapping[str, float]) -> pd.DataFrame:
    """One row per order of ``session_id`` (orders without fills too): its signal bar, prices, the
    units filled, average fill price and ``value`` (its part of the PnL at ``marks``)."""
    with _reader(source) as read:
        frame = read(
            f"""
            WITH f AS (
                SELECT client_order_id, any_value(symbol) AS symbol, any_value(side) AS side,
                       sum(CAST(amount AS DOUBLE)) AS filled, sum(CAST(cost AS DOUBLE)) AS cost,
                       sum(CASE WHEN fee_currency = split_part(symbol, '/', 2) THEN CAST(fee AS DOUBLE) ELSE 0 END)
                           AS quote_fee,
                       sum(CASE WHEN fee_currency = split_part(symbol, '/', 1) THEN CAST(fee AS DOUBLE) ELSE 0 END)
                           AS base_fee,
                       min("timestamp") AS first_fill
                FROM fills WHERE session_id = {_literal(session_id)} GROUP BY client_order_id
            ), o AS (
                SELECT client_order_id, symbol, side, status, CAST(signal_price AS DOUBLE) AS signal_price,
                       CAST(arrival_price AS DOUBLE) AS arrival_price, signal_time, created_at
                FROM orders WHERE session_id = {_literal(session_id)}
            )
            SELECT client_order_id, coalesce(o.symbol, f.symbol) AS symbol, coalesce(o.side, f.side) AS side,
                   o.status, o.signal_price, o.arrival_price,
                   coalesce(o.signal_time, o.created_at, f.first_fill) AS signal_time, o.created_at,
                   coalesce(f.filled, 0) AS filled, coalesce(f.cost, 0) AS cost,
                   coalesce(f.quote_fee, 0) AS quote_fee, coalesce(f.base_fee, 0) AS base_fee
            FROM o FULL OUTER JOIN f USING (client_order_id)
            ORDER BY signal_time, created_at, client_order_id
            """
        )
    frame["sign"] = np.where(frame["side"] == "buy", 1.0, -1.0)
    mark = frame["symbol"].map(dict(marks)).astype(float)
    frame["fees"] = frame["quote_fee"] + frame["base_fee"] * mark
    frame["price"] = (frame["cost"] / frame["filled"]).where(frame["filled"] > 0)
    frame["value"] = frame["sign"] * (frame["filled"] * mark - frame["cost"]) - frame["fees"]
    frame["mark"] = mark
    frame["k"] = frame.groupby(["symbol", "side", "signal_time"]).cumcount()
    return frame


def _refused(source: Source, session_id: str) -> pd.DataFrame:
    """The session's refused orders with the bar that signalled them: symbol, side, signal_time, rule."""
    with _reader(source) as read:
        frame = read(
            f"""SELECT detail->>'symbol' AS symbol, detail->>'side' AS side, coalesce(detail->>'rule', '') AS rule,
                       to_timestamp(CAST(detail->>'signal_time' AS BIGINT) / 1000.0) AS signal_time
                FROM audit_log WHERE session_id = {_literal(session_id)}
                  AND kind IN ('order.invalid', 'risk.rejected', 'order.rejected')
                  AND detail->>'signal_time' IS NOT NULL ORDER BY seq"""
        )
    frame["signal_time"] = pd.to_datetime(frame["signal_time"], utc=True).dt.round("ms")
    frame["k"] = frame.groupby(["symbol", "side", "signal_time"]).cumcount()
    return frame


def compare(
    session: pd.DataFrame, reference: pd.DataFrame, refused: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """Pair the orders of two :func:`legs` frames and split each pair's difference into
    :data:`CAUSES` (one column each, in quote). ``refused`` (the session's refused orders) tells a
    refusal from a signal the session never had. Returns the pairs and the first bar where the two
    sides placed different orders."""
    key = ["symbol", "side", "signal_time", "k"]
    for frame in (session, reference):
        frame["signal_time"] = pd.to_datetime(frame["signal_time"], utc=True).dt.round("ms")
    pairs = session.merge(reference, on=key, how="outer", suffixes=("", "_ref"), indicator=True)
    both = (pairs["_merge"] == "both").to_numpy()
    only_session = (pairs["_merge"] == "left_only").to_numpy()
    only_reference = (pairs["_merge"] == "right_only").to_numpy()
    sign = np.where(pairs["side"] == "buy", 1.0, -1.0)
    value = pairs["value"].fillna(0).to_numpy()
    value_ref = pairs["value_ref"].fillna(0).to_numpy()
    q, q_ref = pairs["filled"].fillna(0).to_numpy(), pairs["filled_ref"].fillna(0).to_numpy()
    signal = pairs["signal_price"].to_numpy(dtype=float)
    signal_ref = pairs["signal_price_ref"].fillna(pairs["signal_price"]).to_numpy(dtype=float)
    arrival = pairs["arrival_price"].fillna(pairs["signal_price"]).to_numpy(dtype=float)
    arrival_ref = pairs["arrival_price_ref"].fillna(pairs["signal_price_ref"]).to_numpy(dtype=float)
    arrival_ref = np.where(np.isnan(arrival_ref), signal_ref, arrival_ref)
    # the reference's price: its fill, else (nothing filled) its signal price
    price_ref = pairs["price_ref"].fillna(pairs["signal_price_ref"]).fillna(pairs["signal_price"]).to_numpy(dtype=float)
    price = pairs["price"].to_numpy(dtype=float)
    mark = pairs["mark"].fillna(pairs["mark_ref"]).to_numpy(dtype=float)
    filled_part = np.where(both, sign * (q - q_ref) * (mark - price_ref), 0.0)
    traded = both & (q > 0)
    data_part = np.where(traded, sign * q * (signal_ref - signal), 0.0)
    # each price is its signal price, plus the market's move until the order left (timing), plus
    # the fill's distance from that (slippage): the two sides differ in each part
    timing = np.where(traded, sign * q * ((arrival_ref - signal_ref) - (arrival - signal)), 0.0)
    slippage = np.where(traded, sign * q * (price_ref - price), 0.0) - data_part - timing
    fees = np.where(both, -(pairs["fees"].fillna(0) - pairs["fees_ref"].fillna(0)).to_numpy(), 0.0)
    # each side's orders alone: signals, unless the session tried the order and it was refused
    outcome = np.full(len(pairs), "signals", dtype=object)
    if refused is not None and len(refused) and only_reference.any():
        rules = pairs[key].merge(refused, on=key, how="left")["rule"].to_numpy()
        tried = only_reference & pd.notna(rules)
        outcome[tried] = np.where(np.isin(rules[tried], NOT_SENT_RULES), "not sent", "refused")
    alone = np.where(only_session, value, 0.0) - np.where(only_reference, value_ref, 0.0)
    parts = {
        "signals": np.where(outcome == "signals", alone, 0.0) + data_part,
        "refused": np.where(outcome == "refused", alone, 0.0),
        "not sent": np.where(outcome == "not sent", alone, 0.0),
        "missed or partial fills": filled_part,
        "slippage": slippage,
        "fees": fees,
        "timing": timing,
    }
    out = pairs[[*key, "client_order_id", "client_order_id_ref"]].copy()
    out["pairing"] = np.where(both, "both", np.where(only_session, "session only", "reference only"))
    out["cause_alone"] = np.where(both, "", outcome)
    out["value"], out["value_ref"] = value, value_ref
    for cause, values in parts.items():
        out[cause] = values
    out = out.sort_values(["signal_time", "symbol", "k"], kind="stable").reset_index(drop=True)
    differs = out[(out["pairing"] != "both") | (out["signals"].abs() > 0)]
    first = differs["signal_time"].min() if len(differs) else None
    return out, first


def lines(pairs: pd.DataFrame) -> pd.DataFrame:
    """The causes' totals: ``cause``, ``orders`` with a part in it (above 1e-9 quote), ``quote``, ``detail``."""
    rows = [
        {
            "cause": cause,
            "orders": int((pairs[cause].abs() > 1e-9).sum()),
            "quote": float(pairs[cause].sum()),
            "detail": _DETAIL[cause],
        }
        for cause in CAUSES
    ]
    return pd.DataFrame(rows)


def marks(source: Source, session_id: str, bars: Mapping[str, pd.DataFrame] | None = None) -> dict[str, float]:
    """The prices both results are marked at: the last close the session saw, else its last fill."""
    bars = analysis.session_bars(source, session_id) if bars is None else bars
    found = {s: float(f["close"].iloc[-1]) for s, f in bars.items() if len(f)}
    pnl = analysis.fifo_pnl(source, session_id)
    return {**dict(zip(pnl["symbol"], pnl["mark_price"].astype(float), strict=True)), **found}


def attribute(
    source: Source,
    session_id: str,
    reference_id: str,
    *,
    reference_source: Source | None = None,
    reference: str = "session",
    marks_at: Mapping[str, float] | None = None,
) -> Explanation:
    """``session_id``'s PnL against ``reference_id``'s (in ``reference_source``, by default the
    same store), both marked at :func:`marks` of the session, split into :data:`CAUSES`."""
    with _reader(source) as read:
        _resolve(read, session_id, None)
    at = dict(marks_at) if marks_at is not None else marks(source, session_id)
    mine = legs(source, session_id, at)
    theirs = legs(reference_source if reference_source is not None else source, reference_id, at)
    pairs, first = compare(mine, theirs, _refused(source, session_id))
    return Explanation(
        session_id=session_id,
        reference_id=reference_id,
        reference=reference,
        pnl=float(mine["value"].sum()),
        reference_pnl=float(theirs["value"].sum()),
        marks=at,
        lines=lines(pairs),
        pairs=pairs,
        first_divergence=first,
    )


def strategy_of(source: Source, session_id: str) -> Any:
    """The session's strategy, rebuilt from the name and parameters it recorded."""
    from workbench.strategy import STRATEGIES

    with _reader(source) as read:
        row = read(f"SELECT strategy, params FROM sessions WHERE session_id = {_literal(session_id)}")
    params = analysis._params(row["params"].iloc[0]) if len(row) else {}
    name = params.pop("name", row["strategy"].iloc[0] if len(row) else "")
    factories = {getattr(f, "__name__", key): f for key, f in STRATEGIES.items()} | dict(STRATEGIES)
    known = {k: v for k, v in params.items() if k not in ("replay", "bars")}
    if name not in factories:
        raise ExplainError(f"Session {session_id!r} recorded no known strategy ({name!r}): it cannot be replayed.")
    return factories[name](**known)


def explain(
    source: Source,
    session_id: str,
    *,
    against: str | None = None,
    bars: Mapping[str, pd.DataFrame] | None = None,
) -> Explanation:
    """Why ``session_id``'s result differs from a replay of the bars it saw through the same strategy
    (paper fills, the default risk limits), or from the session ``against`` (its paper shadow,
    another run of a sweep). ``bars`` are the bars to replay when the session's own record of them
    is not wanted. Raises :class:`ExplainError` if it recorded no bars or no strategy."""
    if against is not None:
        return attribute(source, session_id, against)
    from workbench.replay import open_store, replay

    bars = analysis.session_bars(source, session_id) if bars is None else dict(bars)
    if not bars:
        raise ExplainError(
            f"Session {session_id!r} recorded no bars (sessions record them since this release): nothing to replay."
        )
    strategy = strategy_of(source, session_id)
    at = marks(source, session_id, bars)
    # the replay's store lives only for this call: in memory (tmpfs) when the system has one, no disk to wait for
    memory = Path("/dev/shm")
    folder = tempfile.mkdtemp(prefix="explain-", dir=memory if memory.is_dir() and os.access(memory, os.W_OK) else None)
    store = open_store(Path(folder) / "replay.duckdb")
    try:
        result = _run(replay(strategy, bars, store=store, session_id=f"explain-{session_id}"[:40]))
        store.flush()
        return attribute(
            source, session_id, result.session_id, reference_source=store, reference="its replay", marks_at=at
        )
    finally:
        store.close()
        shutil.rmtree(Path(store.path).parent, ignore_errors=True)


def _run(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end, also from a notebook whose event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
