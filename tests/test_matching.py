from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import InsufficientBalance, InvalidOrder, OrderNotFound, OrderRejected
from workbench.matching import BookConfig, Fees, MatchingEngine, synthetic_book
from workbench.model import OrderRequest, OrderStatus

from .conftest import T0

D = Decimal


def req(side, type_, **kw):
    return OrderRequest("BTC/USDT", side, type_, **kw)


def kinds(events):
    return [e.kind for e in events]


def test_synthetic_book_is_on_grid_around_last_price(engine, rules):
    book = engine.book("BTC/USDT")
    assert book.bids[0].price == D("49995.00") and book.asks[0].price == D("50005.00")
    assert book.mid == 50_000 and len(book.asks) == 10
    assert book.asks[0].amount == D("1.99980")  # 100,000 USDT a level, rounded down to the step
    assert [level.price for level in book.asks[:3]] == [D("50005.00"), D("50010.00"), D("50015.00")]
    tiny = synthetic_book(D("0.0002"), rules["XRP/USDT"], BookConfig(spread_bps=D(0), levels=3))
    assert tiny.asks[0].price > tiny.bids[0].price  # at least one tick apart
    assert all(level.price > 0 for level in tiny.bids)


def test_market_buy_walks_levels_and_pays_base_fee(rules):
    engine = MatchingEngine(rules, {"USDT": 1_000_000, "BTC": 1})
    engine.set_price("BTC/USDT", 50_000, T0)
    events = engine.create_order(req("buy", "MARKET", amount="1.5"), "m0", T0)
    assert kinds(events) == ["NEW", "TRADE"] and events[-1].order.status is OrderStatus.FILLED
    engine.set_price("BTC/USDT", 10_000, T0)
    events = engine.create_order(req("buy", "MARKET", amount="12"), "m1", T0)
    assert kinds(events) == ["NEW", "TRADE", "TRADE"]
    fills = [e.fill for e in events[1:]]
    assert [(f.price, f.amount) for f in fills] == [(D("10001.00"), D("9.99900")), (D("10002.00"), D("2.00100"))]
    assert all(f.fee_currency == "BTC" and not f.is_maker for f in fills)
    assert fills[0].fee == D("0.00999900") and fills[1].fee == D("0.00200100")
    order = events[-1].order
    cost = D("10001") * D("9.999") + D("10002") * D("2.001")
    assert order.status is OrderStatus.FILLED and order.filled == 12 and order.average == cost / 12
    b = engine.balances()
    assert b["BTC"].free == D(1) + D("1.5") + D(12) - D("0.0015") - D("0.012")


def test_market_sell_by_quote_amount_is_filled_to_the_last_step(engine):
    events = engine.create_order(req("sell", "MARKET", quote_amount="1000"), "q1", T0)
    order = events[-1].order
    assert order.status is OrderStatus.FILLED
    assert order.amount == order.filled == D("0.02000")  # 1000 / 49995 floored to the 0.00001 step
    fee = events[-1].fill.fee
    assert events[-1].fill.fee_currency == "USDT" and fee == (order.cost * D("0.001")).quantize(
        D("1e-8"), ROUND_HALF_UP
    )


def test_market_order_larger_than_book_expires_partially_filled(rules):
    engine = MatchingEngine(rules, {"USDT": 10_000_000}, book=BookConfig(levels=2))
    engine.set_price("BTC/USDT", 50_000, T0)
    depth = sum(level.amount for level in engine.book("BTC/USDT").asks)
    events = engine.create_order(req("buy", "MARKET", amount="5"), "big", T0)
    assert kinds(events) == ["NEW", "TRADE", "TRADE", "EXPIRED"]
    assert events[-1].order.filled == depth and events[-1].order.remaining == 5 - depth
    quote = engine.create_order(req("buy", "MARKET", quote_amount="1000000"), "bigq", T0)
    assert quote[-1].kind == "EXPIRED" and quote[-1].order.amount == quote[-1].order.filled == depth


