"""``workbench report`` of a ``make run`` session: wall and CPU time, and where it goes.

Runs the session ``make run`` runs (testnet against the local exchange, 240 bars at 1200x, SMA 5/20)
into a fresh store with ``workbench run`` (or reuses ``--session`` in ``--store``), then measures,
each as its own process the way a user runs it:

* ``workbench report UNKNOWN``: the failure for an unknown id (the goal: under a second);
* ``workbench report SESSION``: the whole report;

and, in this process, its parts: importing the CLI, checking the id, importing papermill and
nbconvert, executing the notebook (kernel start, then each cell, from papermill's own timings) and
exporting the HTML.

Run: .venv/bin/python benchmarks/report.py [--store PATH --session ID]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MAKE_RUN = ["--mode", "testnet", "--venue", "local", "--symbols", "BTC/USDT", "--bars", "240", "--speed", "1200",
            "--strategy-params", '{"fast": 5, "slow": 20, "size": 0.001}']  # fmt: skip


def timed(command: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (the child's user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done


def parts(store: Path, session_id: str, folder: Path) -> list[tuple[str, float, float]]:
    """The report's steps in this process, each (step, wall s, CPU s)."""
    rows = []

    def step(name: str, start: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        rows.append((name, now[0] - start[0], now[1] - start[1]))
        return now

    t = time.perf_counter(), time.process_time()
    import workbench.cli  # noqa: F401
    from workbench import analysis, report

    t = step("import workbench.cli", t)
    with analysis._reader(store) as read:
        analysis._resolve(read, session_id, None)
    t = step("check the session id", t)
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    t = step("import papermill, nbformat, nbconvert", t)
    executed = folder / "executed.ipynb"
    papermill.execute_notebook(
        str(report.REPORT_NOTEBOOK), str(executed), kernel_name="python3", progress_bar=False,
        parameters={"store_path": str(store), "session_id": session_id, "sweep_id": None},
    )  # fmt: skip
    t = step("execute the notebook (kernel: its own CPU, not counted here)", t)
    node = nbformat.read(executed, as_version=4)
    HTMLExporter(exclude_input=True, embed_images=True).from_notebook_node(node)
    step("export HTML", t)
    cells = [(c.metadata.get("papermill", {}).get("duration") or 0.0, c.source) for c in node.cells]
    in_cells = sum(d for d, _ in cells)
    rows.append(("  of which in cells (papermill's timings)", in_cells, float("nan")))
    for duration, source in sorted(cells, reverse=True)[:5]:
        first = next((line for line in source.splitlines() if line and not line.startswith("#")), "")[:60]
        rows.append((f"    cell: {first}", duration, float("nan")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store holding --session (default: run the make-run session)")
    parser.add_argument("--session")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, session_id = Path(args.store or folder / "run.duckdb"), args.session or "bench-make-run"
        if not args.session:
            wall, cpu, done = timed([str(BIN / "workbench"), "run", *MAKE_RUN, "--session-id", session_id,
                                     "--store", str(store), "--runs-dir", str(folder / "runs")])  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            print(f"make-run session {session_id}: {wall:.1f} s wall, {cpu:.1f} s CPU")
        wall, cpu, done = timed([str(BIN / "workbench"), "report", "no-such-session", "--store", str(store)])
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        print(f"workbench report UNKNOWN: exit 2 in {wall:.2f} s wall, {cpu:.2f} s CPU: {done.stderr.strip()}")
        out = folder / "report.html"
        wall, cpu, done = timed(
            [str(BIN / "workbench"), "report", session_id, "--store", str(store), "--output", str(out)]
        )
        assert done.returncode == 0, done.stderr[-2000:]
        print(f"workbench report {session_id}: {wall:.1f} s wall, {cpu:.1f} s CPU (with its kernel), "
              f"{out.stat().st_size / 1024:.0f} KiB of HTML")  # fmt: skip
        print(f"machine load: {os.getloadavg()[0]:.1f} (2 cores shared)")
        print(f"{'step':<66} {'wall s':>7} {'CPU s':>7}")
        for name, wall, cpu in parts(store, session_id, folder):
            print(f"{name:<66} {wall:7.2f} {cpu:7.2f}")


if __name__ == "__main__":
    main()
