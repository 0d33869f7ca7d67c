"""MatchingEngine.untouched: a bar's range that reaches no open order changes nothing but the price."""

import copy
from decimal import Decimal

import pytest

from workbench.matching import MatchingEngine
from workbench.model import OrderListRequest, OrderRequest

from .conftest import T0

D = Decimal


def req(side, type_, symbol="BTC/USDT", **kw):
    return OrderRequest(symbol, side, type_, amount=kw.pop("amount", "0.1"), **kw)


def engine_with(rules, *requests: OrderRequest) -> MatchingEngine:
    engine = MatchingEngine(rules, {"USDT": 100_000, "BTC": 1, "ETH": 10})
    engine.set_price("BTC/USDT", D(50_000), T0)
    engine.set_price("ETH/USDT", D(3_000), T0)
    for i, request in enumerate(requests):
        engine.create_order(request, f"o{i}", T0)
    return engine


def changes(engine: MatchingEngine, price: str) -> bool:
    """Whether ``price`` would change (a copy of) the engine's open orders: an event, or a state
    without one (a take-profit triggered that rests at its limit)."""
    copied = copy.deepcopy(engine)
    before = copied.open_orders()
    return bool(copied.set_price("BTC/USDT", D(price), T0 + 1)) or copied.open_orders() != before


@pytest.mark.parametrize(
    ("orders", "below", "above"),
    [
        ([req("sell", "LIMIT", price="51000", time_in_force="GTC")], None, "51000"),  # a sell fills at or above
        ([req("buy", "LIMIT", price="49000", time_in_force="GTC")], "49000", None),
        ([req("sell", "STOP_LOSS_LIMIT", price="48900", stop_price="49000", time_in_force="GTC")], "49000", None),
        ([req("buy", "STOP_LOSS_LIMIT", price="51100", stop_price="51000", time_in_force="GTC")], None, "51000"),
        ([req("sell", "TAKE_PROFIT_LIMIT", price="51000", stop_price="51000", time_in_force="GTC")], None, "51000"),
    ],
)
def test_a_range_short_of_every_trigger_and_resting_price_changes_nothing(rules, orders, below, above):
    engine = engine_with(rules, *orders, req("sell", "LIMIT", "ETH/USDT", price="3100", time_in_force="GTC"))
    low, high = D(below or "45000") + D("0.01"), D(above or "55000") - D("0.01")
    assert engine.untouched("BTC/USDT", low, high)  # the ETH order is another symbol's
    assert not changes(engine, str(low)) and not changes(engine, str(high))
    for level, side in ((below, "low"), (above, "high")):
        if level is not None:  # reaching the level (from either end of the range) changes the order
            reached = (D(level), high) if side == "low" else (low, D(level))
            assert not engine.untouched("BTC/USDT", *reached)
            assert changes(engine, level)


def test_a_trailing_stop_is_never_untouched_and_a_pending_leg_always_is(rules):
    trail = req("sell", "STOP_LOSS_LIMIT", price="40000", trailing_delta=100, time_in_force="GTC")
    trailing = engine_with(rules, trail)
    assert not trailing.untouched("BTC/USDT", D(50_000), D(50_000))  # it tracks every new high

    engine = engine_with(rules)
    working = req("buy", "LIMIT", price="49000", time_in_force="GTC", client_order_id="w")
    pending = req("sell", "LIMIT", price="45000", time_in_force="GTC", client_order_id="p")
    engine.create_order_list(OrderListRequest("OTO", (working, pending)), "oto", T0)
    assert engine.untouched("BTC/USDT", D("49000.01"), D(55_000))  # the pending sell at 45,000 is not on the book
    assert not changes(engine, "49000.01") and changes(engine, "49000")
    assert not engine.untouched("BTC/USDT", D(49_000), D(55_000))


def test_the_band_is_bounded_by_the_nearest_level_on_each_side(rules):
    engine = engine_with(
        rules,
        req("sell", "LIMIT", price="52000", time_in_force="GTC"),
        req("sell", "LIMIT", price="51000", time_in_force="GTC"),
        req("buy", "LIMIT", price="48000", time_in_force="GTC"),
        req("buy", "LIMIT", price="49000", time_in_force="GTC"),
    )
    assert engine.band("BTC/USDT") == (D(49_000), D(51_000))
    assert engine.band("ETH/USDT") == (None, None)  # nothing open there: any price is quiet
    assert engine.untouched("ETH/USDT", D(1), D(100_000))
