"""`workbench run` as users run it, a subprocess of the CLI, trading a local exchange (issue 14):
a killed run resumes its session (nothing sent twice, the sequence and positions go on), twins
are refused, the kill switch reaches runs, a venue restart is survived, a read-only main store
fails at once, and a killed run is merged later. Each run is checked against the exchange with
the chaos suite's own invariants (tests/chaos/harness.py)."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from workbench.config import Credentials, Secret, TradingMode
from workbench.exchange import LocalExchange
from workbench.executors.binance import make_client
from workbench.store import Store

from .chaos.harness import Report, inspect
from .cli_runs import WORKBENCH, env_for, open_venue, restart_venue, session_orders, start_run, workbench
from .polling import until


@dataclass
class Checked:
    """What the chaos harness's ``inspect`` reads of a run: the exchange, the store, the session id."""

    exchange: LocalExchange
    store: Store
    session_id: str
    initial: dict[str, Decimal] = field(default_factory=dict)
    seed: int = 0
    session: Any = None
    scenario: Any = field(default_factory=lambda: SimpleNamespace(name="cli"))


@pytest.fixture
async def venue(tmp_path):
    holder = SimpleNamespace(exchange=await open_venue(tmp_path))
    holder.initial = {a: b.total for a, b in holder.exchange.venue.engine.balances().items()}
    yield holder
    await holder.exchange.stop()


async def check(venue, store_path: Path, session_id: str) -> Report:
    """The chaos invariants for one session of a main store, against the exchange."""
    with Store(store_path) as store:
        return await inspect(Checked(venue.exchange, store, session_id, venue.initial), balances=False)


def status(store_path: Path, session_id: str) -> str:
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        return con.execute("SELECT status FROM sessions WHERE session_id = ?", [session_id]).fetchone()[0]
    finally:
        con.close()


def seqs(cids) -> set[int]:
    return {int(c.rsplit("-", 1)[1]) for c in cids}


def btc_delta(venue) -> Decimal:
    return venue.exchange.venue.engine.balances()["BTC"].total - venue.initial["BTC"]


# -- item 1: restarts resume; twins are refused --------------------------------------------------


async def test_a_killed_run_resumes_its_session_and_sends_nothing_twice(venue, tmp_path):
    ex = venue.exchange
    first = await start_run(tmp_path, ex, "resume", bars=150)
    await until(lambda: len(session_orders(ex, "resume")) >= 2, 240, "the first run trades")
    await first.kill()
    assert (tmp_path / "runs/single/resume.duckdb").exists()  # kept for the restart, journal and all
    before = {o.client_order_id for o in session_orders(ex, "resume")}
    rc, out = await (await start_run(tmp_path, ex, "resume", bars=150)).finish()
    assert rc == 0, out
    after = [o.client_order_id for o in session_orders(ex, "resume")]
    assert len(after) == len(set(after)) and before < set(after), out
    assert min(seqs(set(after) - before)) > max(seqs(before))  # the client order sequence went on
    report = await check(venue, tmp_path / "main.duckdb", "resume")
    assert report.clean, report.describe()
    assert 0 <= btc_delta(venue) <= Decimal("0.001")  # the position went on: never beyond the strategy's size
    assert status(tmp_path / "main.duckdb", "resume") == "completed"


async def test_the_same_session_id_cannot_run_twice_at_once(venue, tmp_path):
    ex = venue.exchange
    first = await start_run(tmp_path, ex, "twin", bars=400)
    await until(lambda: (tmp_path / "runs/single/twin.duckdb").exists(), 240, "the first run starts")
    started = time.monotonic()
    rc, out = await workbench(tmp_path, "run", "--mode", "testnet", "--venue", ex.url, "--session-id", "twin",
                              "--store", "main.duckdb", env=env_for(ex))  # fmt: skip
    assert rc == 2 and "Session twin is already running" in out and len(out.strip().splitlines()) == 1, out
    assert time.monotonic() - started < 15  # refused before a kernel starts
    assert first.process.returncode is None  # the first one trades on
    await first.kill()


# -- item 2: the kill switch reaches every run ---------------------------------------------------


