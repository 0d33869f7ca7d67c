"""``workbench report`` of a ``make run`` session: wall and CPU time, and where it goes.

Runs the session ``make run`` runs (testnet against the local exchange, 240 bars at 1200x, SMA 5/20)
into a fresh store with ``workbench run`` (or reuses ``--session`` in ``--store``), then measures,
each as its own process the way a user runs it:

* ``workbench report UNKNOWN``: the failure for an unknown id (the goal: under a second);
* ``workbench report SESSION``: the whole report (``--repeat`` times: median and max wall, median
  CPU of the command and its kernel);

and, in this process, its parts: importing the CLI, checking the id, starting the kernel, executing
the notebook (then its slowest cells, from nbclient's own timings) and exporting the HTML.

``--baseline DIR`` (a checkout of another commit: ``git worktree add DIR COMMIT``) times its
``workbench report`` of the same session too, interleaved, on its code and notebook (``PYTHONPATH=DIR``).

Run: .venv/bin/python benchmarks/report.py [--store PATH --session ID] [--repeat N] [--baseline DIR]
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
from datetime import datetime
from pathlib import Path

BIN = Path(sys.executable).parent
MAKE_RUN = ["--mode", "testnet", "--venue", "local", "--symbols", "BTC/USDT", "--bars", "240", "--speed", "1200",
            "--strategy-params", '{"fast": 5, "slow": 20, "size": 0.001}']  # fmt: skip


def timed(command: list[str], baseline: str | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (the child's user + system) of one command (on the code in ``baseline``)."""
    env = {**os.environ, "PYTHONPATH": baseline} if baseline else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()  # run from the baseline (python -m puts the current folder first)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=baseline)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done


def parts(store: Path, session_id: str, folder: Path) -> list[tuple[str, float, float]]:
    """The report's steps in this process, as :func:`workbench.report.report` takes them, each
    (step, wall s, CPU s of this process), then the five slowest cells (wall, from nbclient's timings)."""
    rows = []

    def step(name: str, start: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        rows.append((name, now[0] - start[0], now[1] - start[1]))
        return now

    t = time.perf_counter(), time.process_time()
    import workbench.cli  # noqa: F401
    from workbench import lookup, report

    t = step("import workbench.cli", t)
    lookup.check(store, session_id)
    t = step("check the session id", t)
    from jupyter_client.manager import KernelManager

    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))
    kernel.start_kernel()
    t = step("start the kernel (it boots in its own process)", t)
    parameters = {"store_path": str(store), "session_id": session_id, "sweep_id": None}
    try:
        node = report._execute(kernel, report.REPORT_NOTEBOOK, parameters, 600, lambda _: None, folder / "x.ipynb", "x")
    finally:
        kernel.shutdown_kernel(now=True)
    t = step("load nbclient, execute the notebook (kernel CPU not counted)", t)
    from nbconvert import HTMLExporter

    HTMLExporter(exclude_input=True, embed_images=True).from_notebook_node(node)
    step("export HTML", t)
    cells = []
    for cell in node.cells:
        timing = cell.metadata.get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            took = _stamp(timing["shell.execute_reply"]) - _stamp(timing["iopub.execute_input"])
            cells.append((took, cell.source))
    rows.append(("  of which in cells (nbclient's timings)", sum(d for d, _ in cells), float("nan")))
    for duration, source in sorted(cells, reverse=True)[:5]:
        first = next((line for line in source.splitlines() if line and not line.startswith("#")), "")[:60]
        rows.append((f"    cell: {first}", duration, float("nan")))
    return rows


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store holding --session (default: run the make-run session)")
    parser.add_argument("--session")
    parser.add_argument("--repeat", type=int, default=3, help="reports to time (default 3)")
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit, its report timed beside")
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
        out, runs, before = folder / "report.html", [], []
        command = ["report", session_id, "--store", str(store), "--output", str(out)]
        for _ in range(args.repeat):  # interleaved with the baseline's: the same load for both
            wall, cpu, done = timed([str(BIN / "workbench"), *command])
            assert done.returncode == 0, done.stderr[-2000:]
            runs.append((wall, cpu))
            sections = [line for line in done.stderr.splitlines() if line.startswith("report: ")]
            if args.baseline:
                wall, cpu, old = timed([sys.executable, "-m", "workbench.cli", *command], str(args.baseline))
                assert old.returncode == 0, old.stderr[-2000:]
                before.append((wall, cpu))
        for name, times in (("workbench report", runs), ("baseline's workbench report", before)):
            if times:
                walls, cpu = sorted(w for w, _ in times), statistics.median(c for _, c in times)
                print(f"{name} {session_id}: median {statistics.median(walls):.1f} s wall (max {walls[-1]:.1f}), "
                      f"{cpu:.1f} s CPU with its kernel, over {len(times)} runs")  # fmt: skip
        print(f"{out.stat().st_size / 1024:.0f} KiB of HTML; {len(sections)} progress lines on stderr")
        print(f"machine load: {os.getloadavg()[0]:.1f} (2 cores shared)")
        print(f"{'step':<66} {'wall s':>7} {'CPU s':>7}")
        for name, wall, cpu in parts(store, session_id, folder):
            print(f"{name:<66} {wall:7.2f} {cpu:7.2f}")


if __name__ == "__main__":
    main()
