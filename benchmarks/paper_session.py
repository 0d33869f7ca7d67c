"""Paper-session throughput: bars and orders per second through the full path (strategy, risk
checks, matching core, DuckDB store). Run: .venv/bin/python benchmarks/paper_session.py [bars]"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench import PaperExecutor, SmaCross, Store, TradingSession, load_rules


def bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="open_time")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)


async def main(n: int) -> None:
    rules = load_rules(["BTC/USDT"])
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "bench.duckdb") as store:
        session = TradingSession(
            PaperExecutor(rules, {"USDT": 10_000_000}), store, rules=rules, strategy=SmaCross(10, 50, 0.01)
        )
        started = time.perf_counter()
        await session.run({"BTC/USDT": bars(n)}, progress=False)
        elapsed = time.perf_counter() - started
        orders = len(session.orders)
    rate = f"{n / elapsed:,.0f} bars/s, {orders / elapsed:,.0f} orders/s"
    print(f"paper session: {n} bars, {orders} orders in {elapsed:.2f}s: {rate}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