def test_limit_gtc_takes_what_crosses_then_rests_and_fills_partially_as_maker(rules):
    engine = MatchingEngine(rules, {"USDT": 1_000_000}, book=BookConfig(levels=2))
    engine.set_price("BTC/USDT", 50_000, T0)
    events = engine.create_order(req("buy", "LIMIT", amount="5", price="50005", time_in_force="GTC"), "l1", T0)
    assert kinds(events) == ["NEW", "TRADE"]
    order = events[-1].order
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled == D("1.99980")
    assert engine.balances()["USDT"].locked == (5 - D("1.9998")) * D(50005)
    assert engine.set_price("BTC/USDT", 50_006, T0 + 1) == []  # above the bid: no fill
    maker = engine.set_price("BTC/USDT", 50_005, T0 + 2)
    assert kinds(maker) == ["TRADE"] and maker[0].fill.is_maker and maker[0].fill.amount == D("1.99980")
    rest = engine.set_price("BTC/USDT", 49_000, T0 + 3)
    assert rest[-1].order.status is OrderStatus.FILLED and rest[-1].fill.price == D("50005")
    assert engine.balances()["USDT"].locked == 0


def test_limit_sell_rests_until_price_rises(engine):
    engine.create_order(req("sell", "LIMIT", amount="0.5", price="51000", time_in_force="GTC"), "s1", T0)
    assert engine.balances()["BTC"].locked == D("0.5")
    events = engine.set_price("BTC/USDT", 51_000, T0 + 1)
    assert events[0].order.status is OrderStatus.FILLED and events[0].fill.fee_currency == "USDT"
    assert engine.balances()["BTC"].free == D("0.5") and engine.balances()["BTC"].locked == 0


def test_ioc_expires_the_rest_and_fok_fills_all_or_nothing(rules):
    engine = MatchingEngine(rules, {"USDT": 1_000_000}, book=BookConfig(levels=3))
    engine.set_price("BTC/USDT", 50_000, T0)
    ioc = engine.create_order(req("buy", "LIMIT", amount="5", price="50010", time_in_force="IOC"), "ioc", T0)
    assert kinds(ioc) == ["NEW", "TRADE", "TRADE", "EXPIRED"] and ioc[-1].order.filled == D("1.9998") + D("1.99960")
    fok = engine.create_order(req("buy", "LIMIT", amount="5", price="50010", time_in_force="FOK"), "fok", T0)
    assert kinds(fok) == ["NEW", "EXPIRED"] and fok[-1].order.filled == 0
    fok_ok = engine.create_order(req("buy", "LIMIT", amount="3", price="50010", time_in_force="FOK"), "fok2", T0)
    assert fok_ok[-1].order.status is OrderStatus.FILLED
    assert engine.balances()["USDT"].locked == 0


def test_limit_maker_that_would_take_is_rejected(engine):
    with pytest.raises(OrderRejected) as e:
        engine.create_order(req("buy", "LIMIT_MAKER", amount="1", price="50005"), "mk", T0)
    assert (e.value.code, e.value.msg) == (-2010, "Order would immediately match and take.")
    with pytest.raises(OrderRejected):
        engine.create_order(req("sell", "LIMIT_MAKER", amount="0.1", price="49995"), "mk", T0)
    ok = engine.create_order(req("buy", "LIMIT_MAKER", amount="0.1", price="49990"), "mk", T0)
    assert kinds(ok) == ["NEW"] and engine.open_orders("BTC/USDT")[0].client_order_id == "mk"


@pytest.mark.parametrize(
    "side, type_, stop, before, after",
    [
        ("sell", "STOP_LOSS_LIMIT", "49000", "49500", "48990"),  # stop-loss sell: falls to the stop
        ("buy", "STOP_LOSS_LIMIT", "51000", "50500", "51010"),  # stop-loss buy: rises to the stop
        ("sell", "TAKE_PROFIT_LIMIT", "51000", "50500", "51010"),  # take-profit sell: rises
        ("buy", "TAKE_PROFIT_LIMIT", "49000", "49500", "48990"),  # take-profit buy: falls
    ],
)
def test_stop_orders_trigger_by_binance_rules(engine, side, type_, stop, before, after):
    price = str(D(stop) + (100 if side == "buy" else -100))  # marketable once triggered
    engine.create_order(req(side, type_, amount="0.1", price=price, stop_price=stop, time_in_force="GTC"), "st", T0)
    assert engine.set_price("BTC/USDT", before, T0 + 1) == []
    events = engine.set_price("BTC/USDT", after, T0 + 2)
    assert events and events[-1].fill is not None
    order = engine.get_order("BTC/USDT", client_order_id="st")
    assert order.triggered and order.filled > 0


