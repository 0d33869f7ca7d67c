"""`workbench` as a user runs it, a subprocess, trading a local exchange in the test's event loop:
shared by the tests of runs and the chaos suite's CLI path."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from workbench.exchange import LocalExchange
from workbench.model import Order

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
SYMBOLS = ("BTC/USDT",)
STRATEGY = {"fast": 2, "slow": 3, "size": 0.001}  # crosses every few bars: orders often


async def open_venue(folder: Path, speed: float = 1200, port: int = 0, keys: tuple[str, str] | None = None):
    """A local exchange replaying at ``speed`` whose account survives restarts (``folder/venue.json``)."""
    key, secret = keys or (None, None)
    exchange = LocalExchange(
        SYMBOLS, port=port, speed=speed, state_file=folder / "venue.json", api_key=key, secret=secret
    )
    return await exchange.start()


async def restart_venue(exchange: LocalExchange, folder: Path) -> LocalExchange:
    """Stop the exchange and start it again on the same port, keys and account (a venue restart)."""
    await exchange.stop()
    return await open_venue(folder, exchange.speed, exchange.port, (exchange.api_key, exchange.secret))


def env_for(exchange: LocalExchange) -> dict[str, str]:
    return {**os.environ, "BINANCE_TESTNET_API_KEY": exchange.api_key, "BINANCE_TESTNET_API_SECRET": exchange.secret}


@dataclass
class Run:
    """One `workbench run` process."""

    process: asyncio.subprocess.Process
    log: Path

    async def finish(self, timeout: float = 300) -> tuple[int, str]:
        """Its exit status and what it printed (stdout and stderr), once it ends."""
        rc = await asyncio.wait_for(self.process.wait(), timeout)
        return rc, self.log.read_text(errors="replace")

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()


async def start_run(
    folder: Path,
    exchange: LocalExchange,
    session_id: str,
    *,
    bars: int = 120,
    store: str = "main.duckdb",
    extra: tuple[str, ...] = (),
) -> Run:
    """``workbench run`` in testnet mode against ``exchange`` (in ``folder``: its runs and store)."""
    log = folder / f"{session_id}.{len(list(folder.glob(f'{session_id}.*.log')))}.log"
    args = ("run", "--mode", "testnet", "--venue", exchange.url, "--bars", str(bars), "--session-id", session_id,
            "--store", store, "--strategy-params", json.dumps(STRATEGY), "--timeout", "600", *extra)  # fmt: skip
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            WORKBENCH, *args, cwd=folder, env=env_for(exchange), stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    return Run(process, log)


async def workbench(
    folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Run one ``workbench`` command to its end: exit status and output."""
    process = await asyncio.create_subprocess_exec(
        WORKBENCH, *args, cwd=folder, env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(errors="replace")


def session_orders(exchange: LocalExchange, session_id: str) -> list[Order]:
    """The orders of a session on the exchange, by its client order ids' prefix."""
    prefix = f"{session_id[:24]}-"
    return [o for o in exchange.venue.engine.orders.values() if o.client_order_id.startswith(prefix)]
