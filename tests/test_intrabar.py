"""One fill model in every mode: the local exchange, paper sessions and replays walk each bar along
the same path (open, nearer extreme, other extreme, close), so a stop or a resting order touched
inside a bar fills there, at the same price, wherever the bar is traded."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from workbench.bars import path
from workbench.data import load_rules
from workbench.exchange import LocalExchange
from workbench.executors import PaperExecutor
from workbench.matching import BookConfig
from workbench.model import Side
from workbench.replay import check_parity, replay
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross

from .conftest import make_bars, write_klines
from .test_exchange import client_for

SYMBOL = "BTC/USDT"
D = Decimal
BOOK = BookConfig(level_notional=Decimal(20_000))
FLAT = 30_000.0
DIP = 8  # the bar that dips to 29,700 and closes up: the stop triggers on its low
RISE = 11  # the bar that rises to 30,300 and closes down: the take-profit triggers on its high


def hand_built() -> pd.DataFrame:
    """Flat bars at 30,000, one that dips to 29,700 inside the bar and closes up (30,005), and one
    that rises to 30,300 and closes down (29,995): only their extremes reach the orders' prices."""
    n = 16
    frame = pd.DataFrame(
        {"open": FLAT, "high": FLAT, "low": FLAT, "close": FLAT, "volume": 10.0},
        index=pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC", name="open_time"),
    )
    frame.iloc[DIP] = [FLAT, 30_010.0, 29_700.0, 30_005.0, 10.0]
    frame.iloc[RISE] = [FLAT, 30_300.0, 29_990.0, 29_995.0, 10.0]
    frame["close_time"] = frame.index + pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1)
    return frame


# (type, side, amount, price, stop price): a stop-loss below, a take-profit above (whose limit the
# book is through once it triggers: a taker), a buy below
ORDERS = (
    ("STOP_LOSS_LIMIT", "sell", 0.01, 29_790.0, 29_800.0),
    ("TAKE_PROFIT_LIMIT", "sell", 0.02, 30_150.0, 30_200.0),
    ("LIMIT", "buy", 0.03, 29_750.0, None),
)


def test_the_path_goes_to_the_nearer_extreme_first():
    assert path(100, 110, 90, 105) == (D(100), D(90), D(110), D(105))  # up bar: dips first
    assert path(100, 110, 90, 95) == (D(100), D(110), D(90), D(95))  # down bar: rises first
    assert path(0.1, 0.3, 0.1, 0.2) == (D("0.1"), D("0.1"), D("0.3"), D("0.2"))  # as printed, not binary
    assert path(*hand_built().iloc[DIP][["open", "high", "low", "close"]]) == (
        D(30_000), D(29_700), D(30_010), D(30_005)
    )  # fmt: skip


class Holds:
    """No target on any bar: the session only carries the orders placed by hand."""

    warmup = 0

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        return pd.Series(np.nan, index=bars.index)


async def paper_fills(tmp_path, bars: pd.DataFrame, skip_idle: bool) -> tuple[dict, dict]:
    """Place ``ORDERS`` after bar 5 in a paper session, run the rest of ``bars`` (the replay's event
    path with ``skip_idle``); per order: its status after each bar, and its fills."""
    store = Store(tmp_path / f"paper-{skip_idle}.duckdb")
    rules = load_rules([SYMBOL])
    session = TradingSession(
        PaperExecutor(rules, {"USDT": 100_000, "BTC": 1}, book=BOOK), store, rules=rules, strategy=Holds()
    )
    for i in range(6):
        await session.on_bar(SYMBOL, bars.iloc[i])
    placed = [
        await session.create_order(SYMBOL, t.lower(), side, amount, price, stop_price=stop, time_in_force="GTC")
        for t, side, amount, price, stop in ORDERS
    ]
    await session.run({SYMBOL: bars.iloc[6:]}, progress=False, skip_idle=skip_idle)
    fills = store.query(
        "SELECT client_order_id, price, amount, is_maker, epoch_ms(timestamp) AS at FROM fills ORDER BY trade_id::INT"
    )
    store.close()
    closes = list(bars["close_time"].dt.as_unit("ms").astype("int64"))
    return {
        t: [
            (D(str(f.price)), D(str(f.amount)), bool(f.is_maker), closes.index(f.at))
            for f in fills.itertuples()
            if f.client_order_id == order.client_order_id
        ]
        for (t, *_), order in zip(ORDERS, placed, strict=True)
    }, {t: session.orders[o.client_order_id].status.value for (t, *_), o in zip(ORDERS, placed, strict=True)}


