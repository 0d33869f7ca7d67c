"""Issue 16 in the matching core: market-type stops (STOP_LOSS, TAKE_PROFIT; rest-api.md "New order")
and amend keep priority (faqs/order_amend_keep_priority.md), shared by the paper face and the local
exchange."""

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import FilterError, InvalidOrder, OrderNotFound, OrderRejected
from workbench.filters import ORDER_TYPES, SymbolRules, check_order
from workbench.matching import BookConfig, MatchingEngine
from workbench.model import (
    ListStatusType,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)

from .conftest import T0

D = Decimal


def req(side, type_, amount="0.1", **kw):
    if not OrderType(type_).is_market and type_ != "LIMIT_MAKER":
        kw.setdefault("time_in_force", "GTC")
    return OrderRequest("BTC/USDT", side, type_, amount=amount, **kw)


def kinds(events):
    return [e.kind for e in events]


@pytest.fixture
def every_type(rules):
    """The bundled rules with every order type listed (Binance's BTCUSDT lists no STOP_LOSS/TAKE_PROFIT)."""
    return {s: replace(r, order_types=tuple(OrderType)) for s, r in rules.items()}


def engine_at(rules, price="50000", book=BookConfig(), **balances):
    engine = MatchingEngine(rules, balances or {"USDT": 100_000, "BTC": 1}, book=book)
    engine.set_price("BTC/USDT", price, T0)
    return engine


# -- market-type stops: the model's parameter rules ------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "code", "msg"),
    [
        ({"price": "1"}, -1106, "Parameter 'price' sent when not required."),
        ({"time_in_force": "GTC"}, -1106, "Parameter 'timeInForce' sent when not required."),
        ({"stop_price": None}, -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."),
        ({"amount": None}, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
        ({"quote_amount": "10"}, -1106, "Parameter 'quoteOrderQty' sent when not required."),
        ({"iceberg_amount": "0.01"}, -2010, "Unsupported order combination"),
    ],
)
@pytest.mark.parametrize("type_", ["STOP_LOSS", "TAKE_PROFIT"])
def test_market_stop_parameters(type_, kw, code, msg):
    args = {"stop_price": "49000", "amount": "0.1"} | kw
    with pytest.raises(InvalidOrder) as e:
        OrderRequest("BTC/USDT", "sell", type_, **args)
    assert (e.value.code, e.value.msg) == (code, msg)


def test_market_stop_types_are_algo_market_and_trail():
    for type_ in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT):
        assert type_.is_stop and type_.is_market
        OrderRequest("BTC/USDT", "sell", type_, amount="0.1", trailing_delta=100)  # a trailing delta alone will do
    assert OrderType.MARKET.is_market and not OrderType.MARKET.is_stop
    assert not OrderType.STOP_LOSS_LIMIT.is_market and OrderType.STOP_LOSS_LIMIT.is_stop_loss
    assert not OrderType.TAKE_PROFIT.is_stop_loss


def test_a_symbol_takes_only_the_types_it_lists(rules, every_type):
    btc = rules["BTC/USDT"]
    assert btc.order_types == ORDER_TYPES and btc.to_exchange_info()["orderTypes"] == list(ORDER_TYPES)
    listed = SymbolRules.from_exchange_info(every_type["BTC/USDT"].to_exchange_info())
    assert listed.order_types == tuple(OrderType)
    for type_, msg in (("STOP_LOSS", "Stop loss orders"), ("TAKE_PROFIT", "Take profit orders")):
        with pytest.raises(OrderRejected, match="does not take") as e:
            check_order(req("sell", type_, stop_price="49000"), btc, avg_price=D(50_000))
        assert (e.value.code, e.value.msg) == (-2010, f"{msg} are not supported for this symbol.")
    limit_only = replace(btc, order_types=("LIMIT",))
    with pytest.raises(OrderRejected) as e:
        check_order(req("buy", "LIMIT_MAKER", price="49000"), limit_only, avg_price=D(50_000))
    assert e.value.msg == "Unsupported order combination"
    engine = engine_at(rules)
    with pytest.raises(OrderRejected) as e:
        engine.create_order(req("sell", "STOP_LOSS", stop_price="49000"), "s", T0)
    assert e.value.msg == "Stop loss orders are not supported for this symbol." and not engine.orders


