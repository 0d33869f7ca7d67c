"""Wall time of a 6-run sweep on 2 workers against 1 worker, side by side in one run.
Run: .venv/bin/python benchmarks/sweep_workers.py [bars_per_run]"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from workbench.runs import sweep

GRID = {"fast": [3, 5, 8], "slow": [20, 30]}


def timed(workers: int, folder: Path, bars: int) -> float:
    started = time.perf_counter()
    frame = sweep(
        GRID,
        sweep_id=f"bench-{workers}",
        base={"bars": bars},
        store_path=folder / f"w{workers}.duckdb",
        runs_dir=folder / "runs",
        workers=workers,
        progress=False,
    )
    assert (frame["status"] == "completed").all(), frame["error"].tolist()
    return time.perf_counter() - started


if __name__ == "__main__":
    bars = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    with tempfile.TemporaryDirectory() as tmp:
        one = timed(1, Path(tmp), bars)
        two = timed(2, Path(tmp), bars)
    print(f"6-run sweep, {bars} bars a run: 1 worker {one:.1f}s, 2 workers {two:.1f}s, speed-up {one / two:.2f}x")
