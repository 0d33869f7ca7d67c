"""The replay's fast path against its event path, on real Binance 1m bars: the same orders, fills,
fees, balances and risk state, Decimal for Decimal; and a hand-over to the event path, saying why,
for what the fast path does not model."""

from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.config import RiskLimits
from workbench.errors import ConfigError
from workbench.fastreplay import Unsupported, _decimal_column, signals
from workbench.matching import Fees
from workbench.replay import check_parity, load_bars, replay
from workbench.store import Store
from workbench.strategy import SmaCross

DATA = Path("/work/shared/data/binance/spot/1m")
ORDERS = (
    "client_order_id, order_id, symbol, side, type, time_in_force, amount, quote_amount, price, stop_price, status, "
    "status_rank, filled, cost, average, signal_price, arrival_price, signal_time, created_at, updated_at"
)
FILLS = "trade_id, order_id, client_order_id, symbol, side, price, amount, cost, fee, fee_currency, is_maker, timestamp"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="the real Binance klines are not on this machine")


@cache
def real_bars(symbol: str, start: int, n: int) -> pd.DataFrame:
    """``n`` genuine 1m bars of ``symbol`` from bar ``start`` of its year (Binance's CSV layout)."""
    path = DATA / f"{symbol.replace('/', '')}-1m.csv.gz"
    return load_bars(pd.read_csv(path, skiprows=range(1, start + 1), nrows=n), symbol)


def rows(result, table: str, columns: str) -> pd.DataFrame:
    """The session's rows, with client order ids without the session's prefix."""
    frame = result.store.query(f"SELECT {columns} FROM {table} WHERE session_id = ? ORDER BY 1", [result.session_id])
    if "client_order_id" in frame:
        frame["client_order_id"] = frame["client_order_id"].str.rsplit("-", n=1).str[1]
    return frame.sort_values(frame.columns[0], key=lambda c: c.str.rsplit("-").str[-1].astype(int), ignore_index=True)


async def both(strategy, bars, store, **kwargs):
    fast = await replay(strategy, bars, store=store, engine="fast", **kwargs)
    event = await replay(strategy, bars, store=store, engine="event", **kwargs)
    assert (fast.engine, event.engine) == ("fast", "event")
    return fast, event


def assert_same(fast, event) -> None:
    """Orders, fills, fees, balances, positions and PnL equal exactly (Decimals, not floats)."""
    for table, columns in (("paper_orders", ORDERS), ("paper_fills", FILLS)):
        pd.testing.assert_frame_equal(rows(fast, table, columns), rows(event, table, columns), check_exact=True)
    strip = lambda orders: [(cid.rsplit("-", 1)[1], o.amount, o.filled, o.cost, o.fees) for cid, o in orders.items()]  # noqa: E731
    assert strip(fast.session.orders) == strip(event.session.orders)
    bare = lambda fills: [replace(f, client_order_id=f.client_order_id.rsplit("-", 1)[1]) for f in fills]  # noqa: E731
    assert bare(fast.session.executor._fills) == bare(event.session.executor._fills)
    assert fast.session.executor.engine.balances() == event.session.executor.engine.balances()
    for name in ("positions", "avg_cost", "realised", "realised_by_symbol", "order_times"):
        assert getattr(fast.session.state, name) == getattr(event.session.state, name), name
    pd.testing.assert_frame_equal(fast.summary, event.summary, check_exact=True)
    balances = "SELECT asset, free, locked FROM paper_balances WHERE session_id = ? ORDER BY asset"
    assert fast.store.sql(balances, [fast.session_id]) == event.store.sql(balances, [event.session_id])


CASES = [  # symbol, strategy, fees, start bar: sizes near the minimum notional make dust and step rounding bite
    ("BTC/USDT", SmaCross(5, 20, 0.001), Fees(), 0),
    ("BTC/USDT", SmaCross(3, 8, 0.00017), Fees(Decimal("0.0002"), Decimal("0.00075")), 200_000),
    ("ETH/USDT", SmaCross(10, 30, 0.013), Fees(), 100_000),
    ("ETH/USDT", SmaCross(4, 9, 0.0031), Fees(Decimal(0), Decimal(0)), 400_000),
    ("SOL/USDT", SmaCross(5, 20, 0.37), Fees(), 50_000),
    ("SOL/USDT", SmaCross(2, 7, 0.29), Fees(Decimal("0.001"), Decimal("0.0025")), 300_000),
]