def test_market_stop_filters_use_the_stop_price_and_the_market_lot_size(every_type):
    btc = every_type["BTC/USDT"]
    check_order(req("sell", "STOP_LOSS", amount="0.0002", stop_price="49000"), btc, avg_price=D(50_000))
    with pytest.raises(FilterError, match=r"stop price = 0.0001 x 49000") as e:  # 4.9 USDT < NOTIONAL's 5
        check_order(req("sell", "STOP_LOSS", amount="0.0001", stop_price="49000"), btc, avg_price=D(50_000))
    assert e.value.msg == "Filter failure: NOTIONAL"
    with pytest.raises(FilterError, match="average price"):  # a trailing stop without one: the average price
        check_order(req("sell", "STOP_LOSS", amount="0.00009", trailing_delta=100), btc, avg_price=D(50_000))
    with pytest.raises(FilterError) as e:  # 75 BTC: within LOT_SIZE, above MARKET_LOT_SIZE's 74.38
        check_order(req("sell", "TAKE_PROFIT", amount="75", stop_price="51000"), btc, avg_price=D(50_000))
    assert e.value.msg == "Filter failure: MARKET_LOT_SIZE"
    with pytest.raises(FilterError, match="PRICE_FILTER"):
        check_order(req("sell", "STOP_LOSS", stop_price="49000.001"), btc, avg_price=D(50_000))
    with pytest.raises(FilterError, match="TRAILING_DELTA"):
        check_order(req("buy", "STOP_LOSS", trailing_delta=5000), btc, avg_price=D(50_000))


# -- market-type stops in the matching core ---------------------------------------------------------


def test_a_stop_loss_sell_waits_locks_its_amount_then_takes_the_book(every_type):
    engine = engine_at(every_type)
    events = engine.create_order(req("sell", "STOP_LOSS", amount="0.5", stop_price="49000"), "sl", T0)
    assert kinds(events) == ["NEW"] and events[0].order.price is None
    assert engine.balances()["BTC"].locked == D("0.5")
    assert engine.set_price("BTC/USDT", "49500", T0 + 1) == []
    events = engine.set_price("BTC/USDT", "48990", T0 + 2)
    assert kinds(events) == ["TRADE"]
    fill = events[0].fill
    assert not fill.is_maker and fill.price == engine.book("BTC/USDT").bids[0].price and fill.amount == D("0.5")
    assert events[0].order.status is OrderStatus.FILLED and events[0].order.triggered
    balances = engine.balances()
    assert balances["BTC"] == type(balances["BTC"])("BTC", D("0.5"), D(0))
    assert balances["USDT"].free == D(100_000) + fill.cost - fill.fee


def test_a_take_profit_buy_on_a_thin_book_expires_what_the_book_cannot_fill(every_type):
    thin = BookConfig(level_notional=D(10_000), levels=2)
    engine = engine_at(every_type, book=thin, USDT=1_000_000)
    engine.create_order(req("buy", "TAKE_PROFIT", amount="1", stop_price="49000"), "tp", T0)
    assert engine.balances()["USDT"].locked == 0  # a market buy's cost is not known: it locks nothing
    events = engine.set_price("BTC/USDT", "49000", T0 + 1)
    assert kinds(events) == ["TRADE", "TRADE", "EXPIRED"]
    order = events[-1].order
    assert order.status is OrderStatus.EXPIRED and D(0) < order.filled < 1


def test_a_market_buy_stop_the_funds_no_longer_cover_expires_at_its_trigger(every_type):
    engine = engine_at(every_type, USDT=10_000, BTC=0)
    engine.create_order(req("buy", "STOP_LOSS", amount="0.15", stop_price="51000"), "sl", T0)
    engine.create_order(req("buy", "LIMIT", amount="0.15", price="40000"), "spend", T0)  # 6,000 USDT locked
    events = engine.set_price("BTC/USDT", "51000", T0 + 1)
    assert kinds(events) == ["EXPIRED"] and events[0].order.filled == 0
    assert engine.balances()["USDT"].free == 4_000


def test_a_trailing_take_profit_sell_triggers_on_the_retrace(every_type):
    engine = engine_at(every_type)
    engine.create_order(req("sell", "TAKE_PROFIT", amount="0.1", stop_price="51000", trailing_delta=200), "t", T0)
    assert engine.set_price("BTC/USDT", "52000", T0 + 1) == []  # tracking from 51,000 up
    assert engine.set_price("BTC/USDT", "51000", T0 + 2) == []  # less than 2% below 52,000
    assert kinds(engine.set_price("BTC/USDT", "50960", T0 + 3)) == ["TRADE"]


