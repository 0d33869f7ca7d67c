"""The chaos suite's CLI path: ``workbench run`` and ``workbench sweep`` as users run them
(subprocesses, papermill kernels) against a local exchange in the harness's event loop, under
SIGKILLs and restarts of the same session id, venue restarts, a kill switch tripped from another
process and a SIGKILLed sweep worker. Each run is checked with the harness's invariants
(:func:`~tests.chaos.harness.inspect`) against the main store the runs merged into."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psutil

from workbench.exchange import LocalExchange
from workbench.store import Store

from ..cli_runs import env_for, open_venue, restart_venue, session_orders, start_run, workbench
from ..polling import holds_within
from .harness import Problem, Report, inspect

KILLS = 10  # SIGKILLs of `workbench run` per seed, each followed by a restart of the same session id
BARS = 30  # bars a run trades (the last restart trades them all)
MAIN = "main.duckdb"
CLI_TIMEOUT = 480.0  # seconds one CLI scenario may take (eleven kernel starts for the SIGKILL one)


@dataclass
class CliRun:
    """What :func:`inspect` reads of a run on the CLI path: the exchange, the main store, the session."""

    scenario: Any
    seed: int
    exchange: LocalExchange
    session_id: str
    store: Store | None = None
    session: Any = None
    initial: dict[str, Decimal] = field(default_factory=dict)
    account_sessions: list[str] = field(default_factory=list)  # all that trade the account, when more than one


@dataclass(frozen=True)
class Name:
    name: str


async def check(run: CliRun, folder: Path, problems: list[Problem]) -> Report:
    """The harness's invariants for ``run``'s session in the main store, with the scenario's own problems."""
    with Store(folder / MAIN) as store:
        run.store = store
        report = await inspect(run, balances=False)
        for other in sorted(set(run.account_sessions) - {run.session_id}):  # the other runs of a sweep
            extra = await inspect(replace(run, session_id=other), balances=False)
            for counter in ("orders", "fills", "duplicates", "lost", "doubled"):
                setattr(report, counter, getattr(report, counter) + getattr(extra, counter))
            seen = {p.text for p in report.problems}  # the account's ledger is checked once
            report.problems += [p for p in extra.problems if p.text not in seen]
    report.path = "cli"
    report.problems += problems
    return report


def status(folder: Path, session_id: str) -> str | None:
    con = duckdb.connect(str(folder / MAIN), read_only=True)
    try:
        row = con.execute("SELECT status FROM sessions WHERE session_id = ?", [session_id]).fetchone()
    finally:
        con.close()
    return row[0] if row else None


async def _finished(run: Any, session_id: str, problems: list[Problem], expect: str = "completed") -> None:
    rc, out = await run.finish(600)
    if f"run {session_id}: {expect}" not in out:
        problems.append(Problem(f"the run ended {rc}, not {expect}: {out[-1500:]}"))


async def sigkill_restart(run: CliRun, folder: Path, rng: random.Random) -> list[Problem]:
    """``workbench run`` SIGKILLed ``KILLS`` times at random points (as the kernel starts, as it
    trades, between orders), each time restarted with the same session id; the last run ends."""
    venue, run.session_id = run.exchange, f"cli-kill-{run.seed}"
    problems: list[Problem] = []
    for _ in range(KILLS):
        process = await start_run(folder, venue, run.session_id, bars=BARS)
        placed = len(session_orders(venue, run.session_id))
        more = rng.randint(1, 2)
        await holds_within(lambda p=placed, m=more: len(session_orders(venue, run.session_id)) >= p + m,
                           rng.uniform(2.0, 25.0))  # fmt: skip
        await process.kill()
    await _finished(await start_run(folder, venue, run.session_id, bars=BARS), run.session_id, problems)
    return problems


async def venue_restarts(run: CliRun, folder: Path, rng: random.Random) -> list[Problem]:
    """The venue restarts (same port, keys, account) two or three times while ``workbench run`` trades."""
    run.session_id = f"cli-venue-{run.seed}"
    problems: list[Problem] = []
    process = await start_run(folder, run.exchange, run.session_id, bars=3 * BARS)
    for _ in range(rng.randint(2, 3)):
        placed = len(session_orders(run.exchange, run.session_id))
        await holds_within(lambda p=placed: len(session_orders(run.exchange, run.session_id)) > p, 120)
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # the fault: the restart lands anywhere in a bar
        run.exchange = await restart_venue(run.exchange, folder)
    await _finished(process, run.session_id, problems)
    return problems