@pytest.mark.parametrize(
    "side, type_, stop",
    [
        ("sell", "STOP_LOSS_LIMIT", "50000"),
        ("buy", "STOP_LOSS_LIMIT", "49000"),
        ("sell", "TAKE_PROFIT_LIMIT", "49000"),
        ("buy", "TAKE_PROFIT_LIMIT", "50000"),
    ],
)
def test_stop_that_would_trigger_immediately_is_rejected(engine, side, type_, stop):
    with pytest.raises(OrderRejected) as e:
        engine.create_order(req(side, type_, amount="0.1", price=stop, stop_price=stop, time_in_force="GTC"), "x", T0)
    assert (e.value.code, e.value.msg) == (-2010, "Order would trigger immediately.")
    assert engine.open_orders() == [] and engine.balances()["BTC"].locked == 0


def test_triggered_ioc_stop_expires_what_it_cannot_take(engine):
    engine.create_order(
        req("sell", "STOP_LOSS_LIMIT", amount="0.1", price="40000", stop_price="49000", time_in_force="IOC"), "s", T0
    )
    events = engine.set_price("BTC/USDT", 49_000, T0 + 1)
    assert kinds(events) == ["TRADE"] and events[-1].order.status is OrderStatus.FILLED


@pytest.mark.parametrize(
    "request_",
    [
        req("buy", "LIMIT", amount="3", price="50000", time_in_force="GTC"),
        req("buy", "MARKET", amount="3"),
        req("buy", "MARKET", quote_amount="100001"),
        req("sell", "MARKET", amount="2"),
        req("sell", "MARKET", quote_amount="60000"),
        req("sell", "LIMIT", amount="1.5", price="50000", time_in_force="GTC"),
    ],
)
def test_insufficient_balance_is_rejected_and_changes_nothing(engine, request_):
    before = engine.balances()
    with pytest.raises(InsufficientBalance) as e:
        engine.create_order(request_, "poor", T0)
    assert (e.value.code, e.value.msg) == (-2010, "Account has insufficient balance for requested action.")
    assert engine.balances() == before and engine.orders == {}


def test_duplicate_open_client_order_id_is_rejected_but_reusable_after_close(engine):
    limit = req("buy", "LIMIT", amount="0.1", price="49000", time_in_force="GTC")
    engine.create_order(limit, "dup", T0)
    with pytest.raises(OrderRejected) as e:
        engine.create_order(limit, "dup", T0)
    assert (e.value.code, e.value.msg) == (-2010, "Duplicate order sent.")
    engine.cancel_order("BTC/USDT", client_order_id="dup", now=T0)
    assert engine.create_order(limit, "dup", T0)[0].order.id == "2"


def test_cancel_releases_locked_funds_and_unknown_orders_raise(engine):
    events = engine.create_order(req("buy", "LIMIT", amount="1", price="49000", time_in_force="GTC"), "c", T0)
    assert engine.balances()["USDT"].locked == 49_000
    canceled = engine.cancel_order("BTC/USDT", id=events[0].order.id, now=T0 + 5)
    assert canceled.kind == "CANCELED" and canceled.order.last_update == T0 + 5
    assert engine.balances()["USDT"] == engine.balances()["USDT"].__class__("USDT", D(100_000), D(0))
    with pytest.raises(OrderNotFound, match="not open"):
        engine.cancel_order("BTC/USDT", client_order_id="c", now=T0)
    with pytest.raises(OrderNotFound, match="fetch_open_orders"):
        engine.cancel_order("BTC/USDT", client_order_id="nope", now=T0)
    with pytest.raises(OrderNotFound):
        engine.get_order("ETH/USDT", client_order_id="c")


def test_cancel_all_orders_of_a_symbol(engine):
    for i in range(3):
        engine.create_order(req("buy", "LIMIT", amount="0.1", price=str(49_000 + i), time_in_force="GTC"), f"o{i}", T0)
    events = engine.cancel_all_orders("BTC/USDT", T0)
    assert kinds(events) == ["CANCELED"] * 3 and engine.open_orders() == []


