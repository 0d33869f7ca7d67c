"""How fast the command line answers a mistake: wall and CPU time of refused commands, run as a user
runs them (the installed ``workbench`` script in a subprocess), beside Python's own start-up and the
imports of DuckDB and pandas measured in the same run. ``report`` and ``explain`` of an unknown id
ask a real store (one session in it): they load DuckDB to look, and nothing heavier.

    .venv/bin/python benchmarks/cli_errors.py [--repeat N] [--baseline DIR]

``--baseline DIR``: a checkout of another commit (``git worktree add DIR COMMIT``); its ``report``
and ``explain`` of an unknown id are measured in the same run, on its code (``PYTHONPATH=DIR``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = Path(sys.executable)
WORKBENCH = PYTHON.with_name("workbench")
CASES = {
    "python -c pass": [str(PYTHON), "-c", "pass"],
    "python -c 'import duckdb'": [str(PYTHON), "-c", "import duckdb"],
    "python -c 'import pandas'": [str(PYTHON), "-c", "import pandas"],
    "python -c 'import workbench'": [str(PYTHON), "-c", "import workbench"],
    "workbench --help": [str(WORKBENCH), "--help"],
    "run --strategy moon": [str(WORKBENCH), "run", "--strategy", "moon"],
    "run --session-id ../../precious": [str(WORKBENCH), "run", "--session-id", "../../precious"],
    "run --mode testnet --venue testnet": [str(WORKBENCH), "run", "--mode", "testnet", "--venue", "testnet"],
    "sweep --param api_secret=x": [str(WORKBENCH), "sweep", "--sweep-id", "s", "--param", "api_secret=x"],
    "paper --bars 0": [str(WORKBENCH), "paper", "--bars", "0"],
    "kill-switch status (no store)": [str(WORKBENCH), "kill-switch", "status", "--store", "typo.duckdb"],
    "halt-sweep nosuch": [str(WORKBENCH), "halt-sweep", "nosuch"],
    "report ../../x": [str(WORKBENCH), "report", "../../x"],
    "report UNKNOWN (no store)": [str(WORKBENCH), "report", "nosuch", "--store", "typo.duckdb"],
    "report UNKNOWN": [str(WORKBENCH), "report", "nosuch", "--store", "one.duckdb"],
    "explain UNKNOWN": [str(WORKBENCH), "explain", "nosuch", "--store", "one.duckdb"],
}


def measure(argv: list[str], cwd: str, baseline: str | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv`` (on the code in ``baseline``)."""
    env = {"PATH": str(PYTHON.parent), **({"PYTHONPATH": baseline} if baseline else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--baseline", help="a checkout of another commit, to measure its unknown-id answers beside")
    args = parser.parse_args()
    cases = {name: (argv, None) for name, argv in CASES.items()}
    if args.baseline:
        baseline = str(Path(args.baseline).resolve())
        for name in ("report UNKNOWN", "explain UNKNOWN"):
            cases[f"{name} (baseline)"] = ([str(PYTHON), "-m", "workbench.cli", *CASES[name][1:]], baseline)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as folder:
        from workbench.config import TradingMode
        from workbench.store import Store

        with Store(Path(folder) / "one.duckdb") as store:  # a real store with one session in it
            store.start_session("known", TradingMode.PAPER, symbols=["BTC/USDT"])
        for _ in range(args.repeat):  # interleaved: a burst of load hits every command alike
            for name, (argv, code) in cases.items():
                times[name].append(measure(argv, folder, code))
    print(f"{'command':38} {'wall median':>11} {'wall max':>9} {'CPU median':>11}   ({args.repeat} runs each)")
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:38} {statistics.median(walls):10.3f}s {max(walls):8.3f}s {statistics.median(cpus):10.3f}s")
    with open("/proc/loadavg") as load:
        print(f"load average during the run: {load.read().split()[0]} (on {os.cpu_count()} cores)")
