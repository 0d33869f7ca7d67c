"""Sustained order throughput through ccxt on loopback against the local exchange: orders/s and
p50/p99 latency of ``create_order`` at each concurrency level.

    .venv/bin/python benchmarks/exchange_throughput.py [--orders 2000] [--concurrency 1 8] [--latency-ms 0]

The exchange runs in its own process (a client's CPU is not the venue's), without rate limits.
Market orders of 0.001 BTC alternate buy and sell. ``--concurrency N`` keeps N orders in flight:
N workers, gathered, each placing its share one after another. ccxt's own client-side throttle
(``enableRateLimit``; 10 ms between orders for Binance) is off unless ``--ccxt-throttle``, since
it would cap every level at 100 orders/s and measure nothing but itself. ``--latency-ms`` makes the
exchange answer that much later, like a venue farther away than loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import ccxt
from _common import AMOUNT, SYMBOL, Stats, Venue, local_exchange, side

from workbench.config import Credentials, Secret, TradingMode
from workbench.executors.binance import make_client

WARMUP = 20


async def run(client, orders: int, concurrency: int) -> Stats:  # type: ignore[no-untyped-def]
    latencies: list[float] = []

    async def worker(start: int) -> None:
        for i in range(start, orders, concurrency):
            began = time.perf_counter()
            await client.create_order(SYMBOL, "market", side(i), AMOUNT)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return Stats(latencies, time.perf_counter() - began)


async def measure(venue: Venue, orders: int, levels: list[int], throttle: bool, latency_ms: float) -> None:
    client = make_client(TradingMode.TESTNET, Credentials(Secret(venue.api_key), Secret(venue.secret)), venue.url)
    client.enableRateLimit = throttle
    try:
        await client.load_markets()
        await run(client, WARMUP, 1)
        throttled = "on" if throttle else "off"
        print(
            f"ccxt {ccxt.__version__} create_order, market {AMOUNT} {SYMBOL}, local exchange at {venue.url} "
            f"(+{latency_ms:g} ms a REST answer), ccxt throttle {throttled}"
        )
        for concurrency in levels:
            stats = await run(client, orders, concurrency)
            print(stats.line(f"concurrency {concurrency}"))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per concurrency level (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="orders in flight (default 1 8)")
    parser.add_argument("--ccxt-throttle", action="store_true", help="keep ccxt's enableRateLimit on")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every REST answer (default 0)")
    args = parser.parse_args()
    with local_exchange(args.latency_ms) as venue:
        asyncio.run(measure(venue, args.orders, args.concurrency, args.ccxt_throttle, args.latency_ms))


if __name__ == "__main__":
    main()
