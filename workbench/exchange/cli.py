"""``workbench exchange``: run the local Binance exchange until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from contextlib import suppress
from pathlib import Path

from workbench.exchange.server import Faults, Limits, LocalExchange

KEY_ENV, SECRET_ENV = "WORKBENCH_EXCHANGE_API_KEY", "WORKBENCH_EXCHANGE_API_SECRET"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("exchange", help="run a local Binance-compatible exchange (the default testnet venue)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--symbols", nargs="+", default=["BTC/USDT", "ETH/USDT"])
    p.add_argument("--speed", type=float, default=60.0, help="market minutes replayed per wall minute (0: manual)")
    p.add_argument("--start", help="replay from this time, e.g. 2024-01-02")
    p.add_argument("--state-file", help="JSON file the account survives restarts in")
    p.add_argument("--api-key", help=f"API key (default: ${KEY_ENV}, else a new random one)")
    p.add_argument("--secret", help=f"API secret (default: ${SECRET_ENV}, else a new random one)")
    p.add_argument("--weight-limit", type=int, default=Limits.weight_per_minute, help="request weight per minute")
    p.add_argument("--faults", default="{}", help="faults as JSON, e.g. '{\"latency_ms\": 50}'")
    p.add_argument("--ready-file", help="write {url, api_key, secret} here (mode 0600) once listening")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


async def serve(args: argparse.Namespace) -> None:
    exchange = LocalExchange(
        args.symbols,
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get(KEY_ENV),
        secret=args.secret or os.environ.get(SECRET_ENV),
        speed=args.speed,
        start=args.start,
        state_file=args.state_file,
        limits=Limits(weight_per_minute=args.weight_limit),
        faults=Faults(**json.loads(args.faults)),
    )
    async with exchange:
        print(f"Local Binance exchange on {exchange.url} ({', '.join(args.symbols)}, {args.speed:g}x)")
        for symbol, source in exchange.sources.items():
            print(f"  {symbol}: {source}")
        print("Point a session at it with venue_url and these credentials (shown once):")
        print(f"  export BINANCE_TESTNET_API_KEY={exchange.api_key}")
        print(f"  export BINANCE_TESTNET_API_SECRET={exchange.secret}")
        print(f"Faults: POST {exchange.url}/admin/faults  ·  state: GET {exchange.url}/admin/state  ·  Ctrl-C stops.")
        if args.ready_file:
            path = Path(args.ready_file)
            path.touch(mode=0o600)
            path.write_text(json.dumps({"url": exchange.url, "api_key": exchange.api_key, "secret": exchange.secret}))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