@pytest.mark.parametrize(("symbol", "strategy", "fees", "start"), CASES)
async def test_the_fast_path_replays_exactly_what_the_event_path_does(symbol, strategy, fees, start, tmp_path):
    bars = real_bars(symbol, start, 1_200)
    with Store(tmp_path / "r.duckdb") as store:
        fast, event = await both(strategy, bars, store, symbol=symbol, fees=fees)
        assert len(fast.session.orders) > 15  # enough trades to compare, on every case
        assert_same(fast, event)


async def test_three_symbols_share_one_balance_alike_on_both_paths(tmp_path):
    bars = {s: real_bars(s, 10_000, 1_500) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}
    funds = {"USDT": 6_200}  # 0.2 BTC (about 6,000 USDT) leaves too little for 0.2 ETH...
    strategy = SmaCross(3, 12, 0.2)  # (0.2 SOL, about 4 USDT, is below the minimum notional: dust)
    risk = RiskLimits(max_daily_loss=None)  # this size loses more than 1,000 USDT a day
    with Store(tmp_path / "r.duckdb") as store:
        auto = await replay(strategy, bars, store=store, balances={"USDT": 10_000}, risk=risk)
        event = await replay(strategy, bars, store=store, balances={"USDT": 10_000}, risk=risk, engine="event")
        assert auto.engine == "fast" and auto.fallback is None
        assert_same(auto, event)
        assert set(auto.orders["symbol"]) == {"BTC/USDT", "ETH/USDT"}
        short = await replay(strategy, bars, store=store, balances=funds, risk=risk)
    assert short.engine == "event" and "balance" in short.fallback  # ...which the event path records


async def test_a_risk_check_that_would_refuse_hands_the_replay_to_the_event_path(tmp_path):
    bars = real_bars("BTC/USDT", 0, 800)
    strategy = SmaCross(5, 20, 0.002)
    tight = RiskLimits(max_order_notional=Decimal(50))  # 0.002 BTC is about 60 USDT
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(strategy, bars, store=store, risk=tight)
        assert result.engine == "event" and "max_order_notional" in result.fallback
        assert result.session.rejections and result.orders.empty  # the event path refused and recorded each
        with pytest.raises(ConfigError, match="fast path cannot replay this exactly: a risk check"):
            await replay(strategy, bars, store=store, risk=tight, engine="fast")
        loose = await replay(strategy, bars, store=store, risk=RiskLimits(max_order_notional=Decimal(100)))
        assert loose.engine == "fast" and len(loose.orders) > 0


async def test_an_order_deeper_than_the_best_level_hands_over(tmp_path):
    bars = real_bars("BTC/USDT", 0, 400)
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(
            SmaCross(5, 20, 5.0), bars, store=store, balances={"USDT": 10**7}, risk=RiskLimits(None, None, None)
        )
        assert result.engine == "event" and "best level" in result.fallback
        assert result.fills["amount"].sum() == result.orders["filled"].sum() > 0


def test_a_strategy_that_returns_no_series_of_targets_is_not_for_the_fast_path():
    bars = real_bars("BTC/USDT", 0, 100)
    with pytest.raises(Unsupported, match="not a Series"):
        signals(lambda b: pd.DataFrame({"target": b["close"] * 0}), "BTC/USDT", bars)
    with pytest.raises(Unsupported, match="index"):
        signals(lambda b: b["close"].reset_index(drop=True) * 0, "BTC/USDT", bars)


async def test_parity_holds_with_the_fast_path_on_real_bars(tmp_path):
    bars = real_bars("ETH/USDT", 5_000, 300)
    strategy = SmaCross(5, 20, 0.01)
    differ = await check_parity(strategy, bars, symbol="ETH/USDT", store=tmp_path / "p.duckdb")
    assert differ.empty, differ
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(strategy, bars, symbol="ETH/USDT", store=store)
        assert result.engine == "fast" and len(result.orders) > 5  # parity compared real orders


async def test_an_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="engine='numba' is not one of 'auto', 'fast', 'event'"):
        await replay(SmaCross(), real_bars("BTC/USDT", 0, 100), engine="numba")