@pytest.mark.parametrize("trip", ["kill-switch", "halt-sweep"])
async def test_one_trip_from_another_process_halts_a_run_within_two_seconds(venue, tmp_path, trip):
    ex = venue.exchange
    run = await start_run(tmp_path, ex, "halted", bars=600)
    await until(lambda: len(session_orders(ex, "halted")) >= 1, 240, "the run trades")
    resting = ex.venue.engine.orders  # another order of the account, resting: the trip cancels it too
    await _resting_buy(ex)
    command = ("kill-switch", "trip", "--store", "main.duckdb") if trip == "kill-switch" else ("halt-sweep", "single")
    rc, out = await workbench(tmp_path, *command)
    tripped = time.monotonic()
    assert rc == 0, out
    await until(lambda: not ex.venue.engine.open_orders(), 2.5, "the open orders are canceled")
    sent = {o.client_order_id for o in session_orders(ex, "halted")}
    rc, out = await run.finish(60)
    assert rc == 1 and "run halted: halted" in out, out
    assert time.monotonic() - tripped < 30
    assert {o.client_order_id for o in session_orders(ex, "halted")} == sent  # nothing sent after the trip
    assert status(tmp_path / "main.duckdb", "halted") == "halted" and resting
    report = await check(venue, tmp_path / "main.duckdb", "halted")
    assert report.clean, report.describe()
    # a tripped switch refuses new runs, at once, until it is cleared
    rc, out = await workbench(tmp_path, "run", "--mode", "testnet", "--venue", ex.url, "--session-id", "after",
                              "--store", "main.duckdb", env=env_for(ex))  # fmt: skip
    assert rc == 2 and "kill switch is tripped" in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "runs/single/after.duckdb").exists()
    clear = (
        ("kill-switch", "clear", "--store", "main.duckdb")
        if trip == "kill-switch"
        else ("halt-sweep", "single", "--clear")
    )
    assert (await workbench(tmp_path, *clear))[0] == 0
    rc, out = await (await start_run(tmp_path, ex, "halted", bars=3)).finish()  # resumes, trades again
    assert rc == 0, out


async def _resting_buy(exchange: LocalExchange) -> None:
    """A limit buy far below the market from another client of the account (ccxt, as a user would)."""
    client = make_client(
        TradingMode.TESTNET, Credentials(Secret(exchange.api_key), Secret(exchange.secret)), exchange.url
    )
    try:
        price = float(exchange.venue.engine.last_price["BTC/USDT"]) * 0.9
        await client.create_order("BTC/USDT", "limit", "buy", 0.001, round(price, 2), {"newClientOrderId": "other-1"})
    finally:
        await client.close()
    assert exchange.venue.engine.open_orders()


# -- item 8: the bar stream survives venue restarts ----------------------------------------------


async def test_a_run_survives_venue_restarts(venue, tmp_path):
    run = await start_run(tmp_path, venue.exchange, "restarts", bars=200)
    for restart in range(2):
        await until(lambda n=restart: len(session_orders(venue.exchange, "restarts")) > n, 240, "the run trades")
        venue.exchange = await restart_venue(venue.exchange, tmp_path)
    rc, out = await run.finish()
    assert rc == 0 and "run restarts: completed" in out, out
    report = await check(venue, tmp_path / "main.duckdb", "restarts")
    assert report.clean, report.describe()


# -- item 9: a read-only main store fails at once; a killed run merges later --------------------


def _in_namespace() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-rm", "true"]).returncode == 0


@pytest.mark.skipif(not _in_namespace(), reason="needs unshare (a user and mount namespace) for a read-only mount")
async def test_a_read_only_main_store_fails_at_once_with_one_line(venue, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    Store(ro / "main.duckdb").close()
    script = f"mount --bind -o ro {ro} {ro} && exec {WORKBENCH} run --mode testnet --venue {venue.exchange.url} " \
             f"--session-id ro --store {ro}/main.duckdb"  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, env=env_for(venue.exchange),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "not writable" in done.stderr and "Read-only" in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 20
    assert not (tmp_path / "runs/single/ro.duckdb").exists() and session_orders(venue.exchange, "ro") == []


async def test_a_killed_run_is_merged_later_then_resumed(venue, tmp_path):
    ex = venue.exchange
    run = await start_run(tmp_path, ex, "unmerged", bars=300)
    await until(lambda: len(session_orders(ex, "unmerged")) >= 2, 240, "the run trades")
    await run.kill()
    await until(lambda: not _locked(tmp_path / "runs/single/unmerged.duckdb"), 30, "the kernel dies with its runner")
    rc, out = await workbench(tmp_path, "merge", "--store", "main.duckdb")
    assert rc == 0 and "unmerged: interrupted" in out, out
    assert status(tmp_path / "main.duckdb", "unmerged") == "interrupted"
    report = await check(venue, tmp_path / "main.duckdb", "unmerged")
    assert report.orders >= 2 and not [
        p for p in report.problems if "not in the store" in p.text and "fill" not in p.text
    ]
    # every order it sent is merged (journaled before it was sent); the answers the kill cut off are
    # settled when the run resumes and reconciles:
    rc, out = await workbench(tmp_path, "merge", "--store", "main.duckdb")
    assert rc == 0 and "merged 0 run(s)" in out  # merged once
    rc, out = await (await start_run(tmp_path, ex, "unmerged", bars=5)).finish()
    assert rc == 0 and status(tmp_path / "main.duckdb", "unmerged") == "completed", out
    report = await check(venue, tmp_path / "main.duckdb", "unmerged")
    assert report.clean, report.describe()


def _locked(path: Path) -> bool:
    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException:
        return True
    return False
