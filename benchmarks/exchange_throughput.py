"""Sustained order throughput through ccxt on loopback against the local exchange, and the full
workbench path (risk checks, store, Binance executor) against raw ccxt on the same exchange.

    .venv/bin/python benchmarks/exchange_throughput.py --orders 1000

The exchange runs in its own process (as it would on a real venue, the client's CPU is not the
server's). Raw ccxt ``create_order`` and ``TradingSession.create_order`` alternate in blocks in one
run, so the machine's noise hits both; the script prints orders/s and p50/p99 latency of each and
the ratio of the medians (the executor's overhead target is at most 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from workbench.config import Credentials, RiskLimits, Secret, TradingMode
from workbench.data import load_rules
from workbench.exchange import Limits, LocalExchange
from workbench.executors.binance import BinanceExecutor, make_client
from workbench.session import TradingSession
from workbench.store import Store

UNLIMITED = Limits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9)


def serve(ready: str) -> None:
    async def main() -> None:
        async with LocalExchange(("BTC/USDT",), limits=UNLIMITED, balances={"USDT": "10000000", "BTC": "100"}) as ex:
            Path(ready).write_text(json.dumps({"url": ex.url, "api_key": ex.api_key, "secret": ex.secret}))
            await asyncio.Event().wait()

    asyncio.run(main())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(place, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        await place("buy" if i % 2 == 0 else "sell")
        latencies.append(time.perf_counter() - started)
    return latencies


async def measure(info: dict[str, str], orders: int, block: int) -> None:
    credentials = Credentials(Secret(info["api_key"]), Secret(info["secret"]))
    raw = make_client(TradingMode.TESTNET, credentials, info["url"])
    await raw.load_markets()
    rules = load_rules(["BTC/USDT"])
    risk = RiskLimits(max_order_notional=Decimal(10**9), max_position_notional=None, max_orders_per_minute=None,
                      max_daily_loss=None)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "bench.duckdb") as store:
        executor = BinanceExecutor(TradingMode.TESTNET, rules, credentials, venue_url=info["url"])
        session = TradingSession(executor, store, rules=rules, risk=risk, session_id="bench")
        await session.start()

        async def place_raw(side: str) -> None:
            await raw.create_order("BTC/USDT", "market", side, 0.001)

        async def place_full(side: str) -> None:
            await session.create_order("BTC/USDT", "market", side, "0.001")

        await timed(place_raw, 20)
        await timed(place_full, 20)  # warm up both
        results: dict[str, list[float]] = {"raw ccxt create_order": [], "workbench full path": []}
        for _ in range(max(1, orders // block)):
            results["raw ccxt create_order"] += await timed(place_raw, block)
            results["workbench full path"] += await timed(place_full, block)
        await executor.close()
    await raw.close()
    for name, lat in results.items():
        rate = len(lat) / sum(lat)
        print(f"{name:24s} {len(lat):6d} orders  {rate:7.0f} orders/s  p50 {percentile(lat, 0.5) * 1000:6.2f} ms  "
              f"p99 {percentile(lat, 0.99) * 1000:6.2f} ms")  # fmt: skip
    raw_p50, full_p50 = (statistics.median(v) for v in results.values())
    overhead = full_p50 / raw_p50 - 1
    verdict = "meets" if overhead <= 0.10 else "misses"
    print(f"overhead of the full path at the median: {overhead:+.1%} ({verdict} the 10% target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders per path")
    parser.add_argument("--block", type=int, default=100, help="orders per alternating block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ready = Path(folder) / "ready.json"
        server = multiprocessing.get_context("spawn").Process(target=serve, args=(str(ready),), daemon=True)
        server.start()
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if time.monotonic() > deadline or not server.is_alive():
                raise SystemExit("the local exchange did not start")
            time.sleep(0.05)
        try:
            asyncio.run(measure(json.loads(ready.read_text()), args.orders, args.block))
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