def test_oco_of_market_stops_take_profit_above_stop_loss_below(every_type):
    engine = engine_at(every_type)
    above = req("sell", "TAKE_PROFIT", stop_price="52000", client_order_id="tp")
    below = req("sell", "STOP_LOSS", stop_price="48000", client_order_id="sl")
    events = engine.create_order_list(OrderListRequest("OCO", (above, below)), "oco", T0)
    assert kinds(events) == ["NEW", "NEW", "LIST_STATUS"]
    assert engine.balances()["BTC"].locked == D("0.1")  # one lock for the pair
    events = engine.set_price("BTC/USDT", "52000", T0 + 1)
    assert kinds(events) == ["EXPIRED", "TRADE", "LIST_STATUS"]
    assert events[0].order.client_order_id == "sl" and events[1].order.client_order_id == "tp"
    assert events[-1].order_list.list_status_type is ListStatusType.ALL_DONE
    assert engine.balances()["BTC"].locked == 0


def test_oco_price_rules_read_a_take_profits_stop_price(every_type):
    engine = engine_at(every_type)
    above = req("sell", "TAKE_PROFIT", stop_price="49500", client_order_id="tp")  # below the last price
    below = req("sell", "STOP_LOSS", stop_price="48000", client_order_id="sl")
    with pytest.raises(OrderRejected) as e:  # a take profit's stop price on the wrong side would trigger at once
        engine.create_order_list(OrderListRequest("OCO", (above, below)), "oco", T0)
    assert e.value.msg == "Order would trigger immediately."
    high = req("sell", "TAKE_PROFIT", stop_price="52000", client_order_id="tp")
    engine.create_order_list(OrderListRequest("OCO", (high, below)), "ok", T0)
    trailing = req("sell", "TAKE_PROFIT", trailing_delta=100, client_order_id="tp2")  # no price to check
    low = req("sell", "STOP_LOSS", stop_price="48000", client_order_id="sl2")
    engine.create_order_list(OrderListRequest("OCO", (trailing, low)), "oco", T0)
    assert len(engine.order_lists_of(open_only=True)) == 2
    with pytest.raises(InvalidOrder) as e:  # a buy OCO's take profit goes below
        OrderListRequest(
            "OCO", (req("buy", "TAKE_PROFIT", stop_price="48000"), req("buy", "STOP_LOSS", stop_price="52000"))
        )
    assert e.value.code == -1198


def test_a_buy_oco_stop_loss_shares_the_limit_legs_lock_and_buys_at_the_market(every_type):
    engine = engine_at(every_type)
    above = req("buy", "STOP_LOSS", amount="0.1", stop_price="51000", client_order_id="sl")
    below = req("buy", "LIMIT_MAKER", amount="0.1", price="49000", client_order_id="lm")
    engine.create_order_list(OrderListRequest("OCO", (above, below)), "oco", T0)
    assert engine.balances()["USDT"].locked == D(4900)
    events = engine.set_price("BTC/USDT", "51000", T0 + 1)
    assert kinds(events) == ["EXPIRED", "TRADE", "LIST_STATUS"] and engine.balances()["USDT"].locked == 0


def test_oto_pending_stop_loss_goes_on_once_the_working_order_fills(every_type):
    engine = engine_at(every_type)
    working = req("buy", "LIMIT", price="49000", client_order_id="w")
    pending = req("sell", "STOP_LOSS", stop_price="47000", client_order_id="p")
    engine.create_order_list(OrderListRequest("OTO", (working, pending)), "oto", T0)
    events = engine.set_price("BTC/USDT", "49000", T0 + 1)
    assert kinds(events) == ["TRADE", "NEW", "LIST_STATUS"] and events[1].order.type is OrderType.STOP_LOSS
    assert kinds(engine.set_price("BTC/USDT", "47000", T0 + 2)) == ["TRADE"]


# -- amend keep priority ----------------------------------------------------------------------------