async def kill_switch(run: CliRun, folder: Path, rng: random.Random) -> list[Problem]:
    """``workbench kill-switch trip --store M`` from another process while ``workbench run`` trades:
    nothing reaches the exchange later than 2 s after it, open orders are canceled, the run ends halted."""
    venue, run.session_id = run.exchange, f"cli-halt-{run.seed}"
    problems: list[Problem] = []
    process = await start_run(folder, venue, run.session_id, bars=20 * BARS)
    await holds_within(lambda: len(session_orders(venue, run.session_id)) >= rng.randint(1, 4), 180)
    rc, out = await workbench(folder, "kill-switch", "trip", "--store", MAIN, "--reason", "chaos drill")
    tripped = time.monotonic()
    if rc != 0:
        problems.append(Problem(f"kill-switch trip failed: {out}"))
    await holds_within(lambda: time.monotonic() - tripped > 2.0, 3.0, every=0.05)
    by_then = {o.client_order_id for o in session_orders(venue, run.session_id)}
    if venue.venue.engine.open_orders():
        problems.append(Problem("open orders left on the exchange 2 s after the kill switch tripped"))
    await _finished(process, run.session_id, problems, expect="halted")
    late = {o.client_order_id for o in session_orders(venue, run.session_id)} - by_then
    problems += [Problem(f"{cid} reached the exchange more than 2 s after the trip", order=cid) for cid in sorted(late)]
    if status(folder, run.session_id) != "halted":
        problems.append(Problem(f"the main store says {status(folder, run.session_id)!r}, not 'halted'"))
    rc, out = await workbench(folder, "run", "--mode", "testnet", "--venue", venue.url, "--session-id", "refused",
                              "--store", MAIN, env=env_for(venue))  # fmt: skip
    if rc != 2 or "kill switch is tripped" not in out:
        problems.append(Problem(f"a run started while the kill switch was tripped: {rc} {out[-500:]}"))
    return problems


async def sweep_worker_kill(run: CliRun, folder: Path, rng: random.Random) -> list[Problem]:
    """``workbench sweep`` of two runs; one run's kernel (its worker) is SIGKILLed as it trades; the
    sweep records it failed, and the sweep run again resumes that session (the other is skipped)."""
    venue, sweep_id = run.exchange, f"cli-sweep-{run.seed}"
    run.session_id = sweep_id
    problems: list[Problem] = []
    args = ("sweep", "--sweep-id", sweep_id, "--mode", "testnet", "--venue", venue.url, "--bars", str(BARS),
            "--param", "fast=1,2", "--param", "slow=3", "--store", MAIN)  # fmt: skip
    sweep = asyncio.create_task(workbench(folder, *args, env=env_for(venue), timeout=600))
    victim = await _trading_kernel(folder / "runs" / sweep_id, venue, rng, sweep)
    rc, out = await sweep
    if victim is None:
        problems.append(Problem(f"no sweep worker was killed: {out[-1500:]}"))
        return problems
    run.session_id = victim
    con = duckdb.connect(str(folder / MAIN), read_only=True)
    try:
        run.account_sessions = [r[0] for r in con.execute("SELECT session_id FROM sessions WHERE sweep_id = ?",
                                                          [sweep_id]).fetchall()]  # fmt: skip
    finally:
        con.close()
    if status(folder, victim) != "failed":
        problems.append(Problem(f"the killed run {victim} is {status(folder, victim)!r} in the main store, not failed"))
    rc, out = await workbench(folder, *args, env=env_for(venue), timeout=600)
    if status(folder, victim) != "completed" or "skipped" not in out:
        problems.append(Problem(f"the sweep run again did not resume {victim} and skip the other: {out[-1500:]}"))
    return problems


async def _trading_kernel(folder: Path, venue: LocalExchange, rng: random.Random, sweep: asyncio.Task) -> str | None:
    """SIGKILL the kernel of a sweep's run once its session has orders on the exchange; its session id."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not sweep.done():
        for proc in psutil.process_iter(["cmdline"]):
            if "ipykernel_launcher" not in " ".join(proc.info["cmdline"] or ()):
                continue
            try:
                stores = [Path(f.path) for f in proc.open_files() if f.path.endswith(".duckdb")]
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
            for store in stores:
                if store.parent == folder and len(session_orders(venue, store.stem)) >= rng.randint(1, 2):
                    proc.kill()
                    return store.stem
        await asyncio.sleep(0.1)
    return None


CLI_SCENARIOS: dict[str, Callable[[CliRun, Path, random.Random], Awaitable[list[Problem]]]] = {
    "cli_sigkill_restart": sigkill_restart,
    "cli_venue_restart": venue_restarts,
    "cli_kill_switch": kill_switch,
    "cli_sweep_worker_kill": sweep_worker_kill,
}


async def run_cli_chaos(name: str, seed: int, folder: Path) -> Report:
    """One CLI-path scenario with ``seed`` on a fresh exchange, then the harness's checks."""
    venue = await open_venue(folder)
    run = CliRun(Name(name), seed, venue, "", initial={a: b.total for a, b in venue.venue.engine.balances().items()})
    try:
        problems = await CLI_SCENARIOS[name](run, folder, random.Random(f"{name}:{seed}"))
        report = await check(run, folder, problems)
        report.scenario = name
        return report
    finally:
        await run.exchange.stop()
