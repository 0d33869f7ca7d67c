"""Trailing stops (faqs/trailing-stop-faq.md), icebergs and self-trade prevention (faqs/stp_faq.md)
in the matching core and the paper executor."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.executors import PaperExecutor
from workbench.matching import MatchingEngine
from workbench.model import OrderListRequest, OrderRequest, OrderStatus, SelfTradePrevention

from .conftest import T0

D = Decimal


def req(side, type_, amount="0.1", **kw):
    if type_ != "MARKET" and type_ != "LIMIT_MAKER":
        kw.setdefault("time_in_force", "GTC")
    return OrderRequest("BTC/USDT", side, type_, amount=amount, **kw)


def kinds(events):
    return [e.kind for e in events]


def engine_at(rules, price, **balances):
    engine = MatchingEngine(rules, balances or {"USDT": 100_000, "BTC": 1})
    engine.set_price("BTC/USDT", price, T0)
    return engine


# -- trailing stops ---------------------------------------------------------------------------------

# The FAQ's scenarios A to E: (side, type, stop price, trailing delta, limit price, prices after placing at
# 40,000, index of the price at which tracking starts); each triggers on its last price and not before.
SCENARIOS = {
    "A": ("buy", "STOP_LOSS_LIMIT", "44000", 500, "45000", [37000, 44000, 45000, 46000, 42000, 44100], 1),
    "B": ("sell", "STOP_LOSS_LIMIT", "39000", 1000, "38000", [41500, 39000, 37000, 41000, 36900], 1),
    "C": ("buy", "TAKE_PROFIT_LIMIT", "38000", 850, "38500", [42000, 38000, 37000, 39000, 38000, 40145], 1),
    "D": ("sell", "TAKE_PROFIT_LIMIT", "42000", 750, "41000", [41500, 39000, 42000, 45000, 44000, 46500, "43012.5"], 2),
    "E": ("sell", "STOP_LOSS_LIMIT", None, 700, "39000", [42000, 39500, 45500, 42315], -1),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_trailing_stop_scenarios_of_the_faq(rules, name):
    side, type_, stop, delta, price, path, starts = SCENARIOS[name]
    engine = engine_at(rules, 40_000)
    engine.create_order(req(side, type_, price=price, stop_price=stop, trailing_delta=delta), "t", T0)
    order = engine.get_order("BTC/USDT", client_order_id="t")
    assert order.trailing_delta == delta and order.trailing_time == (T0 if starts < 0 else None)
    for i, p in enumerate(path, start=1):
        engine.set_price("BTC/USDT", p, T0 + i)
        order = engine.get_order("BTC/USDT", client_order_id="t")
        assert order.triggered == (i == len(path)), f"price {p}"
        assert order.trailing_time == (T0 if starts < 0 else T0 + starts + 1 if i > starts else None)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=30_000, max_value=60_000), min_size=1, max_size=30),
    st.integers(min_value=10, max_value=2000),
)
def test_a_trailing_sell_triggers_at_the_first_retrace_of_its_delta(rules, path, delta):
    """Property: a trailing sell without stop price triggers at the first price at or below the
    highest price since placement (the placing price included) times 1 - delta / 10,000."""
    engine = engine_at(rules, 40_000)
    engine.create_order(req("sell", "STOP_LOSS_LIMIT", price="20000", trailing_delta=delta), "t", T0)
    high, expected = D(40_000), None
    for i, p in enumerate(path):
        high = max(high, D(p))
        if p <= high * (1 - D(delta) / 10_000):
            expected = i
            break
    for i, p in enumerate(path):
        engine.set_price("BTC/USDT", p, T0 + i + 1)
        if engine.get_order("BTC/USDT", client_order_id="t").triggered:
            assert i == expected
            return
    assert expected is None


def test_a_trailing_stop_is_an_oco_leg(rules):
    engine = engine_at(rules, 50_000)
    above = req("sell", "LIMIT_MAKER", price="52000", client_order_id="tp")
    below = req("sell", "STOP_LOSS_LIMIT", price="45000", trailing_delta=200, client_order_id="sl")
    engine.create_order_list(OrderListRequest("OCO", (above, below), "L"), "L", T0)
    assert engine.set_price("BTC/USDT", 51_000, T0 + 1) == []
    events = engine.set_price("BTC/USDT", 49_980, T0 + 2)  # 2% below the high of 51,000
    assert kinds(events)[0] == "EXPIRED" and events[0].order.client_order_id == "tp"
    assert engine.get_order("BTC/USDT", client_order_id="sl").status is OrderStatus.FILLED


async def test_paper_trailing_stop_follows_the_market_clock(rules):
    paper = PaperExecutor(rules, {"USDT": 100_000, "BTC": 1})
    paper.update_price("BTC/USDT", 50_000, T0)
    events = []
    paper.subscribe(events.append)
    order = await paper.create_order(
        req("sell", "STOP_LOSS_LIMIT", price="45000", trailing_delta=100, client_order_id="trail")
    )
    assert order.trailing_time == T0 and not order.triggered
    for i, price in enumerate([51_000, 52_000, 51_500, 51_480], start=1):  # 1% below the high of 52,000
        paper.update_price("BTC/USDT", price, T0 + i * 60_000)
    done = await paper.fetch_order("trail", "BTC/USDT")
    assert done.triggered and done.status is OrderStatus.FILLED
    assert [t.timestamp for t in await paper.fetch_my_trades("BTC/USDT")] == [T0 + 4 * 60_000]
    assert kinds(events) == ["NEW", "TRADE"]


# -- icebergs ---------------------------------------------------------------------------------------


def test_an_iceberg_rests_showing_one_part_and_fills_a_part_at_a_time(engine):
    engine.create_order(req("sell", "LIMIT", amount="1", price="51000", iceberg_amount="0.3"), "ice", T0)
    order = engine.get_order("BTC/USDT", client_order_id="ice")
    assert order.iceberg_amount == D("0.3") and order.visible == D("0.3")
    fills = [engine.set_price("BTC/USDT", 51_000, T0 + i)[0].fill.amount for i in range(1, 5)]
    assert fills == [D("0.3"), D("0.3"), D("0.3"), D("0.1")]
    assert engine.get_order("BTC/USDT", client_order_id="ice").status is OrderStatus.FILLED


# -- self-trade prevention --------------------------------------------------------------------------


@pytest.fixture
def own(engine):
    """The account rests a sell at 50,001, inside the synthetic spread (49,995 / 50,005)."""
    engine.create_order(req("sell", "LIMIT", price="50001"), "maker", T0)
    return engine


def taker(mode=None, amount="0.2", price="50010", side="buy"):
    extra = {} if mode is None else {"self_trade_prevention": mode}
    return req(side, "LIMIT", amount=amount, price=price, **extra)


def test_expire_maker_is_the_default(own):
    events = own.create_order(taker(), "taker", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE_PREVENTION", "TRADE"]
    maker = own.get_order("BTC/USDT", client_order_id="maker")
    assert maker.status is OrderStatus.EXPIRED_IN_MATCH and maker.prevented_quantity == D("0.1")
    assert events[-1].order.status is OrderStatus.FILLED and events[-1].order.self_trade_prevention == "EXPIRE_MAKER"
    (match,) = own.prevented_matches("BTC/USDT")
    assert (match.taker_prevented_quantity, match.maker_prevented_quantity) == (None, D("0.1"))
    assert match.price == D(50_001) and maker.prevented_match_id == match.id
    assert own.balances()["BTC"].locked == 0


@pytest.mark.parametrize(
    "mode, taker_status, maker_status, taker_prevented, maker_prevented",
    [
        ("EXPIRE_TAKER", OrderStatus.EXPIRED_IN_MATCH, OrderStatus.NEW, "0.2", "0"),
        ("EXPIRE_BOTH", OrderStatus.EXPIRED_IN_MATCH, OrderStatus.EXPIRED_IN_MATCH, "0.2", "0.1"),
        ("DECREMENT", OrderStatus.FILLED, OrderStatus.EXPIRED_IN_MATCH, "0.1", "0.1"),
        ("NONE", OrderStatus.FILLED, OrderStatus.NEW, "0", "0"),
    ],
)
def test_stp_modes(own, mode, taker_status, maker_status, taker_prevented, maker_prevented):
    own.create_order(taker(mode), "taker", T0 + 1)
    mine, theirs = (own.get_order("BTC/USDT", client_order_id=c) for c in ("taker", "maker"))
    assert (mine.status, theirs.status) == (taker_status, maker_status)
    assert (mine.prevented_quantity, theirs.prevented_quantity) == (D(taker_prevented), D(maker_prevented))
    assert mine.filled + mine.prevented_quantity == mine.amount  # nothing left to fill in any mode
    assert len(own.prevented_matches("BTC/USDT", order_id=mine.id)) == (mode != "NONE")
    assert own.balances()["USDT"].locked == 0 and own.balances()["BTC"].locked == (
        D("0.1") if maker_status is OrderStatus.NEW else 0
    )


def test_decrement_keeps_the_larger_order_open_with_less_to_fill(own):
    events = own.create_order(taker("DECREMENT", amount="0.04"), "taker", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE_PREVENTION", "TRADE_PREVENTION"]
    maker = own.get_order("BTC/USDT", client_order_id="maker")
    assert maker.status is OrderStatus.NEW and maker.remaining == D("0.06") and maker.prevented_quantity == D("0.04")
    assert events[-1].order.status is OrderStatus.EXPIRED_IN_MATCH and own.balances()["BTC"].locked == D("0.06")


def test_the_taker_meets_its_own_order_only_where_the_book_reaches_it(rules):
    engine = engine_at(rules, 50_000, USDT=1_000_000, BTC=1)
    engine.create_order(req("sell", "LIMIT", price="50012"), "far", T0)
    small = engine.create_order(req("buy", "MARKET", amount="0.1"), "small", T0 + 1)
    assert kinds(small) == ["NEW", "TRADE"] and engine.prevented_matches("BTC/USDT") == []
    big = engine.create_order(req("buy", "MARKET", amount="5"), "big", T0 + 2)
    prices = [e.fill.price for e in big if e.fill]
    at = kinds(big).index("TRADE_PREVENTION")
    assert all(p < D(50_012) for p in prices[: at - 1]) and all(p > D(50_012) for p in prices[at - 1 :])
    assert engine.get_order("BTC/USDT", client_order_id="far").status is OrderStatus.EXPIRED_IN_MATCH


def test_a_sell_taker_meets_the_own_bid_and_quote_orders_prevent_too(rules):
    engine = engine_at(rules, 50_000, USDT=100_000, BTC=1)
    engine.create_order(req("buy", "LIMIT", price="49999"), "bid", T0)
    events = engine.create_order(req("sell", "MARKET", self_trade_prevention="EXPIRE_TAKER"), "t", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE_PREVENTION"] and events[-1].order.filled == 0
    quote = req("sell", "MARKET", amount=None, quote_amount="1000", self_trade_prevention="DECREMENT")
    events = engine.create_order(quote, "q", T0 + 2)
    assert kinds(events)[:2] == ["NEW", "TRADE_PREVENTION"] and events[-1].order.status is OrderStatus.FILLED
    (_, decrement) = engine.prevented_matches("BTC/USDT")
    assert decrement.taker_prevented_quantity is None and decrement.maker_prevented_quantity == D("0.1")
    assert engine.balances()["USDT"].locked == 0


def test_a_quote_amount_taker_expired_by_stp_prevents_no_quantity(own):
    quote = req("buy", "MARKET", amount=None, quote_amount="1000", self_trade_prevention="EXPIRE_BOTH")
    events = own.create_order(quote, "q", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE_PREVENTION", "TRADE_PREVENTION"]
    assert events[-1].order.status is OrderStatus.EXPIRED_IN_MATCH and events[-1].order.prevented_quantity == 0
    (match,) = own.prevented_matches("BTC/USDT")
    assert match.taker_prevented_quantity is None and match.maker_prevented_quantity == D("0.1")


def test_stp_expiring_an_oco_leg_ends_the_list(own):
    own.cancel_order("BTC/USDT", client_order_id="maker", now=T0)
    above = req("sell", "LIMIT_MAKER", price="50001", client_order_id="tp")
    below = req("sell", "STOP_LOSS_LIMIT", price="48900", stop_price="49000", client_order_id="sl")
    own.create_order_list(OrderListRequest("OCO", (above, below), "L"), "L", T0)
    events = own.create_order(taker("DECREMENT", amount="0.04"), "taker", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE_PREVENTION", "EXPIRED", "LIST_STATUS", "TRADE_PREVENTION"]
    assert own.balances()["BTC"].locked == D("0.06")  # the limit leg took over the shared lock
    again = own.create_order(taker(amount="0.1", price="50001"), "taker2", T0 + 2)  # EXPIRE_MAKER
    assert kinds(again) == ["NEW", "TRADE_PREVENTION"] and own.balances()["BTC"].locked == 0


def test_a_fully_filled_taker_does_not_reach_its_own_order(engine):
    engine.create_order(req("sell", "LIMIT", price="50012"), "far", T0)
    events = engine.create_order(taker(amount="0.1", price="50020"), "t", T0 + 1)
    assert kinds(events) == ["NEW", "TRADE"] and engine.prevented_matches("BTC/USDT") == []


async def test_paper_lists_prevented_matches(rules):
    paper = PaperExecutor(rules, {"USDT": 100_000, "BTC": 1})
    paper.update_price("BTC/USDT", 50_000, T0)
    await paper.create_order(req("sell", "LIMIT", price="50001", client_order_id="m"))
    order = await paper.create_order(
        req("buy", "LIMIT", amount="0.2", price="50010", self_trade_prevention="EXPIRE_TAKER", client_order_id="t")
    )
    assert order.client_order_id == "t" and order.status is OrderStatus.EXPIRED_IN_MATCH
    (match,) = await paper.fetch_prevented_matches("BTC/USDT")
    assert match.mode is SelfTradePrevention.EXPIRE_TAKER and match.taker_prevented_quantity == D("0.2")