def test_amend_reduces_in_place_keeps_priority_and_frees_funds(rules):
    engine = engine_at(rules)
    first = engine.create_order(req("buy", "LIMIT", amount="0.3", price="49000"), "a", T0)[-1].order
    second = engine.create_order(req("buy", "LIMIT", amount="0.3", price="49000"), "b", T0)[-1].order
    assert engine.balances()["USDT"].locked == D(29_400)
    events = engine.amend_order("BTC/USDT", id=first.id, new_amount="0.1", new_client_order_id="a2", now=T0 + 1)
    assert kinds(events) == ["REPLACED"]
    amended = events[0].order
    assert (amended.id, amended.amount, amended.client_order_id, amended.status) == (first.id, D("0.1"), "a2", "NEW")
    assert engine.balances()["USDT"].locked == D(19_600)
    assert engine.get_order("BTC/USDT", client_order_id="a2").id == first.id
    with pytest.raises(OrderNotFound):
        engine.get_order("BTC/USDT", client_order_id="a")
    (amendment,) = engine.amendments_of("BTC/USDT", first.id)
    assert (amendment.orig_client_order_id, amendment.new_client_order_id) == ("a", "a2")
    assert (amendment.orig_amount, amendment.new_amount, amendment.timestamp) == (D("0.3"), D("0.1"), T0 + 1)
    fills = [e.fill.order_id for e in engine.set_price("BTC/USDT", "49000", T0 + 2) if e.fill]
    assert fills == [first.id, second.id]  # the amended order kept its place ahead


def test_amend_refusals_change_nothing(rules):
    btc = rules["BTC/USDT"]
    amends = {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 2}
    limited = {"BTC/USDT": replace(btc, filters=(*btc.filters, amends))}
    engine = engine_at(limited)
    order = engine.create_order(req("buy", "LIMIT", amount="0.3", price="49000"), "a", T0)[-1].order
    engine.create_order(req("buy", "LIMIT", amount="0.3", price="48000"), "b", T0)
    cases = [
        ("0.3", "a", -2038, "The requested action would change no state; rejecting"),
        ("0.4", "a", -2038, "Order amend (quantity increase) is not supported."),
        ("0", "a", -1013, "Invalid quantity."),
        ("0.000015", "a", -1013, "Filter failure: LOT_SIZE"),
        ("0.00001", "a", -1013, "Filter failure: NOTIONAL"),
        ("0.2", "b", -2038, "Duplicate order sent."),
    ]
    for amount, cid, code, msg in cases:
        with pytest.raises(OrderRejected) as e:
            engine.amend_order("BTC/USDT", id=order.id, new_amount=amount, new_client_order_id=cid, now=T0)
        assert (e.value.code, e.value.msg) == (code, msg), amount
    assert engine.get_order("BTC/USDT", id=order.id) == order
    for amount in ("0.2", "0.1"):  # its own client order id may stay
        engine.amend_order("BTC/USDT", id=order.id, new_amount=amount, new_client_order_id="a", now=T0)
    with pytest.raises(OrderRejected) as e:
        engine.amend_order("BTC/USDT", id=order.id, new_amount="0.05", new_client_order_id="a", now=T0)
    assert (e.value.code, e.value.msg) == (-2038, "Filter failure: MAX_NUM_ORDER_AMENDS")
    engine.cancel_order("BTC/USDT", id=order.id, now=T0)
    with pytest.raises(OrderNotFound, match="nothing to amend"):
        engine.amend_order("BTC/USDT", id=order.id, new_amount="0.05", new_client_order_id="a", now=T0)


def test_amend_to_what_has_filled_expires_the_order(rules):
    engine = engine_at(rules, book=BookConfig(level_notional=D(5_000)))
    order = engine.create_order(req("buy", "LIMIT", amount="0.3", price="49000"), "a", T0)[-1].order
    engine.set_price("BTC/USDT", "49000", T0 + 1)  # one level: 5,000 USDT's worth fills
    filled = engine.get_order("BTC/USDT", id=order.id).filled
    assert D(0) < filled < D("0.3")
    events = engine.amend_order("BTC/USDT", id=order.id, new_amount=str(filled), new_client_order_id="a", now=T0 + 2)
    assert kinds(events) == ["REPLACED"] and events[0].order.status is OrderStatus.EXPIRED
    assert events[0].order.amount == filled and engine.balances()["USDT"].locked == 0 and not engine.open_orders()


