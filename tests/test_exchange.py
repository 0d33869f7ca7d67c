"""The local exchange, driven by the real ccxt client (async and pro) over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from workbench.config import Credentials, Secret, TradingMode
from workbench.exchange import BinanceError, Limits, LocalExchange
from workbench.exchange.server import _payload
from workbench.executors.binance import make_client, point_at
from workbench.matching import BookConfig


def client_for(exchange: LocalExchange, secret: str | None = None):
    credentials = Credentials(Secret(exchange.api_key), Secret(secret or exchange.secret))
    return make_client(TradingMode.TESTNET, credentials, exchange.url)


@pytest.fixture
async def exchange():
    async with LocalExchange(("BTC/USDT", "ETH/USDT")) as ex:
        yield ex


@pytest.fixture
async def client(exchange):
    c = client_for(exchange)
    await c.load_markets()
    yield c
    await c.close()


def last(exchange: LocalExchange, symbol: str = "BTC/USDT") -> Decimal:
    return exchange.venue.engine.last_price[symbol]


async def wait_for(condition, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- public endpoints ---------------------------------------------------------------------------


async def test_public_endpoints_through_plain_async_ccxt(exchange):
    client = ccxt_async.binance({"options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}})
    client.set_sandbox_mode(True)
    point_at(client, exchange.url)
    try:
        await public_endpoints(exchange, client)
    finally:
        await client.close()


async def public_endpoints(exchange, client):
    await client.load_markets()
    assert abs(await client.fetch_time() - exchange.now()) < 2_000
    assert set(client.markets) == {"BTC/USDT", "ETH/USDT"}
    market = client.market("BTC/USDT")
    assert market["precision"]["price"] == 0.01 and market["limits"]["cost"]["min"] == 5.0

    book = await client.fetch_order_book("BTC/USDT", 5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] < float(last(exchange)) < book["asks"][0][0]
    ticker = await client.fetch_ticker("BTC/USDT")
    assert ticker["last"] == float(last(exchange)) and ticker["bid"] == book["bids"][0][0]
    bids_asks = await client.fetch_bids_asks(["BTC/USDT"])
    assert bids_asks["BTC/USDT"]["ask"] == book["asks"][0][0]
    prices = await client.fetch_last_prices(["BTC/USDT"])
    assert prices["BTC/USDT"]["price"] == float(last(exchange))

    exchange.step(3)
    trades = await client.fetch_trades("BTC/USDT", limit=8)
    assert len(trades) == 8 and trades[-1]["price"] == float(last(exchange))
    candles = await client.fetch_ohlcv("BTC/USDT", "1m", limit=10)
    assert len(candles) == 10 and candles[-1][4] == float(last(exchange))
    assert all(b[0] - a[0] == 60_000 for a, b in zip(candles, candles[1:], strict=False))
    hourly = await client.fetch_ohlcv("BTC/USDT", "1h", limit=3)
    assert [c[0] % 3_600_000 for c in hourly] == [0, 0, 0]


async def test_rest_headers_and_weights(exchange):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{exchange.url}/api/v3/exchangeInfo") as r:
            info = await r.json()
            assert r.headers["X-MBX-USED-WEIGHT-1M"] == "20"
        async with http.get(f"{exchange.url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "500"}) as r:
            assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(20 + 25)
        async with http.get(f"{exchange.url}/api/v3/ticker/24hr") as r:
            assert len(await r.json()) == 2 and r.headers["X-MBX-USED-WEIGHT-1M"] == str(20 + 25 + 80)
        async with http.get(f"{exchange.url}/api/v3/depth", params={"symbol": "NOPE"}) as r:
            assert r.status == 400 and await r.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert {lim["rateLimitType"] for lim in info["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"}
    assert info["symbols"][0]["filters"][0]["filterType"] == "PRICE_FILTER"


# -- orders -------------------------------------------------------------------------------------


async def test_every_order_type_through_ccxt(exchange, client):
    price = float(last(exchange))
    market = await client.create_order("BTC/USDT", "market", "buy", 0.01)
    assert market["status"] == "closed" and market["filled"] == 0.01 and market["remaining"] == 0
    assert market["average"] == pytest.approx(market["cost"] / 0.01)
    assert market["fee"] == {"currency": "BTC", "cost": 0.00001} and len(market["trades"]) == 1

    quote = await client.create_order("BTC/USDT", "market", "buy", None, params={"quoteOrderQty": 100})
    assert quote["status"] == "closed" and 0 < quote["cost"] <= 100 and quote["filled"] > 0

    resting = await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(price * 0.96, 2))
    assert resting["status"] == "open" and resting["filled"] == 0 and resting["remaining"] == 0.01
    ioc = await client.create_order("BTC/USDT", "limit", "sell", 0.01, round(price * 1.02, 2), {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0
    fok = await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(price * 1.01, 2), {"timeInForce": "FOK"})
    assert fok["status"] == "closed" and fok["filled"] == 0.01
    maker = await client.create_order("BTC/USDT", "LIMIT_MAKER", "sell", 0.01, round(price * 1.01, 2))
    assert maker["status"] == "open" and maker["postOnly"] is True

    stop = await client.create_order(
        "BTC/USDT",
        "STOP_LOSS_LIMIT",
        "sell",
        0.01,
        round(price * 0.97, 2),
        {"stopPrice": round(price * 0.98, 2), "timeInForce": "GTC"},
    )
    take = await client.create_order(
        "BTC/USDT",
        "TAKE_PROFIT_LIMIT",
        "sell",
        0.01,
        round(price * 1.03, 2),
        {"stopPrice": round(price * 1.03, 2), "timeInForce": "GTC"},
    )
    assert (await client.fetch_order(stop["id"], "BTC/USDT"))["info"]["isWorking"] is False
    exchange.set_price("BTC/USDT", price * 1.035)  # the take-profit triggers and fills, the maker sell fills
    assert (await client.fetch_order(take["id"], "BTC/USDT"))["status"] == "closed"
    assert (await client.fetch_order(maker["id"], "BTC/USDT"))["status"] == "closed"
    exchange.set_price("BTC/USDT", price * 0.975)  # the stop triggers and fills at its limit; the resting buy not yet
    stopped = await client.fetch_order(stop["id"], "BTC/USDT")
    assert stopped["status"] == "closed" and stopped["price"] == round(price * 0.97, 2)
    assert (await client.fetch_order(resting["id"], "BTC/USDT"))["status"] == "open"

    test = await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(price * 0.9, 2), {"test": True})
    assert test["id"] is None
    assert {o["id"] for o in await client.fetch_open_orders("BTC/USDT")} == {resting["id"]}
    canceled = await client.cancel_order(resting["id"], "BTC/USDT")
    assert canceled["status"] == "canceled" and canceled["info"]["origClientOrderId"] == resting["clientOrderId"]

    everything = await client.fetch_orders("BTC/USDT")
    assert [o["id"] for o in everything] == [o["id"] for o in (market, quote, resting, ioc, fok, maker, stop, take)]
    trades = await client.fetch_my_trades("BTC/USDT")
    assert {t["order"] for t in trades} == {market["id"], quote["id"], fok["id"], maker["id"], stop["id"], take["id"]}
    assert all(t["fee"]["currency"] == ("BTC" if t["side"] == "buy" else "USDT") for t in trades)
    maker_trades = [t for t in trades if t["order"] == maker["id"]]
    assert maker_trades[0]["takerOrMaker"] == "maker"


async def test_partial_fill_and_cancel_all():
    async with LocalExchange(("BTC/USDT",), book=BookConfig(level_notional=Decimal(20_000))) as exchange:
        client = client_for(exchange)
        try:
            await partial_fill_and_cancel_all(exchange, client)
        finally:
            await client.close()


async def partial_fill_and_cancel_all(exchange, client):
    price = float(last(exchange))
    size = round(80_000 / price, 4)  # 80k USDT of the account's 100k: four book levels at any real price
    big = await client.create_order("BTC/USDT", "limit", "buy", size, round(price * 0.995, 2))
    other = await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(price * 0.9, 2))
    exchange.set_price("BTC/USDT", price * 0.99)  # one book level's worth fills, as maker
    partial = await client.fetch_order(big["id"], "BTC/USDT")
    assert partial["status"] == "open" and 0 < partial["filled"] < size
    assert partial["remaining"] == pytest.approx(size - partial["filled"])
    canceled = await client.cancel_all_orders("BTC/USDT")
    assert {o["id"] for o in canceled} == {big["id"], other["id"]}
    assert all(o["status"] == "canceled" for o in canceled)
    assert await client.fetch_open_orders() == []
    balance = await client.fetch_balance()
    assert balance["USDT"]["used"] == 0
    assert balance["BTC"]["total"] == pytest.approx(1 + partial["filled"] * 0.999)


# -- errors: Binance's code and message, and ccxt's class for it --------------------------------

ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.01",
    "price": "40000",
}
ERRORS = [
    ({"price": "40000.001"}, -1013, "Filter failure: PRICE_FILTER", ccxt_async.InvalidOrder),
    ({"price": "2000000"}, -1013, "Filter failure: PRICE_FILTER", ccxt_async.InvalidOrder),
    ({"quantity": "0.000001"}, -1013, "Filter failure: LOT_SIZE", ccxt_async.InvalidOrder),
    ({"quantity": "0.010001"}, -1013, "Filter failure: LOT_SIZE", ccxt_async.InvalidOrder),
    ({"quantity": "0.0001"}, -1013, "Filter failure: NOTIONAL", ccxt_async.BadRequest),
    ({"price": "1000"}, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE", ccxt_async.InvalidOrder),
    ({"type": "MARKET", "timeInForce": None, "price": None, "quantity": "100"}, -1013,
     "Filter failure: MARKET_LOT_SIZE", ccxt_async.InvalidOrder),
    ({"quantity": "100"}, -2010, "Account has insufficient balance for requested action.",
     ccxt_async.InsufficientFunds),
    ({"symbol": "DOGEEUR"}, -1121, "Invalid symbol.", ccxt_async.BadSymbol),
    ({"side": "HOLD"}, -1117, "Invalid side.", ccxt_async.BadRequest),
    ({"type": "ICEBERG"}, -1116, "Invalid orderType.", ccxt_async.BadRequest),
    ({"timeInForce": "GTX"}, -1115, "Invalid timeInForce.", ccxt_async.BadRequest),
    ({"price": None}, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
     ccxt_async.BadRequest),
    ({"type": "MARKET", "price": None}, -1106, "Parameter 'timeInForce' sent when not required.",
     ccxt_async.BadRequest),
    ({"quantity": "-1"}, -1100, "Illegal characters found in parameter 'quantity'; legal range is "
     "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.", ccxt_async.BadRequest),
    ({"type": "STOP_LOSS", "timeInForce": None, "price": None, "stopPrice": "1"}, -2010,
     "Stop loss orders are not supported for this symbol.", ccxt_async.InvalidOrder),
    ({"type": "LIMIT_MAKER", "timeInForce": None, "price": "50000"}, -2010,
     "Order would immediately match and take.", ccxt_async.OrderImmediatelyFillable),
    ({"type": "STOP_LOSS_LIMIT", "stopPrice": "30000"}, -2010, "Order would trigger immediately.",
     ccxt_async.OrderImmediatelyFillable),
    ({"newClientOrderId": "bad id!"}, -1100, "Illegal characters found in parameter 'newClientOrderId'; "
     "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.", ccxt_async.BadRequest),
    ({"icebergQty": "0.0001"}, -1013, "Filter failure: ICEBERG_PARTS", ccxt_async.BadRequest),
    ({"foo": "bar"}, -1104, "Not all sent parameters were read; read '10' parameter(s) but was sent '11'.",
     ccxt_async.BadRequest),
]  # fmt: skip


@pytest.mark.parametrize(("change", "code", "msg", "error"), ERRORS, ids=[f"{e[1]}-{e[2][:30]}" for e in ERRORS])
async def test_order_errors_carry_binance_code_and_ccxt_class(exchange, client, change, code, msg, error):
    exchange.set_price("BTC/USDT", "42000")
    params = {k: v for k, v in (ORDER | change).items() if v is not None}
    before = exchange.venue.account()["balances"]
    with pytest.raises(error):
        await client.private_post_order(params)
    assert json.loads(client.last_http_response) == {"code": code, "msg": msg}
    assert exchange.venue.account()["balances"] == before and not exchange.venue.engine.orders


async def test_duplicate_client_order_id_and_unknown_orders(exchange, client):
    price = round(float(last(exchange)) * 0.9, 2)
    await client.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"newClientOrderId": "wb-1"})
    with pytest.raises(ccxt_async.InvalidOrder, match='"Duplicate order sent."'):
        await client.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"newClientOrderId": "wb-1"})
    with pytest.raises(ccxt_async.OrderNotFound, match='"code":-2013,"msg":"Order does not exist."'):
        await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "nope"})
    with pytest.raises(ccxt_async.OrderNotFound, match='"code":-2011,"msg":"Unknown order sent."'):
        await client.cancel_order("999", "BTC/USDT")
    await client.cancel_order(None, "BTC/USDT", {"origClientOrderId": "wb-1"})
    with pytest.raises(ccxt_async.OrderNotFound, match="-2011"):  # nothing left open
        await client.cancel_all_orders("BTC/USDT")


# -- signing and time ---------------------------------------------------------------------------


def test_hmac_matches_binance_documented_vector():
    ex = LocalExchange(
        ("BTC/USDT",), api_key="k", secret="NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    )
    query = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    )
    signature = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert ex._signature_ok(_payload(query + "&signature=" + signature, ""), signature)
    # Binance's mixed example: part in the query, part in the body, concatenated with no separator.
    mixed = _payload(
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
    )
    assert ex._signature_ok(mixed, "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77")
    assert not ex._signature_ok(_payload(query.replace("BUY", "SELL"), ""), signature)


async def test_authentication_errors(exchange):
    wrong_secret = client_for(exchange, secret="0" * 64)
    other_key = make_client(TradingMode.TESTNET, Credentials(Secret("x" * 64), Secret(exchange.secret)), exchange.url)
    no_key = make_client(TradingMode.TESTNET, None, exchange.url)
    try:
        with pytest.raises(
            ccxt_async.AuthenticationError, match='"code":-1022,"msg":"Signature for this request is not valid."'
        ):
            await wrong_secret.fetch_balance()
        with pytest.raises(ccxt_async.AuthenticationError, match="-2015"):
            await other_key.fetch_balance()
        no_key.apiKey, no_key.secret = "", "s"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{exchange.url}/api/v3/account?timestamp=1&signature=0") as r,
        ):
            assert r.status == 401 and (await r.json())["code"] == -2014
    finally:
        for c in (wrong_secret, other_key, no_key):
            await c.close()


async def test_clock_skew_is_refused_then_resynced(exchange, client):
    exchange.set_faults(clock_skew_ms=30_000)
    with pytest.raises(ccxt_async.InvalidNonce, match="outside of the recvWindow"):
        await client.fetch_balance()
    exchange.set_faults(clock_skew_ms=-30_000)
    with pytest.raises(ccxt_async.InvalidNonce, match="1000ms ahead of the server's time"):
        await client.fetch_balance()
    client.options["adjustForTimeDifference"] = True
    await client.load_time_difference()
    assert (await client.fetch_balance())["USDT"]["free"] == 100_000


async def test_ed25519_keys(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    async with LocalExchange(("BTC/USDT",), ed25519_public_key=public.decode()) as ex:
        client = client_for(ex, secret=private.decode())
        try:
            assert (await client.fetch_balance())["BTC"]["free"] == 1
            order = await client.create_order("BTC/USDT", "market", "sell", 0.01)
            assert order["status"] == "closed"
        finally:
            await client.close()


# -- rate limits --------------------------------------------------------------------------------


async def test_weight_limit_429_then_418_ban():
    async with LocalExchange(
        ("BTC/USDT",), limits=Limits(weight_per_minute=50, strikes_before_ban=2, ban_seconds=90)
    ) as ex:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(6):
                async with http.get(f"{ex.url}/api/v3/exchangeInfo") as r:
                    statuses.append((r.status, r.headers.get("Retry-After"), (await r.json()).get("code")))
        assert statuses[:2] == [(200, None, None)] * 2
        assert statuses[2][0] == 429 and statuses[2][2] == -1003 and 1 <= int(statuses[2][1]) <= 60
        assert statuses[3][0] == 429
        assert statuses[4][0] == 418 and statuses[4][2] == -1003 and 85 <= int(statuses[4][1]) <= 90
        assert statuses[5][0] == 418
        client = client_for(ex)
        try:
            with pytest.raises(ccxt_async.DDoSProtection, match="IP banned until"):
                await client.fetch_time()
        finally:
            await client.close()


async def test_order_count_limit_and_headers():
    async with LocalExchange(("BTC/USDT",), limits=Limits(orders_per_10s=3)) as ex:
        client = client_for(ex)
        try:
            await client.load_markets()
            resting = float(last(ex)) * 0.9  # unfilled: a fill would take the order off the count
            for i in range(3):
                await client.create_order("BTC/USDT", "limit", "buy", 0.001, resting)
                assert client.last_response_headers["X-MBX-ORDER-COUNT-10S"] == str(i + 1)
            with pytest.raises(
                ccxt_async.DDoSProtection, match="Too many new orders; current limit is 3 orders per 10 SECOND."
            ):
                await client.create_order("BTC/USDT", "limit", "buy", 0.001, resting)
            assert 1 <= int(client.last_response_headers["Retry-After"]) <= 10
            assert len(ex.venue.engine.orders) == 3
        finally:
            await client.close()


# -- faults -------------------------------------------------------------------------------------


async def test_lost_answer_leaves_the_order_placed(exchange, client):
    exchange.set_faults(lost_answers=1)
    with pytest.raises(ccxt_async.RequestTimeout, match="execution status unknown"):
        await client.create_order("BTC/USDT", "market", "buy", 0.01, params={"newClientOrderId": "lost-1"})
    found = await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lost-1"})
    assert found["status"] == "closed" and found["filled"] == 0.01


async def test_5xx_latency_forced_429_and_admin_endpoint(exchange, client):
    assert (await exchange.admin("faults", {"errors_5xx": 1, "latency_ms": 150}))["errors_5xx"] == 1
    with pytest.raises(BinanceError, match="Unknown fault 'nonsense'") as refused:
        await exchange.admin("faults", {"nonsense": 1})
    assert refused.value.status == 400
    with pytest.raises(ccxt_async.ExchangeNotAvailable):
        await client.fetch_balance()
    assert not exchange.venue.engine.orders
    started = time.monotonic()
    await client.fetch_time()
    assert time.monotonic() - started >= 0.15
    exchange.set_faults(latency_ms=0, too_many_requests=1, retry_after=7)
    with pytest.raises(ccxt_async.DDoSProtection):
        await client.fetch_time()
    assert client.last_response_headers["Retry-After"] == "7"
    exchange.set_faults(ban_seconds=30)
    with pytest.raises(ccxt_async.DDoSProtection, match="banned"):
        await client.fetch_time()


# -- user data stream and market streams --------------------------------------------------------


async def test_user_data_stream_through_ccxt_pro(exchange, client):
    orders, trades, balance = (
        asyncio.create_task(w()) for w in (client.watch_orders, client.watch_my_trades, client.watch_balance)
    )
    await wait_for(lambda: exchange.user_data_subscriptions > 0)
    order = await client.create_order("BTC/USDT", "market", "buy", 0.01)
    streamed = await asyncio.wait_for(orders, 5)
    assert streamed[-1]["id"] == order["id"] and streamed[-1]["status"] == "closed" and streamed[-1]["filled"] == 0.01
    fills = await asyncio.wait_for(trades, 5)
    assert fills[-1]["order"] == order["id"] and fills[-1]["fee"]["cost"] == 0.00001
    assert (await asyncio.wait_for(balance, 5))["BTC"]["free"] == pytest.approx(1.00999)

    deposited = asyncio.create_task(client.watch_balance())
    await asyncio.sleep(0)
    exchange.venue.deposit("USDT", Decimal(5))
    assert (await asyncio.wait_for(deposited, 5))["USDT"]["free"] == pytest.approx(100_000 - order["cost"] + 5)


async def test_ws_api_envelope_ping_and_errors(exchange):
    import hashlib
    import hmac

    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        await ws.send_json({"id": "p", "method": "ping", "params": {}})
        assert (await ws.receive_json())["result"] == {}
        params = {"apiKey": exchange.api_key, "timestamp": exchange.now()}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(exchange.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        await ws.send_json({"id": 1, "method": "userDataStream.subscribe.signature", "params": params})
        answer = await ws.receive_json()
        assert answer["status"] == 200 and answer["result"] == {"subscriptionId": 0}
        assert answer["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        await ws.send_json({"id": 2, "method": "userDataStream.subscribe.signature", "params": params})
        assert (await ws.receive_json())["error"]["code"] == -2035
        await ws.send_json(
            {"id": 3, "method": "userDataStream.subscribe.signature", "params": params | {"signature": "00"}}
        )
        assert (await ws.receive_json())["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
        exchange.venue.deposit("BTC", Decimal("0.5"))
        event = await ws.receive_json()
        assert (
            event["subscriptionId"] == 0
            and event["event"]["e"] == "balanceUpdate"
            and event["event"]["d"] == "0.50000000"
        )
        assert (await ws.receive_json())["event"]["e"] == "outboundAccountPosition"


async def test_market_streams_through_ccxt_pro(exchange, client):
    watches = [
        asyncio.create_task(client.watch_ohlcv("BTC/USDT", "1m")),
        asyncio.create_task(client.watch_trades("BTC/USDT")),
        asyncio.create_task(client.watch_ticker("BTC/USDT")),
        asyncio.create_task(client.watch_order_book("BTC/USDT")),
    ]
    await wait_for(lambda: sum(len(c.streams) for c in exchange._market_conns.values()) >= 4)

    async def step_until_done():
        while not all(w.done() for w in watches):
            exchange.step(1)
            await asyncio.sleep(0.05)  # let the streams deliver this bar before replaying the next

    await asyncio.wait_for(step_until_done(), 10)
    candles, trades, ticker, book = (w.result() for w in watches)
    closed = exchange.venue.market.bar("BTCUSDT")
    opened = closed.name.value // 1_000_000 + exchange.venue.market.offset["BTCUSDT"]  # on the market clock
    assert candles[-1][0] <= opened and trades[-1]["symbol"] == "BTC/USDT"
    assert ticker["symbol"] == "BTC/USDT" and book["bids"][0][0] < book["asks"][0][0]
    exchange.step(1)
    book = await asyncio.wait_for(client.watch_order_book("BTC/USDT"), 5)
    assert book["bids"][0][0] < float(last(exchange)) < book["asks"][0][0] and len(book["bids"]) == 10


async def test_combined_streams_and_control_messages(exchange):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{exchange.url}/stream?streams=btcusdt@trade/ethusdt@bookTicker") as ws:
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
            assert await ws.receive_json() == {"result": ["btcusdt@trade", "ethusdt@bookTicker"], "id": 3}
            exchange.set_price("BTC/USDT", "43000")
            message = await ws.receive_json()
            assert message["stream"] == "btcusdt@trade" and message["data"]["p"] == "43000.00000000"
        async with http.ws_connect(f"{exchange.url}/ws/0") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1})
            assert await ws.receive_json() == {"result": None, "id": 1}
            exchange.step(1)
            kline = await ws.receive_json()
            assert kline["e"] == "kline" and kline["k"]["x"] is True and kline["k"]["i"] == "1m"


async def test_duplicated_reordered_and_dropped_events(exchange):
    import hashlib
    import hmac

    async def subscribe(ws):
        params = {"apiKey": exchange.api_key, "timestamp": exchange.now()}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(exchange.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        await ws.send_json({"id": 1, "method": "userDataStream.subscribe.signature", "params": params})
        await ws.receive_json()

    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        await subscribe(ws)
        exchange.set_faults(duplicate_events=1.0)
        exchange.venue.deposit("BTC", Decimal(1))
        kinds = [(await ws.receive_json())["event"]["e"] for _ in range(4)]
        assert kinds == ["balanceUpdate", "balanceUpdate", "outboundAccountPosition", "outboundAccountPosition"]
        exchange.set_faults(duplicate_events=0.0, reorder_events=1.0)
        exchange.venue.deposit("BTC", Decimal(1))
        kinds = [(await ws.receive_json())["event"]["e"] for _ in range(2)]
        assert kinds == ["outboundAccountPosition", "balanceUpdate"]
        exchange.set_faults(reorder_events=0.0, ws_drop_after=1)
        exchange.venue.deposit("BTC", Decimal(1))
        assert (await ws.receive_json())["event"]["e"] == "balanceUpdate"
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_connection_lifetime_limit():
    async with (
        LocalExchange(("BTC/USDT",), ws_lifetime=0.2) as ex,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ex.url}/ws/0") as ws,
    ):
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


# -- state and the command line -----------------------------------------------------------------


async def test_state_file_survives_a_restart(tmp_path):
    state = tmp_path / "venue.json"
    async with LocalExchange(("BTC/USDT",), state_file=state, api_key="k", secret="s") as ex:
        client = client_for(ex)
        try:
            price = round(float(last(ex)) * 0.95, 2)
            filled = await client.create_order("BTC/USDT", "market", "buy", 0.02, params={"newClientOrderId": "a"})
            resting = await client.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"newClientOrderId": "b"})
            ex.step(5)
            before = ex.venue.account()["balances"], ex.venue.market.cursor
        finally:
            await client.close()
    async with LocalExchange(("BTC/USDT",), state_file=state, api_key="k", secret="s") as ex:
        client = client_for(ex)
        try:
            assert (ex.venue.account()["balances"], ex.venue.market.cursor) == before
            assert (await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "b"}))["id"] == resting["id"]
            assert [t["order"] for t in await client.fetch_my_trades("BTC/USDT")] == [filled["id"]]
            again = await client.create_order("BTC/USDT", "market", "buy", 0.01)
            assert int(again["id"]) == 3 and int(again["trades"][0]["id"]) == 2
        finally:
            await client.close()


def started(process: subprocess.Popen, ready) -> dict:
    """What ``workbench exchange`` wrote to its ready file, once it did (the test fails if it exits first)."""
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return json.loads(ready.read_text())


def test_cli_starts_serves_and_stops(tmp_path):
    ready = tmp_path / "ready.json"
    env = {**os.environ, "WORKBENCH_EXCHANGE_API_KEY": "cli-key", "WORKBENCH_EXCHANGE_API_SECRET": "cli-secret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "exchange", "--port", "0", "--speed", "0", "--symbols", "BTC/USDT",
         "--ready-file", str(ready), "--state-file", str(tmp_path / "state.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        info = started(process, ready)
        assert info["api_key"] == "cli-key" and oct(ready.stat().st_mode & 0o777) == "0o600"

        async def trade():
            client = make_client(TradingMode.TESTNET, Credentials(Secret("cli-key"), Secret("cli-secret")), info["url"])
            try:
                return await client.create_order("BTC/USDT", "market", "buy", 0.01)
            finally:
                await client.close()

        assert asyncio.run(trade())["status"] == "closed"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "export BINANCE_TESTNET_API_KEY=cli-key" in out
    assert json.loads((tmp_path / "state.json").read_text())["orders"][0]["status"] == "FILLED"
