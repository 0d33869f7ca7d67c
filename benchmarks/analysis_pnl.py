"""Post-trade analysis at scale: FIFO PnL over 10 million fills.

Generates SESSIONS x FILLS fills (1000 x 10,000 by default) into a workbench DuckDB store, in bulk
with DuckDB's ``range()``, then times :func:`workbench.analysis.fifo_pnl` for one session (the goal:
under a second) and for every session at once, and checks the figures against the pattern's own
arithmetic.

Each session trades BTC/USDT in blocks of four fills: a buy paying its fee in BTC, a buy paying it in
USDT, then two sells that close the position exactly (the first sell takes the whole first lot and
part of the second, across lots), so every block ends flat and its realised PnL is known in closed form.

Run: .venv/bin/python benchmarks/analysis_pnl.py [--sessions N] [--fills N] [--store PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
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
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--fills", type=int, default=10_000, help="fills per session (a multiple of 4)")
    parser.add_argument("--store", help="keep the generated store at this path (default: a temporary file)")
    parser.add_argument("--repeat", type=int, default=20, help="per-session queries to time")
    args = parser.parse_args()
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


def run(con: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> None:
    total = con.execute("SELECT count(*) FROM fills").fetchone()[0]
    print(f"{total:,} fills in {args.sessions} sessions")
    ids = [f"bench-{i:04d}" for i in random.Random(1).sample(range(args.sessions), min(args.repeat, args.sessions))]
    analysis.fifo_pnl(con, ids[0])  # the first query reads the file's metadata
    times, reference, cpu, cpu_reference, rows = [], [], [], [], None
    for session_id in ids:  # interleaved, so that both see the same load on a shared machine
        started = time.perf_counter(), time.process_time()
        rows = analysis.fifo_pnl(con, session_id)
        times.append(time.perf_counter() - started[0])
        cpu.append(time.process_time() - started[1])
        started = time.perf_counter(), time.process_time()
        mine = pandas_fifo(con, session_id)
        reference.append(time.perf_counter() - started[0])
        cpu_reference.append(time.process_time() - started[1])
    row = rows.iloc[0]
    expected = expected_realised(con, ids[-1])
    assert row["fills"] == args.fills, row
    assert abs(row["position"]) < 1e-12, row["position"]
    assert abs(row["realised_pnl"] - expected) < 1e-6 * max(1.0, abs(expected)), (row["realised_pnl"], expected)
    assert abs(mine["realised_pnl"].iloc[0] - row["realised_pnl"]) < 1e-6 * max(1.0, abs(expected))
    ratio = statistics.median(times) / statistics.median(reference)
    print(
        f"per-session FIFO PnL (workbench.analysis.fifo_pnl, one session of {args.fills:,} fills): "
        f"median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {len(times)} sessions; "
        f"pandas/numpy FIFO of the same sessions, interleaved: median {statistics.median(reference) * 1000:.1f} ms "
        f"-> {ratio:.2f}x ({'within' if ratio <= 1.5 else 'OVER'} the 1.5x goal); CPU median "
        f"{statistics.median(cpu) * 1000:.1f} ms against {statistics.median(cpu_reference) * 1000:.1f} ms"
    )
    print(f"  {ids[-1]}: realised {row['realised_pnl']:.6f} USDT (expected {expected:.6f}), fees {row['fees']:.6f}")
    started = time.perf_counter(), time.process_time()
    every = analysis.fifo_pnl(con)
    seconds = time.perf_counter() - started[0], time.process_time() - started[1]
    assert len(every) == args.sessions and every["fills"].sum() == total
    started = time.perf_counter(), time.process_time()
    mine = pandas_fifo(con)
    theirs = time.perf_counter() - started[0], time.process_time() - started[1]
    assert abs(mine["realised_pnl"].sum() - every["realised_pnl"].sum()) < 1e-6 * abs(every["realised_pnl"]).sum()
    assert (every["position"] == 0).all()  # exact decimals: every session closes to exactly zero
    print(
        f"all sessions (fifo_pnl over {total:,} fills, {len(every)} rows): {seconds[0]:.2f} s wall, "
        f"{seconds[1]:.2f} s CPU; pandas/numpy FIFO: {theirs[0]:.2f} s wall, {theirs[1]:.2f} s CPU "
        f"-> {seconds[0] / theirs[0]:.2f}x; realised PnL summed {every['realised_pnl'].sum():,.2f} USDT"
    )
    started = time.perf_counter()
    metrics = analysis.session_metrics(con, ids[-1])
    print(
        f"session_metrics of one session (PnL, equity, drawdown, round trips, execution): "
        f"{(time.perf_counter() - started) * 1000:.0f} ms; {int(metrics['round_trips'].iloc[0]):,} round trips"
    )


if __name__ == "__main__":
    main()
