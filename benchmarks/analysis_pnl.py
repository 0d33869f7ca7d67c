"""Post-trade analysis at scale: FIFO PnL over a million fills (ten million with ``--large``).

Generates SESSIONS x FILLS fills (100 x 10,000 by default; 1000 x 10,000 with ``--large``) into a
workbench DuckDB store, in bulk with DuckDB's ``range()``, then times, side by side and interleaved
(so that a loaded machine slows each alike), for one session and for every session at once:

* :func:`workbench.analysis.fifo_pnl` (its lots in numpy, in integer units);
* a hand-written pandas/numpy FIFO (:func:`pandas_fifo`), the goal being within 1.5x of it;
* the same FIFO as DuckDB window SQL (the ``analysis_pnl`` view's query, DECIMAL inside the windows);

wall and CPU time each, and checks the figures against the pattern's own arithmetic and each other.

Each session trades BTC/USDT in blocks of four fills: a buy paying its fee in BTC, a buy paying it in
USDT, then two sells that close the position exactly (the first sell takes the whole first lot and
part of the second, across lots), so every block ends flat and its realised PnL is known in closed form.

Run: .venv/bin/python benchmarks/analysis_pnl.py [--large | --sessions N --fills N] [--store PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from workbench import analysis
from workbench.store import Store

T0_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z

# One row per fill; amounts in micro-BTC and prices in cents, as integers, so that the DECIMAL columns
# hold exact values and every block closes to exactly zero.
_FILLS = """
WITH g AS (
    SELECT s, i, i // 4 AS block, i % 4 AS k,
           1000 * (1 + (i // 4 * 7 + s) % 5) AS a_u,           -- first buy, micro-BTC
           1000 * (1 + (i // 4 * 3 + s) % 4) AS b_u,           -- second buy
           5000000 + CAST(200000 * sin(i / 500.0 + s) + 5000 * sin(i * 1.7 + s * 3.1) AS BIGINT) AS price_c
    FROM range({first}, {last}) t(s), range({fills}) u(i)
), q AS (
    SELECT *,
           CASE k WHEN 0 THEN a_u WHEN 1 THEN b_u WHEN 2 THEN a_u ELSE b_u - a_u // 1000 END AS amount_u,
           CASE WHEN k < 2 THEN 'buy' ELSE 'sell' END AS side
    FROM g
)
SELECT printf('bench-%04d', s) AS session_id, printf('%08d', i) AS trade_id, NULL AS order_id,
       printf('bench-%04d-%d', s, i) AS client_order_id, 'BTC/USDT' AS symbol, side,
       price_c * 0.01 AS price, amount_u * 0.000001 AS amount, price_c * amount_u * 0.00000001 AS cost,
       CASE WHEN k = 0 THEN a_u * 0.000000001 ELSE price_c * amount_u * 0.00000000001 END AS fee,
       CASE WHEN k = 0 THEN 'BTC' ELSE 'USDT' END AS fee_currency, k > 1 AS is_maker,
       to_timestamp({t0} + s + i) AS "timestamp"
FROM q
"""


def generate(path: Path, sessions: int, fills: int, chunk: int = 100) -> float:
    """Write ``sessions`` x ``fills`` fills and the sessions' rows into a new store; seconds taken."""
    Store(path).close()  # the workbench schema
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        con.execute(
            "INSERT INTO sessions (session_id, mode, venue, strategy, params, symbols, started_at, status) "
            "SELECT printf('bench-%04d', s), 'paper', 'paper', 'bench', '{}', ['BTC/USDT'], "
            f"to_timestamp({T0_SECONDS} + s), 'completed' FROM range({sessions}) t(s)"
        )
        for first in range(0, sessions, chunk):
            last = min(first + chunk, sessions)
            con.execute("INSERT INTO paper_fills " + _FILLS.format(first=first, last=last, fills=fills, t0=T0_SECONDS))
            print(f"  generated sessions {first}..{last - 1}", flush=True)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - started


def expected_realised(con: duckdb.DuckDBPyConnection, session_id: str) -> float:
    """The session's realised PnL from the pattern's arithmetic, block by block, in plain Python:
    each block ends flat, so its realised PnL is what the sells received less what the buys paid."""
    rows = con.execute(
        "SELECT side, CAST(cost AS DOUBLE), CAST(fee AS DOUBLE), fee_currency FROM paper_fills "
        "WHERE session_id = ? ORDER BY trade_id",
        [session_id],
    ).fetchall()
    total = 0.0
    for side, cost, fee, currency in rows:
        quote_fee = fee if currency == "USDT" else 0.0  # a BTC fee shrinks the lot, not the cash
        total += cost - quote_fee if side == "sell" else -(cost + quote_fee)
    return total


def pandas_fifo(con: duckdb.DuckDBPyConnection, session_id: str | None = None) -> pd.DataFrame:
    """The hand-written reference: the same FIFO (each lot's share of the matched units) in pandas and
    numpy, in floats, per session and symbol: fills, position, realised PnL."""
    where = f"WHERE session_id = '{session_id}'" if session_id else ""
    f = con.execute(
        "SELECT session_id, symbol, side, CAST(amount AS DOUBLE) AS amount, CAST(cost AS DOUBLE) AS cost, "
        "CAST(coalesce(fee, 0) AS DOUBLE) AS fee, fee_currency = split_part(symbol, '/', 1) AS base_fee "
        f'FROM fills {where} ORDER BY session_id, symbol, "timestamp", trade_id'
    ).df()
    buy = (f["side"] == "buy").to_numpy()
    fee, base = f["fee"].to_numpy(), f["base_fee"].to_numpy()
    units = f["amount"].to_numpy() + np.where(buy, -1, 1) * np.where(base, fee, 0)
    value = f["cost"].to_numpy() + np.where(buy, 1, -1) * np.where(base, 0, fee)
    keys = [f["session_id"], f["symbol"]]
    frame = pd.DataFrame({"buy_units": np.where(buy, units, 0), "sell_units": np.where(buy, 0, units),
                          "buy_value": np.where(buy, value, 0), "sell_value": np.where(buy, 0, value)})  # fmt: skip
    grouped = frame.groupby(keys, sort=False)
    starts = grouped[["buy_units", "sell_units"]].cumsum() - frame[["buy_units", "sell_units"]]
    totals = grouped[["buy_units", "sell_units"]].transform("sum")
    matched = np.minimum(totals["buy_units"], totals["sell_units"]).to_numpy()
    shares = {}
    for side in ("buy", "sell"):
        u = frame[f"{side}_units"].to_numpy()
        taken = np.clip(matched - starts[f"{side}_units"].to_numpy(), 0, u)
        shares[side] = np.divide(frame[f"{side}_value"].to_numpy(), u, out=np.zeros(len(u)), where=u > 0) * taken
    frame["realised_pnl"] = shares["sell"] - shares["buy"]
    frame["position"] = frame["buy_units"] - frame["sell_units"]
    frame["fills"] = 1
    out = frame.groupby(keys, sort=True)[["fills", "position", "realised_pnl"]].sum()
    return out.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="1000 sessions: 10 million fills")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--fills", type=int, default=10_000, help="fills per session (a multiple of 4)")
    parser.add_argument("--store", help="keep the generated store at this path (default: a temporary file)")
    parser.add_argument("--repeat", type=int, default=20, help="per-session queries to time")
    args = parser.parse_args()
    if args.large:
        args.sessions = 1000
    if args.fills % 4:
        parser.error("--fills must be a multiple of 4: the pattern trades in blocks of four fills")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.store) if args.store else Path(folder) / "analysis_bench.duckdb"
        if path.exists() and (args.sessions, args.fills) == _size(path):
            print(f"Reusing {path}")
        else:
            path.unlink(missing_ok=True)
            print(f"Generating {args.sessions} sessions x {args.fills:,} fills into {path} ...")
            seconds = generate(path, args.sessions, args.fills)
            print(f"Generated in {seconds:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
        con = duckdb.connect(str(path), read_only=True)
        try:
            run(con, args)
        finally:
            con.close()


def _size(path: Path) -> tuple[int, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        sessions, fills = con.execute("SELECT count(DISTINCT session_id), count(*) FROM paper_fills").fetchone()
    return sessions, fills // max(sessions, 1)


def timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and CPU seconds (of this process: DuckDB's threads included) of ``work()``, and its result."""
    started = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - started[0], time.process_time() - started[1], result


def window_sql(con: duckdb.DuckDBPyConnection, session_id: str | None = None) -> pd.DataFrame:
    """The same FIFO as DuckDB window SQL: the ``analysis_pnl`` view's query."""
    ids = None if session_id is None else [session_id]
    return con.execute(f"SELECT * FROM ({analysis._sql('pnl', ids)}) ORDER BY session_id, symbol").df()


METHODS = {"fifo_pnl": analysis.fifo_pnl, "pandas/numpy FIFO": pandas_fifo, "DuckDB window SQL": window_sql}


def run(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> None:
    total = con.execute("SELECT count(*) FROM fills").fetchone()[0]
    print(f"{total:,} fills in {args.sessions} sessions")
    ids = [f"bench-{i:04d}" for i in random.Random(1).sample(range(args.sessions), min(args.repeat, args.sessions))]
    analysis.fifo_pnl(con, ids[0])  # the first query reads the file's metadata
    one: dict[str, list[tuple[float, float]]] = {name: [] for name in METHODS}
    for session_id in ids:  # interleaved, so that each sees the same load on a shared machine
        results = {}
        for name, method in METHODS.items():
            wall, cpu, results[name] = timed(lambda m=method, s=session_id: m(con, s))
            one[name].append((wall, cpu))
        expected = expected_realised(con, session_id)
        row = results["fifo_pnl"].iloc[0]
        assert row["fills"] == args.fills and row["position"] == 0, row  # exact units: closed is exactly zero
        for name, frame in results.items():
            got = float(frame["realised_pnl"].iloc[0])
            assert abs(got - expected) < 1e-6 * max(1.0, abs(expected)), (name, got, expected)
    every: dict[str, tuple[float, float]] = {}
    sums = {}
    for name, method in METHODS.items():
        wall, cpu, frame = timed(lambda m=method: m(con))
        every[name] = (wall, cpu)
        assert len(frame) == args.sessions and frame["fills"].sum() == total, name
        sums[name] = float(frame["realised_pnl"].sum())
    assert (analysis.fifo_pnl(con)["position"] == 0).all()
    for name, value in sums.items():
        assert abs(value - sums["fifo_pnl"]) < 1e-6 * abs(value), (name, value, sums["fifo_pnl"])
    print(f"{'FIFO PnL':<22} {'one session: median wall':>25} {'CPU':>9} {'ratio':>7}   "
          f"{'all sessions: wall':>19} {'CPU':>8} {'ratio':>7}")  # fmt: skip
    base_one = statistics.median(w for w, _ in one["pandas/numpy FIFO"])
    for name in METHODS:
        wall_one = statistics.median(w for w, _ in one[name])
        cpu_one = statistics.median(c for _, c in one[name])
        wall_all, cpu_all = every[name]
        print(
            f"{name:<22} {wall_one * 1000:22.1f} ms {cpu_one * 1000:6.1f} ms {wall_one / base_one:6.2f}x   "
            f"{wall_all:17.2f} s {cpu_all:6.2f} s {wall_all / every['pandas/numpy FIFO'][0]:6.2f}x"
        )
    ratio_one = statistics.median(w for w, _ in one["fifo_pnl"]) / base_one
    ratio_all = every["fifo_pnl"][0] / every["pandas/numpy FIFO"][0]
    print(
        f"fifo_pnl against the pandas/numpy FIFO: {ratio_one:.2f}x for one session of {args.fills:,} fills "
        f"(median of {len(ids)}), {ratio_all:.2f}x for all {args.sessions} sessions: "
        f"{'within' if max(ratio_one, ratio_all) <= 1.5 else 'OVER'} the 1.5x goal; "
        f"realised PnL summed {sums['fifo_pnl']:,.2f} USDT"
    )
    times = [timed(lambda: analysis.session_metrics(con, ids[-1]))[:2] for _ in range(3)]
    trips = int(analysis.session_metrics(con, ids[-1])["round_trips"].iloc[0])
    print(
        f"session_metrics of one session (PnL, equity, drawdown, round trips, execution): median "
        f"{statistics.median(w for w, _ in times) * 1000:.0f} ms wall, "
        f"{statistics.median(c for _, c in times) * 1000:.0f} ms CPU; {trips:,} round trips"
    )
    with open("/proc/loadavg") as load:
        print(f"load average: {load.read().split()[0]} on {os.cpu_count()} cores (shared with other engineers)")


if __name__ == "__main__":
    main()
