"""Overhead of the workbench's full order path (risk checks, DuckDB store, Binance executor) over
raw ccxt ``create_order``, on the same local exchange, as a ratio measured in one run.

    .venv/bin/python benchmarks/executor_overhead.py [--rounds 10] [--block 100] [--latency-ms 0]

The exchange runs in its own process (a client's CPU is not the venue's), without rate limits.
Each round places a block of market orders (0.001 BTC, buys and sells alternating, so positions
stay flat) with raw ccxt, a block with raw ccxt while its user data stream is watched (what any
client that follows its fills pays), and a block with ``TradingSession.create_order`` of a testnet session
built by ``TradingSession.from_config`` (BinanceExecutor at the local exchange, the store a DuckDB
file in a temporary folder, generous risk limits); which goes first rotates between rounds, so
the machine's noise hits all three. It prints orders/s and p50/p99 latency of each, the ratio full/raw
of the medians, and whether the overhead meets the target (at most 10% at the median).

The exchange has one account, and a session's executor reads every event of the account's user data
stream (it ignores other clients' orders, after reading them). So that the raw blocks do not pay for
that, each round's session starts after the raw blocks and is stopped before the next (one store file for all;
starting and stopping are not timed, and a few orders warm each session up). ccxt's own throttle
(``enableRateLimit``: 10 ms between orders for Binance) is off on every client unless
``--ccxt-throttle``: it would hide any overhead below 10 ms per order.

On loopback a raw order takes about half a millisecond, so the 10% target leaves the full path some
50 microseconds; ``--latency-ms 20`` (added by the exchange to every REST answer) measures the same
ratio against a venue about as far away as Binance is from a nearby server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from _common import AMOUNT, SYMBOL, Stats, Venue, local_exchange, side

from workbench.config import Config, Credentials, RiskLimits, Secret, TradingMode, load_config
from workbench.executors.binance import make_client
from workbench.model import Order, OrderStatus
from workbench.session import TradingSession
from workbench.store import Store

TARGET = 0.10  # at most 10% slower than raw ccxt at the median
WARMUP = 20
SESSION_WARMUP = 6  # untimed orders after each session starts (even: the position stays flat)
GENEROUS = RiskLimits(
    max_order_notional=Decimal(10**9),
    max_position=None,
    max_position_notional=None,
    max_open_orders=None,
    max_daily_loss=None,
    max_orders_per_minute=None,
    price_band_pct=None,
)

Place = Callable[[str], Awaitable[object]]


async def block(place: Place, n: int) -> Stats:
    latencies = []
    began = time.perf_counter()
    for i in range(n):
        started = time.perf_counter()
        await place(side(i))
        latencies.append(time.perf_counter() - started)
    return Stats(latencies, time.perf_counter() - began)


def merge(parts: list[Stats]) -> Stats:
    return Stats([x for s in parts for x in s.latencies], sum(s.wall for s in parts))


async def full_block(config: Config, store: Store, name: str, size: int, throttle: bool) -> Stats:
    """``size`` orders through a fresh session on ``store``, started and stopped outside the timing."""
    session = TradingSession.from_config(config, session_id=name, store=store)
    session.executor.client.enableRateLimit = throttle  # type: ignore[attr-defined]

    async def place(s: str) -> Order:
        order = await session.create_order(SYMBOL, "market", s, AMOUNT)
        if order.status is not OrderStatus.FILLED:
            raise SystemExit(f"the full path's order {order.client_order_id} is {order.status}, not FILLED")
        return order

    try:
        await session.start()
        await block(place, SESSION_WARMUP)
        stats = await block(place, size)
        await session.stop()
    finally:
        await session.executor.close()  # type: ignore[attr-defined]
    return stats


async def watching(client: object) -> list[asyncio.Task[None]]:
    """Keep ``client``'s user data stream (orders and trades) watched, as any real client would."""

    async def forever(watch: Callable[[], Awaitable[object]]) -> None:
        while True:
            await watch()

    return [asyncio.create_task(forever(client.watch_orders)), asyncio.create_task(forever(client.watch_my_trades))]  # type: ignore[attr-defined]


