"""The order ticket's OCO, trailing stops and *protect position*, driven as a user drives them (values
typed into the real widgets, buttons clicked) against a real paper session on a DuckDB file, and in
mainnet mode for the typed-back confirmation; checked against the preview, what the venue holds and
the audit log."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tests import test_ui
from tests.test_ui import ALL_CHECKS, audit_kinds, real_session, shown, type_in, ui_audit
from workbench.config import MAINNET_CONSENT, MAINNET_ENV
from workbench.data import load_rules
from workbench.executors import PaperExecutor
from workbench.model import ContingencyType, ListOrderStatus, OrderStatus, OrderType, Side, TimeInForce
from workbench.session import TradingSession
from workbench.ui import OrderTicket
from workbench.ui.ticket import _USES

D = Decimal
store, paper, exchange = test_ui.store, test_ui.paper, test_ui.exchange  # the fixtures of the panel tests
SELL_OCO = {"kind": "oco", "side": "sell", "amount": "0.01", "price": "51000", "stop_price": "49000"}


async def bought(ticket: OrderTicket, amount: str) -> None:
    """Buy ``amount`` BTC at market through the ticket: the session's position comes from its fill."""
    type_in(ticket, kind="single", side="buy", type="MARKET", amount=amount)
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent[-1].status is OrderStatus.FILLED


async def paper_listing(store, every_type: bool) -> TradingSession:
    """A paper session on BTC/USDT (listing every order type, market-type stops too, if ``every_type``)
    and ETH/USDT (Binance's usual five types), with 100,000 USDT; BTC last traded at 50,000."""
    rules = dict(load_rules(test_ui.SYMBOLS))
    if every_type:
        rules["BTC/USDT"] = replace(rules["BTC/USDT"], order_types=tuple(t.value for t in OrderType))
    session = TradingSession(PaperExecutor(rules, {"USDT": 100_000}), store, rules=rules, session_id="ui-types")
    await session.on_bar("BTC/USDT", test_ui.bar(50_000))
    return session


@pytest.fixture
async def every_type(store):
    return await paper_listing(store, every_type=True)


@pytest.fixture(params=[False, True], ids=["stop-limit", "market-stop"])
async def stops(request, store):
    """Without, then with, market-type stops listed on BTC/USDT."""
    return await paper_listing(store, every_type=request.param)


