"""Soak: hours of market replayed at high speed, a testnet session trading it live on three symbols.

The local exchange runs in a child process (its own CPU, as a real venue would), replaying its
klines ``--speed`` times faster than the clock (6000: a 1m bar every 10 ms). The session runs the
SmaCross strategy live (``TradingSession.run_live``) on BTC/USDT, ETH/USDT and SOL/USDT through the
Binance executor (ccxt over REST and WebSocket) until ``--bars`` closed bars of each symbol have gone
through it. Printed: orders, fills, order latency (p50/p99 of ``create_order``, and of the whole
``submit``: risk checks, journal, send), memory (RSS at the start, along the run and at the end,
peak RSS), wall time. Checked at the end: the store's fills equal the exchange's trades (fetched
from its REST API) and the stored balance snapshot equals the exchange's account.

The exchange's rate limits are lifted (the order-count limit, 50 per 10 s, would otherwise refuse
orders that a market replayed 6000 times faster than real time asks for).

Run: .venv/bin/python benchmarks/soak.py [--bars N] [--speed S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
from _common import local_exchange

from workbench.config import Credentials, RiskLimits, Secret, TradingMode
from workbench.data import load_rules
from workbench.executors.binance import BinanceExecutor, make_client
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
STRATEGY = SmaCross(fast=5, slow=20, size=0.1)  # 0.1 of each base: 4k, 230 and 10 USDT a trade
RISK = RiskLimits(max_order_notional=Decimal(100_000), max_position_notional=None, max_orders_per_minute=None)
PAGE = 1000


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


class Timed:
    """Wraps an async callable and keeps each call's duration in seconds."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, []

    async def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await self.fn(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - started)


def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1e3:.1f} ms" if values else "n/a"


async def exchange_trades(url: str, key: str, secret: str) -> set[tuple]:
    """Every trade of the account, from the exchange's REST API (myTrades, paged by id)."""
    client = make_client(TradingMode.TESTNET, Credentials(Secret(key), Secret(secret)), url)
    trades: set[tuple] = set()
    try:
        await client.load_markets()
        for symbol in SYMBOLS:
            from_id = 0
            while True:
                page = await client.fetch_my_trades(symbol, None, PAGE, {"fromId": from_id})
                for t in page:
                    fee = t.get("fee") or {}
                    trades.add(_key(symbol, t["id"], t["price"], t["amount"], fee.get("cost", 0), fee.get("currency")))
                if len(page) < PAGE:
                    break
                from_id = max(int(t["id"]) for t in page) + 1
    finally:
        await client.close()
    return trades


def _key(symbol, trade_id, price, amount, fee, currency) -> tuple:
    return symbol, str(trade_id), *(Decimal(str(v)).normalize() for v in (price, amount, fee)), currency or ""


async def soak(url: str, key: str, secret: str, bars: int, speed: float, folder: Path) -> bool:
    rules = load_rules(SYMBOLS)
    credentials = Credentials(Secret(key), Secret(secret))
    store = Store(folder / "soak.duckdb")
    executor = BinanceExecutor(TradingMode.TESTNET, rules, credentials, venue_url=url)
    session = TradingSession(executor, store, rules=rules, risk=RISK, strategy=STRATEGY, session_id="soak")
    create = executor.create_order = Timed(executor.create_order)  # type: ignore[method-assign]
    seen: dict[str, list[int]] = {s: [] for s in SYMBOLS}
    on_bar = session.on_bar

    async def counted(symbol, bar):
        seen[symbol].append(int(bar.name.timestamp()) // 60)  # the bar's open minute
        return await on_bar(symbol, bar)

    session.on_bar = counted  # type: ignore[method-assign]
    submit = session.submit = Timed(session.submit)  # type: ignore[method-assign]
    await session.start()
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    async def sample_memory() -> None:
        while True:
            samples.append((time.perf_counter() - started, rss_mb()))
            await asyncio.sleep(0.25)  # the sampling period, not a wait for a condition

    sampler = asyncio.create_task(sample_memory())
    try:
        await session.run_live(bars)  # stops the session: balances snapshot, summary, flush
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    wall = time.perf_counter() - started
    samples.append((wall, rss_mb()))
    balances = await executor.fetch_balance()
    await executor.close()

    ours = {
        _key(*row)
        for row in store.sql(
            "SELECT symbol, trade_id, price, amount, fee, fee_currency FROM real_fills WHERE session_id = 'soak'"
        )
    }
    orders = store.sql("SELECT status, count(*) FROM real_orders WHERE session_id = 'soak' GROUP BY status")
    snapshot = store.sql(
        "SELECT asset, free, locked FROM real_balances WHERE session_id = 'soak' "
        "AND timestamp = (SELECT max(timestamp) FROM real_balances WHERE session_id = 'soak')"
    )
    store.close()
    theirs = await exchange_trades(url, key, secret)
    stored = {a: (Decimal(f), Decimal(lk)) for a, f, lk in snapshot if Decimal(f) or Decimal(lk)}
    account = {a: (b.free, b.locked) for a, b in balances.items()}

    hours = bars / 60
    placed = sum(n for _, n in orders)
    half = len(create.seconds) // 2
    rss = [r for _, r in samples]
    print(f"soak: {len(SYMBOLS)} symbols x {bars} bars ({hours:.1f} h of market) in {wall:.1f} s wall")
    skipped = sum(int(np.sum(np.diff(minutes) - 1)) for minutes in seen.values() if minutes)
    print(
        f"  bars through the strategy {sum(map(len, seen.values()))}, skipped {skipped} "
        f"({sum(map(len, seen.values())) / wall:.0f} bars/s; the exchange replays {len(SYMBOLS) * speed / 60:.0f})"
    )
    print(f"  orders {placed} ({', '.join(f'{n} {s}' for s, n in sorted(orders))}), fills {len(ours)}")
    print(f"  order latency, create_order: p50 {ms(create.seconds, 50)}, p99 {ms(create.seconds, 99)}, "
          f"max {ms(create.seconds, 100)}; first half p99 {ms(create.seconds[:half], 99)}, "
          f"second half p99 {ms(create.seconds[half:], 99)}")  # fmt: skip
    print(f"  submit (risk checks, journal, send): p50 {ms(submit.seconds, 50)}, p99 {ms(submit.seconds, 99)}")
    along = ", ".join(f"{q}% {rss[min(len(rss) - 1, len(rss) * q // 100)]:.1f}" for q in (25, 50, 75))
    print(f"  memory: RSS at start {rss[0]:.1f} MB; along the run {along}; at the end {rss[-1]:.1f} MB; "
          f"peak RSS {peak_rss_mb():.1f} MB")  # fmt: skip
    fills_ok, balances_ok = ours == theirs, stored == account
    print(f"  check: store fills == exchange trades: {fills_ok} ({len(ours)} vs {len(theirs)}); "
          f"stored balances == exchange account: {balances_ok}")  # fmt: skip
    if not fills_ok:
        print(f"    only in the store: {sorted(ours - theirs)[:5]}; only on the exchange: {sorted(theirs - ours)[:5]}")
    return fills_ok and balances_ok and placed > 0 and not skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=720, help="closed 1m bars per symbol (default 720: 12 hours)")
    parser.add_argument("--speed", type=float, default=6000, help="market minutes per wall minute (default 6000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, local_exchange(symbols=SYMBOLS, speed=args.speed, balances=None) as v:
        ok = asyncio.run(soak(v.url, v.api_key, v.secret, args.bars, args.speed, Path(folder)))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
