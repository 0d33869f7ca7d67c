"""The REST top-up (workbench.loader.fetch_klines) against the local exchange on 127.0.0.1: it continues
after the newest archived bar, pages, keeps only closed bars, never fills a gap, refuses unknown symbols."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from workbench.archive import ArchiveServer, build_archive
from workbench.catalog import Catalog
from workbench.download import download, plan
from workbench.errors import DataError
from workbench.exchange import LocalExchange
from workbench.loader import fetch_klines

BUNDLED = Catalog(Path(__file__).resolve().parent.parent / "data" / "binance")


@pytest.fixture
async def venue():
    """The local exchange replaying BTCUSDT from 2023-09-20 (500 bars served as history)."""
    async with LocalExchange(("BTC/USDT",), start="2023-09-20") as ex:
        yield ex


async def served(exchange: LocalExchange, since: int) -> list[list]:
    """The closed bars the exchange serves from ``since``, asked for directly."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{exchange.url}/api/v3/time") as answer:
            now = (await answer.json())["serverTime"]
        params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": since, "limit": 1000}
        async with http.get(f"{exchange.url}/api/v3/klines", params=params) as answer:
            return [row for row in await answer.json() if row[6] < now]


async def test_download_then_top_up_the_newest_bars_through_rest(venue, tmp_path):
    build_archive(BUNDLED, tmp_path / "archive", plan("BTCUSDT", "1m", dt.date(2023, 9, 18), dt.date(2023, 9, 19)))
    async with ArchiveServer(tmp_path / "archive") as archive:
        [report] = await download(["BTCUSDT"], start="2023-09-18", end="2023-09-19", archive_url=archive.url,
                                  rest_url=None, folder=tmp_path, progress=False)  # fmt: skip
    assert len(report.fetched) == 2 and report.rows == 2 * 1440
    catalog = Catalog(tmp_path / "binance")
    archived_end = int(catalog.read("BTCUSDT")["open_time"].iloc[-1])

    async with aiohttp.ClientSession() as http:
        top = await fetch_klines(http, venue.url, "BTCUSDT", catalog, since=0, limit=200)
    want = await served(venue, archived_end + 60_000)
    assert len(want) > 400 and top.inserted == top.received == len(want)
    assert top.requests == len(want) // 200 + 1  # paged 200 bars a request
    rows = catalog.read("BTCUSDT")
    assert len(rows) == 2 * 1440 + len(want)
    rest = rows[rows["open_time"] > archived_end]
    assert list(rest["open_time"]) == [r[0] for r in want]
    assert list(rest["close"]) == [float(r[4]) for r in want]
    assert "BTCUSDT-1m-2023-09-19.zip" in catalog.sources("BTCUSDT", "1m", "2023-09")
    # the venue keeps one clock (its bars are re-stamped to now), so the top-up lands in the months it served
    months = {dt.datetime.fromtimestamp(r[0] / 1000, dt.UTC).strftime("%Y-%m") for r in want}
    assert all("rest" in catalog.sources("BTCUSDT", "1m", month) for month in months), months

    async with aiohttp.ClientSession() as http:  # again: nothing new, one request
        again = await fetch_klines(http, venue.url, "BTCUSDT", catalog, since=0)
    assert again.inserted == 0 and again.requests == 1


async def test_the_top_up_starts_after_the_newest_bar_and_never_fills_a_gap(venue, tmp_path):
    catalog = Catalog(tmp_path / "binance")
    first = (await served(venue, 0))[0][0]
    async with aiohttp.ClientSession() as http:
        await fetch_klines(http, venue.url, "BTCUSDT", catalog, since=first, until=first + 9 * 60_000)
        catalog.ingest("BTCUSDT", "1m", catalog.read("BTCUSDT").head(5).astype(str), "rest")  # nothing new
        top = await fetch_klines(http, venue.url, "BTCUSDT", catalog, since=first, until=first + 19 * 60_000)
    assert top.first == first + 10 * 60_000 and top.last == first + 19 * 60_000 and top.inserted == 10
    assert len(catalog.read("BTCUSDT")) == 20


async def test_an_unknown_symbol_is_refused_in_one_line(venue, tmp_path):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(DataError, match=r"^Unknown symbol DOGEUSDT at http://127\.0\.0\.1:\d+/api/v3/klines"):
            await fetch_klines(http, venue.url, "DOGEUSDT", Catalog(tmp_path), since=0)


async def test_a_429_and_a_503_are_waited_out(venue, tmp_path):
    catalog = Catalog(tmp_path / "binance")
    first = (await served(venue, 0))[0][0]
    venue.set_faults(too_many_requests=1, retry_after=0.1, errors_5xx=1)
    async with aiohttp.ClientSession() as http:
        top = await fetch_klines(http, venue.url, "BTCUSDT", catalog, since=first, until=first + 99 * 60_000)
    assert top.inserted == 100 and venue.faults.too_many_requests == venue.faults.errors_5xx == 0
