"""The bracket fast path (workbench/fastbracket.py) against the event path: the same orders, order
lists, fills, balances, risk state, drops and summary, row for row, on real bars and on scripted
paths that reach every leg (a take-profit that fills, a stop that sells at once, a stop that gaps
past its limit and rests, then fills or is canceled), and where it hands over to the event path."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_intents import RISK, Scripted, path_bars
from workbench.bars import price as bar_price
from workbench.config import RiskLimits
from workbench.data import load_rules
from workbench.fastbracket import _book_prices, _exit_prices, _intents
from workbench.intents import intent_frame, iter_intents
from workbench.matching import BookConfig, Fees, best_prices
from workbench.replay import load_bars, replay
from workbench.session import STOP_LIMIT_OFFSET
from workbench.strategy import SmaBracket

TABLES = {
    "orders": "SELECT * EXCLUDE (session_id) FROM paper_orders WHERE session_id = ? ORDER BY client_order_id",
    "fills": "SELECT * EXCLUDE (session_id) FROM paper_fills WHERE session_id = ? ORDER BY trade_id",
    "lists": "SELECT * EXCLUDE (session_id) FROM paper_order_lists WHERE session_id = ? ORDER BY list_client_order_id",
    "balances": "SELECT * EXCLUDE (session_id) FROM paper_balances WHERE session_id = ? ORDER BY asset",
}


async def both(strategy, bars, tmp_path, risk=RISK, balances=None, fees=Fees()):
    """The same replay on the event path and on auto (the fast path), each in its own store."""
    out = {}
    for engine in ("event", "auto"):
        out[engine] = await replay(strategy, bars, store=tmp_path / f"{engine}.duckdb", engine=engine,
                                   session_id="same-1", risk=risk, balances=balances, fees=fees)  # fmt: skip
    return out["event"], out["auto"]


def assert_same(event, fast) -> None:
    for name, sql in TABLES.items():
        a, b = (r.store.query(sql, [r.session_id]) for r in (event, fast))
        a, b = (f.map(lambda v: tuple(v) if isinstance(v, np.ndarray | list) else v) for f in (a, b))
        pd.testing.assert_frame_equal(a, b, obj=name)
    pd.testing.assert_frame_equal(event.summary, fast.summary)
    pd.testing.assert_frame_equal(event.session.dropped(), fast.session.dropped())
    assert event.session.state == fast.session.state
    assert event.session.target_changes == fast.session.target_changes
    assert event.session._open.keys() == fast.session._open.keys()
    # the orders as the session holds them (built when first read) and the paper venue's fills, in order
    assert list(event.session.orders.items()) == list(fast.session.orders.items())
    assert event.session.executor._fills == fast.session.executor._fills
    assert event.session.order_lists == fast.session.order_lists and event.session.list_legs == fast.session.list_legs


def fast_row(result) -> dict:
    rows = result.store.query(
        "SELECT detail FROM audit_log WHERE session_id = ? AND kind = 'replay.fast'", [result.session_id]
    )
    assert len(rows) == 1
    return pd.read_json(pd.io.common.StringIO(rows["detail"][0]), typ="series").to_dict()


async def test_the_bracket_example_on_ten_weeks_of_real_bars_is_the_event_path_row_for_row(tmp_path):
    bars = load_bars(None, "BTC/USDT", limit=100_000)
    event, fast = await both(SmaBracket(fast=10, slow=50, size=0.001), bars, tmp_path, risk=RiskLimits())
    assert_same(event, fast)
    orders = fast.orders
    kinds = set(zip(orders["type"], orders["status"], strict=True))
    # legs were reached: a take-profit filled, a stop-loss filled, their other legs expired
    assert {("LIMIT_MAKER", "FILLED"), ("STOP_LOSS_LIMIT", "FILLED"), ("LIMIT_MAKER", "EXPIRED")} <= kinds
    assert fast.engine == "fast" and event.engine == "event"
    detail = fast_row(fast)
    assert detail["orders"] > 1000 and detail["lists"] > 300
    if fast.fallback is not None:  # the last trade open at the end is the event path's
        assert "event path replayed from" in fast.fallback


@pytest.mark.parametrize(
    "closes, script, expected",
    [
        (  # the take-profit fills as maker, the stop expires
            [50_000] * 3 + [51_100] * 3 + [51_000] * 3,
            {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_050}, 7: {"target": 0.0}},
            {("LIMIT_MAKER", "FILLED"), ("STOP_LOSS_LIMIT", "EXPIRED")},
        ),
        (  # the stop triggers and sells to the book at once
            [50_000] * 3 + [48_990] * 3 + [49_000] * 3,
            {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}, 7: {"target": 0.0}},
            {("LIMIT_MAKER", "EXPIRED"), ("STOP_LOSS_LIMIT", "FILLED")},
        ),
        (  # the stop gaps past its limit, rests, and fills as maker when the price comes back
            [50_000] * 3 + [48_000] * 2 + [48_800] * 3,
            {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}},
            {("LIMIT_MAKER", "EXPIRED"), ("STOP_LOSS_LIMIT", "FILLED")},
        ),
        (  # ... or rests until the target goes flat, which cancels it and sells at market
            [50_000] * 4 + [48_000] * 3 + [48_100] * 3,
            {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}, 6: {"target": 0.0}},
            {("STOP_LOSS_LIMIT", "CANCELED"), ("MARKET", "FILLED")},
        ),
        (  # a bigger target cancels the OCO and protects the whole position again, then flat
            [50_000] * 3 + [50_100] * 3 + [50_200] * 3,
            {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000},
             4: {"target": 0.02, "stop_loss": 49_500, "take_profit": 51_500}, 7: {"target": 0.0}},
            {("LIMIT_MAKER", "CANCELED"), ("STOP_LOSS_LIMIT", "CANCELED")},
        ),
        (  # no exits: market orders only; then a remainder below one step is a drop
            [50_000] * 4 + [50_100] * 4,
            {1: {"target": 0.01}, 3: {"target": 0.0}, 5: {"target": 0.000001}, 6: {"target": 0.0}},
            {("MARKET", "FILLED")},
        ),
    ],
)  # fmt: skip
async def test_each_path_of_a_bracket_is_the_event_paths(closes, script, expected, tmp_path):
    bars = path_bars(closes)
    bars["low"], bars["high"] = bars["close"] - 5, bars["close"] + 5  # extremes inside each bar
    event, fast = await both(Scripted(bars, script), bars, tmp_path)
    assert_same(event, fast)
    assert expected <= set(zip(fast.orders["type"], fast.orders["status"], strict=True))
    assert fast_row(fast)["fills"] >= 1


async def test_a_risk_check_that_refuses_hands_over_to_the_event_path_from_the_last_flat_bar(tmp_path):
    bars = path_bars([50_000] * 4 + [50_100] * 4 + [50_200] * 4)
    script = {1: {"target": 0.01}, 3: {"target": 0.0}, 5: {"target": 0.3}, 9: {"target": 0.0}}
    risk = RiskLimits(max_order_notional=Decimal(1_000), max_position_notional=None, max_orders_per_minute=None)
    event, fast = await both(Scripted(bars, script), bars, tmp_path, risk=risk)
    assert_same(event, fast)
    assert "max_order_notional" in fast.fallback and bars.index[5].isoformat()[:16] in fast.fallback.replace(" ", "T")
    assert fast_row(fast)["orders"] == 2  # the first trade on the fast path, the rest on the event path
    assert len(fast.session.rejections) == len(event.session.rejections) == 1


async def test_a_trade_open_at_the_end_is_left_in_the_venue_by_the_event_path(tmp_path):
    bars = path_bars([50_000] * 6)
    script = {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}, 2: {"target": 0.0},
              3: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}}  # fmt: skip
    event, fast = await both(Scripted(bars, script), bars, tmp_path)
    assert_same(event, fast)
    assert len(fast.session._open) == 2 and "the last trade is open" in fast.fallback
    free = {b.asset: b for b in (await fast.session.executor.fetch_balance()).values()}
    assert free["BTC"].locked == Decimal("0.00999")


async def test_a_first_trade_still_open_at_the_end_is_replayed_on_the_event_path(tmp_path):
    bars = path_bars([50_000] * 4)
    script = {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}}
    result = await replay(Scripted(bars, script), bars, store=tmp_path / "c.duckdb", risk=RISK)
    assert result.engine == "event" and "still protected" in result.fallback
    assert len(result.session._open) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.integers(-40, 40), min_size=30, max_size=60),
    wicks=st.lists(st.integers(0, 300), min_size=60, max_size=60),
    entries=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from([0.0, 0.001, 0.002, 0.0035]), st.integers(20, 400),
                  st.integers(20, 400)),
        min_size=1, max_size=8,
    ),
)  # fmt: skip
async def test_random_brackets_on_random_bars_are_the_event_paths(steps, wicks, entries, tmp_path_factory):
    closes = 30_000 + np.cumsum(np.array(steps, dtype=float) * 7)
    bars = path_bars(closes.round(2).tolist())
    n = len(bars)
    spread = np.array(wicks[:n], dtype=float)
    bars["high"] = (bars["close"] + spread).round(2)
    bars["low"] = (bars["close"] - spread[::-1]).round(2)
    script = {}
    for row, target, down, up in entries:
        close = float(bars["close"].iloc[row % n])
        script[row % n] = {"target": target, "stop_loss": close - down, "take_profit": close + up}
    fees = Fees(maker=Decimal("0.00075"), taker=Decimal("0.001"))  # a maker fill charged as taker would show
    event, fast = await both(Scripted(bars, script), bars, tmp_path_factory.mktemp("random"), fees=fees)
    assert_same(event, fast)


def test_the_fast_paths_intents_are_those_the_session_reads():
    frame = intent_frame(
        pd.DataFrame({"target": [0.01, 0.0, 0.002], "stop_loss": [49_000.5, np.nan, 1.25],
                      "take_profit": [51_000.0, 52_000.0, np.nan]})  # fmt: skip
    )
    assert _intents(frame) == list(iter_intents(frame))
    plain = intent_frame(pd.DataFrame({"target": [0.01, 0.0]}))
    assert _intents(plain) == list(iter_intents(plain))


def _with_tick(tick: str):
    btc = load_rules(["BTC/USDT"])["BTC/USDT"]
    price_filter = {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick}
    return replace(btc, filters=(price_filter, *(f for f in btc.filters if f["filterType"] != "PRICE_FILTER")))


PRICES = st.lists(
    st.one_of(
        st.integers(1, 10**9).map(lambda t: t / 100),  # on the 0.01 tick
        st.integers(1, 10**8).map(lambda t: (t + 0.5) / 100),  # half a tick: a tie to round
        st.floats(0.01, 1e7, allow_nan=False),  # anywhere
        st.just(float("nan")),
    ),
    min_size=1,
    max_size=40,
)


@given(
    closes=PRICES,
    tick=st.sampled_from(["0.01", "0.01000000", "1", "0.05", "0.00001"]),
    spread=st.sampled_from(["2", "1", "0.5", "3.3", "0"]),
)
@example(closes=[0.145, 0.285, 1.005, 0.07, 0.14, 1.09, 30490.64], tick="0.01", spread="2")  # floats just off a tie
@settings(max_examples=150, deadline=None)
def test_prices_worked_out_in_whole_ticks_are_those_the_session_rounds_one_by_one(closes, tick, spread):
    """A fast path's closes, best bid and ask, and OCO prices (vectorised, in whole ticks where it can)
    equal what the session computes for each on its own: every tick size, spread and tie."""
    rules, book = _with_tick(tick), BookConfig(spread_bps=Decimal(spread), levels=1)
    values = np.array([c for c in closes if c == c])
    if len(values):
        for close, (price, bid, ask) in zip(values.tolist(), _book_prices(values, rules, book), strict=True):
            assert price == bar_price(close) and (bid, ask) == best_prices(bar_price(close), rules, book)
    stops = np.array(closes)
    profits = np.concatenate([stops[1:] * 1.0123 + 0.0037, stops[:1]])  # mostly off the grid, one maybe on it
    for stop, profit, row in zip(stops.tolist(), profits.tolist(), _exit_prices(stops, profits, rules), strict=True):
        if stop != stop or profit != profit:
            assert row is None
            continue
        stop_price = rules.round_price(Decimal(str(stop)))
        limit = rules.round_price(stop_price * (1 - STOP_LIMIT_OFFSET), ROUND_DOWN)
        assert row == (stop_price, rules.round_price(Decimal(str(profit)), ROUND_UP), limit)
