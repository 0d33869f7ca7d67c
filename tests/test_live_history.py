"""Live = replay (issue 17 item 4): a live session computes the strategy over the history a replay
gives it (the whole session's bars, or the ``history`` the strategy declares; bounded by
``history_cap``), so a strategy with state, an RSI with hysteresis, trades alike live and in replay,
on the paper live path (:func:`check_parity`) and against the local exchange through ccxt."""

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_bars
from workbench.config import Credentials, RiskLimits, Secret, TradingMode
from workbench.data import load_klines, load_rules
from workbench.executors import PaperExecutor
from workbench.replay import PRICES, check_lookahead, check_parity, replay
from workbench.session import TradingSession


@dataclass(frozen=True)
class RsiHysteresis:
    """Long ``size`` from the bar Wilder's RSI falls below ``low`` until it rises above ``high``:
    the position at a bar depends on the whole path before it, not on a window."""

    period: int = 6
    low: float = 35.0
    high: float = 65.0
    size: float = 0.001

    @property
    def warmup(self) -> int:
        return self.period

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        change = bars["close"].astype(float).diff()
        up = change.clip(lower=0).ewm(alpha=1 / self.period, adjust=False).mean()
        down = (-change.clip(upper=0)).ewm(alpha=1 / self.period, adjust=False).mean()
        rsi = 100 - 100 / (1 + up / down)
        state = np.where(rsi < self.low, 1.0, np.where(rsi > self.high, 0.0, np.nan))
        return pd.Series(state, index=bars.index).ffill().fillna(0.0) * self.size


@dataclass(frozen=True)
class Windowed(RsiHysteresis):
    """The same strategy declaring too short a history: what every live session did before."""

    @property
    def history(self) -> int:
        return 2 * self.warmup + 1


class Recorder:
    """Wraps a strategy and keeps what it answered for the last bar of each call (the live signal)."""

    def __init__(self, strategy: RsiHysteresis) -> None:
        self.strategy, self.warmup, self.last = strategy, strategy.warmup, []

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        answer = self.strategy(bars)
        self.last.append(float(answer.iloc[-1]))
        return answer


def btc_bars(n: int) -> pd.DataFrame:
    return load_klines("BTC/USDT", limit=n, allow_sample=True)


async def test_a_stateful_strategy_shows_no_divergence_between_live_and_replay(tmp_path):
    bars = btc_bars(800)
    strategy = RsiHysteresis()
    assert check_lookahead(strategy, bars).empty  # it only looks backwards...
    parity = await check_parity(strategy, bars, store=tmp_path / "p.duckdb")
    assert parity.empty, parity.head()
    result = await replay(strategy, bars, store=tmp_path / "r.duckdb")
    assert len(result.orders) > 20  # ...and trades often enough for parity to mean something
    # The control: computed on 2 * warmup + 1 bars (the old live window) the same strategy diverges.
    short = await check_parity(Windowed(), bars, store=tmp_path / "w.duckdb")
    assert len(short) > 20


async def test_a_declared_history_bounds_what_the_session_keeps(tmp_path, store):
    rules = load_rules(["BTC/USDT"])
    bars = make_bars(120)
    session = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=Windowed())
    for _, bar in bars.iterrows():
        await session.on_bar("BTC/USDT", bar)
    kept = session._history["BTC/USDT"]
    assert len(kept) == Windowed().history and kept.index[-1] == bars.index[-1]
    assert all(kept[c].dtype == np.float64 for c in PRICES)  # the frame the strategy gets is numeric, as a replay's


async def test_without_a_declared_history_the_cap_bounds_memory_and_warns_once(store, caplog):
    rules = load_rules(["BTC/USDT"])
    session = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=RsiHysteresis())
    session.history_cap = 50
    with caplog.at_level(logging.WARNING, logger="workbench.session"):
        for _, bar in make_bars(80).iterrows():
            await session.on_bar("BTC/USDT", bar)
    assert len(session._history["BTC/USDT"]) == 50
    warned = [r.getMessage() for r in caplog.records if "declares no history" in r.getMessage()]
    assert len(warned) == 1 and "last 50 bars of BTC/USDT" in warned[0] and "RsiHysteresis" in warned[0]


async def test_live_against_the_local_exchange_equals_its_replay(store):
    """A testnet session (ccxt over HTTP and WebSocket to the local exchange) trades the venue's own
    bars; its signal on every bar, and its orders, are those of a replay of the same bars."""
    from workbench.exchange import LocalExchange
    from workbench.executors.binance import BinanceExecutor

    rules = load_rules(["BTC/USDT"])
    recorder = Recorder(RsiHysteresis())
    risk = RiskLimits(max_orders_per_minute=10_000)  # the venue replays an hour a second
    async with LocalExchange(("BTC/USDT",), speed=3000) as exchange:
        credentials = Credentials(Secret(exchange.api_key), Secret(exchange.secret))
        executor = BinanceExecutor(TradingMode.TESTNET, rules, credentials, venue_url=exchange.url)
        session = TradingSession(executor, store, rules=rules, strategy=recorder, risk=risk)
        await asyncio.wait_for(session.run_live(240), 180)
        await executor.close()
    seen = session._history["BTC/USDT"]
    assert len(seen) == 240 == len(recorder.last)
    replayed = RsiHysteresis()(seen)
    assert recorder.last == replayed.tolist()  # the signal, bar for bar
    result = await replay(RsiHysteresis(), seen[list(PRICES)], store=store)
    live_orders = store.query(
        "SELECT side FROM orders WHERE session_id = ? ORDER BY created_at, client_order_id", [session.session_id]
    )
    assert len(result.orders) > 5 and live_orders["side"].tolist() == result.orders["side"].tolist()
    # The control: the old live window (2 * warmup + 1 bars) gives another signal on these bars.
    window = 2 * RsiHysteresis().warmup + 1
    windowed = [float(RsiHysteresis()(seen.iloc[max(0, i - window + 1) : i + 1]).iloc[-1]) for i in range(len(seen))]
    assert windowed != recorder.last


def test_check_lookahead_compares_intent_frames_column_by_column():
    bars = make_bars(300)

    def honest(frame: pd.DataFrame) -> pd.DataFrame:
        close = frame["close"]
        return pd.DataFrame(
            {
                "target": (close > close.rolling(10).mean()).astype(float),
                "limit_price": close.rolling(5).min(),
                "entry": np.where(close.diff() > 0, "limit", "market"),
            },
            index=frame.index,
        )

    def peeking(frame: pd.DataFrame) -> pd.DataFrame:
        intents = honest(frame)
        intents["limit_price"] = frame["close"].shift(-1)  # tomorrow's close: lookahead in one column
        return intents

    assert check_lookahead(honest, bars).empty
    found = check_lookahead(peeking, bars, cuts=[100, 200])
    assert set(found["column"]) == {"limit_price"}
    assert found["position"].tolist() == [100, 200] and found["cut_at"].tolist() == [bars.index[100], bars.index[200]]
    assert found["full"].tolist() == pytest.approx([bars["close"].iloc[101], bars["close"].iloc[201]])
    assert found["truncated"].isna().all()