async def test_a_long_replay_writes_every_order_in_bulk_and_its_balances_add_up(tmp_path):
    bars = real_bars("BTC/USDT", 0, 30_000)
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(SmaCross(2, 5, 0.001), bars, store=store)
        orders, fills = result.orders, result.fills
        flows = store.sql(
            "SELECT sum(CASE WHEN side = 'buy' THEN -cost ELSE cost - fee END), "
            "sum(CASE WHEN side = 'buy' THEN amount - fee ELSE -amount END) FROM fills WHERE session_id = ?",
            [result.session_id],
        )[0]
        audit = store.sql("SELECT kind FROM audit_log WHERE session_id = ? ORDER BY seq", [result.session_id])
    assert result.engine == "fast" and len(orders) == len(fills) == len(result.session.orders) > 2_500
    assert list(orders["client_order_id"].str.rsplit("-", n=1).str[1].astype(int)) == list(range(1, len(orders) + 1))
    balances = result.session.executor.engine.balances()
    assert balances["USDT"].free == Decimal(10_000) + flows[0] and balances["BTC"].free == flows[1]
    assert [k for (k,) in audit] == ["session.start", "replay.fast", "session.stop"]


@dataclass(frozen=True)
class Holes(SmaCross):
    """SmaCross with NaN targets: none before the slow SMA is ready, and a hole every 7th bar
    (the session keeps the last target there)."""

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        target = super().__call__(bars)
        target[bars["close"].rolling(self.slow).mean().isna() | (np.arange(len(bars)) % 7 == 3)] = np.nan
        return target


ROUNDING = [  # fee rates whose products have more places than the assets (rounding half up bites); a size of
    # 0.30000000000000004 (its Decimal has 17 places, the step 3)
    ("SOL/USDT", Holes(4, 15, 0.1 + 0.2), Fees(Decimal("0.0012345"), Decimal("0.0012345")), 20_000),
    ("BTC/USDT", SmaCross(3, 9, 0.00123), Fees(Decimal("0.00075"), Decimal("0.0009995")), 60_000),
    ("ETH/USDT", SmaCross(2, 6, 0.0077), Fees(Decimal("0.001"), Decimal("0.00015")), 250_000),
]


@pytest.mark.parametrize(("symbol", "strategy", "fees", "start"), ROUNDING)
async def test_nan_targets_float_noise_and_fee_rounding_replay_alike(symbol, strategy, fees, start, tmp_path):
    bars = real_bars(symbol, start, 1_500)
    with Store(tmp_path / "r.duckdb") as store:
        fast, event = await both(strategy, bars, store, symbol=symbol, fees=fees, balances={"USDT": 50_000})
        assert len(fast.session.orders) > 15
        assert_same(fast, event)
        fees = [fee for order in fast.session.orders.values() for fee in order.fees.values()]
    assert (
        max(-fee.normalize().as_tuple().exponent for fee in fees) == 8
    )  # fees were rounded to the asset's 8 places, not merely copied


