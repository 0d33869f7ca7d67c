"""The replay's fast path against vectorbt's ``Portfolio.from_signals``, side by side in one run.

The same SMA cross (long ``size`` BTC while the fast SMA of the close is above the slow one, else
flat; market orders; 0.1% fee; a cash account) on genuine Binance BTCUSDT 1m bars, in:

* workbench, fast path: ``workbench.replay.replay`` as a user calls it (a fresh DuckDB store, the
  session's start, signals, the fast path's orders and fills, their bulk write, the session's stop
  and summary), the bars given as ``{symbol: frame}`` as ``load_bars`` returned them (a lone
  DataFrame is normalised again, a copy: about 0.05 s more on 1,000,000 bars);
* workbench, event path: the same with ``engine="event"`` (every order through the session, the
  risk checks, the paper executor and the store's writer thread), on a smaller slice;
* vectorbt: ``Portfolio.from_signals`` on the same crossing signals (entries where the target turns
  long, exits where it turns flat), ``size`` in base units, the fee as a fraction, then its order
  count and total profit; cold (its first call, numba compiling) and warm (the best of the next
  calls), on numpy arrays (its fastest form, the baseline of the ratios) and on pandas objects
  with the bars' DatetimeIndex (as a user would pass them; much slower under pandas 3).

Cases: one symbol-year of real 1m bars; 1,000,000 bars (the year followed by itself again, rescaled
to continue from its last close and shifted by a year: real bar shapes, no jump); a 5x5 (fast, slow)
sweep on the year (``replay_grid`` into one store against one broadcast ``from_signals`` over 25
columns). Per case: trades and PnL of each engine, wall and CPU seconds, and the ratios to warm
vectorbt. PnL differs a little by construction: workbench fills at the synthetic book's best level
(1 bp from the close, on the tick) and charges buy fees in base, so it sells 0.1% less than it
bought (vectorbt fills at the close and charges every fee in quote).

The machine may be shared: compare CPU seconds, which are the process's own, rather than wall.
Before each timed call the cyclic garbage collector runs (outside the clock, for every engine, as
``timeit`` keeps it out): a replay's session is freed only by it (its executor holds its callbacks),
so without it each call would pay for the one before. Each engine's best of ``--repeat`` calls counts;
the warm vectorbt calls and workbench's alternate (after vectorbt's cold call and an uncounted
replay), so a slow spell of the machine (its speed swings by up to 40% within minutes) reaches both.

Measured on a 2-core machine, nothing else running (2026-12-02, ``--event-bars 20000``; CPU seconds
of workbench fast / warm vectorbt / ratio): one symbol-year 0.16 / 0.09 / 1.7x, 1,000,000 bars 0.29 /
0.15 / 1.9x, the 5x5 sweep 5.6 / 3.9 / 1.4x (``--repeat 5``, alternating); three earlier runs of
``--repeat 3`` without alternating gave 1.3x, 1.8x and 2.0x on the year and 2.2x, 1.2x and 1.8x on
1,000,000 bars. The database's share is fixed by its schema: the bulk insert of 29,001 orders and
fills and its commit take about 0.1 s (the two primary keys' indexes a third of it); the strategy's
own rolling means, which vectorbt's signals compute too, about 0.04 s.

vectorbt pins numba and numpy, so it lives in its own environment, with workbench installed beside it::

    python3 -m venv .venv-bench && .venv-bench/bin/pip install vectorbt -e .
    .venv-bench/bin/python benchmarks/replay_vectorbt.py [--event-bars 50000] [--repeat 3]
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

DATA = Path("/work/shared/data/binance/spot/1m/BTCUSDT-1m.csv.gz")
FAST, SLOW, SIZE, FEE = 10, 50, 0.001, 0.001
GRID = {"fast": [5, 10, 15, 20, 25], "slow": [50, 75, 100, 150, 200]}
CASH = 100_000_000
SYMBOL = "BTC/USDT"


def year_bars() -> pd.DataFrame:
    from workbench.replay import load_bars

    return load_bars(DATA, SYMBOL)


def million_bars(year: pd.DataFrame, n: int = 1_000_000) -> pd.DataFrame:
    """The year, then the year again rescaled to start at its last close (prices on the 0.01 tick)."""
    again = year.copy()
    scale = year["close"].iloc[-1] / year["open"].iloc[0]
    for column in ("open", "high", "low", "close"):
        again[column] = (again[column] * scale).round(2)
    shift = year.index[-1] - year.index[0] + pd.Timedelta(minutes=1)
    again.index = again.index + shift
    if "close_time" in again:
        again["close_time"] = again["close_time"] + shift
    return pd.concat([year, again]).iloc[:n]


def clock(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``'s result, wall seconds and CPU seconds (this process's, all threads), after a
    collection of the garbage earlier calls left."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def workbench(bars: pd.DataFrame, engine: str, fast: int = FAST, slow: int = SLOW) -> dict[str, Any]:
    from workbench.replay import replay
    from workbench.strategy import SmaCross

    store = Path(tempfile.mkdtemp(prefix="bench-")) / "replay.duckdb"
    result, wall, cpu = clock(
        lambda: asyncio.run(
            replay(SmaCross(fast, slow, SIZE), {SYMBOL: bars}, store=store, balances={"USDT": CASH}, engine=engine)
        )
    )
    assert result.engine == engine, result.fallback
    row = {"trades": len(result.fills), "pnl": result.pnl(), "wall": wall, "cpu": cpu}
    result.store.close()
    return row


def workbench_sweep(bars: pd.DataFrame) -> dict[str, Any]:
    """``replay_grid`` over the 5x5 grid into one fresh store."""
    from workbench.replay import replay_grid
    from workbench.strategy import SmaCross

    def run() -> pd.DataFrame:
        store = Path(tempfile.mkdtemp(prefix="bench-")) / "sweep.duckdb"
        factory = lambda fast, slow: SmaCross(fast, slow, SIZE)  # noqa: E731
        return asyncio.run(replay_grid(factory, {SYMBOL: bars}, GRID, store=store, balances={"USDT": CASH}))

    grid, wall, cpu = clock(run)
    return {"trades": int(grid["fills"].sum()), "pnl": float(grid["pnl"].sum()), "wall": wall, "cpu": cpu}


def vectorbt(
    close: pd.Series,
    fasts: list[int],
    slows: list[int],
    *,
    index: bool = False,
    between: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """One ``from_signals`` over every (fast, slow) column: signals from pandas' rolling means, as
    the strategy computes them, so both engines see the same crossings. Numpy arrays by default
    (vectorbt's fastest form); ``index=True`` passes pandas objects on the bars' DatetimeIndex.
    ``between()`` runs after each warm call (outside its clock): workbench's turn, so that the two
    engines' calls alternate and a slow spell of the machine hits both."""
    import vectorbt as vbt

    def run() -> Any:
        fast = np.column_stack([close.rolling(f).mean().to_numpy() for f in fasts])
        slow = np.column_stack([close.rolling(s).mean().to_numpy() for s in slows])
        long = fast > slow
        before = np.vstack([np.zeros((1, long.shape[1]), bool), long[:-1]])
        entries, exits, prices = long & ~before, ~long & before, close.to_numpy()[:, None]
        extra: dict[str, Any] = {}
        if index:
            columns = pd.MultiIndex.from_arrays([fasts, slows], names=["fast", "slow"])
            entries = pd.DataFrame(entries, index=close.index, columns=columns)
            exits = pd.DataFrame(exits, index=close.index, columns=columns)
            prices, extra = close, {"freq": "1min"}
        portfolio = vbt.Portfolio.from_signals(
            prices, entries, exits, size=SIZE, size_type="amount", fees=FEE, init_cash=CASH, **extra
        )
        return int(np.sum(portfolio.orders.count())), float(np.sum(portfolio.total_profit()))

    (trades, pnl), cold_wall, cold_cpu = clock(run)
    calls = []
    for _ in range(REPEAT):
        calls.append(clock(run))
        if between is not None:
            between()
    warm = min(calls, key=lambda r: r[2])
    return {"trades": trades, "pnl": pnl, "wall": warm[1], "cpu": warm[2], "cold_wall": cold_wall, "cold_cpu": cold_cpu}


def show(case: str, bars: int, rows: dict[str, dict[str, Any]]) -> None:
    base = rows["vectorbt warm"]
    print(f"\n{case}: {bars:,} bars")
    print(f"  {'engine':<22}{'trades':>8}{'PnL USDT':>12}{'wall s':>9}{'CPU s':>8}{'CPU / vbt warm':>16}")
    for name, row in rows.items():
        print(
            f"  {name:<22}{row['trades']:>8,}{row['pnl']:>12.2f}{row['wall']:>9.2f}{row['cpu']:>8.2f}"
            f"{row['cpu'] / base['cpu']:>15.1f}x"
        )


def vectorbt_rows(
    close: pd.Series, fasts: list[int], slows: list[int], between: Callable[[], Any] | None = None
) -> dict[str, dict[str, Any]]:
    """vectorbt cold (numba compiling, numpy inputs), warm (``between()`` after each call), and warm
    on a pandas DatetimeIndex."""
    result = vectorbt(close, fasts, slows, between=between)
    cold = {**result, "wall": result["cold_wall"], "cpu": result["cold_cpu"]}
    return {
        "vectorbt cold": cold,
        "vectorbt warm": result,
        "vectorbt warm, index": vectorbt(close, fasts, slows, index=True),
    }


REPEAT = 3


def main() -> None:
    global REPEAT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--event-bars", type=int, default=50_000, help="bars of the event-path slice")
    parser.add_argument("--repeat", type=int, default=3, help="warm calls of each engine (the best counts)")
    args = parser.parse_args()
    REPEAT = args.repeat
    year = year_bars()
    cases = [
        ("event-path slice", year.iloc[: args.event_bars]),
        ("one symbol-year", year),
        ("1,000,000 bars", million_bars(year)),
    ]
    for case, bars in cases:
        workbench(bars, "fast")  # its first call (imports, the empty store) outside the count, as vectorbt's cold
        runs: list[dict[str, Any]] = []
        turn = lambda runs=runs, bars=bars: runs.append(workbench(bars, "fast"))  # noqa: E731
        rows = vectorbt_rows(bars["close"], [FAST], [SLOW], between=turn)
        rows["workbench fast"] = min(runs, key=lambda r: r["cpu"])
        if case == "event-path slice":
            rows["workbench event"] = workbench(bars, "event")
        show(case, len(bars), rows)
    pairs = [(f, s) for f in GRID["fast"] for s in GRID["slow"]]
    sweeps: list[dict[str, Any]] = []
    rows = vectorbt_rows(year["close"], [f for f, _ in pairs], [s for _, s in pairs],
                         between=lambda: sweeps.append(workbench_sweep(year)))  # fmt: skip
    rows["workbench fast"] = min(sweeps, key=lambda r: r["cpu"])
    show("5x5 (fast, slow) sweep on the year", len(year), rows)
    print("\nCPU seconds are this process's own; wall seconds depend on what else the machine runs.")


if __name__ == "__main__":
    main()
