"""One market clock at the local exchange: server time, klines (REST and streams), public and own
trades, orders, event times and the tickers agree, as ordinary client code expects. Driven by the
real ccxt client (async and pro) and raw WebSocket subscriptions over loopback."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.polling import until
from tests.test_exchange import client_for
from workbench.exchange import LocalExchange

MINUTE, DAY = 60_000, 86_400_000


def minute(ms: int) -> int:
    return ms - ms % MINUTE


@pytest.fixture
async def client(exchange):  # ``exchange``: the local exchange of tests/conftest.py
    c = client_for(exchange)
    await c.load_markets()
    yield c
    await c.close()


async def test_fetch_ohlcv_since_an_hour_ago_ends_in_the_current_minute(exchange, client):
    before = int(time.time() * 1000)
    server = await client.fetch_time()
    candles = await client.fetch_ohlcv("BTC/USDT", "1m", since=before - 3_600_000)
    after = int(time.time() * 1000)
    assert before - 1000 <= server <= after + 1000
    assert 60 <= len(candles) <= 61
    assert minute(before) <= candles[-1][0] <= minute(after)  # the newest bar is the current minute
    assert all(b[0] - a[0] == MINUTE for a, b in zip(candles, candles[1:], strict=False))
    assert candles[0][0] >= before - 3_600_000
    half_hour = await client.fetch_ohlcv("BTC/USDT", "1m", since=before - 1_800_000)
    assert 30 <= len(half_hour) <= 31
    hourly = await client.fetch_ohlcv("ETH/USDT", "1h", limit=2)
    assert hourly[-1][0] == before - before % 3_600_000 or hourly[-1][0] == after - after % 3_600_000
    # A minute-old trade window holds the trades the market printed since.
    exchange.set_price("BTC/USDT", exchange.venue.engine.last_price["BTC/USDT"])
    trades = await client.fetch_trades("BTC/USDT", since=int(time.time() * 1000) - MINUTE)
    assert trades and all(minute(t["timestamp"]) in (candles[-1][0], minute(after)) for t in trades[-1:])


async def test_replayed_bars_open_no_earlier_than_the_current_minute(exchange, client):
    newest = (await client.fetch_ohlcv("BTC/USDT", "1m", limit=1))[-1][0]
    exchange.step(3)  # faster than real time: each new bar opens a minute after the one before
    candles = await client.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert [c[0] for c in candles] == [newest + k * MINUTE for k in range(-1, 4)]
    assert minute(int(time.time() * 1000)) <= candles[-1][0]
    ended = await client.fetch_ohlcv("BTC/USDT", "1m", since=newest, limit=10)
    assert len(ended) == 4


async def test_kline_events_carry_the_trade_ids_the_venue_printed(exchange, client):
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/stream") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "btcusdt@trade"], "id": 1})
        assert (await ws.receive_json())["id"] == 1
        before = int(time.time() * 1000)
        exchange.step(2)
        trades, klines = [], []
        while len(klines) < 2:
            message = await asyncio.wait_for(ws.receive_json(), 5)
            (klines if message["stream"].endswith("kline_1m") else trades).append(message["data"])
    printed = await client.fetch_trades("BTC/USDT", limit=1000)
    ids = [t["t"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # per-symbol ids, one after the other
    for kline in klines:
        k = kline["k"]
        assert k["f"] > 0 and k["L"] >= k["f"] and k["n"] == k["L"] - k["f"] + 1
        assert {int(t["id"]) for t in printed} >= set(range(k["f"], k["L"] + 1))
        assert k["T"] == k["t"] + MINUTE - 1 and kline["E"] >= before and k["t"] >= minute(before)
    assert klines[1]["k"]["f"] == klines[0]["k"]["L"] + 1 and klines[1]["k"]["t"] == klines[0]["k"]["t"] + MINUTE
    assert all(before <= t["T"] == t["E"] <= int(time.time() * 1000) for t in trades)


async def test_tickers_span_their_windows_and_count_the_trades(exchange, client):
    exchange.step(2)
    exchange.set_price("BTC/USDT", 42_000)
    ticker = (await client.fetch_ticker("BTC/USDT"))["info"]
    assert int(ticker["closeTime"]) - int(ticker["openTime"]) == DAY
    assert abs(int(ticker["closeTime"]) - time.time() * 1000) < 5000
    first, last, count = int(ticker["firstId"]), int(ticker["lastId"]), int(ticker["count"])
    assert first > 0 and count == last - first + 1 == exchange.venue.market.trade_ids["BTCUSDT"]
    assert float(ticker["lastQty"]) > 0 and float(ticker["lastPrice"]) == 42_000
    recent = await client.fetch_trades("BTC/USDT", limit=1)
    assert int(recent[-1]["id"]) == last and float(ticker["lastQty"]) == recent[-1]["amount"]
    rolling = await client.public_get_ticker({"symbol": "BTCUSDT", "windowSize": "1h"})
    assert int(rolling["closeTime"]) - int(rolling["openTime"]) == 3_600_000
    assert int(rolling["count"]) == int(rolling["lastId"]) - int(rolling["firstId"]) + 1
    average = await client.public_get_avgprice({"symbol": "BTCUSDT"})
    assert average["mins"] == 5 and abs(int(average["closeTime"]) - time.time() * 1000) < 5000
    assert float(ticker["lowPrice"]) <= float(average["price"]) <= float(ticker["highPrice"])
    streamed = asyncio.create_task(client.watch_ticker("BTC/USDT", {"name": "ticker"}))  # the full 24h stream
    await until(lambda: any(c.streams for c in exchange._market_conns.values()), 5, "ticker subscription")
    exchange.set_price("BTC/USDT", 42_010)
    info = (await asyncio.wait_for(streamed, 5))["info"]
    assert info["C"] - info["O"] == DAY and info["n"] == info["L"] - info["F"] + 1 and info["Q"] != "0.00000000"


async def test_orders_and_own_trades_follow_the_server_clock(exchange, client):
    before = int(time.time() * 1000)
    order = await client.create_order("BTC/USDT", "market", "buy", 0.01)
    price = float(exchange.venue.engine.last_price["BTC/USDT"]) * 0.9
    resting = await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(price, 2))
    after = int(time.time() * 1000)
    assert before <= int(order["info"]["transactTime"]) <= after
    assert before <= int(order["info"]["workingTime"]) <= after
    fetched = (await client.fetch_order(resting["id"], "BTC/USDT"))["info"]
    assert before <= int(fetched["time"]) == int(fetched["workingTime"]) <= after
    (trade,) = await client.fetch_my_trades("BTC/USDT")
    assert before <= trade["timestamp"] <= after
    newest = (await client.fetch_ohlcv("BTC/USDT", "1m", limit=1))[-1][0]
    assert newest <= trade["timestamp"] < newest + 2 * MINUTE  # in the newest bar (or the next, at a boundary)


async def test_the_clock_survives_a_restart(tmp_path):
    state = tmp_path / "state.json"
    async with LocalExchange(("BTC/USDT",), state_file=state) as ex:
        ex.step(5)
        newest = ex.venue.klines("BTCUSDT", {"interval": "1m", "limit": "1"})[-1][0]
        last_id = ex.venue.market.trade_ids["BTCUSDT"]
    async with LocalExchange(("BTC/USDT",), state_file=state) as ex:
        assert ex.venue.klines("BTCUSDT", {"interval": "1m", "limit": "1"})[-1][0] >= newest
        ex.step(1)
        event = ex.venue.kline_event("BTCUSDT")
        assert event["k"]["f"] == last_id + 1 and event["k"]["t"] >= newest + MINUTE
