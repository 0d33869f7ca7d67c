"""The store's writer under a replay that outruns it: the event-path replay of real 1m bars with an
SMA cross that trades every few bars, through today's store and the store at ``--baseline`` (a git
revision, default: where this branch left main), side by side in one run.

Per store: wall and CPU seconds of the whole replay, the longest flush (the drain at the end), and
the most writes that waited in the queue. ``--slow`` gives every commit one row (``batch_size=1``),
a disk that cannot keep up: the baseline's unbounded queue grows with the replay and its drain
waits on all of it (and fails after its fixed 30 s); the bounded queue holds the replay back.

Run: .venv/bin/python benchmarks/store_writer.py [--bars 20000] [--baseline REV] [--slow] [--max-queue N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from workbench import PaperExecutor, SmaCross, TradingSession, load_klines, load_rules
from workbench import store as current

ROOT = Path(__file__).resolve().parent.parent


def baseline_module(rev: str) -> ModuleType:
    """``workbench/store.py`` as it was at ``rev``, imported beside today's."""
    source = subprocess.run(
        ["git", "show", f"{rev}:workbench/store.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader("store_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["store_baseline"] = module
    exec(compile(source, f"{rev}:workbench/store.py", "exec"), module.__dict__)
    return module


async def run(module: ModuleType, bars: Any, batch_size: int, **options: Any) -> dict[str, Any]:
    """One event-path replay (what ``replay(engine="event")`` runs) into a fresh store of ``module``."""
    rules = load_rules(["BTC/USDT"])
    with tempfile.TemporaryDirectory() as folder:
        store = module.Store(Path(folder) / "bench.duckdb", batch_size=batch_size, **options)
        flushes: list[float] = []
        depth = [0]
        flush, enqueue = store.flush, store._enqueue

        def timed_flush(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                flush(*args, **kwargs)
            finally:
                flushes.append(time.perf_counter() - started)

        def counted_enqueue(item: Any) -> None:
            depth[0] = max(depth[0], store._queue.qsize())
            enqueue(item)

        store.flush, store._enqueue = timed_flush, counted_enqueue
        session = TradingSession(
            PaperExecutor(rules, {"USDT": 10_000_000}), store, rules=rules, strategy=SmaCross(2, 5, 0.001)
        )
        wall, cpu = time.perf_counter(), time.process_time()
        error = ""
        try:
            await session.run({"BTC/USDT": bars}, progress=False, skip_idle=True)
        except Exception as e:  # noqa: BLE001 - the baseline's drain may give up: that is the figure
            error = f"{type(e).__name__}: {e}"
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = store.sql("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM audit_log)")[0]
        try:
            store.close()
        except Exception as e:  # noqa: BLE001
            error = error or f"{type(e).__name__}: {e}"
    return {
        "wall s": wall,
        "cpu s": cpu,
        "drain s": max(flushes, default=0.0),
        "max queued": depth[0],
        "orders": len(session.orders),
        "orders in store": rows[0],
        "audit rows": rows[1],
        "error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--baseline", default="")
    parser.add_argument("--slow", action="store_true", help="one row per commit: a disk that cannot keep up")
    parser.add_argument("--max-queue", type=int, default=None, help="today's queue bound (default: the Store's)")
    args = parser.parse_args()
    rev = (
        args.baseline
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    bars = load_klines("BTC/USDT", limit=args.bars)
    batch = 1 if args.slow else 10_000  # 10,000: what replay() opens its store with
    print("Data:", bars.attrs["source"])
    print(f"Event-path replay, SmaCross(2, 5), batch_size={batch}; the machine is shared (other engineers' jobs)")
    results = {}
    bound = {} if args.max_queue is None else {"max_queue": args.max_queue}
    for name, module, options in ((f"baseline {rev[:8]}", baseline_module(rev), {}), ("today", current, bound)):
        results[name] = asyncio.run(run(module, bars, batch, **options))
        print(f"{name:>18}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in results[name].items() if v != ""))  # fmt: skip
    base, today = results.values()
    ratios = {k: base[k] / max(today[k], 1e-9) for k in ("wall s", "cpu s", "drain s")}
    print("ratios baseline/today: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
