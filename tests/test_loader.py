"""fetch_klines against a real HTTP server on 127.0.0.1 serving Binance's /api/v3/klines (the local
exchange, workbench.exchange, was not in the package yet): incremental, no duplicates, gaps reported."""

import json
from pathlib import Path

import ccxt.async_support as ccxt_async
import duckdb
import pytest
from aiohttp import web

from workbench.executors.binance import point_at
from workbench.loader import fetch_klines
from workbench.replay import load_bars

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
MINUTE = 60_000
MISSING = set(range(100, 105))  # five bars the venue never had


def kline(i: int) -> list:
    open_time = T0 + i * MINUTE
    price = f"{50_000 + i:.2f}"
    return [open_time, price, price, price, price, "1.5", open_time + MINUTE - 1, "75000", 10, "0.7", "35000"]


@pytest.fixture
async def venue():
    """A Binance-format klines endpoint with bars 0..299 (minus MISSING); ``now`` is after bar 299 closed."""
    state = {"bars": 300, "requests": []}
    info = json.loads((Path(__file__).parent.parent / "workbench" / "exchange_info.json").read_text())

    async def exchange_info(request):
        return web.json_response(info)

    async def klines(request):
        q = request.query
        state["requests"].append(dict(q))
        assert q["symbol"] == "BTCUSDT" and q["interval"] == "1m"
        start, limit = int(q.get("startTime", T0)), min(int(q.get("limit", 500)), 1000)
        rows = [kline(i) for i in range(state["bars"]) if i not in MISSING and T0 + i * MINUTE >= start]
        return web.json_response(rows[:limit])

    app = web.Application()
    app.router.add_get("/api/v3/exchangeInfo", exchange_info)
    app.router.add_get("/api/v3/klines", klines)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = ccxt_async.binance({"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}})
    point_at(client, f"http://127.0.0.1:{port}")
    client.milliseconds = lambda: T0 + state["bars"] * MINUTE + 5  # the venue's clock: bar bars-1 has closed
    yield client, state
    await client.close()
    await runner.cleanup()


async def test_fetch_pages_into_duckdb_and_reports_the_gap(venue, tmp_path):
    client, state = venue
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    report = await fetch_klines(client, "BTC/USDT", con, since=T0, limit=120)

    assert report.received == report.inserted == 300 - len(MISSING)
    assert len(state["requests"]) >= 3 and all(r["limit"] == "120" for r in state["requests"])
    stored = con.execute("SELECT epoch_ms(open_time), close FROM klines ORDER BY open_time").fetchall()
    assert [t for t, _ in stored] == [T0 + i * MINUTE for i in range(300) if i not in MISSING]
    assert [c for _, c in stored] == [50_000 + i for i in range(300) if i not in MISSING]
    gaps = report.gaps
    assert len(gaps) == 1 and gaps["missing"].iloc[0] == len(MISSING)
    assert int(gaps["after"].iloc[0].timestamp() * 1000) == T0 + 99 * MINUTE
    assert int(gaps["before"].iloc[0].timestamp() * 1000) == T0 + 105 * MINUTE
    assert len(load_bars(con, "BTC/USDT")) == 295


async def test_a_second_fetch_continues_from_the_last_bar_and_writes_nothing_twice(venue, tmp_path):
    client, state = venue
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    await fetch_klines(client, "BTC/USDT", con, since=T0, limit=1000)
    state["requests"].clear()
    again = await fetch_klines(client, "BTC/USDT", con, since=T0)
    assert again.inserted == 0
    assert [int(r["startTime"]) for r in state["requests"]] == [T0 + 300 * MINUTE]

    state["bars"] = 360  # an hour later
    more = await fetch_klines(client, "BTC/USDT", con)
    assert more.inserted == more.received == 60
    assert int(state["requests"][-1]["startTime"]) >= T0 + 300 * MINUTE
    total, distinct = con.execute("SELECT count(*), count(DISTINCT open_time) FROM klines").fetchone()
    assert total == distinct == 360 - len(MISSING)
    assert more.last.value // 1_000_000 == T0 + 359 * MINUTE


async def test_only_closed_bars_within_until_are_kept(venue, tmp_path):
    client, state = venue
    client.milliseconds = lambda: T0 + 250 * MINUTE + 30_000  # bar 250 is still open
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    report = await fetch_klines(client, "BTC/USDT", con, since="2024-01-01", limit=1000)
    assert report.last.value // 1_000_000 == T0 + 249 * MINUTE
    bounded = duckdb.connect(str(tmp_path / "b.duckdb"))
    report = await fetch_klines(client, "BTC/USDT", bounded, since=T0, until=T0 + 49 * MINUTE)
    assert report.inserted == 50 and report.gaps.empty