@dataclass(frozen=True)
class Alternate:
    """Long ``size`` for ``n`` bars, flat for ``n``: every symbol trades on the same bars."""

    n: int = 10
    size: float = 0.05
    warmup: int = 0

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        return pd.Series((np.arange(len(bars)) // self.n % 2 == 0) * self.size, index=bars.index)


async def test_refusals_that_depend_on_every_symbol_or_the_day_hand_over(tmp_path):
    bars = {s: real_bars(s, 10_000, 600) for s in ("BTC/USDT", "ETH/USDT")}
    with Store(tmp_path / "r.duckdb") as store:
        limits = RiskLimits(max_daily_loss=None, max_orders_per_minute=2)
        calm = await replay(Alternate(), bars, store=store, balances={"USDT": 10_000}, risk=limits)
        assert calm.engine == "fast" and len(calm.orders) > 50  # two orders a minute: at the limit
        event = await replay(Alternate(), bars, store=store, balances={"USDT": 10_000}, risk=limits, engine="event")
        assert_same(calm, event)
        rate = await replay(Alternate(), bars, store=store, balances={"USDT": 10_000},
                            risk=replace(limits, max_orders_per_minute=1))  # fmt: skip
        assert rate.engine == "event" and "max_orders_per_minute" in rate.fallback
        assert any(e.rule == "max_orders_per_minute" for e in rate.session.rejections)
        tight = RiskLimits(None, None, None, max_daily_loss=Decimal(1))
        loss = await replay(SmaCross(2, 5, 0.5), bars["ETH/USDT"], symbol="ETH/USDT", store=store,
                            balances={"USDT": 10_000}, risk=tight)  # fmt: skip
        assert loss.engine == "event" and "max_daily_loss" in loss.fallback
        assert any(e.rule == "max_daily_loss" for e in loss.session.rejections)


def test_a_bulk_write_takes_scaled_integers_exactly_and_all_or_nothing(tmp_path):
    def fills(trade_ids, prices, **scaled):
        return pd.DataFrame({"session_id": "s", "trade_id": trade_ids, "symbol": "BTC/USDT", "price": prices, **scaled})

    with Store(tmp_path / "b.duckdb") as store:
        threads = store.sql("SELECT current_setting('threads')")  # the stores' instance runs one
        store.insert_frames({"paper_fills": fills(["1"], ["0.1"], amount=[123456789], fee=[-5])},
                            scales={"amount": 8, "fee": 18})  # fmt: skip
        with pytest.raises(Exception, match="(?i)constraint|duplicate"):  # trade 1 again: the whole batch fails
            store.insert_frames({"paper_fills": fills(["2", "1"], ["0.2", "0.3"], amount=[1, 2])}, scales={"amount": 0})
        rows = store.sql("SELECT trade_id, price, amount, fee FROM paper_fills WHERE session_id = 's'")
        named = pd.DataFrame({"session_id": "n", "trade_id": [7, 12], "client_order_id": [7, 12],
                              "symbol": pd.Categorical.from_codes([1, 0], ["BTC/USDT", "ETH/USDT"])})  # fmt: skip
        store.insert_frames({"paper_fills": named}, texts={"trade_id": "", "client_order_id": "n-x'"})
        texts = store.sql("SELECT trade_id, client_order_id, symbol FROM paper_fills WHERE session_id = 'n' ORDER BY 1")
    assert rows == [("1", Decimal("0.1"), Decimal("1.23456789"), Decimal("-5E-18"))]
    assert texts == [("12", "n-x'12", "BTC/USDT"), ("7", "n-x'7", "ETH/USDT")]  # ids from integers, names from codes
    assert threads == [(1,)]


async def test_a_fast_replay_builds_its_orders_when_first_asked_and_its_summary_adds_them_up_alike(tmp_path):
    bars = real_bars("SOL/USDT", 50_000, 1_200)
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(SmaCross(5, 20, 0.37), bars, symbol="SOL/USDT", store=store)
        executor = result.session.executor
        unbuilt = result.session._backlog is not None and executor._unbuilt is not None  # nothing needed them yet
        orders, fills = result.session.orders, executor._fills
        placed, traded = list(result.orders["client_order_id"]), list(result.fills["trade_id"])
        again = result.session.summary()  # from the orders themselves now
    assert result.engine == "fast" and unbuilt and result.session._backlog is None and executor._unbuilt is None
    assert list(orders) == placed and len(placed) > 15 and result.summary["fees"].iloc[0].keys() == {"SOL", "USDT"}
    assert [f.trade_id for f in fills] == traded and [f.client_order_id for f in fills] == placed
    assert [f.cost for f in fills] == [o.cost for o in orders.values()] and executor._fills is fills  # built once
    pd.testing.assert_frame_equal(again, result.summary, check_exact=True)


UNITS = st.integers(-(10**15), 10**15) | st.sampled_from([0, 10, 1000, 2_650_000])  # trailing zeros too


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(UNITS, st.integers(-18, 3)), min_size=1, max_size=60), st.booleans(), st.integers(1, 8))
def test_decimal_columns_are_those_built_one_by_one(pairs, normalize, repeats):
    units = np.array([u for u, _ in pairs] * repeats, dtype=np.int64)  # repeated: the values built once
    exponents = np.array([e for _, e in pairs] * repeats)
    built = _decimal_column(units, exponents, normalize=normalize)
    expected = [Decimal(u).scaleb(e) for u, e in zip(units.tolist(), exponents.tolist(), strict=True)]
    if normalize:
        expected = [d.normalize() for d in expected]
    assert [d.as_tuple() for d in built] == [d.as_tuple() for d in expected]  # digits and exponent, not only value