def test_amend_an_iceberg_and_an_untriggered_stop(rules):
    engine = engine_at(rules)
    iceberg = engine.create_order(req("sell", "LIMIT", amount="0.5", price="51000", iceberg_amount="0.2"), "i", T0)
    order = iceberg[-1].order
    engine.amend_order("BTC/USDT", id=order.id, new_amount="0.3", new_client_order_id="i", now=T0)
    assert engine.get_order("BTC/USDT", id=order.id).visible == D("0.2")  # above the visible part: unchanged
    engine.amend_order("BTC/USDT", id=order.id, new_amount="0.1", new_client_order_id="i", now=T0)
    assert engine.get_order("BTC/USDT", id=order.id).visible == D("0.1")
    stop = engine.create_order(req("sell", "STOP_LOSS_LIMIT", price="48000", stop_price="48500"), "s", T0)[-1].order
    engine.amend_order("BTC/USDT", id=stop.id, new_amount="0.05", new_client_order_id="s", now=T0)
    assert engine.balances()["BTC"].locked == D("0.15")


def test_amending_an_oco_leg_amends_both_and_a_new_client_id_updates_the_list(rules):
    engine = engine_at(rules)
    above = req("sell", "LIMIT_MAKER", price="52000", client_order_id="lm")
    below = req("sell", "STOP_LOSS_LIMIT", price="47900", stop_price="48000", client_order_id="sl")
    engine.create_order_list(OrderListRequest("OCO", (above, below)), "oco", T0)
    sl = engine.get_order("BTC/USDT", client_order_id="sl")
    events = engine.amend_order("BTC/USDT", id=sl.id, new_amount="0.04", new_client_order_id="sl2", now=T0 + 1)
    assert kinds(events) == ["REPLACED", "REPLACED", "LIST_STATUS"]
    assert [e.order.client_order_id for e in events[:2]] == ["sl2", "lm"]
    assert all(e.order.amount == D("0.04") for e in events[:2])
    assert events[-1].order_list.list_status_type is ListStatusType.UPDATED
    assert engine.get_order_list(id=events[-1].order_list.id).list_status_type is ListStatusType.EXEC_STARTED
    assert engine.balances()["BTC"].locked == D("0.04")
    assert len(engine.amendments) == 2
    same = engine.amend_order("BTC/USDT", id=sl.id, new_amount="0.03", new_client_order_id="sl2", now=T0 + 2)
    assert kinds(same) == ["REPLACED", "REPLACED"]  # the same client order id: no list update


def test_oto_orders_are_amended_one_at_a_time_the_pending_one_too(rules):
    engine = engine_at(rules)
    working = req("buy", "LIMIT", price="49000", client_order_id="w")
    pending = req("sell", "LIMIT_MAKER", price="52000", client_order_id="p")
    engine.create_order_list(OrderListRequest("OTO", (working, pending)), "oto", T0)
    p = engine.get_order("BTC/USDT", client_order_id="p")
    events = engine.amend_order("BTC/USDT", id=p.id, new_amount="0.05", new_client_order_id="p", now=T0)
    assert kinds(events) == ["REPLACED"] and events[0].order.status is OrderStatus.PENDING_NEW
    assert engine.get_order("BTC/USDT", client_order_id="w").amount == D("0.1")
    assert Side.BUY is engine.get_order("BTC/USDT", client_order_id="w").side


@settings(max_examples=60, deadline=None)
@given(
    new=st.decimals(min_value=D("0.00001"), max_value=D("0.4"), places=6),
    cross=st.booleans(),
)
def test_an_amendment_keeps_the_locked_funds_equal_to_what_may_still_fill(rules, new, cross):
    engine = engine_at(rules, book=BookConfig(level_notional=D(5_000)))
    order = engine.create_order(req("buy", "LIMIT", amount="0.3", price="49000"), "a", T0)[-1].order
    if cross:
        engine.set_price("BTC/USDT", "49000", T0 + 1)  # a part fills
    before = engine.get_order("BTC/USDT", id=order.id)
    try:
        engine.amend_order("BTC/USDT", id=order.id, new_amount=new, new_client_order_id="b", now=T0 + 2)
    except OrderRejected:
        assert engine.get_order("BTC/USDT", id=order.id) == before and engine.amendments == []
    else:
        after = engine.get_order("BTC/USDT", id=order.id)
        assert after.amount == max(new, before.filled) and after.client_order_id == "b"
        assert after.status is (OrderStatus.EXPIRED if new <= before.filled else before.status)
    left = engine.get_order("BTC/USDT", id=order.id)
    assert engine.balances()["USDT"].locked == (left.remaining * left.price if left.is_open else 0)
