"""Replay: run a strategy over historical bars with what the code that trades paper would do.

A replay is a paper :class:`~workbench.session.TradingSession` (the object that trades paper, testnet
and mainnet) with a :class:`~workbench.executors.PaperExecutor`, the shared risk checks and the DuckDB
store. For a plain-target strategy it takes the fast path (:mod:`workbench.fastreplay`): the orders,
fills, fees and balances the session would produce, computed in one pass over the bars where the
target changes and written to the store in bulk; for a bracket (market entries protected by an OCO)
:mod:`workbench.fastbracket`, trade by trade, handing the rest to the event path where it cannot be
exact. Otherwise (or when the fast path cannot be exact:
an order the filters, risk checks or balance would refuse, ...) it takes the event path: targets
computed once, vectorised, and the executor fed a price only on the bars where something can happen
(the target changes, an order is open, the data ends), every order through the session. Either way
its orders and fills land in the store's ``paper_orders`` and ``paper_fills`` like any paper
session's; the session is marked as a replay (venue ``"replay"``, ``params.replay = true``).

:func:`check_parity` compares a replay's signals, orders and fills with those of a session fed the same
bars one at a time (the live path);
:func:`check_lookahead` finds bars whose signal changes when later bars are removed.
"""

from __future__ import annotations

import gc
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from workbench import fastbracket
from workbench.config import RiskLimits, TradingMode
from workbench.data import load_klines, load_rules
from workbench.errors import ConfigError
from workbench.executors.paper import PaperExecutor
from workbench.fastreplay import IntentsAnswer, Unsupported, commit, simulate
from workbench.filters import SymbolRules
from workbench.intents import intent_frame
from workbench.matching import BookConfig, Fees
from workbench.session import TradingSession, _close_times, new_session_id, strategy_answers
from workbench.store import Store
from workbench.strategy import Strategy, describe, is_portfolio

PRICES = ("open", "high", "low", "close", "volume")
Bars = pd.DataFrame | Mapping[str, pd.DataFrame] | str | Path | duckdb.DuckDBPyConnection | None


# -- bars -------------------------------------------------------------------------------------


