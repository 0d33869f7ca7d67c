"""Order lists (OCO, OTO, OTOCO) end to end: a testnet session trading them through ccxt (REST and
the WebSocket user data stream) on the local exchange, with the store checked against the venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.polling import until
from tests.test_binance_e2e import exchange_fills, price_of, session_for, settled, store_fills
from workbench.errors import ExchangeError, KillSwitchActive, OrderNotFound, OrderRejected
from workbench.exchange import LocalExchange
from workbench.exchange.order_lists import OrderLists
from workbench.model import ContingencyType, ListOrderStatus, OrderListRequest, OrderRequest, OrderStatus
from workbench.session import TradingSession
from workbench.store import Store

D = Decimal
TICK = D("0.01")


def at(exchange: LocalExchange, factor: str) -> Decimal:
    return (price_of(exchange) * D(factor)).quantize(TICK)


def leg(type_: str, side: str = "sell", amount: str = "0.01", **kw) -> OrderRequest:
    if type_ in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        kw.setdefault("time_in_force", "GTC")
    return OrderRequest("BTC/USDT", side, type_, amount=amount, **kw)


def oco_sell(exchange: LocalExchange) -> OrderListRequest:
    above = leg("LIMIT_MAKER", price=at(exchange, "1.01"))
    below = leg("STOP_LOSS_LIMIT", price=at(exchange, "0.985"), stop_price=at(exchange, "0.99"))
    return OrderListRequest("OCO", (above, below))


def otoco_buy(exchange: LocalExchange) -> OrderListRequest:
    working = leg("LIMIT", side="buy", price=at(exchange, "0.995"))
    above = leg("LIMIT_MAKER", price=at(exchange, "1.02"))
    below = leg("STOP_LOSS_LIMIT", price=at(exchange, "0.975"), stop_price=at(exchange, "0.98"))
    return OrderListRequest("OTOCO", (working, above, below))


def statuses(store: Store, cids) -> list[str | None]:
    store.flush()
    rows = dict(store.sql("SELECT client_order_id, status FROM real_orders"))
    return [rows.get(cid) for cid in cids]


def list_row(store: Store, list_id: str) -> tuple:
    store.flush()
    return store.sql(
        "SELECT order_list_id, contingency_type, list_status_type, list_order_status FROM real_order_lists "
        "WHERE list_client_order_id = ?",
        [list_id],
    )[0]


def venue_lists(exchange: LocalExchange) -> list:
    return exchange.venue.engine.order_lists_of()


def legs_of(session: TradingSession, order_list) -> tuple[str, ...]:
    return session.list_legs[order_list.list_client_order_id]


async def test_an_oco_placed_one_leg_fills_the_other_expires_and_list_status_arrives_on_the_stream(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)  # nothing but the stream reports the fill
    await session.start()
    placed = await session.create_order_list(oco_sell(exchange))
    above, below = legs_of(session, placed)
    assert placed.kind is ContingencyType.OCO and placed.list_order_status is ListOrderStatus.EXECUTING
    assert [lst.list_client_order_id for lst in venue_lists(exchange)] == [placed.list_client_order_id]
    assert list_row(store, placed.list_client_order_id) == (placed.id, "OCO", "EXEC_STARTED", "EXECUTING")
    assert statuses(store, (above, below)) == ["NEW", "NEW"]

    exchange.set_price("BTC/USDT", at(exchange, "1.012"))  # the limit maker fills; the stop-loss expires
    await until(lambda: statuses(store, (above, below)) == ["FILLED", "EXPIRED"], what="the legs settle")
    await until(lambda: list_row(store, placed.list_client_order_id)[2:] == ("ALL_DONE", "ALL_DONE"), what="listStatus")
    store.flush()
    events = store.sql("SELECT detail->>'status' FROM audit_log WHERE kind = 'order_list.event' ORDER BY seq")
    assert ("ALL_DONE",) in events  # from the stream: no REST call asked for the list again
    await settled(session, exchange, store)
    await session.executor.close()


async def test_an_otoco_places_its_pair_when_the_working_order_fills_then_one_leg_ends_the_list(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    placed = await session.create_order_list(otoco_buy(exchange))
    working, above, below = legs_of(session, placed)
    assert placed.kind is ContingencyType.OTOCO
    assert statuses(store, (working, above, below)) == ["NEW", "PENDING_NEW", "PENDING_NEW"]
    exchange.set_price("BTC/USDT", at(exchange, "0.994"))
    await until(lambda: statuses(store, (working, above, below)) == ["FILLED", "NEW", "NEW"], what="pair placed")
    exchange.set_price("BTC/USDT", at(exchange, "1.03"))  # from 0.994: the take-profit (1.02 of the first) fills
    await until(lambda: statuses(store, (above, below)) == ["FILLED", "EXPIRED"], what="the pair settles")
    await until(lambda: list_row(store, placed.list_client_order_id)[3] == "ALL_DONE", what="ALL_DONE")
    await settled(session, exchange, store)
    await session.executor.close()


async def test_an_oto_and_its_cancel(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    request = OrderListRequest(
        "OTO", (leg("LIMIT", side="buy", price=at(exchange, "0.99")), leg("LIMIT_MAKER", price=at(exchange, "1.02")))
    )
    placed = await session.create_order_list(request)
    assert placed.kind is ContingencyType.OTO and len(placed.orders) == 2
    assert [lst.list_client_order_id for lst in await session.executor.fetch_open_order_lists("BTC/USDT")] == [
        placed.list_client_order_id
    ]
    assert await session.executor.fetch_open_order_lists("ETH/USDT") == []
    canceled = await session.cancel_order_list(placed.list_client_order_id, "BTC/USDT")
    assert canceled.list_order_status is ListOrderStatus.ALL_DONE
    assert statuses(store, legs_of(session, placed)) == ["CANCELED", "CANCELED"]
    assert list_row(store, placed.list_client_order_id)[3] == "ALL_DONE"
    with pytest.raises(OrderNotFound, match="Cannot cancel the order list"):
        await session.cancel_order_list(placed.list_client_order_id, "BTC/USDT")
    with pytest.raises(OrderNotFound, match="no order list"):
        await session.executor.fetch_order_list("nope", "BTC/USDT")
    assert exchange.venue.engine.open_orders() == []
    await session.executor.close()


async def test_a_list_the_venue_refuses_is_recorded_reject(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    request = OrderListRequest(
        "OCO",
        (
            leg("LIMIT_MAKER", price=at(exchange, "0.99")),  # a sell limit maker under the market would take
            leg("STOP_LOSS_LIMIT", price=at(exchange, "0.97"), stop_price=at(exchange, "0.98")),
        ),
    )
    with pytest.raises(OrderRejected) as caught:
        await session.create_order_list(request)
    assert caught.value.code is not None and venue_lists(exchange) == []
    (list_id,) = session.order_lists
    assert list_row(store, list_id)[1:] == ("OCO", "ALL_DONE", "REJECT")
    assert statuses(store, session.list_legs[list_id]) == ["REJECTED", "REJECTED"]
    await session.executor.close()


async def test_a_lost_answer_on_a_list_placement_is_resolved_without_a_duplicate(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    exchange.set_faults(lost_answers=1)  # placed, answer lost: found by its list client order id
    found = await session.create_order_list(oco_sell(exchange))
    exchange.set_faults(refused_orders=1)  # never placed: sent once more
    resent = await session.create_order_list(oco_sell(exchange))
    assert [lst.list_client_order_id for lst in venue_lists(exchange)] == [
        found.list_client_order_id,
        resent.list_client_order_id,
    ]
    assert statuses(store, legs_of(session, found) + legs_of(session, resent)) == ["NEW"] * 4
    assert len(exchange.venue.engine.orders) == 4  # nothing placed twice

    exchange.set_faults(errors_5xx=4)  # the placement and all three look-ups fail: given up, nothing sent again
    with pytest.raises(ExchangeError, match="could not be found"):
        await session.create_order_list(oco_sell(exchange))
    lost = next(reversed(session.order_lists))
    assert list_row(store, lost)[0] is None and statuses(store, session.list_legs[lost]) == ["PENDING_NEW"] * 2
    found_now = await session.executor.reconcile()  # the venue never saw it: REJECT, its legs REJECTED
    assert any(f"{lost}: the order list never reached the venue" in d for d in found_now)
    assert list_row(store, lost)[3] == "REJECT" and statuses(store, session.list_legs[lost]) == ["REJECTED"] * 2
    assert len(venue_lists(exchange)) == 2
    await session.executor.close()


async def test_a_lost_list_the_venue_placed_is_settled_by_reconcile(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)
    await session.start()
    executor = session.executor
    original = executor._place_list

    async def lost_then_down(request):  # the faults in sequence: the answer lost, then three look-ups fail
        exchange.set_faults(lost_answers=1)
        try:
            return await original(request)
        finally:
            exchange.set_faults(errors_5xx=3)

    executor._place_list = lost_then_down
    with pytest.raises(ExchangeError):
        await session.create_order_list(oco_sell(exchange))
    executor._place_list = original
    (list_id,) = session.order_lists
    assert list_row(store, list_id)[0] is None
    found = await executor.reconcile()  # open on the venue: found among the open lists
    assert not any(list_id in d and "never reached" in d for d in found)
    assert list_row(store, list_id)[3] == "EXECUTING" and statuses(store, session.list_legs[list_id]) == ["NEW"] * 2
    assert len(venue_lists(exchange)) == 1
    await executor.close()


async def test_a_restarted_session_reconciles_a_list_that_ended_while_it_was_away(exchange, tmp_path):
    path = tmp_path / "restart.duckdb"
    with Store(path) as store:
        first = session_for(exchange, store, session_id="lists-restart")
        await first.start()
        placed = await first.create_order_list(oco_sell(exchange))
        working = leg("LIMIT", side="buy", price=at(exchange, "0.95"))  # below the stop-loss: still waiting
        pair = otoco_buy(exchange).orders[1:]
        open_list = await first.create_order_list(OrderListRequest("OTOCO", (working, *pair)))
        done = await first.create_order_list(oco_sell(exchange))
        await first.cancel_order_list(done.list_client_order_id, "BTC/USDT")
        exchange.set_faults(errors_5xx=4)  # sent but not placed, and never found: unacknowledged at the crash
        with pytest.raises(ExchangeError):
            await first.create_order_list(oco_sell(exchange))
        unsent = next(reversed(first.order_lists))
        await first.executor.close()  # gone without a stop, as a crash leaves it
        legs = legs_of(first, placed)
    exchange.set_price("BTC/USDT", at(exchange, "0.988"))  # the stop-loss triggers; the limit maker expires
    await until(lambda: not venue_lists(exchange)[0].is_open, what="the list ends on the venue")
    with Store(path) as store:
        again = session_for(exchange, store, session_id="lists-restart")
        await again.start()
        assert list_row(store, placed.list_client_order_id)[3] == "ALL_DONE"
        assert statuses(store, legs) == ["EXPIRED", "FILLED"]
        assert again.order_lists[open_list.list_client_order_id].id == open_list.id
        assert statuses(store, legs_of(first, open_list)) == ["NEW", "PENDING_NEW", "PENDING_NEW"]
        assert again.order_lists[open_list.list_client_order_id].is_open
        assert list_row(store, unsent)[3] == "REJECT" and statuses(store, again.list_legs[unsent]) == ["REJECTED"] * 2
        reconciled = store.sql(
            "SELECT detail->>'list_client_order_id' FROM audit_log WHERE kind = 'order_list.reconciled'"
        )
        assert sorted(i for (i,) in reconciled) == sorted(
            [placed.list_client_order_id, open_list.list_client_order_id, unsent]
        )
        await settled(again, exchange, store)
        store.flush()
        assert store.sql("SELECT count(*) FROM real_order_lists") == [(4,)]
        assert len(venue_lists(exchange)) == 3
        await again.executor.close()


async def test_another_clients_list_and_odd_stream_events(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    OrderLists(exchange.venue).place(
        {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "aboveType": "LIMIT_MAKER",
         "abovePrice": str(at(exchange, "1.05")), "belowType": "STOP_LOSS_LIMIT",
         "belowPrice": str(at(exchange, "0.94")), "belowStopPrice": str(at(exchange, "0.95")),
         "belowTimeInForce": "GTC", "listClientOrderId": "web-list"},
        "oco",
    )  # fmt: skip
    opened = await session.executor.fetch_open_order_lists()
    assert [lst.list_client_order_id for lst in opened] == ["web-list"] and session.order_lists == {}
    executor = session.executor
    executor._on_list_status({"e": "listStatus", "s": "XRPUSDT", "g": 1})  # not a symbol of the session: ignored
    executor._on_list_status({"e": "listStatus", "s": "BTCUSDT", "g": "x"})  # unreadable: noted, left to reconcile
    assert any("Could not read the venue's order" in d for d in executor.discrepancies)
    await session.executor.close()


async def test_a_list_without_client_ids_is_refused_before_it_is_sent(exchange, store):
    session = session_for(exchange, store)
    executor = session.executor
    request = oco_sell(exchange)
    with pytest.raises(OrderRejected, match="list_client_order_id"):
        await executor.create_order_list(request)
    from dataclasses import replace

    with pytest.raises(OrderRejected, match="client_order_id"):
        await executor.create_order_list(replace(request, list_client_order_id="L"))
    assert venue_lists(exchange) == []
    await executor.close()


async def test_store_fills_match_after_list_fills(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    placed = await session.create_order_list(oco_sell(exchange))
    exchange.set_price("BTC/USDT", at(exchange, "1.012"))
    await until(lambda: store_fills(store) == exchange_fills(exchange) and len(exchange_fills(exchange)) == 1,
                what="the fill reaches the store")  # fmt: skip
    latest = await session.executor.fetch_order_list(placed.list_client_order_id, "BTC/USDT")
    assert latest.list_order_status is ListOrderStatus.ALL_DONE
    await session.executor.close()


async def test_a_stream_drop_while_a_leg_fills_is_settled_from_rest(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)
    await session.start()
    placed = await session.create_order_list(oco_sell(exchange))
    legs = legs_of(session, placed)
    exchange.set_faults(ws_drop_after=0)  # the fill's first event drops the connection: the list's events are lost
    exchange.set_price("BTC/USDT", at(exchange, "1.012"))
    await until(lambda: statuses(store, legs) == ["FILLED", "EXPIRED"], what="the legs settle after the reconnect")
    await until(lambda: list_row(store, placed.list_client_order_id)[3] == "ALL_DONE", what="the list settles")
    missed = f"{placed.list_client_order_id}: order list EXECUTING in the workbench, ALL_DONE on the venue"
    await until(lambda: missed in session.executor.discrepancies, what="reconcile reports the missed listStatus")
    await settled(session, exchange, store)
    await session.executor.close()


async def test_a_failed_look_up_of_a_sibling_is_left_to_reconcile_and_a_late_event_changes_nothing(
    exchange, store, caplog
):
    session = session_for(exchange, store, reconcile_every=3600)
    executor = session.executor
    await session.start()
    placed = await session.create_order_list(oco_sell(exchange))
    above, below = legs_of(session, placed)
    exchange.set_faults(errors_5xx=1)  # the look-up of a sibling the stream has not reported fails
    await executor._settle("BTC/USDT", {below: OrderStatus.NEW}, grace=0)
    assert exchange.faults.errors_5xx == 0 and "reconcile() will" in caplog.text

    exchange.set_price("BTC/USDT", at(exchange, "1.012"))
    await until(lambda: statuses(store, (above, below)) == ["FILLED", "EXPIRED"], what="the legs settle")
    await until(lambda: executor._lists[placed.list_client_order_id].list_order_status.value == "ALL_DONE", what="done")
    started = {"e": "listStatus", "s": "BTCUSDT", "g": placed.id, "c": "OCO", "l": "EXEC_STARTED", "L": "EXECUTING",
               "C": placed.list_client_order_id, "T": 1,
               "O": [{"i": i, "c": c} for i, c in zip(placed.orders, (above, below), strict=True)]}  # fmt: skip
    executor._on_list_status(started)  # a late EXEC_STARTED (a stream event held back) does not move it back
    assert executor._lists[placed.list_client_order_id].list_order_status is ListOrderStatus.ALL_DONE
    assert list_row(store, placed.list_client_order_id)[3] == "ALL_DONE"
    await executor.close()


async def test_an_emergency_stop_cancels_open_lists_and_the_kill_switch_refuses_new_ones(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    oco = await session.create_order_list(oco_sell(exchange))
    otoco = await session.create_order_list(otoco_buy(exchange))
    report = await session.emergency_stop("drill")
    legs = legs_of(session, oco) + legs_of(session, otoco)
    assert report.failed == [] and exchange.venue.engine.open_orders() == []
    assert sorted(o.client_order_id for o in report.canceled) == sorted(legs)  # the pending legs too
    assert not any(lst.is_open for lst in venue_lists(exchange))
    for placed in (oco, otoco):
        await until(lambda p=placed: list_row(store, p.list_client_order_id)[3] == "ALL_DONE", what="lists end")
    await until(lambda: statuses(store, legs) == ["CANCELED"] * 5, what="every leg ends")
    with pytest.raises(KillSwitchActive):
        await session.create_order_list(oco_sell(exchange))
    assert len(venue_lists(exchange)) == 2
    await session.executor.close()