def test_trading_without_a_price_is_refused(rules):
    engine = MatchingEngine(rules, {"USDT": 1000})
    with pytest.raises(InvalidOrder, match="no market price"):
        engine.create_order(req("buy", "MARKET", amount="0.001"), "x", T0)


def test_fees_follow_the_configured_rates(rules):
    engine = MatchingEngine(rules, {"USDT": 100_000}, fees=Fees(maker=D("0.0002"), taker=D("0.0005")))
    engine.set_price("BTC/USDT", 50_000, T0)
    fill = engine.create_order(req("buy", "MARKET", amount="1"), "f", T0)[-1].fill
    assert fill.fee == D("0.0005")


@st.composite
def actions(draw):
    kind = draw(st.sampled_from(["market", "quote", "limit", "ioc", "fok", "maker", "stop", "tp", "price", "cancel"]))
    side = draw(st.sampled_from(["buy", "sell"]))
    amount = draw(st.decimals(min_value=D("0.001"), max_value=D("3"), places=3))
    offset = draw(st.integers(min_value=-400, max_value=400))
    return kind, side, amount, offset


def build(kind, side, amount, price):
    if kind == "market":
        return req(side, "MARKET", amount=amount)
    if kind == "quote":
        return req(side, "MARKET", quote_amount=amount * 1000)
    if kind in ("limit", "ioc", "fok"):
        return req(side, "LIMIT", amount=amount, price=price, time_in_force={"limit": "GTC"}.get(kind, kind.upper()))
    if kind == "maker":
        return req(side, "LIMIT_MAKER", amount=amount, price=price)
    type_ = "STOP_LOSS_LIMIT" if kind == "stop" else "TAKE_PROFIT_LIMIT"
    return req(side, type_, amount=amount, price=price, stop_price=price, time_in_force="GTC")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(actions(), min_size=1, max_size=25))
def test_random_sequences_keep_the_books_straight(rules, steps):
    """Property: balances never go negative, fills never exceed the order's quantity, every fee is
    Binance's (rate x received amount, rounded to the asset's precision), and funds are conserved."""
    engine = MatchingEngine(rules, {"USDT": 200_000, "BTC": 2}, book=BookConfig(levels=3))
    engine.set_price("BTC/USDT", 50_000, T0)
    fills = []
    now = T0
    for i, (kind, side, amount, offset) in enumerate(steps):
        now += 1
        last = engine.last_price["BTC/USDT"]
        price = str(last + offset * 10)
        try:
            if kind == "price":
                events = engine.set_price("BTC/USDT", max(last + offset * 10, D(1000)), now)
            elif kind == "cancel":
                opened = engine.open_orders("BTC/USDT")
                events = [engine.cancel_order("BTC/USDT", id=opened[0].id, now=now)] if opened else []
            else:
                request = build(kind, side, amount, price)
                events = engine.create_order(request, f"c{i}", now)
        except OrderRejected:
            events = []
        fills += [e.fill for e in events if e.fill]
        for balance in engine.balances().values():
            assert balance.free >= 0 and balance.locked >= 0
        for order in engine.orders.values():
            assert order.amount is None or order.filled <= order.amount
    for fill in fills:
        base = fill.side == "buy"
        received = fill.amount if base else fill.cost
        assert fill.fee == (received * D("0.001")).quantize(D("1e-8"), ROUND_HALF_UP)
    btc = D(2) + sum((f.amount - f.fee if f.side == "buy" else -f.amount) for f in fills)
    usdt = D(200_000) + sum((-f.cost if f.side == "buy" else f.cost - f.fee) for f in fills)
    balances = engine.balances()
    assert balances["BTC"].total == btc and balances["USDT"].total == usdt


def test_quote_order_too_small_for_one_step_expires_unfilled():
    from workbench.filters import SymbolRules

    rules = {
        "X/Y": SymbolRules(
            "X/Y", "XY", "X", "Y", ({"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "100", "stepSize": "1"},)
        )
    }
    engine = MatchingEngine(rules, {"Y": 100})
    engine.set_price("X/Y", 10, T0)
    events = engine.create_order(OrderRequest("X/Y", "buy", "MARKET", quote_amount="5"), "tiny", T0)
    assert kinds(events) == ["NEW", "EXPIRED"] and events[-1].order.filled == 0 and events[-1].order.amount == 0
