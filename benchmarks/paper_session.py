"""Paper-session throughput: bars and orders per second through the full path (strategy, risk
checks, matching core, DuckDB store). Run: .venv/bin/python benchmarks/paper_session.py [bars]"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from workbench import PaperExecutor, SmaCross, Store, TradingSession, load_klines, load_rules


async def main(n: int) -> None:
    rules = load_rules(["BTC/USDT"])
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "bench.duckdb") as store:
        session = TradingSession(
            PaperExecutor(rules, {"USDT": 10_000_000}), store, rules=rules, strategy=SmaCross(10, 50, 0.01)
        )
        frame = load_klines("BTC/USDT", limit=n)  # real Binance 1m klines, at most one symbol-year
        n = len(frame)
        print("Data:", frame.attrs["source"])
        started = time.perf_counter()
        await session.run({"BTC/USDT": frame}, progress=False)
        elapsed = time.perf_counter() - started
        orders = len(session.orders)
    rate = f"{n / elapsed:,.0f} bars/s, {orders / elapsed:,.0f} orders/s"
    print(f"paper session: {n} bars, {orders} orders in {elapsed:.2f}s: {rate}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
