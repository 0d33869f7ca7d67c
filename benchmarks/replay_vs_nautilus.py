"""Replay throughput against NautilusTrader's BacktestEngine and backtrader, side by side in one run.

The same SMA cross (10/50, market orders, 0.1% taker fee, cash account) on the same real Binance
BTCUSDT one-minute bars (the catalog's, up to one symbol-year) in three engines, each in its own
subprocess so its peak RSS is its own:

* workbench: ``workbench.replay`` (paper executor, matching core, risk checks, DuckDB store);
* NautilusTrader: ``BacktestEngine`` with a Binance BTCUSDT ``CurrencyPair``, 1-MINUTE-LAST-EXTERNAL bars;
* backtrader: ``Cerebro`` with cheat-on-close, so an order fills on its signal bar as in the others.

Prints bars per second, the ratios and peak memory, and fails (exit 1) if the fill counts differ.
Bars per second is bars over the engine's run (for workbench: the whole replay call, signals,
matching and the store's writes included; for the others: their ``run()``, data loading excluded).

    .venv/bin/python benchmarks/replay_vs_nautilus.py [--bars 527040] [--engines workbench,nautilus,backtrader]

NautilusTrader and backtrader are an optional benchmark extra: pip install nautilus_trader backtrader.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINES = ("workbench", "nautilus", "backtrader")


def child(engine: str, n: int, fast: int, slow: int, size: float) -> dict[str, float | int | str]:
    """Run one engine in this process and return its figures (peak RSS from the kernel, in MiB)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import replay_engines

    bars = replay_engines.real_bars(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if engine == "workbench":
        with tempfile.TemporaryDirectory() as folder:
            result = replay_engines.run_workbench(bars, fast, slow, size, str(Path(folder) / "replay.duckdb"))
    elif engine == "nautilus":
        result = replay_engines.run_nautilus(bars, fast, slow, size)
    else:
        result = replay_engines.run_backtrader(bars, fast, slow, size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "engine": engine,
        "bars": len(bars),
        "source": bars.attrs["source"],
        "checksum": float(bars["close"].sum()),
        "peak_rss_mib": round(peak, 1),
        "rss_before_mib": round(before, 1),
        **result,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=527_040, help="at most one symbol-year of real bars")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--size", type=float, default=0.01)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.bars, args.fast, args.slow, args.size)))
        return 0

    engines = [e for e in args.engines.split(",") if e]
    print(f"SMA cross {args.fast}/{args.slow}, {args.size} BTC, market orders, 0.1% fee, {args.bars:,} 1m bars")
    results = {}
    for engine in engines:
        started = time.perf_counter()
        command = [sys.executable, __file__, "--child", engine, "--bars", str(args.bars)]
        command += ["--fast", str(args.fast), "--slow", str(args.slow), "--size", str(args.size)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{engine}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
        results[engine]["wall"] = time.perf_counter() - started

    print("Data:", next(iter(results.values()))["source"])
    print(f"{'engine':<12}{'bars/s':>12}{'run s':>9}{'orders':>9}{'fills':>8}{'peak RSS MiB':>14}{'process s':>11}")
    for engine, r in results.items():
        rate = r["bars"] / r["seconds"]
        print(
            f"{engine:<12}{rate:>12,.0f}{r['seconds']:>9.2f}{r['orders']:>9}{r['fills']:>8}"
            f"{r['peak_rss_mib']:>14,.0f}{r['wall']:>11.1f}"
        )
    if "workbench" in results:
        ours = results["workbench"]["bars"] / results["workbench"]["seconds"]
        for engine, r in results.items():
            if engine != "workbench":
                print(f"workbench / {engine}: {ours / (r['bars'] / r['seconds']):.1f}x bars per second")
    ok = True
    if len({r["checksum"] for r in results.values()}) > 1:
        print("FAIL: the engines saw different bars", file=sys.stderr)
        ok = False
    fills = {engine: r["fills"] for engine, r in results.items()}
    if len(set(fills.values())) > 1:
        print(f"FAIL: fill counts differ: {fills}", file=sys.stderr)
        ok = False
    else:
        print(f"fill counts agree: {next(iter(fills.values()))} in every engine")
    if "workbench" in results and "nautilus" in results:
        ratio = (results["workbench"]["bars"] / results["workbench"]["seconds"]) / (
            results["nautilus"]["bars"] / results["nautilus"]["seconds"]
        )
        print(f"workbench is {'at least' if ratio >= 3 else 'LESS than'} 3x NautilusTrader: {ratio:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
