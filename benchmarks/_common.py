"""Shared by the order benchmarks: the local exchange in its own process, latency statistics.

The exchange runs in a child process (``multiprocessing``, spawn) so that the client's event loop
and the server's do not share a CPU, as on a real venue. It is started with rate limits that never
bite: ``workbench exchange`` has a flag for the request weight but none for the order-count
limits (50 orders per 10 s by default), so the child runs :class:`LocalExchange` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYMBOL = "BTC/USDT"
AMOUNT = 0.001  # BTC per order; buys and sells alternate so balances never run out
BALANCES = {"USDT": "10000000", "BTC": "100"}


@dataclass(frozen=True)
class Venue:
    """Where the local exchange listens and the credentials it accepts."""

    url: str
    api_key: str
    secret: str


def _serve(ready: str, latency_ms: float, symbols: Sequence[str], speed: float, balances: dict | None) -> None:
    """The child process: a local exchange without rate limits until SIGTERM."""

    async def main() -> None:
        from workbench.exchange import Faults, Limits, LocalExchange

        unlimited = Limits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9)
        faults = Faults(latency_ms=latency_ms)
        extra = {"balances": balances} if balances else {}
        async with LocalExchange(tuple(symbols), speed=speed, limits=unlimited, faults=faults, **extra) as ex:
            info = json.dumps({"url": ex.url, "api_key": ex.api_key, "secret": ex.secret})
            partial = Path(ready).with_suffix(".tmp")
            partial.write_text(info)
            os.chmod(partial, 0o600)
            partial.replace(ready)  # the parent never reads a half-written file
            await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def local_exchange(
    latency_ms: float = 0.0,
    timeout: float = 60.0,
    *,
    symbols: Sequence[str] = (SYMBOL,),
    speed: float = 0.0,
    balances: dict | None = BALANCES,
) -> Iterator[Venue]:
    """A local exchange in a child process for the duration of the ``with`` block; ``latency_ms``
    is added to every REST answer (a venue farther away than loopback), ``speed`` replays its
    market (0: a still market), ``balances`` None: the exchange's default account."""
    with tempfile.TemporaryDirectory() as folder:
        ready = Path(folder) / "ready.json"
        args = (str(ready), latency_ms, tuple(symbols), speed, balances)
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=args, daemon=True)
        server.start()
        try:
            deadline = time.monotonic() + timeout
            while not ready.exists():
                if not server.is_alive():
                    raise SystemExit(f"the local exchange exited with code {server.exitcode} before it was ready")
                if time.monotonic() > deadline:
                    raise SystemExit(f"the local exchange was not ready within {timeout:.0f}s")
                time.sleep(0.05)
            yield Venue(**json.loads(ready.read_text()))
        finally:
            server.terminate()  # SIGTERM
            server.join(10)
            if server.is_alive():
                server.kill()
                server.join()


def side(i: int) -> str:
    """Buy on even, sell on odd order numbers: the position stays flat."""
    return "buy" if i % 2 == 0 else "sell"


@dataclass(frozen=True)
class Stats:
    """Orders, wall time and per-order latencies (seconds) of one measurement."""

    latencies: Sequence[float]
    wall: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def line(self, name: str, width: int = 26) -> str:
        return (
            f"{name:<{width}} {len(self.latencies):6d} orders  {self.rate:8,.0f} orders/s  "
            f"p50 {self.p50 * 1e3:7.2f} ms  p99 {self.p99 * 1e3:7.2f} ms"
        )