def load_bars(
    source: Bars = None,
    symbol: str = "BTC/USDT",
    interval: str = "1m",
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Bars of ``symbol`` as a DataFrame indexed by UTC open time with ``open``...``volume`` floats.

    ``source`` is ``None`` (the bundled klines), a DataFrame, a DuckDB connection or file holding a
    ``klines`` table (as :func:`~workbench.data.klines_to_duckdb` and :func:`~workbench.loader.fetch_klines`
    write it), or a Parquet or CSV file (Binance's kline layout, or any with ``open_time`` and prices).
    ``start``/``end`` bound the open time (inclusive), ``limit`` keeps the first rows. Raises
    :class:`~workbench.errors.ConfigError` if there are no such bars or a price column is missing.
    """
    if source is None:
        return load_klines(symbol, interval, start=start, end=end, limit=limit)
    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, duckdb.DuckDBPyConnection):
        frame = _from_duckdb(source, symbol, interval)
    else:
        frame = _from_file(Path(source), symbol, interval)
    frame = _normalise(frame, symbol, interval)
    if start is not None:
        frame = frame[frame.index >= _utc(start)]
    if end is not None:
        frame = frame[frame.index <= _utc(end)]
    frame = frame.head(limit) if limit is not None else frame
    if frame.empty:
        raise ConfigError(f"No {interval} bars of {symbol} in {_name(source)} between {start} and {end}.")
    return frame


def _from_file(path: Path, symbol: str, interval: str) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".duckdb", ".db")):
        con = duckdb.connect(str(path), read_only=True)
        try:
            return _from_duckdb(con, symbol, interval)
        finally:
            con.close()
    if name.endswith(".parquet"):
        return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path)
    raise ConfigError(f"Cannot read bars from {path}: use a .duckdb, .parquet, .csv or .csv.gz file.")


def _from_duckdb(con: duckdb.DuckDBPyConnection, symbol: str, interval: str) -> pd.DataFrame:
    cursor = con.cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    return cursor.execute(
        "SELECT * FROM klines WHERE symbol = ? AND interval = ? ORDER BY open_time", [symbol, interval]
    ).df()


def _normalise(frame: pd.DataFrame, symbol: str, interval: str) -> pd.DataFrame:
    """Rows of ``symbol`` (if the frame has a ``symbol`` column), indexed by UTC open time, sorted."""
    if "symbol" in frame:
        frame = frame[frame["symbol"].isin([symbol, symbol.replace("/", "")])]
    if "interval" in frame:
        frame = frame[frame["interval"] == interval]
    frame = frame.drop(columns=[c for c in ("symbol", "interval") if c in frame])
    if "open_time" in frame:
        frame = frame.set_index("open_time")
    missing = [c for c in PRICES if c not in frame]
    if missing:
        raise ConfigError(f"Bars need the columns {list(PRICES)}; missing {missing}.")
    frame = frame.copy()
    frame.index = _timestamps(frame.index).rename("open_time")
    if "close_time" in frame:
        frame["close_time"] = _timestamps(frame["close_time"])
    frame[list(PRICES)] = frame[list(PRICES)].astype(float)
    return frame.sort_index(kind="stable")


def _timestamps(values: Any) -> Any:
    """Milliseconds since the epoch, strings or datetimes, as UTC datetimes."""
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values, unit="ms", utc=True)
    return pd.to_datetime(values, utc=True)


def _utc(when: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp


def _name(source: Bars) -> str:
    return "the DataFrame" if isinstance(source, pd.DataFrame) else str(source)


def _frames(bars: Bars, symbol: str) -> dict[str, pd.DataFrame]:
    if isinstance(bars, Mapping):
        return {s: frame if _loaded(frame) else load_bars(frame, s) for s, frame in bars.items()}
    return {symbol: bars if isinstance(bars, pd.DataFrame) and _loaded(bars) else load_bars(bars, symbol)}


def _loaded(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` is as :func:`load_bars` returns it already (a sweep's frames are)."""
    index = frame.index
    return (
        isinstance(frame, pd.DataFrame)
        and isinstance(index, pd.DatetimeIndex)
        and index.name == "open_time"
        and str(index.tz) == "UTC"
        and not frame.empty
        and index.is_monotonic_increasing
        and not {"symbol", "interval"} & set(frame)
        and all(c in frame and frame[c].dtype == float for c in PRICES)
        and ("close_time" not in frame or isinstance(frame["close_time"].dtype, pd.DatetimeTZDtype))
    )


# -- replay -----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a replay did. ``orders`` and ``fills`` are the session's rows in the store; ``engine``
    is the path that ran it (``"fast"`` or ``"event"``), ``fallback`` why the fast path did not."""

    session: TradingSession
    bars: dict[str, pd.DataFrame] = field(repr=False)  # a repr of every bar is no use (and slow)
    summary: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    engine: str = "event"
    fallback: str | None = None
    _signals: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def store(self) -> Store:
        return self.session.store

    @property
    def bars_per_second(self) -> float:
        return sum(map(len, self.bars.values())) / self.seconds if self.seconds else float("inf")

    @property
    def orders(self) -> pd.DataFrame:
        return self.store.query(
            "SELECT * EXCLUDE (mode) FROM orders WHERE session_id = ? ORDER BY created_at, client_order_id",
            [self.session_id],
        )

    @property
    def fills(self) -> pd.DataFrame:
        return self.store.query(
            "SELECT * EXCLUDE (mode) FROM fills WHERE session_id = ? ORDER BY timestamp, trade_id::BIGINT",
            [self.session_id],
        )

    @property
    def signals(self) -> pd.DataFrame:
        """Per symbol and bar: the close and the strategy's target (what the replay traded towards)."""
        if self._signals is None:
            answers = strategy_answers(self.session.strategy, self.bars)  # type: ignore[arg-type]
            self._signals = pd.concat(
                pd.DataFrame({"symbol": s, "close": f["close"]}).join(intent_frame(answers[s], f.index))
                for s, f in self.bars.items()
            )
        return self._signals

    def pnl(self) -> float:
        """Realised plus unrealised PnL in quote, net of fees, summed over the symbols."""
        return float((self.summary["realised_pnl"] + self.summary["unrealised_pnl"]).sum())


def open_store(store: Store | str | Path | None) -> Store:
    """``store`` itself, or a replay store at that path (a fresh temporary file for ``None``)."""
    if isinstance(store, Store):
        return store
    path = Path(store) if store is not None else Path(tempfile.mkdtemp(prefix="replay-")) / "replay.duckdb"
    # Big batches: a replay writes thousands of rows a second and nothing is live to lose.
    return Store(path, batch_size=10_000)


async def replay(
    strategy: Strategy,
    bars: Bars = None,
    *,
    symbol: str = "BTC/USDT",
    store: Store | str | Path | None = None,
    balances: Mapping[str, Decimal | int | str] | None = None,
    risk: RiskLimits = RiskLimits(),
    fees: Fees = Fees(),
    book: BookConfig = BookConfig(),
    rules: Mapping[str, SymbolRules] | None = None,
    session_id: str | None = None,
    sweep_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    progress: bool = False,
    engine: Literal["auto", "fast", "event"] = "auto",
) -> ReplayResult:
    """Replay ``strategy`` over ``bars`` (see :func:`load_bars`; a mapping gives one frame per symbol)
    through a paper executor, the shared risk checks and ``store`` (a :class:`Store`, a path, or a
    temporary file). ``balances`` default to 10,000 of each symbol's quote asset. ``params`` are
    recorded with the session beside the strategy's. Orders the risk checks refuse are in the audit
    log and ``result.session.rejections``, as in a live session.

    ``engine="auto"`` replays on the fast path (:mod:`workbench.fastreplay`: the same orders, fills,
    fees and balances, written in bulk) when it is exact and on the event path (every order through
    the session, as live) otherwise, saying why in ``result.fallback``; ``"fast"`` raises
    :class:`~workbench.errors.ConfigError` instead of falling back, ``"event"`` always takes the event path."""
    if engine not in ("auto", "fast", "event"):
        raise ConfigError(f"engine={engine!r} is not one of 'auto', 'fast', 'event'.")
    if bars is None and is_portfolio(strategy):
        bars = {s: load_bars(None, s) for s in strategy.symbols}  # type: ignore[attr-defined]
    frames = _frames(bars, symbol)
    rules = dict(rules) if rules is not None else load_rules(frames)
    executor = PaperExecutor(rules, balances or {rules[s].quote: 10_000 for s in frames}, fees=fees, book=book)
    executor.venue = "replay"  # type: ignore[misc]
    target = open_store(store)
    session = TradingSession(
        executor,
        target,
        rules=rules,
        risk=risk,
        strategy=strategy,
        session_id=session_id or new_session_id("replay"),
        sweep_id=sweep_id,
    )
    # The replay's own record of the session goes first; the session's start() then finds it and
    # only sets it running, so its params keep the replay marker.
    target.start_session(
        session.session_id,
        TradingMode.PAPER,
        venue="replay",
        strategy=describe(strategy)["name"],
        params={
            **describe(strategy),
            **(params or {}),
            "replay": True,
            "bars": {s: [str(f.index[0]), str(f.index[-1]), len(f)] for s, f in frames.items()},
        },
        symbols=frames,
        sweep_id=sweep_id,
    )
    started = time.perf_counter()
    fallback = None
    if engine != "event":
        await session.start()
        try:
            if is_portfolio(strategy):
                raise Unsupported("a portfolio strategy's intents are replayed on the event path only")
            try:
                outcome = simulate(session, frames)
            except IntentsAnswer as intents:
                return await _replay_bracket(session, frames, intents.answer, started, progress)
        except Unsupported as e:
            if engine == "fast":
                raise ConfigError(
                    f"The fast path cannot replay this exactly: {e}; use engine='auto' or 'event'."
                ) from None
            fallback = str(e)
        else:
            commit(session, outcome)
            summary = await session.stop()
            return ReplayResult(session, frames, summary, time.perf_counter() - started, "fast")
    with _fewer_collections():
        summary = await session.run(frames, progress=progress, skip_idle=True)
    return ReplayResult(session, frames, summary, time.perf_counter() - started, "event", fallback)


@contextmanager
def _fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """The cyclic garbage collector run every ``threshold`` allocations, not 700: a replay builds
    orders, fills and events by the hundred thousand, none of them in a cycle, and each run of the
    collector would walk them all again (about 15% of an event-path replay)."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _replay_bracket(
    session: TradingSession, frames: dict[str, pd.DataFrame], answer: pd.DataFrame, started: float, progress: bool
) -> ReplayResult:
    """A bracket strategy on :mod:`workbench.fastbracket`'s fast path, the event path going on from
    where it hands over (:class:`Unsupported` if it cannot start)."""
    outcome = fastbracket.simulate(session, frames, answer)
    fastbracket.commit(session, outcome)
    fallback = None
    if outcome.resume is not None:
        ((symbol, frame),) = frames.items()
        row = outcome.resume
        with _fewer_collections():
            await session._run_intents({symbol: frame.iloc[row:]}, {symbol: answer.iloc[row:]}, progress, True)
        fallback = f"the event path replayed from {frame.index[row]} on: {outcome.why or 'the last trade is open'}"
    summary = await session.stop(session._status())
    return ReplayResult(session, frames, summary, time.perf_counter() - started, "fast", fallback)


async def replay_grid(
    factory: Callable[..., Strategy],
    bars: Bars,
    grid: Mapping[str, Sequence[Any]],
    *,
    store: Store | str | Path | None = None,
    sweep_id: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Replay ``factory(**params)`` for every combination of ``grid`` into one store; one row per
    combination with its PnL, orders, fills and session id. Combinations the factory refuses
    (:class:`~workbench.errors.ConfigError`, e.g. fast >= slow) get a row with their error."""
    target = open_store(store)
    sweep_id = sweep_id or new_session_id("grid")
    frames = _frames(bars, kwargs.pop("symbol", "BTC/USDT"))
    rows = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        try:
            strategy = factory(**params)
        except ConfigError as e:
            rows.append({**params, "error": str(e)})
            continue
        result = await replay(strategy, frames, store=target, sweep_id=sweep_id, **kwargs)
        rows.append(
            {
                **params,
                "pnl": result.pnl(),
                "orders": int(result.summary["orders"].sum()),
                "fills": int(result.summary["fills"].sum()),
                "session_id": result.session_id,
                "error": None,
            }
        )
    return pd.DataFrame(rows)


# -- checks -----------------------------------------------------------------------------------


def check_lookahead(
    strategy: Strategy,
    bars: pd.DataFrame,
    *,
    cuts: Sequence[int] | None = None,
    n_cuts: int = 20,
) -> pd.DataFrame:
    """Bars whose signal changes when later bars are removed: a strategy that only looks backwards
    gives, on ``bars.iloc[: k + 1]``, exactly the signals it gives on all of ``bars`` up to bar ``k``.

    ``cuts`` are the positions ``k`` of the last bar kept (default: ``n_cuts`` evenly spaced from the
    warm-up to the end). Returns one row per offending bar (the first cut that shows it), indexed by
    its open time, with ``position``, ``cut_at`` (the last bar kept), ``full`` and ``truncated``
    signals; empty if the strategy passes. A strategy that answers with a DataFrame (intents) is
    compared column by column, and each row also names its ``column``."""
    n = len(bars)
    if cuts is None:
        first = min(max(int(getattr(strategy, "warmup", 0)), 1), n - 1)
        cuts = np.unique(np.linspace(first, n - 2, num=n_cuts).round().astype(int)) if n > 1 else []
    answer = strategy(bars)
    framed = isinstance(answer, pd.DataFrame)
    full = _columns(answer)
    found: dict[tuple[int, str], tuple[int, Any, Any]] = {}
    for k in cuts:
        truncated = _columns(strategy(bars.iloc[: k + 1]))
        for column, expected in full.items():
            cut = truncated.get(column, np.full(k + 1, np.nan))
            for i in np.flatnonzero(~_same(cut, expected[: k + 1])):
                found.setdefault((int(i), column), (int(k), expected[i], cut[i]))
    rows = sorted(found.items(), key=lambda item: (item[0][0], list(full).index(item[0][1])))
    frame = pd.DataFrame(
        {
            "position": [i for (i, _), _ in rows],
            "cut_at": [bars.index[k] for _, (k, _, _) in rows],
            "full": [f for _, (_, f, _) in rows],
            "truncated": [t for _, (_, _, t) in rows],
        },
        index=pd.Index([bars.index[i] for (i, _), _ in rows], name=bars.index.name),
    )
    if framed:
        frame.insert(0, "column", [c for (_, c), _ in rows])
    return frame


def _columns(answer: Any) -> dict[str, np.ndarray]:
    """A strategy's answer as arrays by column: a DataFrame's columns, else the one signal (floats)."""
    if isinstance(answer, pd.DataFrame):
        return {str(c): answer[c].to_numpy() for c in answer.columns}
    return {"signal": np.asarray(answer, dtype=float)}


def _same(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Element-wise equality where two missing values (NaN, None, NaT) are equal too."""
    if len(left) != len(right):
        return np.zeros(len(right), dtype=bool)
    if left.dtype.kind in "fiub" and right.dtype.kind in "fiub":
        return (left == right) | (np.isnan(left.astype(float)) & np.isnan(right.astype(float)))
    equal = np.asarray(pd.Series(left, dtype=object).eq(pd.Series(right, dtype=object)), dtype=bool)
    return equal | (pd.isna(left) & pd.isna(right))


async def check_parity(
    strategy: Strategy,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    symbol: str = "BTC/USDT",
    store: Store | str | Path | None = None,
    balances: Mapping[str, Decimal | int | str] | None = None,
    risk: RiskLimits = RiskLimits(),
    engine: Literal["auto", "fast", "event"] = "auto",
) -> pd.DataFrame:
    """Feed ``bars`` one at a time to a paper session (:meth:`TradingSession.on_bar`, the live path,
    which computes the strategy over the bars so far or its declared ``history``) and replay them
    (on ``engine``, see :func:`replay`); return the bars where the two differ. Per bar: the live
    session's target after the bar against the replay's (``live_signal``, ``replay_signal``), the
    orders each placed on it with how they ended (``live_order``, ``replay_order``: ``"buy limit
    0.01 @ 25000.0 FILLED 0.01"``, several joined by ``"; "``) and the fills each got in it
    (``live_fill``, ``replay_fill``: ``"sell 0.01 @ 24990.0 fee 0.2499 USDT taker"``), so resting
    orders, stops and order lists are compared, not only targets. Empty means parity.

    For a strategy that returns intents, or a portfolio (``bars`` a mapping symbol -> bars, fed in
    time order), the rows also name the ``symbol``; these replay on the event path."""
    frames = _frames(bars, symbol) if isinstance(bars, Mapping) else {symbol: load_bars(bars, symbol)}
    target = open_store(store)
    rules = load_rules(list(frames))
    funds = balances or {rules[s].quote: 10_000 for s in frames}
    live = TradingSession(
        PaperExecutor(rules, funds),
        target,
        rules=rules,
        risk=risk,
        strategy=strategy,
        session_id=new_session_id("live"),
    )
    answers = strategy_answers(strategy, frames)
    if isinstance(bars, Mapping) or is_portfolio(strategy) or isinstance(answers[symbol], pd.DataFrame):
        return await _intent_parity(live, frames, funds, risk, target)
    bars = frames[symbol]
    live_targets = []
    for _, bar in bars.iterrows():
        await live.on_bar(symbol, bar)
        live_targets.append(float(live._targets.get(symbol, np.nan)))
    await live.stop()
    result = await replay(strategy, bars, symbol=symbol, store=target, balances=funds, risk=risk, engine=engine)
    replay_targets = pd.Series(np.asarray(answers[symbol], dtype=float), index=bars.index).ffill()
    frame = pd.DataFrame({"live_signal": live_targets, "replay_signal": replay_targets}, index=bars.index)
    for side, session_id in (("live", live.session_id), ("replay", result.session_id)):
        for kind, per_bar in _per_bar(target, session_id, frames).items():
            frame[f"{side}_{kind}"] = [per_bar.get((symbol, i)) for i in range(len(bars))]
    signals_differ = ~np.isclose(frame["live_signal"], frame["replay_signal"], rtol=0, atol=0, equal_nan=True)
    differ = signals_differ
    for kind in ("order", "fill"):
        differ = differ | (frame[f"live_{kind}"].fillna("") != frame[f"replay_{kind}"].fillna(""))
    return frame[differ]


async def _intent_parity(
    live: TradingSession,
    frames: Mapping[str, pd.DataFrame],
    funds: Mapping[str, Decimal | int | str],
    risk: RiskLimits,
    target: Store,
) -> pd.DataFrame:
    """:func:`check_parity` for intents and portfolios: targets, orders and fills per symbol and bar."""
    timeline = pd.concat(
        pd.DataFrame({"symbol": s, "row": np.arange(len(f)), "at": _close_times(f)}, index=f.index)
        for s, f in frames.items()
    ).sort_index(kind="stable")
    for s, row in zip(timeline["symbol"], timeline["row"], strict=True):
        await live.on_bar(s, frames[s].iloc[row])
    await live.stop()
    result = await replay(live.strategy, dict(frames), store=target, balances=funds, risk=risk, engine="event")  # type: ignore[arg-type]
    keys = list(zip(timeline["symbol"], timeline["at"], strict=True))
    rows = list(zip(timeline["symbol"], timeline["row"], strict=True))
    frame = timeline[["symbol"]].copy()
    for side, session in (("live", live), ("replay", result.session)):
        changes = {(s, at): t for s, at, t in session.target_changes}
        frame[f"{side}_signal"] = [changes.get(k, np.nan) for k in keys]
        frame[f"{side}_signal"] = frame.groupby("symbol")[f"{side}_signal"].ffill()
        for kind, per_bar in _per_bar(target, session.session_id, frames).items():
            frame[f"{side}_{kind}"] = [per_bar.get(k) for k in rows]
    differ = ~np.isclose(frame["live_signal"], frame["replay_signal"], rtol=0, atol=0, equal_nan=True)
    for kind in ("order", "fill"):
        differ |= frame[f"live_{kind}"].fillna("") != frame[f"replay_{kind}"].fillna("")
    return frame[differ]


def _per_bar(
    store: Store, session_id: str, frames: Mapping[str, pd.DataFrame]
) -> dict[str, dict[tuple[str, int], str]]:
    """The orders and the fills of a session as text, per (symbol, bar row) of ``frames``: what
    happened after a bar's close and up to the next one's belongs to the next bar."""
    out: dict[str, dict[tuple[str, int], str]] = {}
    for kind, sql in (("order", _PARITY_ORDERS), ("fill", _PARITY_FILLS)):
        rows = store.query(sql, [session_id])
        out[kind] = {}
        for symbol, frame in frames.items():
            mine = rows[rows["symbol"] == symbol]
            closes = _close_times(frame).to_numpy()
            at = np.minimum(np.searchsorted(closes, mine["at"].to_numpy(dtype="int64")), len(frame) - 1)
            per_bar = mine.groupby(at, sort=False)["what"].agg("; ".join)
            out[kind].update({(symbol, int(i)): text for i, text in per_bar.items()})
    return out


def _text(column: str, before: str = "") -> str:
    """SQL: a decimal column as short text (``0.01``) after the text ``before``; NULL stays NULL."""
    text = f"CAST(CAST({column} AS DOUBLE) AS VARCHAR)"
    return f"'{before}' || {text}" if before else text


# Each order of a session (at its creation time) and each fill (at its time) as one line of text,
# in the order they happened: orders by their sequence number, fills by trade id.
_PARITY_ORDERS = (
    f"SELECT symbol, epoch_ms(created_at) AS at, lower(side || ' ' || type) || ' ' || coalesce({_text('amount')}, '') "
    f"|| coalesce({_text('quote_amount', ' quote ')}, '') || coalesce({_text('price', ' @ ')}, '') "
    f"|| coalesce({_text('stop_price', ' stop ')}, '') || ' ' || status || ' ' || {_text('filled')} AS what "
    "FROM orders WHERE session_id = ? ORDER BY created_at, client_order_id"
)
_PARITY_FILLS = (
    f"SELECT symbol, epoch_ms(timestamp) AS at, side || ' ' || {_text('amount')} || {_text('price', ' @ ')} "
    f"|| {_text('fee', ' fee ')} || ' ' || fee_currency || CASE WHEN is_maker THEN ' maker' ELSE ' taker' END "
    "AS what FROM fills WHERE session_id = ? ORDER BY timestamp, CAST(trade_id AS BIGINT)"
)
