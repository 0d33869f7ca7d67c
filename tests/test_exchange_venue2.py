"""Issue 16, items 3, 5, 6, 7 and 15 (edit_order): cancel-replace, commission rates, market data
over REST, the WebSocket API and streams, microsecond time and the executor's ``edit_order``. Real
ccxt (async and pro) and plain signed aiohttp over loopback against the local exchange. Amend keep
priority (item 3) is in tests/test_exchange_amend.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from tests.test_binance_e2e import cents, executor_for, price_of
from tests.test_exchange import client_for
from workbench.errors import OrderNotFound, OrderRejected, VenueUnavailable
from workbench.exchange import LocalExchange
from workbench.exchange.server import Limits
from workbench.executors.binance import _json_answer
from workbench.model import OrderRequest, OrderStatus


@pytest.fixture
async def client(exchange):  # ``exchange``: the local exchange of tests/conftest.py
    c = client_for(exchange)
    yield c
    await c.close()


async def signed(
    exchange: LocalExchange, method: str, path: str, params: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One signed REST request by hand (HMAC-SHA256 of the query): its status and JSON body."""
    query = urlencode({**params, "timestamp": exchange.now()})
    signature = hmac.new(exchange.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as http, http.request(
        method, f"{exchange.url}/api/v3/{path}?{query}&signature={signature}",
        headers={"X-MBX-APIKEY": exchange.api_key, **(headers or {})},
    ) as answer:  # fmt: skip
        return answer.status, await answer.json()


def ws_params(exchange: LocalExchange, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` signed for the WebSocket API (sorted, HMAC-SHA256)."""
    params = {**params, "apiKey": exchange.api_key, "timestamp": exchange.now()}
    spelled = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}  # JSON's true / false
    payload = "&".join(f"{k}={spelled[k]}" for k in sorted(params))
    return params | {"signature": hmac.new(exchange.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()}


async def ws_call(ws: aiohttp.ClientWebSocketResponse, method: str, params: dict[str, Any] | None = None) -> Any:
    await ws.send_json({"id": method, "method": method, "params": params or {}})
    return await ws.receive_json()


def resting_buy(exchange: LocalExchange, quantity: str = "0.001", **extra: str) -> dict[str, str]:
    """A LIMIT buy 10% under the market: it rests."""
    price = exchange.venue.engine.last_price["BTC/USDT"] * Decimal("0.9")
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": quantity,
            "price": f"{price:.2f}", **extra}  # fmt: skip


# -- 3. cancel-replace ----------------------------------------------------------------------------


async def test_ccxt_edit_order_cancels_and_replaces(exchange, client):
    placed = await client.create_order("BTC/USDT", "limit", "buy", 0.001, float(resting_buy(exchange)["price"]))
    price = float(resting_buy(exchange)["price"]) - 100
    before = exchange._counters.weight.used, exchange._counters.orders_10s.used
    edited = await client.edit_order(placed["id"], "BTC/USDT", "limit", "buy", 0.002, price)
    answer = json.loads(client.last_http_response)
    assert (exchange._counters.weight.used - before[0], exchange._counters.orders_10s.used - before[1]) == (1, 1)
    assert edited["id"] != placed["id"] and edited["status"] == "open" and edited["amount"] == 0.002
    assert edited["price"] == price
    assert (await client.fetch_order(placed["id"], "BTC/USDT"))["status"] == "canceled"
    assert [o["id"] for o in await client.fetch_open_orders("BTC/USDT")] == [edited["id"]]
    assert (answer["cancelResult"], answer["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert answer["cancelResponse"]["status"] == "CANCELED" and answer["cancelResponse"]["orderId"] == int(placed["id"])
    with pytest.raises(ccxt_async.ExchangeError, match="-2022"):  # the old one is gone: STOP_ON_FAILURE
        await client.edit_order(placed["id"], "BTC/USDT", "limit", "buy", 0.002, price)


async def test_cancel_replace_failures_answer_as_binance(exchange):
    status, body = await signed(exchange, "POST", "order", resting_buy(exchange))
    assert status == 200
    replace = resting_buy(exchange, cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId="999999")
    status, body = await signed(exchange, "POST", "order/cancelReplace", replace)
    assert status == 400 and body["code"] == -2022 and body["msg"] == "Order cancel-replace failed."
    assert body["data"] == {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                            "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
                            "newOrderResponse": None}  # fmt: skip
    allow = replace | {"cancelReplaceMode": "ALLOW_FAILURE"}
    status, body = await signed(exchange, "POST", "order/cancelReplace", allow)
    assert status == 409 and body["code"] == -2021 and body["msg"] == "Order cancel-replace partially failed."
    assert body["data"]["cancelResult"] == "FAILURE" and body["data"]["newOrderResult"] == "SUCCESS"
    assert body["data"]["newOrderResponse"]["status"] == "NEW"
    kept = body["data"]["newOrderResponse"]["orderId"]
    # Cancel restrictions: a NEW order is not canceled under ONLY_PARTIALLY_FILLED.
    restricted = resting_buy(exchange, cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=str(kept),
                             cancelRestrictions="ONLY_PARTIALLY_FILLED")  # fmt: skip
    status, body = await signed(exchange, "POST", "order/cancelReplace", restricted)
    assert status == 400 and body["data"]["cancelResponse"] == {
        "code": -2011, "msg": "Order was not canceled due to cancel restrictions."}  # fmt: skip
    status, body = await signed(exchange, "POST", "order/cancelReplace", restricted | {"cancelRestrictions": "NEVER"})
    assert (status, body) == (400, {"code": -1145, "msg": "Invalid cancelRestrictions"})
    # The cancel succeeds, the new order fails (a LIMIT_MAKER that would take): 409, the old one canceled.
    taker = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.001",
             "price": f"{exchange.venue.engine.last_price['BTC/USDT'] * Decimal('1.05'):.2f}",
             "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": str(kept),
             "cancelRestrictions": "ONLY_NEW"}  # fmt: skip
    status, body = await signed(exchange, "POST", "order/cancelReplace", taker)
    assert status == 409 and body["code"] == -2021
    assert body["data"]["cancelResponse"]["status"] == "CANCELED" and body["data"]["newOrderResult"] == "FAILURE"
    assert body["data"]["newOrderResponse"]["code"] == -2010
    # Parameter errors are plain errors and change nothing.
    status, body = await signed(exchange, "POST", "order/cancelReplace", resting_buy(exchange, cancelOrderId="1"))
    assert status == 400 and body["code"] == -1102 and "cancelReplaceMode" in body["msg"]
    status, body = await signed(exchange, "POST", "order/cancelReplace",
                                resting_buy(exchange, cancelReplaceMode="STOP_ON_FAILURE"))  # fmt: skip
    assert status == 400 and body["code"] == -1102 and "cancelOrderId" in body["msg"]
    for name in ("cancelReplaceMode", "orderRateLimitExceededMode"):
        status, body = await signed(exchange, "POST", "order/cancelReplace",
                                    resting_buy(exchange, cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId="1")
                                    | {name: "SOMETIMES"})  # fmt: skip
        assert status == 400 and body["code"] == -1100 and name in body["msg"]


async def test_cancel_replace_over_the_order_count():
    # the daily order count, so that a slow machine cannot let the count run out of its window mid-test
    async with LocalExchange(("BTC/USDT",), limits=Limits(orders_per_day=2)) as exchange:
        status, first = await signed(exchange, "POST", "order", resting_buy(exchange))
        status, second = await signed(exchange, "POST", "order", resting_buy(exchange))
        replace = resting_buy(exchange, cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=str(first["orderId"]))
        status, body = await signed(exchange, "POST", "order/cancelReplace", replace)
        assert status == 429 and body["code"] == -1015  # DO_NOTHING: nothing canceled
        assert exchange.venue.fetch_order("BTCUSDT", str(first["orderId"]), None)["status"] == "NEW"
        status, body = await signed(exchange, "POST", "order/cancelReplace",
                                    replace | {"orderRateLimitExceededMode": "CANCEL_ONLY"})  # fmt: skip
        assert status == 429 and body["code"] == -2021
        assert body["data"]["cancelResponse"]["status"] == "CANCELED"
        assert body["data"]["newOrderResponse"]["code"] == -1015


async def test_ws_api_order_cancel_replace(exchange):
    status, placed = await signed(exchange, "POST", "order", resting_buy(exchange))
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        params = resting_buy(exchange, "0.002", cancelReplaceMode="STOP_ON_FAILURE",
                             cancelOrderId=str(placed["orderId"]), returnRateLimits="false")  # fmt: skip
        answer = await ws_call(ws, "order.cancelReplace", ws_params(exchange, params))
        assert answer["status"] == 200 and "rateLimits" not in answer, answer
        assert answer["result"]["cancelResponse"]["orderId"] == placed["orderId"]
        assert answer["result"]["newOrderResponse"]["origQty"] == "0.00200000"
        again = await ws_call(ws, "order.cancelReplace", ws_params(exchange, params))
        assert again["status"] == 400 and again["error"]["code"] == -2022
        assert again["error"]["data"]["newOrderResult"] == "NOT_ATTEMPTED"


# -- 15 (part). BinanceExecutor.edit_order ----------------------------------------------------------


def limit(exchange: LocalExchange, cid: str, factor: str, amount: str = "0.01", type_: str = "limit") -> OrderRequest:
    price = cents(price_of(exchange) * Decimal(factor))
    tif = "GTC" if type_ == "limit" else None
    return OrderRequest("BTC/USDT", "buy", type_, amount=amount, price=price, time_in_force=tif,  # type: ignore[arg-type]
                        client_order_id=cid)  # fmt: skip


@pytest.fixture
async def executor(exchange):
    executor = executor_for(exchange, reconcile_every=3600)
    await executor.start()
    yield executor
    await executor.close()


async def test_executor_edit_order_replaces_and_records_both(exchange, executor):
    events: list[tuple[str, str]] = []
    executor.subscribe(lambda e: events.append((e.order.client_order_id, e.order.status.value)))
    old = await executor.create_order(limit(exchange, "e-old", "0.95"))
    new = await executor.edit_order("e-old", limit(exchange, "e-new", "0.96", amount="0.02"))
    assert new.client_order_id == "e-new" and new.status is OrderStatus.NEW and new.amount == Decimal("0.02")
    assert executor._orders["e-old"].status is OrderStatus.CANCELED and ("e-old", "CANCELED") in events
    venue = exchange.venue.engine
    assert venue.get_order("BTC/USDT", client_order_id="e-old").status is OrderStatus.CANCELED
    assert [o.client_order_id for o in await executor.fetch_open_orders("BTC/USDT")] == ["e-new"]
    assert old.id != new.id and executor._client_ids[new.id] == "e-new"
    with pytest.raises(OrderRejected, match="needs a client_order_id"):
        await executor.edit_order("e-new", limit(exchange, "", "0.96"))


async def test_executor_edit_order_failures(exchange, executor):
    with pytest.raises(OrderNotFound, match="Unknown order sent.*nothing was placed"):
        await executor.edit_order("e-none", limit(exchange, "e-1", "0.96"))
    assert "e-1" not in executor._orders and not exchange.venue.engine.open_orders("BTC/USDT")
    await executor.create_order(limit(exchange, "e-2", "0.95"))
    taker = limit(exchange, "e-3", "1.05", type_="limit_maker")  # would take: refused after the cancel
    with pytest.raises(OrderRejected, match="canceled e-2 but rejected its replacement.*-2010") as caught:
        await executor.edit_order("e-2", taker)
    assert caught.value.code == -2010 and executor._orders["e-2"].status is OrderStatus.CANCELED
    await executor.create_order(limit(exchange, "e-4", "0.95"))
    with pytest.raises(OrderRejected, match="-1100"):  # a parameter the venue refuses before doing anything
        await executor.edit_order("e-4", limit(exchange, "bad id!", "0.96"))
    assert exchange.venue.engine.get_order("BTC/USDT", client_order_id="e-4").status is OrderStatus.NEW
    exchange.set_faults(errors_5xx=1)  # the answer is lost: the new order waits for reconcile()
    with pytest.raises(VenueUnavailable):
        await executor.edit_order("e-4", limit(exchange, "e-5", "0.96"))
    assert executor._orders["e-5"].status is OrderStatus.PENDING_NEW
    await executor.reconcile()
    assert executor._orders["e-5"].status is OrderStatus.REJECTED  # the 503 came before anything was done
    assert executor._orders["e-4"].status is OrderStatus.NEW


def test_cancel_replace_answers_that_are_not_json():
    assert _json_answer("<html>") == {} and _json_answer("[1]") == {} and _json_answer(None) == {}


# -- 5. commission ------------------------------------------------------------------------------


async def test_commission_rates_over_rest_and_the_ws_api(exchange, client):
    rates = await client.private_get_account_commission({"symbol": "BTCUSDT"})
    assert rates["symbol"] == "BTCUSDT" and rates["standardCommission"] == {
        "maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"}  # fmt: skip
    assert rates["specialCommission"]["maker"] == rates["taxCommission"]["taker"] == "0.00000000"
    assert rates["discount"] == {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB",
                                 "discount": "0.00000000"}  # fmt: skip
    before = exchange._counters.weight.used
    test_order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    computed = await client.private_post_order_test(test_order | {"computeCommissionRates": "true"})
    assert exchange._counters.weight.used - before == 20
    assert computed == {"standardCommissionForOrder": {"maker": "0.00100000", "taker": "0.00100000"},
                        "specialCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
                        "taxCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
                        "discount": rates["discount"]}  # fmt: skip
    assert await client.private_post_order_test(test_order) == {}
    with pytest.raises(ccxt_async.BadRequest, match="-1102"):
        await client.private_get_account_commission()
    await client.create_order("BTC/USDT", "market", "buy", 0.001)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        answer = await ws_call(ws, "account.commission", ws_params(exchange, {"symbol": "BTCUSDT"}))
        assert answer["status"] == 200 and answer["result"] == rates
        answer = await ws_call(ws, "account.rateLimits.orders", ws_params(exchange, {}))
        # the market order filled: it left the unfilled order count
        assert [(r["interval"], r["intervalNum"], r["count"]) for r in answer["result"]] == [("SECOND", 10, 0),
                                                                                           ("DAY", 1, 0)]  # fmt: skip
        assert answer["rateLimits"][0]["count"] >= 40  # weighs 40, as GET rateLimit/order
        answer = await ws_call(ws, "order.test", ws_params(exchange, test_order | {"computeCommissionRates": True}))
        assert answer["result"]["standardCommissionForOrder"]["taker"] == "0.00100000"


# -- 6. market data --------------------------------------------------------------------------------


async def test_trading_day_ui_klines_and_historical_trades_over_rest(exchange, client):
    for _ in range(3):
        exchange.step(1)
    day = await client.public_get_ticker_tradingday({"symbol": "BTCUSDT"})
    def midnight(shift: int) -> int:  # the day's start in a time zone ``shift`` ms east of UTC
        now = exchange.now()
        return now - (now + shift) % 86_400_000

    assert 0 <= day["openTime"] - midnight(0) < 5000
    assert day["lastPrice"] == f"{exchange.venue.engine.last_price['BTC/USDT']:.8f}" and day["count"] > 0
    mini = await client.public_get_ticker_tradingday({"symbols": '["BTCUSDT","ETHUSDT"]', "type": "MINI"})
    assert [t["symbol"] for t in mini] == ["BTCUSDT", "ETHUSDT"] and "priceChange" not in mini[0]
    shifted = await client.public_get_ticker_tradingday({"symbol": "BTCUSDT", "timeZone": "-1:30"})
    assert 0 <= shifted["openTime"] - midnight(-5_400_000) < 5000
    for zone in ("15", "1:5", "x"):
        with pytest.raises(ccxt_async.BadRequest, match="-1100"):
            await client.public_get_ticker_tradingday({"symbol": "BTCUSDT", "timeZone": zone})
    with pytest.raises(ccxt_async.BadRequest, match="-1102"):
        await client.public_get_ticker_tradingday()
    with pytest.raises(ccxt_async.BadRequest, match="-1100.*'type'"):
        await client.public_get_ticker({"symbol": "BTCUSDT", "type": "HUGE"})
    assert set(await client.public_get_ticker_24hr({"symbol": "BTCUSDT", "type": "MINI"})) == set(
        mini[0])  # fmt: skip
    params = {"symbol": "BTCUSDT", "interval": "1m", "limit": 5}
    assert await client.public_get_uiklines(params) == await client.public_get_klines(params)
    recent = await client.public_get_trades({"symbol": "BTCUSDT", "limit": 3})
    assert await client.public_get_historicaltrades({"symbol": "BTCUSDT", "limit": 3}) == recent
    older = await client.public_get_historicaltrades({"symbol": "BTCUSDT", "fromId": recent[0]["id"] - 2,
                                                      "limit": 2})  # fmt: skip
    assert [t["id"] for t in older] == [recent[0]["id"] - 2, recent[0]["id"] - 1]
    before = exchange._counters.weight.used
    await client.public_get_ticker_tradingday({"symbols": '["BTCUSDT","ETHUSDT"]'})
    await client.public_get_historicaltrades({"symbol": "BTCUSDT"})
    assert exchange._counters.weight.used - before == 8 + 25


async def test_ws_api_market_data_methods(exchange, client):
    exchange.step(2)
    rest = {
        "depth": await client.public_get_depth({"symbol": "BTCUSDT", "limit": 5}),
        "klines": await client.public_get_klines({"symbol": "BTCUSDT", "interval": "1m", "limit": 3}),
        "trades.recent": await client.public_get_trades({"symbol": "BTCUSDT", "limit": 3}),
        "trades.aggregate": await client.public_get_aggtrades({"symbol": "BTCUSDT", "limit": 3}),
        "ticker.price": await client.public_get_ticker_price({"symbol": "BTCUSDT"}),
        "ticker.book": await client.public_get_ticker_bookticker({"symbol": "BTCUSDT"}),
        "avgPrice": await client.public_get_avgprice({"symbol": "BTCUSDT"}),
    }
    params = {"depth": {"symbol": "BTCUSDT", "limit": 5}, "klines": {"symbol": "BTCUSDT", "interval": "1m", "limit": 3},
              "trades.recent": {"symbol": "BTCUSDT", "limit": 3}, "trades.aggregate": {"symbol": "BTCUSDT", "limit": 3},
              "ticker.price": {"symbol": "BTCUSDT"}, "ticker.book": {"symbol": "BTCUSDT"},
              "avgPrice": {"symbol": "BTCUSDT"}}  # fmt: skip
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        for method, expected in rest.items():
            answer = await ws_call(ws, method, params[method])
            assert answer["status"] == 200 and answer["result"] == expected, method
        assert (await ws_call(ws, "uiKlines", params["klines"]))["result"] == rest["klines"]
        assert (await ws_call(ws, "trades.historical", params["trades.recent"]))["result"] == rest["trades.recent"]
        assert (await ws_call(ws, "ping"))["result"] == {}
        assert abs((await ws_call(ws, "time"))["result"]["serverTime"] - exchange.now()) < 5000
        info = (await ws_call(ws, "exchangeInfo", {"symbols": ["BTCUSDT"]}))["result"]
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"] and info["rateLimits"]
        many = (await ws_call(ws, "ticker.24hr", {"symbols": ["BTCUSDT", "ETHUSDT"], "type": "MINI"}))["result"]
        assert [t["symbol"] for t in many] == ["BTCUSDT", "ETHUSDT"] and "bidPrice" not in many[0]
        rolling = (await ws_call(ws, "ticker", {"symbol": "BTCUSDT", "windowSize": "1h"}))["result"]
        assert rolling["closeTime"] - rolling["openTime"] <= 3_600_000 + 60_000
        day = (await ws_call(ws, "ticker.tradingDay", {"symbol": "BTCUSDT"}))["result"]
        assert day["symbol"] == "BTCUSDT"
        depth = await ws_call(ws, "depth", {"symbol": "BTCUSDT", "limit": 500})
        assert depth["rateLimits"][0]["count"] >= 25  # REST's weights
        assert (await ws_call(ws, "depth", {}))["error"]["code"] == -1102


async def test_ccxt_pro_watch_tickers_and_the_new_streams(exchange, client):
    async def stepping(watch):
        task = asyncio.ensure_future(watch)
        while not task.done():
            exchange.step(1)
            await asyncio.wait([task], timeout=0.1)
        return task.result()

    tickers = await asyncio.wait_for(stepping(client.watch_tickers()), 20)  # !miniTicker@arr
    assert set(tickers) <= {"BTC/USDT", "ETH/USDT"} and tickers
    assert all(t["last"] > 0 for t in tickers.values())
    full = await asyncio.wait_for(stepping(client.watch_tickers(params={"name": "ticker"})), 20)  # !ticker@arr
    assert all(t["bid"] < t["ask"] for t in full.values())
    window = await asyncio.wait_for(stepping(client.watch_ticker("BTC/USDT", params={"name": "ticker_1h"})), 20)
    assert window["symbol"] == "BTC/USDT" and window["last"] > 0
    streams = ["btcusdt@aggTrade", "btcusdt@avgPrice", "btcusdt@ticker_4h", "btcusdt@ticker_1d", "!ticker_1h@arr"]
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http, http.ws_connect(
        f"{exchange.url}/stream?streams={'/'.join(streams)}"
    ) as ws:  # fmt: skip
        while set(seen) != set(streams):
            exchange.step(1)
            message = await asyncio.wait_for(ws.receive_json(), 10)
            seen.setdefault(message["stream"], message["data"])
    aggregate = seen["btcusdt@aggTrade"]
    assert aggregate["e"] == "aggTrade" and aggregate["f"] == aggregate["l"] == aggregate["a"]
    assert seen["btcusdt@avgPrice"]["e"] == "avgPrice" and seen["btcusdt@avgPrice"]["i"] == "5m"
    assert seen["btcusdt@ticker_4h"]["e"] == "4hTicker" and seen["btcusdt@ticker_1d"]["e"] == "1dTicker"
    assert isinstance(seen["!ticker_1h@arr"], list) and seen["!ticker_1h@arr"][0]["e"] == "1hTicker"
    ticker = seen["btcusdt@ticker_4h"]
    assert ticker["C"] - ticker["O"] <= 4 * 3_600_000 + 60_000 and ticker["n"] == ticker["L"] - ticker["F"] + 1


# -- 6. WebSocket API sessions -------------------------------------------------------------------------


async def test_session_logon_with_ed25519_and_refused_for_hmac():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    async with (
        LocalExchange(("BTC/USDT",), ed25519_public_key=public) as exchange,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{exchange.url}/ws-api/v3") as ws,
    ):
        status = (await ws_call(ws, "session.status"))["result"]
        assert status["apiKey"] is None and status["authorizedSince"] is None and status["connectedSince"] > 0
        hmac_logon = await ws_call(ws, "session.logon", ws_params(exchange, {}))
        assert hmac_logon["status"] == 400 and hmac_logon["error"]["code"] == -4056
        params = {"apiKey": exchange.api_key, "timestamp": exchange.now()}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = base64.b64encode(key.sign(payload.encode())).decode()
        logon = await ws_call(ws, "session.logon", params)
        assert logon["status"] == 200 and logon["result"]["apiKey"] == exchange.api_key
        assert logon["result"]["authorizedSince"] >= status["connectedSince"]
        # Logged on: signed methods need only a timestamp.
        account = await ws_call(ws, "account.status", {"timestamp": exchange.now()})
        assert account["status"] == 200 and account["result"]["balances"]
        assert (await ws_call(ws, "account.status", {}))["error"]["code"] == -1102
        assert (await ws_call(ws, "session.status"))["result"]["apiKey"] == exchange.api_key
        logout = (await ws_call(ws, "session.logout"))["result"]
        assert logout["apiKey"] is None and logout["authorizedSince"] is None
        assert (await ws_call(ws, "account.status", {"timestamp": exchange.now()}))["error"]["code"] == -2014


# -- 7. microseconds ----------------------------------------------------------------------------------


def micro_of(ms: int, us: int) -> bool:
    """``us`` is the same moment as ``ms``, in microseconds."""
    return us % 1000 == 0 and abs(us // 1000 - ms) < 10_000


async def test_microsecond_time_unit_over_rest_ws_api_and_streams(exchange):
    exchange.step(2)
    now = exchange.now()
    micro = {"X-MBX-TIME-UNIT": "MICROSECOND"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{exchange.url}/api/v3/time", headers={"X-MBX-TIME-UNIT": "microsecond"}) as r:
            assert micro_of(now, (await r.json())["serverTime"])
        async with http.get(f"{exchange.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2", headers=micro) as r:
            rows = await r.json()
        async with http.get(f"{exchange.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2") as r:
            assert [[row[0] * 1000, row[6] * 1000] for row in await r.json()] == [[row[0], row[6]] for row in rows]
        since = rows[0][0]  # a µs startTime is taken as Binance takes it
        async with http.get(f"{exchange.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={since}") as r:
            assert (await r.json())[0][0] * 1000 == since
        async with http.get(f"{exchange.url}/api/v3/trades?symbol=BTCUSDT&limit=1", headers=micro) as r:
            assert micro_of(now, (await r.json())[0]["time"])
    status, placed = await signed(exchange, "POST", "order", resting_buy(exchange), micro)
    assert micro_of(now, placed["transactTime"]) and micro_of(now, placed["workingTime"])
    status, order = await signed(exchange, "GET", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}, micro)
    assert order["time"] == placed["transactTime"] and micro_of(now, order["updateTime"])
    status, body = await signed(exchange, "POST", "order/cancelReplace",
                                resting_buy(exchange, cancelReplaceMode="ALLOW_FAILURE", cancelOrderId="424242"),
                                micro)  # fmt: skip
    assert status == 409 and micro_of(now, body["data"]["newOrderResponse"]["transactTime"])  # also in ``data``
    status, pending = await signed(exchange, "GET", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]})
    assert pending["time"] * 1000 == order["time"]
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3?timeUnit=MICROSECOND") as ws:
        assert micro_of(now, (await ws_call(ws, "time"))["result"]["serverTime"])
        kline = (await ws_call(ws, "klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 2}))["result"]
        assert kline == rows
        status = (await ws_call(ws, "session.status"))["result"]
        assert micro_of(now, status["connectedSince"]) and status["authorizedSince"] is None
        assert (await ws_call(ws, "userDataStream.subscribe.signature", ws_params(exchange, {})))["status"] == 200
        async with http.ws_connect(f"{exchange.url}/ws/btcusdt@trade/btcusdt@kline_1m?timeUnit=MICROSECOND") as s:
            await until_subscribed(exchange, 2)
            exchange.set_price("BTC/USDT", Decimal(placed["price"]))  # fills the resting buy
            trade = await asyncio.wait_for(s.receive_json(), 10)
            assert trade["e"] == "trade" and micro_of(now, trade["E"]) and trade["T"] == trade["E"]
            assert trade["t"] < 10**9  # an id, not a time
            exchange.step(1)
            while (event := await asyncio.wait_for(s.receive_json(), 10))["e"] != "kline":
                pass
            opened = event["k"]["t"]  # replayed bars may run minutes ahead of the clock (docs §9)
            assert opened % 60_000_000 == 0 and abs(opened // 1000 - now) < 3_600_000 and event["k"]["f"] < 10**9
        while (report := (await asyncio.wait_for(ws.receive_json(), 10))["event"])["e"] != "executionReport":
            pass
        assert micro_of(now, report["E"]) and micro_of(now, report["O"]) and report["t"] < 10**9
        while (position := (await asyncio.wait_for(ws.receive_json(), 10))["event"])["e"] == "executionReport":
            pass
        assert position["e"] == "outboundAccountPosition" and micro_of(now, position["u"])


async def until_subscribed(exchange: LocalExchange, streams: int) -> None:
    from tests.polling import until

    await until(lambda: sum(len(c.streams) for c in exchange._market_conns.values()) >= streams,
                what="the market streams subscribed")  # fmt: skip