async def venue_fills(tmp_path, monkeypatch, bars: pd.DataFrame) -> tuple[dict, dict]:
    """The same orders at the local exchange serving ``bars`` (through ccxt over HTTP), placed
    when bar 5 is the newest; per order: its fills with the bar it was filled in."""
    folder = tmp_path / "data"
    write_klines(folder, SYMBOL, bars)
    monkeypatch.setenv("WORKBENCH_DATA", str(folder))
    monkeypatch.delenv("WORKBENCH_SHARED_DATA", raising=False)
    fills: dict[str, list] = {t: [] for t, *_ in ORDERS}
    async with LocalExchange((SYMBOL,), warmup=5, book=BOOK) as exchange:
        client = client_for(exchange)
        try:
            await client.load_markets()
            assert exchange.venue.market.cursor == 5
            ids = {}
            for t, side, amount, price, stop in ORDERS:
                params = {"timeInForce": "GTC", **({"stopPrice": stop} if stop else {})}
                ids[t] = (await client.create_order(SYMBOL, t, side, amount, price, params))["id"]
            for bar in range(6, len(bars)):
                exchange.step(1)
                for trade in await client.fetch_my_trades(SYMBOL, since=0):
                    t = next(k for k, v in ids.items() if v == trade["order"])
                    seen = (D(str(trade["price"])), D(str(trade["amount"])), trade["takerOrMaker"] == "maker")
                    if seen not in [f[:3] for f in fills[t]]:
                        fills[t].append((*seen, bar))
            statuses = {t: (await client.fetch_order(i, SYMBOL))["info"]["status"] for t, i in ids.items()}
        finally:
            await client.close()
    return fills, statuses


async def test_a_stop_touched_inside_a_bar_triggers_in_replay_as_at_the_local_exchange(tmp_path, monkeypatch):
    bars = hand_built()
    venue, venue_status = await venue_fills(tmp_path, monkeypatch, bars)
    # the stop triggers on the low, rests (the book is below its limit) and fills on the high
    assert venue["STOP_LOSS_LIMIT"] == [(D(29_790), D("0.01"), True, DIP)]
    assert venue["LIMIT"] == [(D(29_750), D("0.03"), True, DIP)]  # only the low reached it
    (price, amount, maker, bar), *more = venue["TAKE_PROFIT_LIMIT"]  # triggered on the high, takes the bids
    assert not more and (amount, maker, bar) == (D("0.02"), False, RISE) and D(30_150) <= price < D(30_300)
    assert set(venue_status.values()) == {"FILLED"}
    for skip_idle in (False, True):
        paper, status = await paper_fills(tmp_path, bars, skip_idle)
        assert paper == venue, skip_idle
        assert set(status.values()) == {"FILLED"}


async def test_with_nothing_open_the_path_changes_nothing(tmp_path):
    """A market-order strategy never has an order open at a bar's start: its replay on the event
    path (which walks bars while orders are open) equals the fast path's, bar for bar."""
    bars = make_bars(400, seed=3).round({c: 2 for c in ("open", "high", "low", "close")})  # on the tick, as Binance's
    strategy = SmaCross(4, 15, 0.02)
    with Store(tmp_path / "r.duckdb") as store:
        fast = await replay(strategy, bars, store=store, session_id="fast")
        event = await replay(strategy, bars, store=store, session_id="event", engine="event")
        assert (fast.engine, event.engine) == ("fast", "event")
        columns = "side, amount, price, fee, is_maker, timestamp"
        query = f"SELECT {columns} FROM fills WHERE session_id = ? ORDER BY trade_id::INT"
        assert store.sql(query, ["fast"]) == store.sql(query, ["event"]) != []


