"""Intent strategies in the replay against vectorbt, side by side in one run, on real Binance 1m bars.

* the bracket: ``SmaBracket`` (the SMA cross, each entry protected by an OCO: stop-loss ``stop`` below
  and take-profit ``profit`` above the entry bar's close), replayed by ``workbench.replay.replay`` as
  a user calls it: on the bracket fast path (:mod:`workbench.fastbracket`: trade by trade on the
  session's own rules, written in bulk; the event path takes over for the last trade, still open
  at the end), against ``vbt.Portfolio.from_signals`` with ``sl_stop``/``tp_stop`` on the same
  entries and exits (its stops checked on the close only; the replay walks each bar's extremes);
* the portfolio: ``MomentumRotation`` over BTC, ETH and SOL (one shared budget, sized by volatility,
  sells before buys) on the event path, against ``vbt.Portfolio.from_orders`` with the same target
  fractions (``size_type="targetpercent"``, one group sharing cash, ``call_seq="auto"``).

Sizes: one symbol-year of real 1m bars (``year``, 527,040 bars a symbol) and 1,000,000 bars (the
year followed by itself, rescaled to go on from its last close, as benchmarks/replay_vectorbt.py
builds it), or any ``--bars N``. Per case: filled orders and PnL of each, wall and CPU seconds, and
the ratio to warm vectorbt's CPU (cold: its first call, numba compiling; warm and workbench: the
best of ``--repeat`` calls, each after a garbage collection outside the clock; workbench's clock runs
for the ``replay()`` call, into a fresh store, as in benchmarks/replay_vectorbt.py). The numbers differ
a little by construction: workbench fills at the synthetic book's best level, charges buy fees in
base and rounds every amount down to the step size; vectorbt fills at the close with fees in quote.

The machine may be shared: compare CPU seconds, the process's own, rather than wall. vectorbt pins
numba and numpy, so it lives in its own environment (see benchmarks/replay_vectorbt.py)::

    PYTHONPATH=. .venv-bench/bin/python benchmarks/replay_intents_vectorbt.py [--sizes year 1000000] [--repeat 3]

Before and after a change: run it twice, ``PYTHONPATH`` at each checkout (check ``workbench.__file__``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from replay_vectorbt import million_bars

DATA = Path("/work/shared/data/binance/spot/1m")
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
FEE = 0.001
CASH = 10_000


def timed(call: Callable[[], Any]) -> tuple[Any, float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def best(call: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """``call()``'s last result and the (wall, cpu) of its fastest call by CPU."""
    runs = [timed(call) for _ in range(repeat)]
    return runs[-1][0], *min((r[1:] for r in runs), key=lambda t: t[1])


def vectorbt_runs(call: Callable[[], Any], repeat: int) -> tuple[Any, tuple[float, float], tuple[float, float]]:
    """vectorbt's answer, its cold (wall, cpu) and its best warm (wall, cpu)."""
    result, cold_wall, cold_cpu = timed(call)
    _, *warm = best(call, repeat)
    return result, (cold_wall, cold_cpu), tuple(warm)  # type: ignore[return-value]


def ours(strategy: Any, bars: Any, repeat: int) -> dict[str, Any]:
    """workbench's replay into a fresh store each call (the clock runs for ``replay()`` alone, as in
    benchmarks/replay_vectorbt.py: not for reading its orders back, nor for closing the store):
    filled orders, PnL, the path, wall and CPU of the fastest call."""
    from workbench.replay import replay

    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            result, wall, cpu = timed(lambda: asyncio.run(replay(strategy, bars, store=Path(folder) / "r.duckdb")))  # noqa: B023
            row = {"orders": int((result.orders["status"] == "FILLED").sum()), "pnl": result.pnl(),
                   "engine": f"workbench replay ({result.engine} path)", "fallback": result.fallback}  # fmt: skip
            result.store.close()
            runs.append({**row, "wall_s": wall, "cpu_s": cpu})
    return min(runs, key=lambda r: r["cpu_s"])


def bracket_case(bars: pd.DataFrame, repeat: int) -> list[dict[str, Any]]:
    import vectorbt as vbt

    from workbench.strategy import SmaBracket

    strategy = SmaBracket(fast=10, slow=50, size=0.001, stop=0.01, profit=0.02)
    mine = ours(strategy, bars, repeat)
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
    return rows("bracket", mine, theirs, cold, warm)


def portfolio_case(frames: dict[str, pd.DataFrame], repeat: int) -> list[dict[str, Any]]:
    import vectorbt as vbt

    from workbench.strategy import MomentumRotation

    strategy = MomentumRotation()
    mine = ours(strategy, frames, repeat)
    weights = pd.DataFrame({s: a["target_fraction"] for s, a in strategy(frames).items()})
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    size, prices = weights.to_numpy(), close.to_numpy()

    def run() -> Any:
        return vbt.Portfolio.from_orders(prices, size, size_type="targetpercent", fees=FEE, init_cash=CASH,
                                         group_by=True, cash_sharing=True, call_seq="auto")  # fmt: skip

    pf, cold, warm = vectorbt_runs(run, repeat)
    theirs = {"orders": int(pf.orders.count().sum()), "pnl": float(pf.total_profit())}
    return rows("portfolio (BTC, ETH, SOL)", mine, theirs, cold, warm)


def rows(case: str, ours: dict, theirs: dict, cold: tuple[float, float], warm: tuple[float, float]) -> list[dict]:
    return [
        {"case": case, **ours, "x_warm_vbt_cpu": ours["cpu_s"] / max(warm[1], 1e-9)},
        {"case": case, "engine": "vectorbt cold", **theirs, "wall_s": cold[0], "cpu_s": cold[1],
         "x_warm_vbt_cpu": cold[1] / max(warm[1], 1e-9)},  # fmt: skip
        {"case": case, "engine": "vectorbt warm", **theirs, "wall_s": warm[0], "cpu_s": warm[1], "x_warm_vbt_cpu": 1.0},
    ]


def sized(year: dict[str, pd.DataFrame], size: str) -> dict[str, pd.DataFrame]:
    """Each symbol's bars of one size: ``year`` or a number of bars (beyond the year: million_bars)."""
    if size == "year":
        return year
    n = int(size)
    return {s: f.iloc[:n] if n <= len(f) else million_bars(f, n) for s, f in year.items()}


def main() -> None:
    from workbench.replay import load_bars

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["year", "1000000"], help="'year' or a number of bars")
    parser.add_argument("--bars", type=int, help="one size: this many bars of each symbol (from 2023-06-26)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    year = {s: load_bars(DATA / f"{s.replace('/', '')}-1m.csv.gz", s) for s in SYMBOLS}
    for size in [str(args.bars)] if args.bars else args.sizes:
        frames = sized(year, size)
        table = pd.DataFrame(
            bracket_case(frames["BTC/USDT"], args.repeat) + portfolio_case(frames, args.repeat)
        ).set_index(["case", "engine"])
        fallbacks = table.pop("fallback").dropna()
        wide = {"display.width": 200, "display.max_columns": 20, "display.float_format": "{:,.3f}".format}
        with pd.option_context(*(x for item in wide.items() for x in item)):
            print(f"\n{len(frames['BTC/USDT']):,} real 1m bars per symbol ({size}); CPU seconds are the process's own")
            print(table)
        for (case, _), why in fallbacks.items():
            print(f"  {case}: {why}")


if __name__ == "__main__":
    main()
