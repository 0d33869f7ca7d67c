"""Order lists (OCO, OTO, OTOCO) in the matching core and the paper executor, by Binance's rules
(rest-api.md "New order list - OCO/OTO/OTOCO", "Cancel order list")."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import FilterError, InsufficientBalance, InvalidOrder, OrderNotFound, OrderRejected
from workbench.executors import PaperExecutor
from workbench.executors.base import OrderListExecutor
from workbench.filters import SymbolRules
from workbench.matching import MatchingEngine
from workbench.model import (
    ContingencyType,
    ListOrderStatus,
    ListStatusType,
    OrderList,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    SelfTradePrevention,
)

from .conftest import T0

D = Decimal
ALL_DONE = (ListStatusType.ALL_DONE, ListOrderStatus.ALL_DONE)


def leg(cid, type_, side="sell", amount="0.5", **kw):
    if type_ in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        kw.setdefault("time_in_force", "GTC")
    return OrderRequest("BTC/USDT", side, type_, amount=amount, client_order_id=cid, **kw)


def oco_sell(amount="0.5", tp="51000", stop="49000"):
    above = leg("tp", "LIMIT_MAKER", amount=amount, price=tp)
    below = leg("sl", "STOP_LOSS_LIMIT", amount=amount, price=str(D(stop) - 100), stop_price=stop)
    return OrderListRequest("OCO", (above, below), "L1")


def oto(pending, working=None):
    working = working or leg("w", "LIMIT", side="buy", amount="0.1", price="49000")
    return OrderListRequest("OTO", (working, pending), "L2")


def kinds(events):
    return [e.kind for e in events]


def status(engine, cid):
    return engine.get_order("BTC/USDT", client_order_id=cid).status


def list_state(order_list):
    return order_list.list_status_type, order_list.list_order_status


def test_oco_places_both_legs_and_locks_the_quantity_once(engine):
    events = engine.create_order_list(oco_sell(amount="1"), "L1", T0)
    assert kinds(events) == ["NEW", "NEW", "LIST_STATUS"]
    order_list = events[-1].order_list
    assert order_list.contingency_type is ContingencyType.OCO and order_list.list_client_order_id == "L1"
    assert list_state(order_list) == (ListStatusType.EXEC_STARTED, ListOrderStatus.EXECUTING)
    assert [e.order.order_list_id for e in events[:2]] == [order_list.id] * 2
    assert engine.balances()["BTC"].locked == 1 and engine.balances()["BTC"].free == 0  # one lock, not two
    assert engine.get_order_list("BTC/USDT", id=order_list.id) == order_list
    single = engine.create_order(leg("single", "LIMIT", side="buy", amount="0.1", price="49000"), "single", T0)
    assert single[0].order.order_list_id == -1


def test_oco_limit_leg_fill_expires_the_stop_leg_and_ends_the_list(engine):
    engine.create_order_list(oco_sell(), "L1", T0)
    events = engine.set_price("BTC/USDT", 51_000, T0 + 1)
    assert kinds(events) == ["EXPIRED", "TRADE", "LIST_STATUS"]
    assert events[0].order.client_order_id == "sl" and list_state(events[-1].order_list) == ALL_DONE
    assert events[1].order.status is OrderStatus.FILLED
    assert engine.balances()["BTC"].locked == 0 and engine.balances()["BTC"].free == D("0.5")
    assert engine.order_lists_of(open_only=True) == [] and len(engine.order_lists_of("BTC/USDT")) == 1


def test_oco_stop_trigger_expires_the_limit_leg_and_takes_its_funds(engine):
    engine.create_order_list(oco_sell(amount="1"), "L1", T0)
    assert engine.set_price("BTC/USDT", 49_500, T0 + 1) == []
    events = engine.set_price("BTC/USDT", 49_000, T0 + 2)
    assert kinds(events)[0] == "EXPIRED" and events[0].order.client_order_id == "tp"
    assert kinds(events)[-1] == "LIST_STATUS" and events[-2].fill is not None
    assert status(engine, "sl") is OrderStatus.FILLED
    balance = engine.balances()["BTC"]
    assert balance.free == 0 and balance.locked == 0


def test_buy_oco_moves_the_lock_to_the_leg_that_fills(engine):
    above = leg("sl", "STOP_LOSS_LIMIT", side="buy", amount="1", price="51100", stop_price="51000")
    below = leg("tp", "LIMIT_MAKER", side="buy", amount="1", price="49000")
    engine.create_order_list(OrderListRequest("OCO", (above, below), "B"), "B", T0)
    assert engine.balances()["USDT"].locked == 51_100  # the dearer leg's funds, once
    events = engine.set_price("BTC/USDT", 49_000, T0 + 1)
    assert kinds(events) == ["EXPIRED", "TRADE", "LIST_STATUS"]
    usdt = engine.balances()["USDT"]
    assert usdt.locked == 0 and usdt.free == 100_000 - 49_000


def test_a_partial_fill_of_one_leg_expires_the_other(rules):
    engine = MatchingEngine(rules, {"USDT": 0, "BTC": 5})
    engine.set_price("BTC/USDT", 50_000, T0)
    engine.create_order_list(oco_sell(amount="3"), "L1", T0)
    events = engine.set_price("BTC/USDT", 51_000, T0 + 1)
    assert kinds(events) == ["EXPIRED", "TRADE", "LIST_STATUS"]
    assert events[1].order.status is OrderStatus.PARTIALLY_FILLED and list_state(events[-1].order_list) == ALL_DONE
    assert engine.balances()["BTC"].locked == 3 - events[1].order.filled


@pytest.mark.parametrize("cid", ["tp", "sl"])
def test_canceling_one_leg_cancels_the_list(engine, cid):
    engine.create_order_list(oco_sell(), "L1", T0)
    events = engine.cancel_order_events("BTC/USDT", client_order_id=cid, now=T0 + 1)
    assert kinds(events) == ["CANCELED", "CANCELED", "LIST_STATUS"]
    assert list_state(events[-1].order_list) == ALL_DONE and engine.balances()["BTC"].locked == 0


def test_cancel_order_list_cancels_its_open_orders(engine):
    engine.create_order_list(oco_sell(), "L1", T0)
    events = engine.cancel_order_list("BTC/USDT", list_client_order_id="L1", now=T0 + 1)
    assert kinds(events) == ["CANCELED", "CANCELED", "LIST_STATUS"] and engine.open_orders() == []
    with pytest.raises(OrderNotFound, match="ALL_DONE"):
        engine.cancel_order_list("BTC/USDT", id=events[-1].order_list.id, now=T0 + 2)
    with pytest.raises(OrderNotFound, match="order_lists_of"):
        engine.get_order_list("ETH/USDT", list_client_order_id="L1")
    engine.create_order_list(oco_sell(), "L1", T0 + 3)  # a done list's client id may be used again
    assert [o.list_client_order_id for o in engine.order_lists_of(open_only=True)] == ["L1"]


def test_cancel_all_orders_ends_the_lists_too(engine):
    engine.create_order_list(oco_sell(), "L1", T0)
    engine.create_order(leg("s", "LIMIT", amount="0.1", price="52000"), "s", T0)
    events = engine.cancel_all_orders("BTC/USDT", T0 + 1)
    assert kinds(events) == ["CANCELED", "CANCELED", "LIST_STATUS", "CANCELED"]


@pytest.mark.parametrize(
    "above, below, code",
    [
        (leg("a", "LIMIT_MAKER", price="49500"), leg("b", "STOP_LOSS_LIMIT", price="48900", stop_price="49000"), -2010),
        (leg("a", "LIMIT_MAKER", price="51000"), leg("b", "STOP_LOSS_LIMIT", price="50100", stop_price="50200"), -2010),
        (leg("a", "STOP_LOSS_LIMIT", price="48900", stop_price="49000"), leg("b", "LIMIT_MAKER", price="51000"), -1166),
    ],
)
def test_oco_price_rules(engine, above, below, code):
    with pytest.raises(OrderRejected) as e:
        engine.create_order_list(OrderListRequest("OCO", (above, below)), "X", T0)
    assert e.value.code == code and engine.orders == {}


@pytest.mark.parametrize("side, limit", [("sell", "49998"), ("buy", "50002")])
def test_the_limit_leg_must_be_beyond_the_last_price_not_only_the_spread(engine, side, limit):
    stop = "51000" if side == "buy" else "49000"
    legs = (
        leg("a", "LIMIT_MAKER", side=side, amount="0.1", price=limit),  # behind the spread, so it would not take
        leg("b", "STOP_LOSS_LIMIT", side=side, amount="0.1", price=stop, stop_price=stop),
    )
    with pytest.raises(OrderRejected) as e:
        engine.create_order_list(OrderListRequest("OCO", legs if side == "sell" else legs[::-1]), "X", T0)
    assert (e.value.code, e.value.msg) == (-2010, "The relationship of the prices for the orders is not correct.")


@pytest.mark.parametrize(
    "above, below, code, msg",
    [
        (
            leg("a", "LIMIT_MAKER", price="51000"),
            leg("b", "LIMIT_MAKER", price="52000"),
            -1168,
            r"one STOP_LOSS\(_LIMIT\) leg",
        ),
        (leg("a", "LIMIT", price="51000"), leg("b", "STOP_LOSS_LIMIT", price="1", stop_price="2"), -1158, "OCO"),
        (
            leg("a", "LIMIT_MAKER", price="51000", amount="1"),
            leg("b", "STOP_LOSS_LIMIT", price="1", stop_price="2"),
            -1128,
            "same side and amount",
        ),  # fmt: skip
        (
            leg("a", "TAKE_PROFIT_LIMIT", side="buy", price="48900", stop_price="49000"),
            leg("b", "STOP_LOSS_LIMIT", side="buy", price="51100", stop_price="51000"),
            -1198,
            "take profit order in a buy OCO must be below",
        ),
        (
            leg("a", "STOP_LOSS_LIMIT", side="sell", price="1", stop_price="2"),
            leg("b", "TAKE_PROFIT_LIMIT", side="sell", price="51100", stop_price="51000"),
            -1199,
            "take profit order in a sell OCO must be above",
        ),
        (
            leg("a", "LIMIT_MAKER", side="buy", price="49000"),
            leg("b", "STOP_LOSS_LIMIT", side="buy", price="51100", stop_price="51000"),
            -1165,
            "limit order in a buy OCO must be below",
        ),
    ],
)
def test_oco_shape_rules(above, below, code, msg):
    with pytest.raises(InvalidOrder, match=msg) as e:
        OrderListRequest("OCO", (above, below))
    assert e.value.code == code


def test_list_shape_rules():
    sell = leg("s", "LIMIT", price="52000")
    with pytest.raises(InvalidOrder) as e:
        OrderListRequest("OTOCO", (sell, sell))
    assert e.value.code == -1102
    with pytest.raises(InvalidOrder, match="working order"):
        OrderListRequest("OTO", (leg("w", "STOP_LOSS_LIMIT", price="1", stop_price="2"), sell))
    with pytest.raises(InvalidOrder, match="quote_amount"):
        OrderListRequest("OTO", (sell, OrderRequest("BTC/USDT", "buy", "MARKET", quote_amount="10")))
    with pytest.raises(InvalidOrder, match="same symbol"):
        OrderListRequest("OTO", (sell, OrderRequest("ETH/USDT", "buy", "MARKET", amount="1")))
    with pytest.raises(InvalidOrder) as e:
        OrderListRequest("XYZ", (sell, sell))
    assert e.value.code == -1100


def test_list_placement_refusals_change_nothing(engine, rules):
    engine.create_order_list(oco_sell(), "L1", T0)
    with pytest.raises(OrderRejected, match="exists already") as e:
        engine.create_order_list(oco_sell(), "L1", T0)
    assert (e.value.field, e.value.msg) == ("list_client_order_id", "Duplicate order sent.")
    with pytest.raises(OrderRejected, match="client_order_id='tp'"):
        engine.create_order_list(oco_sell(), "L9", T0)  # its legs' client ids are open
    engine.cancel_order_list("BTC/USDT", list_client_order_id="L1", now=T0)
    before = engine.balances()
    nameless = OrderListRequest("OTO", (leg(None, "LIMIT", price="52000"), leg(None, "LIMIT", price="53000")))
    with pytest.raises(InvalidOrder, match="Every order of a list"):
        engine.create_order_list(nameless, "L3", T0)
    big = OrderListRequest("OCO", oco_sell(amount="2").orders)
    with pytest.raises(InsufficientBalance):
        engine.create_order_list(big, "L4", T0)
    assert engine.balances() == before and len(engine.orders) == 2 and engine.open_orders() == []


def test_max_num_order_lists_and_algo_orders_count_list_legs(rules):
    btc = rules["BTC/USDT"]
    filters = (*btc.filters, {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 1})
    limited = {"BTC/USDT": SymbolRules(btc.symbol, btc.id, btc.base, btc.quote, filters)}
    engine = MatchingEngine(limited, {"BTC": 10})
    engine.set_price("BTC/USDT", 50_000, T0)
    engine.create_order_list(oco_sell(), "L1", T0)
    second = OrderListRequest("OCO", (leg("a", "LIMIT_MAKER", price="51000"),
                                      leg("b", "STOP_LOSS_LIMIT", price="48900", stop_price="49000")))  # fmt: skip
    with pytest.raises(FilterError) as e:
        engine.create_order_list(second, "L2", T0)
    assert (e.value.code, e.value.msg) == (-1013, "Filter failure: MAX_NUM_ORDER_LISTS")
    engine = MatchingEngine(rules, {"BTC": 10})  # maxNumAlgoOrders is 5: four stops, then an OCO's stop is the 6th
    engine.set_price("BTC/USDT", 50_000, T0)
    for i in range(5):
        engine.create_order(leg(f"s{i}", "STOP_LOSS_LIMIT", price="48900", stop_price="49000"), f"s{i}", T0)
    with pytest.raises(FilterError) as e:  # the 6th open stop order alone
        engine.create_order(leg("s6", "STOP_LOSS_LIMIT", price="48900", stop_price="49000"), "s6", T0)
    assert (e.value.code, e.value.msg) == (-1013, "Filter failure: MAX_NUM_ALGO_ORDERS")
    engine.create_order(leg("lim", "LIMIT", price="52000"), "lim", T0)  # plain orders still pass
    with pytest.raises(FilterError) as e:
        engine.create_order_list(second, "L2", T0)
    assert e.value.msg == "Filter failure: MAX_NUM_ALGO_ORDERS"


def test_oto_places_the_pending_order_when_the_working_order_fills(engine):
    events = engine.create_order_list(oto(leg("p", "LIMIT", amount="0.1", price="52000")), "L2", T0)
    assert kinds(events) == ["NEW", "NEW", "LIST_STATUS"]
    assert events[1].order.status is OrderStatus.PENDING_NEW and events[-1].order_list.contingency_type == "OTO"
    assert len(engine.open_orders()) == 2 and engine.balances()["BTC"].locked == 0  # pending holds nothing
    assert engine.set_price("BTC/USDT", 52_000, T0 + 1) == []  # a pending order does not fill
    events = engine.set_price("BTC/USDT", 49_000, T0 + 2)
    assert kinds(events) == ["TRADE", "NEW", "LIST_STATUS"] and list_state(events[-1].order_list) == ALL_DONE
    assert status(engine, "p") is OrderStatus.NEW and engine.balances()["BTC"].locked == D("0.1")


def test_oto_working_order_filled_at_once_places_the_pending_order_at_once(engine):
    working = leg("w", "LIMIT", side="buy", amount="0.1", price="50010")
    events = engine.create_order_list(oto(leg("p", "MARKET", amount="0.1"), working), "L2", T0)
    assert kinds(events) == ["NEW", "NEW", "LIST_STATUS", "TRADE", "NEW", "TRADE", "LIST_STATUS"]
    assert status(engine, "p") is OrderStatus.FILLED


def test_a_partly_filled_working_order_keeps_the_pending_order_waiting(rules):
    engine = MatchingEngine(rules, {"USDT": 1_000_000})
    engine.set_price("BTC/USDT", 50_000, T0)
    working = leg("w", "LIMIT", side="buy", amount="3", price="49000")
    engine.create_order_list(oto(leg("p", "LIMIT", amount="2.99", price="52000"), working), "L2", T0)  # less the fee
    assert kinds(engine.set_price("BTC/USDT", 49_000, T0 + 1)) == ["TRADE"]
    assert status(engine, "w") is OrderStatus.PARTIALLY_FILLED and status(engine, "p") is OrderStatus.PENDING_NEW
    assert kinds(engine.set_price("BTC/USDT", 49_000, T0 + 2)) == ["TRADE", "NEW", "LIST_STATUS"]


@pytest.mark.parametrize("cid", ["w", "p"])
def test_canceling_either_oto_order_cancels_the_other(engine, cid):
    engine.create_order_list(oto(leg("p", "LIMIT", amount="0.1", price="52000")), "L2", T0)
    events = engine.cancel_order_events("BTC/USDT", client_order_id=cid, now=T0 + 1)
    assert kinds(events) == ["CANCELED", "CANCELED", "LIST_STATUS"] and engine.balances()["USDT"].locked == 0


def test_an_expired_working_order_expires_the_pending_order(engine):
    working = leg("w", "LIMIT", side="buy", amount="0.1", price="49000", time_in_force="IOC")
    events = engine.create_order_list(oto(leg("p", "LIMIT", amount="0.1", price="52000"), working), "L2", T0)
    assert kinds(events)[-3:] == ["EXPIRED", "EXPIRED", "LIST_STATUS"]


def test_an_unfunded_pending_order_expires_when_placed(engine):
    engine.create_order_list(oto(leg("p", "LIMIT", amount="2", price="52000")), "L2", T0)
    events = engine.set_price("BTC/USDT", 49_000, T0 + 1)
    assert kinds(events) == ["TRADE", "EXPIRED", "LIST_STATUS"] and status(engine, "p") is OrderStatus.EXPIRED


def test_otoco_places_an_oco_after_the_working_order_fills(engine):
    above = leg("tp", "LIMIT_MAKER", amount="0.1", price="52000")
    below = leg("sl", "STOP_LOSS_LIMIT", amount="0.1", price="46900", stop_price="47000")
    request = OrderListRequest("OTOCO", (leg("w", "LIMIT", side="buy", amount="0.1", price="49000"), above, below))
    assert request.symbol == "BTC/USDT"
    events = engine.create_order_list(request, "L3", T0)
    assert kinds(events) == ["NEW", "NEW", "NEW", "LIST_STATUS"]
    assert events[-1].order_list.contingency_type == "OTO" and events[-1].order_list.kind == "OTOCO"
    events = engine.set_price("BTC/USDT", 49_000, T0 + 1)
    assert kinds(events) == ["TRADE", "NEW", "NEW"] and engine.get_order_list(id=1).is_open
    assert engine.balances()["BTC"].locked == D("0.1")  # the pair shares one lock
    events = engine.set_price("BTC/USDT", 47_000, T0 + 2)
    assert kinds(events)[0] == "EXPIRED" and kinds(events)[-1] == "LIST_STATUS"
    assert events[0].order.client_order_id == "tp"
    assert status(engine, "sl") is OrderStatus.FILLED and engine.balances()["BTC"].locked == 0


def test_order_list_snapshot_is_independent():
    order_list = OrderList(1, "L", "BTC/USDT", ContingencyType.OCO, ("1", "2"))
    copy = order_list.snapshot()
    order_list.list_order_status = ListOrderStatus.ALL_DONE
    assert copy.is_open and not order_list.is_open


# -- through the paper executor -------------------------------------------------------------------


@pytest.fixture
def paper(rules):
    executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 1})
    executor.update_price("BTC/USDT", 50_000, T0)
    return executor


async def test_paper_oco_one_leg_fills_the_other_is_expired(paper):
    assert isinstance(paper, OrderListExecutor)
    events = []
    paper.subscribe(events.append)
    order_list = await paper.create_order_list(oco_sell())
    assert order_list.list_client_order_id == "L1" and order_list.is_open
    assert [o.list_client_order_id for o in await paper.fetch_open_order_lists("BTC/USDT")] == ["L1"]
    paper.update_price("BTC/USDT", 51_000, T0 + 60_000)
    assert kinds(events) == ["NEW", "NEW", "LIST_STATUS", "EXPIRED", "TRADE", "LIST_STATUS"]
    done = await paper.fetch_order_list("L1", "BTC/USDT")
    assert list_state(done) == ALL_DONE and done.last_update == T0 + 60_000
    assert [t.client_order_id for t in await paper.fetch_my_trades("BTC/USDT")] == ["tp"]
    assert await paper.fetch_open_order_lists() == []


async def test_paper_cancels_lists_and_legs(paper):
    await paper.create_order_list(oco_sell())
    canceled = await paper.cancel_order_list("L1", "BTC/USDT")
    assert list_state(canceled) == ALL_DONE
    await paper.create_order_list(oto(leg("p", "LIMIT", amount="0.1", price="52000")))
    events = []
    paper.subscribe(events.append)
    order = await paper.cancel_order("p", "BTC/USDT")
    assert order.client_order_id == "p" and order.status is OrderStatus.CANCELED
    assert kinds(events) == ["CANCELED", "CANCELED", "LIST_STATUS"]
    await paper.create_order_list(oco_sell())
    assert [o.client_order_id for o in await paper.cancel_all_orders("BTC/USDT")] == ["tp", "sl"]


async def test_paper_needs_client_ids_on_lists(paper):
    with pytest.raises(InvalidOrder, match="list_client_order_id"):
        await paper.create_order_list(OrderListRequest("OCO", oco_sell().orders))
    nameless = OrderListRequest("OTO", (leg(None, "LIMIT", price="52000"), leg("p", "LIMIT", price="53000")), "L")
    with pytest.raises(InvalidOrder, match="client_order_id") as e:
        await paper.create_order_list(nameless)
    assert e.value.code == -1102


# -- property: funds stay straight whatever lists, prices and self-trades do -----------------------


def random_list(kind, side, amount, last, i):
    up, down = str(last + 300), str(last - 300)
    buy = side == "buy"
    inside = str(last - 3 if buy else last + 3)  # inside the synthetic spread, where takers meet it first
    limit = leg(f"l{i}", "LIMIT_MAKER", side=side, amount=amount, price=inside)
    stop_price = up if buy else down
    stop = leg(f"s{i}", "STOP_LOSS_LIMIT", side=side, amount=amount, price=stop_price, stop_price=stop_price)
    pair = (stop, limit) if buy else (limit, stop)
    if kind == "oco":
        return OrderListRequest("OCO", pair)
    other = "sell" if buy else "buy"
    working = leg(f"w{i}", "LIMIT", side=other, amount=amount, price=up if buy else down)
    if kind == "oto":
        return OrderListRequest("OTO", (working, leg(f"p{i}", "LIMIT", side=side, amount=amount, price=pair[1].price)))
    return OrderListRequest("OTOCO", (working, *pair))


@st.composite
def list_actions(draw):
    kind = draw(st.sampled_from(["oco", "oto", "otoco", "taker", "price", "cancel", "cancel_list"]))
    side = draw(st.sampled_from(["buy", "sell"]))
    amount = draw(st.decimals(min_value=D("0.01"), max_value=D("1"), places=2))
    offset = draw(st.integers(min_value=-600, max_value=600))
    mode = draw(st.sampled_from(list(SelfTradePrevention)))
    return kind, side, amount, offset, mode


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(list_actions(), min_size=1, max_size=25))
def test_random_lists_keep_the_funds_straight(rules, steps):
    """Property: balances never go negative; what is locked is exactly what the open, placed orders
    that hold funds may spend (an OCO's pair once); a done list has at most one open order and
    none pending; funds are conserved through every fill."""
    engine = MatchingEngine(rules, {"USDT": 300_000, "BTC": 3})
    engine.set_price("BTC/USDT", 50_000, T0)
    fills = []
    for i, (kind, side, amount, offset, mode) in enumerate(steps):
        now, last = T0 + i + 1, engine.last_price["BTC/USDT"]
        try:
            if kind == "price":
                events = engine.set_price("BTC/USDT", last + offset, now)
            elif kind == "taker":
                price = str(last + offset % 17 - 8)  # near the own orders inside the spread
                request = leg(None, "LIMIT", side=side, amount=amount, price=price, self_trade_prevention=mode)
                events = engine.create_order(request, f"t{i}", now)
            elif kind == "cancel":
                opened = engine.open_orders("BTC/USDT")
                events = engine.cancel_order_events("BTC/USDT", id=opened[-1].id, now=now) if opened else []
            elif kind == "cancel_list":
                lists = engine.order_lists_of("BTC/USDT", open_only=True)
                events = engine.cancel_order_list("BTC/USDT", id=lists[0].id, now=now) if lists else []
            else:
                events = engine.create_order_list(random_list(kind, side, amount, last, i), f"L{i}", now)
        except OrderRejected:
            events = []
        fills += [e.fill for e in events if e.fill]
        locked = {"BTC": D(0), "USDT": D(0)}
        for order in engine.orders.values():
            if order.is_open and order.holds_funds and order.status is not OrderStatus.PENDING_NEW:
                buy = order.side == "buy"
                locked["USDT" if buy else "BTC"] += order.remaining * order.price if buy else order.remaining
        for asset, balance in engine.balances().items():
            assert balance.free >= 0 and balance.locked == locked[asset], asset
        for order_list in engine.order_lists.values():
            members = [engine.orders[i] for i in order_list.orders]
            if not order_list.is_open:
                assert sum(o.is_open for o in members) <= 1
                assert all(o.status is not OrderStatus.PENDING_NEW for o in members)
    btc = D(3) + sum((f.amount - f.fee if f.side == "buy" else -f.amount) for f in fills)
    usdt = D(300_000) + sum((-f.cost if f.side == "buy" else f.cost - f.fee) for f in fills)
    balances = engine.balances()
    assert balances["BTC"].total == btc and balances["USDT"].total == usdt
