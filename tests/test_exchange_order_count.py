"""The unfilled order count goes down when orders fill (faqs/order_count_decrement.md): a first
fill as taker takes 1 order off every ``ORDERS`` window, a first fill as maker takes more (the FAQ's
example: 5), later fills, cancels and expiries nothing, and the count never goes below 0. By plain
signed HTTP, the WebSocket API and ccxt, all on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from tests import test_exchange, test_exchange_amend
from tests.polling import until
from tests.test_exchange_order_lists import WsApi, sell_oco
from workbench.exchange import LocalExchange
from workbench.exchange.server import Limits

exchange = test_exchange_amend.exchange  # BTC/USDT at 40,000 on a thin book (0.125 BTC a level)


async def signed(exchange: LocalExchange, method: str, path: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    """One signed request: HTTP status, headers, JSON answer."""
    query = urlencode({k: str(v) for k, v in params.items()} | {"timestamp": exchange.now()})
    signature = hmac.new(exchange.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{exchange.url}/api/v3/{path}?{query}&signature={signature}",
                     headers={"X-MBX-APIKEY": exchange.api_key}) as answer,
    ):  # fmt: skip
        return answer.status, dict(answer.headers), await answer.json()


async def counts(exchange: LocalExchange) -> tuple[int, int]:
    """``GET rateLimit/order``: the (10 s, 1 day) unfilled order counts."""
    status, _, windows = await signed(exchange, "GET", "rateLimit/order")
    assert status == 200 and [(w["interval"], w["intervalNum"]) for w in windows] == [("SECOND", 10), ("DAY", 1)]
    return windows[0]["count"], windows[1]["count"]


async def placed(exchange: LocalExchange, **order: Any) -> tuple[dict[str, Any], tuple[int, int]]:
    """Place one order over HTTP: its answer and its X-MBX-ORDER-COUNT-10S / -1D headers."""
    status, headers, body = await signed(exchange, "POST", "order", symbol="BTCUSDT", **order)
    assert status == 200, body
    return body, (int(headers["X-MBX-ORDER-COUNT-10S"]), int(headers["X-MBX-ORDER-COUNT-1D"]))


def buy(price: str, quantity: str = "0.01", tif: str = "GTC") -> dict[str, str]:
    return {"side": "BUY", "type": "LIMIT", "timeInForce": tif, "quantity": quantity, "price": price}


async def early_in_a_10s_window() -> None:
    """Start where the 10 s window has 6 s left, so that it cannot roll over mid-test."""
    await until(lambda: time.time() % 10 < 4, 11, "the start of a 10 s window")


async def test_a_taker_fill_takes_one_off_every_window_cancels_and_expiries_nothing(exchange):
    await early_in_a_10s_window()
    resting, headers = await placed(exchange, **buy("39000"))
    assert headers == (1, 1) == await counts(exchange)
    market, headers = await placed(exchange, side="BUY", type="MARKET", quantity="0.01")
    assert market["status"] == "FILLED"
    assert headers == (2, 2)  # the answer counts the order as placed; its fill's credit comes after
    assert await counts(exchange) == (1, 1)  # first fill as taker: -1 in both windows
    status, _, _ = await signed(exchange, "DELETE", "order", symbol="BTCUSDT", orderId=resting["orderId"])
    assert status == 200 and await counts(exchange) == (1, 1)  # a cancel changes nothing
    expired, headers = await placed(exchange, **buy("30000", tif="FOK"))
    assert expired["status"] == "EXPIRED" and headers == (2, 2) == await counts(exchange)  # nor does an expiry
    taker, headers = await placed(exchange, **buy("40008", quantity="0.3"))  # takes two levels, then rests
    assert taker["status"] == "PARTIALLY_FILLED" and len(taker["fills"]) >= 2 and headers == (3, 3)
    assert await counts(exchange) == (2, 2)  # one order, one credit, however many fills
    exchange.set_price("BTC/USDT", "40008")  # it fills again, now as maker: not a first fill
    await until(lambda: exchange.venue.fetch_order("BTCUSDT", str(taker["orderId"]), None)["status"] == "FILLED", 5,
                "the rest of the order filled")  # fmt: skip
    assert await counts(exchange) == (2, 2)


async def test_a_maker_first_fill_takes_five_and_the_count_stops_at_zero(exchange):
    big, _ = await placed(exchange, **buy("39990", quantity="0.3"))
    others = [(await placed(exchange, **buy("39000")))[0] for _ in range(5)]
    day = (await counts(exchange))[1]
    assert day == 6
    exchange.set_price("BTC/USDT", "39990")  # the big order's first fill, as maker
    assert exchange.venue.fetch_order("BTCUSDT", str(big["orderId"]), None)["status"] == "PARTIALLY_FILLED"
    assert (await counts(exchange))[1] == day - 5 == 1
    exchange.set_price("BTC/USDT", "39980")  # its second fill: nothing more
    assert (await counts(exchange))[1] == 1
    exchange.set_price("BTC/USDT", "39000")  # five more first fills as maker: no credit below zero
    assert {exchange.venue.fetch_order("BTCUSDT", str(o["orderId"]), None)["status"] for o in others} == {"FILLED"}
    assert (await counts(exchange))[1] == 0
    _, headers = await placed(exchange, **buy("38000"))
    assert headers[1] == 1  # a new order counts as usual


async def test_order_list_legs_are_credited_one_by_one(exchange):
    for _ in range(8):
        await placed(exchange, **buy("30000"))
    status, _, oco = await signed(exchange, "POST", "orderList/oco", **sell_oco())
    assert status == 200 and (await counts(exchange))[1] == 10  # an OCO adds its 2 orders
    exchange.set_price("BTC/USDT", "40800")  # the LIMIT_MAKER leg fills as maker, the stop expires
    status, _, done = await signed(exchange, "GET", "orderList", orderListId=oco["orderListId"])
    assert done["listOrderStatus"] == "ALL_DONE" and (await counts(exchange))[1] == 5  # -5, and 0 for the expiry
    status, _, otoco = await signed(exchange, "POST", "orderList/otoco", symbol="BTCUSDT", workingType="LIMIT",
                                    workingSide="BUY", workingPrice="40700", workingQuantity="0.01",
                                    workingTimeInForce="GTC", pendingSide="SELL", pendingQuantity="0.01",
                                    pendingAboveType="LIMIT_MAKER", pendingAbovePrice="42000",
                                    pendingBelowType="STOP_LOSS_LIMIT", pendingBelowStopPrice="39000",
                                    pendingBelowPrice="38900", pendingBelowTimeInForce="GTC")  # fmt: skip
    assert status == 200 and (await counts(exchange))[1] == 8  # an OTOCO adds 3
    exchange.set_price("BTC/USDT", "40700")  # the working leg's first fill, as maker; the pending ones go live
    assert (await counts(exchange))[1] == 3  # placing the pending legs adds nothing: they were counted
    exchange.set_price("BTC/USDT", "38950")  # the stop triggers: its limit takes at once, as taker
    status, _, done = await signed(exchange, "GET", "orderList", orderListId=otoco["orderListId"])
    assert done["listOrderStatus"] == "ALL_DONE" and (await counts(exchange))[1] == 2


async def test_ws_api_answers_the_counts_as_placed_and_account_rate_limits_after_the_fill(exchange):
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        api = WsApi(exchange, ws)
        await early_in_a_10s_window()
        rest_ = await api.call("order.place", symbol="BTCUSDT", **buy("39000"))
        market = await api.call("order.place", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
        assert rest_["status"] == market["status"] == 200 and market["result"]["status"] == "FILLED"
        limits = [(r["rateLimitType"], r["interval"], r["intervalNum"], r["limit"], r["count"])
                  for r in market["rateLimits"]]  # fmt: skip
        assert limits[:2] == [("ORDERS", "SECOND", 10, 50, 2), ("ORDERS", "DAY", 1, 160_000, 2)]
        assert limits[2][:2] == ("REQUEST_WEIGHT", "MINUTE")  # as web-socket-api.md shows a placement's
        after = await api.call("account.rateLimits.orders")
        assert [r["count"] for r in after["result"]] == [1, 1]
        assert [r["rateLimitType"] for r in after["rateLimits"]] == ["REQUEST_WEIGHT"]  # not a placement
        api._reader.cancel()


async def test_ccxt_keeps_trading_past_the_limit_so_long_as_its_orders_fill():
    async with LocalExchange(("BTC/USDT",), limits=Limits(orders_per_day=3)) as ex:
        ex.set_price("BTC/USDT", "40000")
        client = test_exchange.client_for(ex)
        try:
            await client.load_markets()
            for _ in range(10):  # every market order fills at once: 10 orders under a limit of 3
                await client.create_order("BTC/USDT", "market", "buy", 0.001)
                assert client.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "1"
            resting = [await client.create_order("BTC/USDT", "limit", "buy", 0.001, 39000) for _ in range(3)]
            with pytest.raises(ccxt_async.DDoSProtection, match="-1015.*3 orders per 1 DAY"):
                await client.create_order("BTC/USDT", "market", "buy", 0.001)
            assert [w["count"] for w in await client.privateGetRateLimitOrder()][1] == 3
            ex.set_price("BTC/USDT", "39000")  # the resting orders fill, as makers
            assert {(await client.fetch_order(o["id"], "BTC/USDT"))["status"] for o in resting} == {"closed"}
            assert [w["count"] for w in await client.privateGetRateLimitOrder()][1] == 0
            await client.create_order("BTC/USDT", "limit", "buy", 0.001, 38000)
            assert client.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "1"
        finally:
            await client.close()


async def test_cancel_replace_counts_its_new_order_and_answers_the_count_as_placed(exchange):
    await early_in_a_10s_window()
    resting, _ = await placed(exchange, **buy("39000"))
    status, headers, answer = await signed(exchange, "POST", "order/cancelReplace", symbol="BTCUSDT", side="BUY",
                                           type="MARKET", quantity="0.01", cancelReplaceMode="STOP_ON_FAILURE",
                                           cancelOrderId=resting["orderId"])  # fmt: skip
    assert status == 200 and answer["newOrderResponse"]["status"] == "FILLED"
    assert (headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1D"]) == ("2", "2")
    assert await counts(exchange) == (1, 1)  # the new order took at once: -1; the cancel: nothing
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        api = WsApi(exchange, ws)
        again = await api.call("order.cancelReplace", symbol="BTCUSDT", cancelReplaceMode="STOP_ON_FAILURE",
                               cancelOrderId=(await placed(exchange, **buy("39000")))[0]["orderId"],
                               **buy("38000"))  # fmt: skip
        assert again["status"] == 200, again
        assert [(r["rateLimitType"], r["count"]) for r in again["rateLimits"]][:2] == [("ORDERS", 3), ("ORDERS", 3)]
        api._reader.cancel()
