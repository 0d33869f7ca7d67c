"""``explain`` on a session with 100k fills: replay its bars through the same strategy and attribute
the difference, cause by cause.

The "live" session is itself a paper replay (SMA 2/3 cross on a synthetic random walk, one fill per
order) written to a DuckDB store on disk, run with a different fee so that every pair of orders has
a fees line; explain then replays the same bars at the default fee and splits the difference. Times
the whole call, and its two halves (the replay, the attribution) apart; wall and CPU time.

Run: .venv/bin/python benchmarks/explain.py [--fills 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

from workbench import explain
from workbench.data import sample_klines
from workbench.matching import Fees
from workbench.replay import replay
from workbench.store import Store
from workbench.strategy import SmaCross


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> str:
    wall, cpu = clocks()
    return f"{wall - start[0]:.2f} s wall, {cpu - start[1]:.2f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fills", type=int, default=100_000, help="fills of the session to explain (about)")
    args = parser.parse_args()
    strategy = SmaCross(2, 3, 0.001)
    probe = sample_klines("BTC/USDT", bars=20_000)
    changes = int((np.diff(strategy(probe).to_numpy()) != 0).sum())
    n = int(args.fills / changes * 20_000) + 10
    bars = {"BTC/USDT": sample_klines("BTC/USDT", bars=n).set_index("open_time")}
    frame = bars["BTC/USDT"]
    frame.index = frame.index.astype("datetime64[ms]").tz_localize("UTC")
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "explain.duckdb", batch_size=10_000)
        start = clocks()
        live = asyncio.run(
            replay(strategy, bars, store=store, fees=Fees(taker=Decimal("0.0012")), balances={"USDT": 10**9})
        )
        store.flush()
        fills = store.sql("SELECT count(*) FROM fills WHERE session_id = ?", [live.session_id])[0][0]
        print(f"the session: {fills:,} fills over {n:,} bars, written in {since(start)}")
        start = clocks()
        why = explain.explain(store, live.session_id, bars=bars)
        total = since(start)
        start = clocks()
        again = explain.attribute(store, live.session_id, live.session_id, marks_at=why.marks)
        attribution = since(start)
        assert again.difference == 0
        assert abs(why.lines["quote"].sum() - why.difference) < 1e-9 * max(1.0, abs(why.difference))
        print(f"explain (replay + attribution) of {fills:,} fills: {total}")
        print(f"  the attribution alone (reading both sessions' orders and fills, pairing, splitting): {attribution}")
        print(why.sentence())
        print(
            why.lines.assign(quote=why.lines["quote"].map("{:,.6f}".format))[["cause", "orders", "quote"]].to_string(
                index=False
            )
        )
        store.close()


if __name__ == "__main__":
    main()
