"""Answers the local exchange gives as live Binance gives them (issue 16, "Wrong answers"): most
recent records first, weights, strict decimals, -1106, ``returnRateLimits``, order query fields,
exchangeInfo flags and JSON errors on every path. Real ccxt (async and pro) over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from tests.test_exchange import client_for


@pytest.fixture
async def client(exchange):  # ``exchange``: the local exchange of tests/conftest.py; markets load on first use
    c = client_for(exchange)
    yield c
    await c.close()


async def test_all_orders_and_my_trades_return_the_most_recent_records(exchange, client):
    ids = [(await client.create_order("BTC/USDT", "market", "buy", 0.001))["id"] for _ in range(5)]
    assert [o["id"] for o in await client.fetch_orders("BTC/USDT", limit=2)] == ids[-2:]
    assert [t["order"] for t in await client.fetch_my_trades("BTC/USDT", limit=2)] == ids[-2:]
    # From an id (or a start time) the first ones, oldest first.
    assert [o["id"] for o in await client.fetch_orders("BTC/USDT", limit=2, params={"orderId": ids[1]})] == ids[1:3]
    first_trade = int((await client.fetch_my_trades("BTC/USDT"))[0]["id"])
    from_id = await client.fetch_my_trades("BTC/USDT", limit=2, params={"fromId": first_trade})
    assert [t["order"] for t in from_id] == ids[:2]
    since = await client.fetch_orders("BTC/USDT", since=exchange.now() - 60_000, limit=2)
    assert [o["id"] for o in since] == ids[:2]


async def test_weights_of_my_trades_and_order_test(exchange, client):
    async def weight(call) -> int:
        before = exchange._counters.weight.used
        await call
        return exchange._counters.weight.used - before

    order = await client.create_order("BTC/USDT", "market", "buy", 0.001)
    assert await weight(client.private_get_mytrades({"symbol": "BTCUSDT"})) == 20
    assert await weight(client.private_get_mytrades({"symbol": "BTCUSDT", "orderId": order["id"]})) == 5
    test_order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    assert await weight(client.private_post_order_test(test_order)) == 1
    assert await weight(client.private_post_order_test(test_order | {"computeCommissionRates": "true"})) == 20


@pytest.mark.parametrize("quantity", ["1e-05", "1E-3", " 0.001", "0.001 ", "+0.001", ".001", "0x1", "1_000", "٠.١"])
async def test_decimal_parameters_are_parsed_strictly(client, quantity):
    with pytest.raises(ccxt_async.BadRequest, match=r"-1100.*parameter 'quantity'; legal range is"):
        await client.private_post_order(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity}
        )  # fmt: skip
    with pytest.raises(ccxt_async.BadRequest, match=r"-1100.*parameter 'price'"):
        await client.private_post_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                         "quantity": "0.001", "price": "3.7e4"})  # fmt: skip


async def test_market_order_with_time_in_force_is_1106(client):
    with pytest.raises(ccxt_async.BadRequest, match="-1106.*Parameter 'timeInForce' sent when not required"):
        await client.create_order("BTC/USDT", "market", "buy", 0.001, params={"timeInForce": "GTC"})


async def test_ws_api_accepts_return_rate_limits(exchange, client):
    order = await client.create_order_ws("BTC/USDT", "market", "buy", 0.001)  # sends returnRateLimits=false
    assert order["status"] == "closed" and order["filled"] == 0.001
    params = {"apiKey": exchange.api_key, "timestamp": exchange.now(), "returnRateLimits": "false"}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(exchange.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        await ws.send_json({"id": 1, "method": "account.status", "params": params})
        quiet = await asyncio.wait_for(ws.receive_json(), 5)
        await ws.send_json({"id": 2, "method": "ping", "params": {"returnRateLimits": True}})
        loud = await asyncio.wait_for(ws.receive_json(), 5)
        await ws.send_json({"id": 3, "method": "time", "params": {"returnRateLimits": False}})
        timed = await asyncio.wait_for(ws.receive_json(), 5)
    assert quiet["status"] == 200 and "rateLimits" not in quiet and quiet["result"]["balances"]
    assert loud["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT" and "rateLimits" not in timed


async def test_order_queries_carry_binance_fields(exchange, client):
    price = float(exchange.venue.engine.last_price["BTC/USDT"])
    market = await client.create_order("BTC/USDT", "market", "buy", 0.001)
    marketable = await client.create_order("BTC/USDT", "limit", "buy", 0.001, round(price * 1.01, 2))
    ioc = await client.create_order("BTC/USDT", "limit", "buy", 0.001, round(price * 0.95, 2),
                                    params={"timeInForce": "IOC"})  # fmt: skip
    stop = await client.create_order("BTC/USDT", "STOP_LOSS_LIMIT", "sell", 0.001, round(price * 0.97, 2),
                                     params={"stopPrice": round(price * 0.98, 2), "timeInForce": "GTC"})  # fmt: skip
    for placed in (market, marketable, ioc):
        info = (await client.fetch_order(placed["id"], "BTC/USDT"))["info"]
        assert info["stopPrice"] == "0.00000000" and info["icebergQty"] == "0.00000000"
        assert info["isWorking"] is True and info["workingTime"] == info["time"]
        assert int(placed["info"]["workingTime"]) == info["workingTime"]  # POST and GET agree
    assert (await client.fetch_order(ioc["id"], "BTC/USDT"))["info"]["status"] == "EXPIRED"
    pending = (await client.fetch_order(stop["id"], "BTC/USDT"))["info"]
    assert pending["isWorking"] is False and pending["workingTime"] == -1 and pending["stopPrice"] != "0.00000000"
    assert "stopPrice" not in market["info"]  # a POST answer of a non-stop order has none, as on Binance


async def test_exchange_info_flags_avg_price_and_json_errors_everywhere(exchange, client):
    (symbol,) = (await client.public_get_exchangeinfo({"symbol": "BTCUSDT"}))["symbols"]
    for flag in ("opoAllowed", "pegInstructionsAllowed"):
        assert symbol[flag] is False, flag  # neither is implemented here, so neither is offered
    offered = ("cancelReplaceAllowed", "amendAllowed", "allowTrailingStop", "icebergAllowed", "ocoAllowed",
               "otoAllowed")  # fmt: skip
    assert all(symbol[flag] is True for flag in offered)  # test_exchange_venue2.py, _order_lists.py, _amend.py
    # what Binance's BTCUSDT lists (shared/data/binance/exchangeInfo.json): no market-type stops
    assert symbol["orderTypes"] == ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
    average = await client.public_get_avgprice({"symbol": "BTCUSDT"})
    assert set(average) == {"mins", "price", "closeTime"}
    async with aiohttp.ClientSession() as http:
        for method, path in (("GET", "/api/v1/ping"), ("GET", "/"), ("POST", "/sapi/v1/x"), ("GET", "/api/v3/nope"),
                             ("POST", "/ws"), ("DELETE", "/api/v3/time")):  # fmt: skip
            async with http.request(method, f"{exchange.url}{path}") as r:
                assert r.status in (404, 405) and r.content_type == "application/json", (method, path)
                assert (await r.json())["code"] == -1000