@pytest.fixture
def protective(monkeypatch):
    """A strategy that keeps resting orders on the exchange: at each rebalance it cancels them and,
    when long after it, places a stop-loss-limit sell 0.3% under the close, when it sold a limit buy
    0.2% under it (through ``session.create_order``, as a user's code would place them)."""
    rebalance = TradingSession._rebalance

    async def with_protection(self, symbol, *args, **kwargs):
        for resting in list(self._open.values()):  # they hold the funds the rebalance needs
            await self.cancel_order(resting.client_order_id, symbol)
        order = await rebalance(self, symbol, *args, **kwargs)
        held = self.rules[symbol].round_amount(self.state.positions.get(symbol, D(0)))
        close, tick = self.last_price[symbol], self.rules[symbol].round_price
        if held > 0:
            await self.create_order(symbol, "stop_loss_limit", "sell", held, tick(close * D("0.996")),
                                    stop_price=tick(close * D("0.997")), time_in_force="GTC")  # fmt: skip
        elif order is not None and order.side is Side.SELL:
            await self.create_order(symbol, "limit", "buy", order.amount, tick(close * D("0.998")), time_in_force="GTC")
        return order

    monkeypatch.setattr(TradingSession, "_rebalance", with_protection)


async def test_parity_compares_the_fills_of_resting_orders_and_stops(tmp_path, protective, monkeypatch):
    bars = make_bars(500, seed=21)
    strategy = SmaCross(5, 20, 0.01)
    differences = await check_parity(strategy, bars, store=tmp_path / "p.duckdb", engine="event")
    assert differences.empty, differences
    with Store(tmp_path / "p.duckdb") as store:
        kinds = dict(store.sql("SELECT type, count(*) FROM orders WHERE session_id LIKE 'live%' GROUP BY type"))
        exits = store.sql(
            "SELECT count(*) FROM fills JOIN orders USING (session_id, client_order_id) "
            "WHERE session_id LIKE 'live%' AND type <> 'MARKET'"
        )[0][0]
    assert kinds["STOP_LOSS_LIMIT"] > 5 and kinds["LIMIT"] > 5 and exits > 5  # stops and limits filled

    # The same session without the intrabar path on the live side: check_parity shows the fills it lost.
    walk = TradingSession._walk
    monkeypatch.setattr(
        TradingSession, "_walk", lambda self, *a: None if self.session_id.startswith("live") else walk(self, *a)
    )
    differences = await check_parity(strategy, bars, store=tmp_path / "q.duckdb", engine="event")
    assert (differences["live_fill"].fillna("") != differences["replay_fill"].fillna("")).sum() > 3
    assert differences["replay_fill"].str.contains("maker", na=False).any()


async def test_the_shadow_session_walks_the_bar_too(tmp_path):
    """A paper shadow beside a session gets each bar's path from it: the shadow's stop triggers on
    the dipping bar's low while the session itself has nothing open (and skips idle bars)."""
    bars = hand_built()
    rules = load_rules([SYMBOL])
    with Store(tmp_path / "shadow.duckdb") as store:

        def session(**kwargs) -> TradingSession:
            executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 1}, book=BOOK)
            return TradingSession(executor, store, rules=rules, strategy=Holds(), **kwargs)

        shadow = session(session_id="shadow")
        main = session(session_id="main", shadow=shadow)
        await main.on_bar(SYMBOL, bars.iloc[0])
        t, side, amount, price, stop = ORDERS[0]
        await shadow.create_order(SYMBOL, t, side, amount, price, stop_price=stop, time_in_force="GTC")
        await main.run({SYMBOL: bars.iloc[1:]}, progress=False, skip_idle=True)
        fills = store.sql("SELECT session_id, price, is_maker, epoch_ms(timestamp) FROM fills")
    at = int(bars["close_time"].iloc[DIP].timestamp() * 1000)
    assert fills == [("shadow", D(29_790), True, at)]
