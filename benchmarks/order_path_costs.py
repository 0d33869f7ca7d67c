"""Where the full order path's time goes: the same session blocks as ``executor_overhead.py``, with the
journal's fsync and the store's writes switched off in turn (attribution only; the workbench never
runs without them), side by side in one run.

    .venv/bin/python benchmarks/order_path_costs.py [--rounds 6] [--block 100] [--latency-ms 0]

Prints each variant's p50/p99 and, against the path as it is, what the fsync and the store's
background writes cost at the median; what is left over raw ccxt is risk checks, the session and
the executor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from _common import SYMBOL, Stats, Venue, local_exchange
from executor_overhead import GENEROUS, full_block, merge

from workbench.config import load_config
from workbench.store import Store

VARIANTS = ("as is", "no fsync", "no store writes", "neither")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    with contextlib.ExitStack() as patches:
        if name in ("no fsync", "neither"):
            patches.enter_context(mock.patch("workbench.store.os.fsync", lambda fd: None))
        if name in ("no store writes", "neither"):
            patches.enter_context(mock.patch.object(Store, "_enqueue", lambda self, item: None))
        yield


async def measure(venue: Venue, rounds: int, size: int) -> dict[str, Stats]:
    os.environ["BINANCE_TESTNET_API_KEY"], os.environ["BINANCE_TESTNET_API_SECRET"] = venue.api_key, venue.secret
    results: dict[str, list[Stats]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "costs.duckdb"
        config = load_config(mode="testnet", venue_url=venue.url, store_path=path, symbols=[SYMBOL], risk=GENEROUS)
        with Store(path) as store:
            await full_block(config, store, "warmup", 20, False)
            for r in range(rounds):
                for name in VARIANTS[r % 4 :] + VARIANTS[: r % 4]:
                    with variant(name):
                        results[name].append(await full_block(config, store, f"costs-{r}-{name[:2]}", size, False))
    return {name: merge(parts) for name, parts in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with local_exchange(args.latency_ms) as venue:
        stats = asyncio.run(measure(venue, args.rounds, args.block))
    print(f"{args.rounds} rounds of {args.block} market orders a variant, +{args.latency_ms:g} ms a REST answer")
    for name, s in stats.items():
        print(s.line(f"full path, {name}"))
    base = stats["as is"].p50
    print(f"the journal's fsync costs {(base - stats['no fsync'].p50) * 1e3:+.2f} ms at the median")
    print(f"the store's background writes cost {(base - stats['no store writes'].p50) * 1e3:+.2f} ms at the median")
    print(f"both together: {(base - stats['neither'].p50) * 1e3:+.2f} ms")


if __name__ == "__main__":
    main()
