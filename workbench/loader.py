"""Top up the catalog with the newest closed klines from Binance's REST API, ``GET /api/v3/klines``.

:func:`fetch_klines` continues one bar after the newest bar the catalog holds (it never fills a gap
inside the data), pages ``limit`` bars a request, keeps only bars that have closed by the venue's
clock (``GET /api/v3/time``), and watches the request weight Binance reports in
``X-MBX-USED-WEIGHT-1M``: near the limit it waits for the next minute, and after a 429 or 418 it
waits for ``Retry-After``. It works against Binance, its testnet and the local exchange alike.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pandas as pd

from workbench.catalog import INTERVAL_MS, KLINE_COLUMNS, Catalog
from workbench.errors import DataError

KLINES_WEIGHT = 2  # Binance's weight of GET /api/v3/klines


@dataclass(frozen=True)
class FetchReport:
    """What a top-up did: ``requests`` sent, bars ``received``, bars ``inserted`` (new ones), and the
    open times (ms) of the first and last bar it inserted."""

    symbol: str
    interval: str
    requests: int
    received: int
    inserted: int
    first: int | None
    last: int | None


async def fetch_klines(
    http: aiohttp.ClientSession,
    rest_url: str,
    symbol_id: str,
    catalog: Catalog,
    *,
    interval: str = "1m",
    since: int,
    until: int | None = None,
    limit: int = 1000,
    weight_limit: int = 6000,
) -> FetchReport:
    """Fetch ``symbol_id``'s closed ``interval`` bars from ``max(since, newest stored + 1 bar)`` to
    ``until`` (ms, default: now) into ``catalog``. Raises :class:`DataError` for an unknown symbol or a
    venue that keeps failing."""
    step = INTERVAL_MS[interval]
    stored = catalog.read(symbol_id, interval)["open_time"]
    start = max(since, int(stored.iloc[-1]) + step) if len(stored) else since
    now = int((await _get(http, f"{rest_url}/api/v3/time", {}, weight_limit))[0]["serverTime"])
    end = min(until, now) if until is not None else now
    requests = received = inserted = 0
    first = last = None
    while start <= end:
        params = {"symbol": symbol_id, "interval": interval, "startTime": start, "endTime": end, "limit": limit}
        rows, _ = await _get(http, f"{rest_url}/api/v3/klines", params, weight_limit)
        requests += 1
        closed = [r[: len(KLINE_COLUMNS)] for r in rows if start <= int(r[0]) <= end and int(r[6]) < now]
        if not closed:
            break
        received += len(closed)
        inserted += catalog.ingest(symbol_id, interval, pd.DataFrame(closed, columns=list(KLINE_COLUMNS)), "rest")
        first = first if first is not None else int(closed[0][0])
        last = int(closed[-1][0])
        start = last + step
        if len(rows) < limit:
            break
    return FetchReport(symbol_id, interval, requests, received, inserted, first, last)


async def _get(
    http: aiohttp.ClientSession, url: str, params: dict[str, Any], weight_limit: int, attempts: int = 5
) -> tuple[Any, int]:
    """One public GET, weight-aware: returns the JSON answer and the weight used this minute."""
    for attempt in range(attempts):
        try:
            async with http.get(url, params=params) as answer:
                used = int(answer.headers.get("X-MBX-USED-WEIGHT-1M", 0))
                if answer.status in (418, 429):
                    await asyncio.sleep(float(answer.headers.get("Retry-After", 2**attempt)))
                    continue
                if answer.status >= 500:  # transient: retried below
                    answer.raise_for_status()
                body = await answer.json(content_type=None)
                if answer.status != 200:
                    code = body.get("code") if isinstance(body, dict) else None
                    known = f"Unknown symbol {params.get('symbol')} at {url}: check its spelling, e.g. BTCUSDT."
                    raise DataError(known if code == -1121 else f"{url} answered {answer.status}: {body}.")
        except (TimeoutError, aiohttp.ClientError):
            if attempt == attempts - 1:
                raise DataError(
                    f"{url} failed {attempts} times; check --rest-url and the network, then run again."
                ) from None
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        if used + KLINES_WEIGHT > 0.9 * weight_limit:  # leave room for the rest of the program
            await asyncio.sleep(60 - time.time() % 60)
        return body, used
    raise DataError(f"{url} kept refusing for request weight; wait a minute and run again.")
