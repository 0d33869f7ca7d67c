"""Wall time of a 6-run sweep on 2 workers against 1 worker, side by side in one run.

    .venv/bin/python benchmarks/sweep_workers.py [--mode paper|testnet] [--bars N]

paper: each run replays N bars of the bundled klines; testnet: each run starts its own local exchange
in its kernel and trades N bars of its market live through ccxt (replayed at 3000x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from workbench.runs import sweep

GRID = {"fast": [3, 5, 8], "slow": [10, 20]}


def timed(workers: int, folder: Path, base: dict) -> float:
    started = time.perf_counter()
    frame = sweep(
        GRID,
        sweep_id=f"bench-{workers}",
        base=base,
        store_path=folder / f"w{workers}.duckdb",
        runs_dir=folder / "runs",
        workers=workers,
        progress=False,
    )
    assert (frame["status"] == "completed").all(), frame["error"].tolist()
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["paper", "testnet"], default="paper")
    parser.add_argument("--bars", type=int, help="bars a run (default 1500 paper, 120 testnet)")
    args = parser.parse_args()
    if args.mode == "paper":
        base = {"bars": args.bars or 1500}
    else:
        base = {"mode": "testnet", "venue": "local", "bars": args.bars or 120, "speed": 3000}
    with tempfile.TemporaryDirectory() as tmp:
        one = timed(1, Path(tmp), base)
        two = timed(2, Path(tmp), base)
    print(
        f"6-run {args.mode} sweep, {base['bars']} bars a run: 1 worker {one:.1f}s, 2 workers {two:.1f}s, "
        f"speed-up {one / two:.2f}x"
    )
