"""Intent strategies in the replay against vectorbt, side by side in one run, on real Binance 1m bars.

* the bracket: ``SmaBracket`` (the SMA cross, each entry protected by an OCO: stop-loss ``stop`` below
  and take-profit ``profit`` above the entry bar's close), replayed by ``workbench.replay.replay``
  (the event path: every order, OCO and cancel through the session, the risk checks, the paper
  executor and the store; bars whose range reaches no resting exit are skipped, exactly), against
  ``vbt.Portfolio.from_signals`` with ``sl_stop``/``tp_stop`` on the same entries and exits (stops
  checked on the close only, as the replay does);
* the portfolio: ``MomentumRotation`` over BTC, ETH and SOL (one shared budget, sized by volatility,
  sells before buys), against ``vbt.Portfolio.from_orders`` with the same target fractions
  (``size_type="targetpercent"``, one group sharing cash, ``call_seq="auto"``).

Per case: orders (fills) and PnL of each, wall and CPU seconds, and the ratio to warm vectorbt
(cold: its first call, numba compiling; warm: the best of the next ``--repeat``). The numbers differ
a little by construction: workbench fills at the synthetic book's best level, charges buy fees in
base and rounds every amount down to the step size; vectorbt fills at the close with fees in quote.

The machine may be shared: compare CPU seconds, the process's own, rather than wall. vectorbt pins
numba and numpy, so it lives in its own environment (see benchmarks/replay_vectorbt.py)::

    .venv-bench/bin/python benchmarks/replay_intents_vectorbt.py [--bars 100000] [--repeat 3]

Before and after a change: run it twice, ``PYTHONPATH`` at each checkout (check ``workbench.__file__``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path("/work/shared/data/binance/spot/1m")
FEE = 0.001
CASH = 10_000


def timed(call: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def vectorbt_runs(call: Callable[[], Any], repeat: int) -> tuple[Any, tuple[float, float], tuple[float, float]]:
    """vectorbt's answer, its cold (wall, cpu) and its best warm (wall, cpu)."""
    result, cold_wall, cold_cpu = timed(call)
    warm = min((timed(call)[1:] for _ in range(repeat)), key=lambda t: t[1])
    return result, (cold_wall, cold_cpu), warm


def bracket_case(bars: pd.DataFrame, repeat: int) -> list[dict[str, Any]]:
    import vectorbt as vbt

    from workbench.replay import replay
    from workbench.strategy import SmaBracket

    strategy = SmaBracket(fast=10, slow=50, size=0.001, stop=0.01, profit=0.02)
    with tempfile.TemporaryDirectory() as folder:
        result, wall, cpu = timed(lambda: asyncio.run(replay(strategy, bars, store=Path(folder) / "b.duckdb")))
        orders = result.orders
        ours = {"engine": "workbench replay (event path)", "orders": int((orders["status"] == "FILLED").sum()),
                "pnl": result.pnl(), "wall_s": wall, "cpu_s": cpu}  # fmt: skip
        result.store.close()
    long = np.asarray(strategy(bars)["target"] > 0)
    entries = long & ~np.roll(long, 1)
    exits = ~long & np.roll(long, 1)
    entries[0] = exits[0] = False
    close = bars["close"].to_numpy()

    def run() -> Any:
        return vbt.Portfolio.from_signals(close, entries, exits, size=0.001, size_type="amount", fees=FEE,
                                          sl_stop=0.01, tp_stop=0.02, init_cash=CASH)  # fmt: skip

    pf, cold, warm = vectorbt_runs(run, repeat)
    theirs = {"orders": int(pf.orders.count()), "pnl": float(pf.total_profit())}
    return rows("bracket", ours, theirs, cold, warm)


def portfolio_case(frames: dict[str, pd.DataFrame], repeat: int) -> list[dict[str, Any]]:
    import vectorbt as vbt

    from workbench.replay import replay
    from workbench.strategy import MomentumRotation

    strategy = MomentumRotation()
    with tempfile.TemporaryDirectory() as folder:
        result, wall, cpu = timed(lambda: asyncio.run(replay(strategy, frames, store=Path(folder) / "p.duckdb")))
        ours = {"engine": "workbench replay (event path)", "orders": int((result.orders["status"] == "FILLED").sum()),
                "pnl": result.pnl(), "wall_s": wall, "cpu_s": cpu}  # fmt: skip
        result.store.close()
    weights = pd.DataFrame({s: a["target_fraction"] for s, a in strategy(frames).items()})
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    size, prices = weights.to_numpy(), close.to_numpy()

    def run() -> Any:
        return vbt.Portfolio.from_orders(prices, size, size_type="targetpercent", fees=FEE, init_cash=CASH,
                                         group_by=True, cash_sharing=True, call_seq="auto")  # fmt: skip

    pf, cold, warm = vectorbt_runs(run, repeat)
    theirs = {"orders": int(pf.orders.count().sum()), "pnl": float(pf.total_profit())}
    return rows("portfolio (BTC, ETH, SOL)", ours, theirs, cold, warm)


def rows(case: str, ours: dict, theirs: dict, cold: tuple[float, float], warm: tuple[float, float]) -> list[dict]:
    return [
        {"case": case, **ours, "x_warm_vbt_cpu": ours["cpu_s"] / max(warm[1], 1e-9)},
        {"case": case, "engine": "vectorbt cold", **theirs, "wall_s": cold[0], "cpu_s": cold[1],
         "x_warm_vbt_cpu": cold[1] / max(warm[1], 1e-9)},  # fmt: skip
        {"case": case, "engine": "vectorbt warm", **theirs, "wall_s": warm[0], "cpu_s": warm[1], "x_warm_vbt_cpu": 1.0},
    ]


def main() -> None:
    from workbench.replay import load_bars

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=100_000, help="bars of each symbol (from 2023-06-26)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frames = {s: load_bars(DATA / f"{s.replace('/', '')}-1m.csv.gz", s, limit=args.bars)
              for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}  # fmt: skip
    table = pd.DataFrame(
        bracket_case(frames["BTC/USDT"], args.repeat) + portfolio_case(frames, args.repeat)
    ).set_index(["case", "engine"])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3f}".format):
        print(f"{args.bars:,} real 1m bars per symbol; CPU seconds are the process's own (the machine may be shared)")
        print(table)


if __name__ == "__main__":
    main()