async def measure(venue: Venue, rounds: int, size: int, throttle: bool, latency_ms: float) -> None:
    credentials = Credentials(Secret(venue.api_key), Secret(venue.secret))
    raw = make_client(TradingMode.TESTNET, credentials, venue.url)
    streamed = make_client(TradingMode.TESTNET, credentials, venue.url)
    raw.enableRateLimit = streamed.enableRateLimit = throttle

    async def place_raw(s: str) -> object:
        return await raw.create_order(SYMBOL, "market", s, AMOUNT)

    async def place_streamed(s: str) -> object:
        return await streamed.create_order(SYMBOL, "market", s, AMOUNT)

    os.environ["BINANCE_TESTNET_API_KEY"], os.environ["BINANCE_TESTNET_API_SECRET"] = venue.api_key, venue.secret
    results: dict[str, list[Stats]] = {"raw": [], "streamed": [], "full": []}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.duckdb"
        config = load_config(mode="testnet", venue_url=venue.url, store_path=path, symbols=[SYMBOL], risk=GENEROUS)
        try:
            with Store(path) as store:
                await raw.load_markets()
                await streamed.load_markets()
                await block(place_raw, WARMUP)
                await full_block(config, store, "bench-warmup", WARMUP, throttle)
                for r in range(rounds):
                    order = ["raw", "streamed", "full"]
                    for name in order[r % 3 :] + order[: r % 3]:
                        if name == "raw":
                            results[name].append(await block(place_raw, size))
                        elif name == "streamed":
                            tasks = await watching(streamed)
                            await block(place_streamed, SESSION_WARMUP)  # the subscription is up
                            results[name].append(await block(place_streamed, size))
                            for task in tasks:
                                task.cancel()
                            await asyncio.gather(*tasks, return_exceptions=True)
                        else:
                            results[name].append(await full_block(config, store, f"bench-{r}", size, throttle))
                orders, fills = store.sql("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM fills)")[0]
        finally:
            await raw.close()
            await streamed.close()
    raw_stats, streamed_stats, full_stats = (merge(results[n]) for n in ("raw", "streamed", "full"))
    throttled = "on" if throttle else "off"
    print(
        f"{rounds} rounds of {size} market orders a path, {SYMBOL}, local exchange at {venue.url} "
        f"(+{latency_ms:g} ms a REST answer), ccxt throttle {throttled}"
    )
    print(raw_stats.line("raw ccxt create_order"))
    print(streamed_stats.line("raw ccxt + its user stream"))
    print(full_stats.line("full path (session)"))
    ratio = full_stats.p50 / raw_stats.p50
    verdict = "meets" if ratio - 1 <= TARGET else "misses"
    print(
        f"full/raw at the median: {ratio:.3f} (overhead {ratio - 1:+.1%}, "
        f"{(full_stats.p50 - raw_stats.p50) * 1e3:+.2f} ms a order): {verdict} the {TARGET:.0%} target"
    )
    print(f"full/raw at p99: {full_stats.p99 / raw_stats.p99:.3f}; the store holds {orders} orders, {fills} fills")
    print(
        f"full/(raw + user stream) at the median: {full_stats.p50 / streamed_stats.p50:.3f} "
        f"(the workbench's own share: {(full_stats.p50 - streamed_stats.p50) * 1e3:+.2f} ms a order)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds (default 10)")
    parser.add_argument("--block", type=int, default=100, help="orders per path per round (default 100)")
    parser.add_argument("--ccxt-throttle", action="store_true", help="keep ccxt's enableRateLimit on")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every REST answer (default 0)")
    args = parser.parse_args()
    with local_exchange(args.latency_ms) as venue:
        asyncio.run(measure(venue, args.rounds, args.block, args.ccxt_throttle, args.latency_ms))


if __name__ == "__main__":
    main()