async def test_the_ticket_offers_the_types_the_symbol_lists_each_with_its_own_fields(every_type):
    ticket = OrderTicket(every_type)
    every = ["MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS", "TAKE_PROFIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
    assert list(ticket.type.options) == every and set(_USES) == set(OrderType)
    for kind in every:
        type_in(ticket, type=kind)
        uses = _USES[OrderType(kind)]
        assert ticket.trailing_delta.disabled == (not OrderType(kind).is_stop)
        assert ticket.price.disabled == ("price" not in uses) and ticket.stop_price.disabled == (
            "stop_price" not in uses
        )
        assert not shown(ticket.stop_limit_price) and shown(ticket.type)
    assert ticket.price.disabled is False  # TAKE_PROFIT_LIMIT
    type_in(ticket, type="STOP_LOSS", symbol="ETH/USDT")  # no market-type stops listed: back to LIMIT
    assert list(ticket.type.options) == ["MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
    assert ticket.type.value == "LIMIT"
    type_in(ticket, type="TAKE_PROFIT_LIMIT", symbol="BTC/USDT")
    assert list(ticket.type.options) == every and ticket.type.value == "TAKE_PROFIT_LIMIT"
    await ticket.wait()  # ETH/USDT's paper market started meanwhile


async def test_an_oco_without_a_stop_limit_price_has_a_market_stop_leg_where_the_symbol_lists_it(every_type):
    ticket = OrderTicket(every_type)
    await bought(ticket, "0.0123")
    type_in(ticket, **SELL_OCO)
    review = ticket.review()
    limit, stop = review.order_list.orders
    assert review.ok and (stop.type, stop.stop_price, stop.price, stop.time_in_force) == (
        OrderType.STOP_LOSS, 49000, None, None,
    )  # fmt: skip
    ticket.send_button.click()
    await ticket.wait()
    [placed] = ticket.sent_lists
    assert "+ STOP_LOSS stop 49000: order list" in ticket.message.value
    legs = [every_type.executor.engine.get_order("BTC/USDT", id=venue_id) for venue_id in placed.orders]
    assert [(o.type, o.status) for o in legs] == [(OrderType.LIMIT_MAKER, "NEW"), (OrderType.STOP_LOSS, "NEW")]


async def test_an_oco_preview_rounds_every_price_and_checks_each_leg(paper):
    ticket = OrderTicket(paper)
    type_in(ticket, kind="oco")
    assert not shown(ticket.type) and shown(ticket.stop_limit_price) and ticket.price.description == "Limit price"
    assert ticket.quote_amount.disabled and ticket.price.placeholder == "limit leg, below (last 50000)"
    type_in(
        ticket, side="sell", amount="0.0100004", price="51000.004", stop_price="49000", stop_limit_price="48900.126"
    )
    assert ticket.price.placeholder == "limit leg, above (last 50000)"
    review = ticket.review()
    assert "The price 51000.004 is not a multiple of the tick size 0.01: use 51000." in review.hints
    assert "The stop-limit price 48900.126 is not a multiple of the tick size 0.01: use 48900.13." in review.hints
    assert "The quantity 0.0100004 is not a multiple of the step size 0.00001: use 0.01 (rounded down)." in (
        review.hints
    )
    assert review.suggestions == {"price": "51000", "stop_limit_price": "48900.13", "amount": "0.01"}
    assert [c.name for c in review.checks] == [
        f"{leg} leg · {name}" for leg in ("limit", "stop") for name in ALL_CHECKS
    ]
    assert [c.name for c in review.checks if not c.passed] == [
        "limit leg · exchange_filters",
        "stop leg · exchange_filters",
    ]
    assert (
        "Limit leg, exchange_filters: price 51000.004 is not a multiple of the tick size 0.01; try 51000 or 51000.01 "
        "(PRICE_FILTER)."
    ) in review.problems
    assert ticket.send_button.disabled and ticket.send_button.description == "Send SELL OCO"
    assert "stop leg · exchange_filters" in ticket.preview.value and ticket.preview.value.count("&#10007;") == 2

    ticket.apply_button.click()
    assert (ticket.amount.value, ticket.price.value, ticket.stop_limit_price.value) == ("0.01", "51000", "48900.13")
    review = ticket.review()
    assert review.ok and not ticket.send_button.disabled and review.request is None
    above, below = review.order_list.orders
    assert (above.type, above.side, above.amount, above.price) == (OrderType.LIMIT_MAKER, Side.SELL, D("0.01"), 51000)
    assert (below.type, below.amount, below.stop_price, below.price, below.time_in_force) == (
        OrderType.STOP_LOSS_LIMIT, D("0.01"), 49000, D("48900.13"), TimeInForce.GTC,
    )  # fmt: skip
    assert "limit leg: SELL 0.01 BTC on BTC/USDT LIMIT_MAKER at 51000" in ticket.preview.value
    assert "stop leg: SELL 0.01 BTC on BTC/USDT STOP_LOSS_LIMIT at 48900.13 stop 49000 GTC" in ticket.preview.value
    assert ticket.preview.value.count("&#10003;") == 2 * len(ALL_CHECKS)

    type_in(ticket, amount="0.0001")  # 5.1 USDT at the limit leg, 4.89 at the stop leg: sized at the lower
    review = ticket.review()
    assert "The order's value 4.890013 is below the minimum notional 5: use a quantity of at least 0.00011." in (
        review.hints
    )
    assert review.problems == [
        "Stop leg, exchange_filters: notional (amount x price = 0.0001 x 48900.13) 4.890013 is below the minimum 5 "
        "(NOTIONAL)."
    ]
    type_in(ticket, side="buy", amount="0.01", price="49000", stop_price="51000", stop_limit_price="51100")
    stop, limit = ticket.review().order_list.orders  # a buy OCO: the stop above, the limit below
    assert (stop.type, stop.side, stop.stop_price, limit.type, limit.price) == (
        OrderType.STOP_LOSS_LIMIT, Side.BUY, 51000, OrderType.LIMIT_MAKER, 49000,
    )  # fmt: skip
    assert ticket.review().ok and ticket.send_button.description == "Send BUY OCO"


async def test_a_paper_oco_goes_straight_through_and_one_leg_filling_cancels_the_other(paper, store):
    ticket = OrderTicket(paper)
    await bought(ticket, "0.0123")
    type_in(ticket, **SELL_OCO, stop_limit_price="48900")
    ticket.send_button.click()
    await ticket.wait()
    [placed] = ticket.sent_lists
    text = "OCO SELL 0.01 BTC on BTC/USDT: LIMIT_MAKER at 51000 + STOP_LOSS_LIMIT at 48900 stop 49000 GTC"
    assert (placed.kind, placed.list_order_status) == (ContingencyType.OCO, ListOrderStatus.EXECUTING)
    assert f"Sent {text}: order list {placed.list_client_order_id} is EXECUTING." in ticket.message.value
    engine = paper.executor.engine
    limit, stop = (engine.get_order("BTC/USDT", id=venue_id) for venue_id in placed.orders)
    assert (limit.type, limit.price, limit.amount, limit.status) == (OrderType.LIMIT_MAKER, 51000, D("0.01"), "NEW")
    assert (stop.type, stop.stop_price, stop.price, stop.status) == (OrderType.STOP_LOSS_LIMIT, 49000, 48900, "NEW")
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_confirm" and detail["confirmation"] == "none: paper orders go straight through"
    assert (detail["text"], detail["type"], detail["stop_limit_price"]) == (text, "OCO", "48900")
    kinds = audit_kinds(store)
    assert kinds.index("ui_confirm", kinds.index("order.response")) < kinds.index("order_list.request")
    assert not shown(ticket.confirmation) and ticket.review().checks  # the ticket stays filled in

    paper.executor.update_price("BTC/USDT", D(51_100), 1_704_067_260_000)  # the take profit fills
    assert engine.get_order("BTC/USDT", id=limit.id).status is OrderStatus.FILLED
    assert engine.get_order("BTC/USDT", id=stop.id).status is OrderStatus.EXPIRED  # as Binance reports it
    assert paper.order_lists[placed.list_client_order_id].list_order_status is ListOrderStatus.ALL_DONE


async def test_an_oco_the_venue_refuses_says_why_and_nothing_rests(paper, store):
    ticket = OrderTicket(paper)  # no BTC to sell
    type_in(ticket, **SELL_OCO, stop_limit_price="48900")
    assert ticket.review().ok  # the filters pass: only the venue knows the balance
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent_lists == [] and "The order list was refused: " in ticket.message.value
    assert "BTC" in ticket.message.value and paper.executor.engine.open_orders() == []
    assert "order_list.rejected" in audit_kinds(store)


async def test_an_oco_on_the_wrong_side_of_the_market_is_refused_with_the_reason(paper, store):
    ticket = OrderTicket(paper)
    type_in(ticket, **SELL_OCO, stop_limit_price="48900")
    type_in(ticket, price="49500", stop_price="50500")  # a sell's limit below the market, its stop above
    problems = ticket.review().problems
    assert (
        "The limit price 49500 is not above the last price 50000: a sell OCO's limit leg rests above the market "
        "(a LIMIT_MAKER that would trade at once is refused)."
    ) in problems
    assert (
        "The stop price 50500 is not below the last price 50000: the stop would trigger at once; a sell OCO's stop "
        "leg waits below the market."
    ) in problems
    assert ticket.send_button.disabled and "is not above the last price 50000" in ticket.hints.value
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent_lists == [] and paper.executor.engine.order_lists == {}
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_refuse" and detail["reason"].startswith("Not sent: The limit price 49500 is not above")
    assert (
        detail["text"]
        == "OCO SELL 0.01 BTC on BTC/USDT: LIMIT_MAKER at 49500 + STOP_LOSS_LIMIT at 48900 stop 50500 GTC"
    )
    assert "order.request" not in audit_kinds(store)

    type_in(ticket, price="51000", stop_price="49000", stop_limit_price="")  # BTC/USDT lists no market STOP_LOSS
    assert ticket.review().problems == [
        "The stop-limit price field is empty: type the price the stop leg trades at once triggered (a little "
        "below the stop price)."
    ]
    type_in(ticket, stop_limit_price="48900", price="")
    assert ticket.review().problems == [
        "The limit price field is empty: type the limit leg's price, above the market (the last price is 50000)."
    ]
    type_in(ticket, price="51000", amount="")
    assert ticket.review().problems == [
        "amount is required. LIMIT_MAKER orders need amount. Fill in the quantity field."
    ]


async def test_protect_position_builds_a_sell_oco_sized_to_the_position_rounded_to_the_step(paper):
    ticket = OrderTicket(paper)
    assert ticket.protect_oco_button.disabled and ticket.protect_trailing_button.disabled
    assert "Position in BTC/USDT: <b>0 BTC</b>" in ticket.position_info.value
    assert not ticket.protect("oco") and "No position in BTC/USDT to protect (0 BTC)" in ticket.message.value
    with pytest.raises(ValueError, match="protect a position with 'oco' or 'trailing'"):
        ticket.protect("stop")
    await bought(ticket, "0.0123")
    position = paper.state.positions["BTC/USDT"]
    assert position == D("0.0122877")  # less the 0.1% fee, paid in BTC: off the step grid
    assert "<b>0.0122877 BTC</b>" in ticket.position_info.value and not ticket.protect_oco_button.disabled

    ticket.protect_oco_button.click()
    assert (ticket.kind.value, ticket.side.value, ticket.amount.value) == ("oco", "sell", "0.01228")
    assert (ticket.price.value, ticket.stop_price.value, ticket.stop_limit_price.value) == ("51000", "49000", "48755")
    assert (
        "Protecting the position of 0.0122877 BTC, rounded down to the step size 0.00001: 0.01228 BTC in a sell "
        "OCO: take profit at 51000 (+2%), stop at 49000 (-2%) selling down to 48755."
    ) in ticket.message.value
    review = ticket.review()
    assert review.ok and review.order_list.contingency_type is ContingencyType.OCO
    above, below = review.order_list.orders
    assert (above.type, above.side, above.amount, above.price) == (
        OrderType.LIMIT_MAKER,
        Side.SELL,
        D("0.01228"),
        51000,
    )
    assert (below.type, below.side, below.amount, below.stop_price, below.price) == (
        OrderType.STOP_LOSS_LIMIT, Side.SELL, D("0.01228"), 49000, 48755,
    )  # fmt: skip
    assert ticket.preview.value.count("&#10003;") == 2 * len(ALL_CHECKS)
    ticket.send_button.click()
    await ticket.wait()
    [placed] = ticket.sent_lists
    legs = [paper.executor.engine.get_order("BTC/USDT", id=venue_id) for venue_id in placed.orders]
    assert [(o.type, o.side, o.amount, o.status) for o in legs] == [
        (OrderType.LIMIT_MAKER, Side.SELL, D("0.01228"), OrderStatus.NEW),
        (OrderType.STOP_LOSS_LIMIT, Side.SELL, D("0.01228"), OrderStatus.NEW),
    ]


async def test_protect_position_with_a_trailing_stop_sends_it_and_it_sells_on_the_fall(stops, store):
    """A STOP_LOSS_LIMIT trailing stop where the symbol lists no market STOP_LOSS, else a STOP_LOSS."""
    paper, market_stop = stops, "STOP_LOSS" in stops.rules["BTC/USDT"].order_types
    ticket = OrderTicket(paper)
    await bought(ticket, "0.01")
    assert paper.state.positions["BTC/USDT"] == D("0.00999")  # on the step grid: not rounded
    ticket.protect_trailing_button.click()
    assert (ticket.kind.value, ticket.side.value, ticket.amount.value) == ("single", "sell", "0.00999")
    assert ticket.type.value == ("STOP_LOSS" if market_stop else "STOP_LOSS_LIMIT")
    assert (ticket.trailing_delta.value, ticket.stop_price.value) == ("200", "")
    assert "0.00999 BTC in a trailing stop-loss: it sells once the price falls 200 bips (2.00%)" in ticket.message.value
    assert "rounded down" not in ticket.message.value
    review = ticket.review()
    assert review.ok and (review.request.trailing_delta, review.request.stop_price) == (200, None)
    if not market_stop:
        assert ticket.price.value == "48000" and "at a limit of 48000 at worst" in ticket.message.value

    ticket.send_button.click()
    await ticket.wait()
    stop = ticket.sent[-1]
    assert (stop.type, stop.trailing_delta, stop.status) == (OrderType(ticket.type.value), 200, OrderStatus.NEW)
    text = ui_audit(store)[-1][1]["text"]
    assert text.startswith("SELL 0.00999 BTC on BTC/USDT STOP_LOSS") and "trailing 200 bips" in text
    engine = paper.executor.engine
    paper.executor.update_price("BTC/USDT", D(52_000), 1_704_067_260_000)  # the stop trails the rise
    assert engine.get_order("BTC/USDT", client_order_id=stop.client_order_id).status is OrderStatus.NEW
    paper.executor.update_price("BTC/USDT", D(50_900), 1_704_067_320_000)  # 2.1% below the highest
    sold = engine.get_order("BTC/USDT", client_order_id=stop.client_order_id)
    assert sold.status is OrderStatus.FILLED and sold.filled == D("0.00999")


async def test_a_trailing_delta_outside_the_filter_range_is_refused_with_the_range(paper, store):
    ticket = OrderTicket(paper)
    type_in(ticket, side="sell", type="STOP_LOSS_LIMIT", amount="0.01", price="48000", trailing_delta="5000")
    review = ticket.review()
    assert (
        "The trailing delta 5000 bips is outside 10..2000, the range the exchange allows for a sell STOP_LOSS_LIMIT "
        "(TRAILING_DELTA): use 2000 (20.00%)."
    ) in review.hints
    assert review.problems == [
        "exchange_filters: trailing_delta 5000 bps is outside 10..2000 for a STOP_LOSS_LIMIT sell (TRAILING_DELTA)."
    ]
    assert review.suggestions == {"trailing_delta": "2000"} and ticket.send_button.disabled
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent == [] and paper.executor.engine.orders == {}
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_refuse" and "trailing_delta 5000 bps is outside 10..2000" in detail["reason"]
    assert detail["trailing_delta"] == 5000 and "trailing 5000 bips" in detail["text"]
    ticket.apply_button.click()
    assert ticket.trailing_delta.value == "2000" and ticket.review().ok

    for typed in ("1.5", "-3", "0", "abc"):
        type_in(ticket, trailing_delta=typed)
        assert ticket.review().problems == [
            f"The trailing delta {typed!r} is not a whole, positive number of bips (100 bips = 1%): type e.g. 200."
        ]
    type_in(ticket, type="LIMIT")  # only stops trail: the field is off and not read
    assert ticket.trailing_delta.disabled and ticket.review().ok

    type_in(ticket, **SELL_OCO, stop_limit_price="48900", trailing_delta="5")  # an OCO's stop leg trails too
    review = ticket.review()
    assert review.order_list.orders[1].trailing_delta == 5 and review.suggestions == {"trailing_delta": "10"}
    assert review.problems == [
        "Stop leg, exchange_filters: trailing_delta 5 bps is outside 10..2000 for a STOP_LOSS_LIMIT sell "
        "(TRAILING_DELTA)."
    ]


async def test_testnet_sends_an_oco_on_a_confirm_click_and_mainnet_once_it_is_typed_back(
    exchange, tmp_path, monkeypatch
):
    """Testnet, then mainnet mode, on the local exchange (1 BTC on its account) through ccxt: an OCO
    waits for the same confirmation as a single order."""
    monkeypatch.setenv(MAINNET_ENV, MAINNET_CONSENT)
    venue = exchange.venue.engine
    for mode in ("testnet", "mainnet"):
        session = await real_session(exchange, tmp_path, monkeypatch, mode, f"ui-oco-{mode}")
        try:
            ticket = OrderTicket(session)
            await ticket.wait()
            last, rules = session.last_price["BTC/USDT"], session.rules["BTC/USDT"]
            prices = {name: f"{rules.round_price(last * D(k)):f}" for name, k in
                      (("price", "1.03"), ("stop_price", "0.97"), ("stop_limit_price", "0.96"))}  # fmt: skip
            type_in(ticket, kind="oco", side="sell", amount="0.001", **prices)
            ticket.send_button.click()
            await ticket.wait()
            assert shown(ticket.confirmation), ticket.message.value
            assert "OCO SELL 0.001 BTC on BTC/USDT" in ticket.confirm_summary.value
            open_lists = len(venue.order_lists_of("BTC/USDT", open_only=True))
            if mode == "mainnet":
                assert "type the symbol (BTC/USDT) and the quantity (0.001)" in ticket.confirm_summary.value
                type_in(ticket, confirm_symbol="BTC/USDT", confirm_quantity="0.01")
                ticket.confirm_button.click()
                await ticket.wait()
                assert shown(ticket.confirmation) and ticket.sent_lists == []
                type_in(ticket, confirm_symbol="BTC/USDT", confirm_quantity="0.001")
            assert len(venue.order_lists_of("BTC/USDT", open_only=True)) == open_lists  # nothing sent before Confirm
            ticket.confirm_button.click()
            await ticket.wait()
            [placed] = ticket.sent_lists
            assert venue.get_order_list("BTC/USDT", list_client_order_id=placed.list_client_order_id).is_open
            kinds = [k for k, _ in ui_audit(session.store)]
            assert kinds == (["ui_confirm"] if mode == "testnet" else ["ui_refuse", "ui_confirm"])
            confirmed = ui_audit(session.store)[-1][1]
            assert confirmed["type"] == "OCO" and confirmed["mode"] == mode and not shown(ticket.confirmation)
        finally:
            await session.executor.close()
            session.store.close()
