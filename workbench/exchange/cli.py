"""``workbench exchange``: run the local Binance exchange until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import ConfigError
from workbench.exchange.server import Faults, Limits, LocalExchange, checked_faults

KEY_ENV, SECRET_ENV = "WORKBENCH_EXCHANGE_API_KEY", "WORKBENCH_EXCHANGE_API_SECRET"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "exchange", help="run a local Binance-compatible exchange (the default testnet venue)", allow_abbrev=False
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port, 1-65535 (0: any free port)")
    p.add_argument("--symbols", nargs="+", default=["BTC/USDT", "ETH/USDT"], help="markets to list, e.g. BTC/USDT")
    p.add_argument("--speed", type=float, default=60.0, help="market minutes replayed per wall minute (0: manual)")
    p.add_argument("--start", help="replay from this time, e.g. 2024-01-02")
    p.add_argument("--state-file", help="JSON file the account survives restarts in")
    p.add_argument("--api-key", help=f"API key (default: ${KEY_ENV}, else a new random one)")
    p.add_argument("--secret-file", help=f"file holding the API secret (default: ${SECRET_ENV}, else a new random one)")
    p.add_argument("--weight-limit", type=int, default=Limits.weight_per_minute, help="request weight per minute")
    p.add_argument("--faults", default="{}", help="faults as a JSON object, e.g. '{\"latency_ms\": 50}'")
    p.add_argument("--order-types", nargs="+", metavar="TYPE",
                   help="order types every symbol lists, e.g. LIMIT MARKET STOP_LOSS (default: Binance's own list, "
                        "which has no STOP_LOSS or TAKE_PROFIT for BTCUSDT)")  # fmt: skip
    p.add_argument("--ready-file", help="write {url, api_key, secret} here (a new file, mode 0600) once listening")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    """Check the arguments (ConfigError: one line, exit 2), then serve until SIGINT or SIGTERM."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port: give 1-65535, or 0 for any free port.")
    if not args.speed >= 0 or args.speed == float("inf"):
        raise ConfigError(f"--speed {args.speed} is not a replay speed: give a finite number >= 0.")
    if args.weight_limit < 1:
        raise ConfigError(f"--weight-limit {args.weight_limit} must be at least 1.")
    if args.start is not None:
        try:
            pd.Timestamp(args.start)
        except ValueError:
            raise ConfigError(
                f"--start {args.start!r} is not a time: give e.g. 2024-01-02 or 2024-01-02T12:00."
            ) from None
    faults = _faults(args.faults)
    try:
        exchange = LocalExchange(
            args.symbols,
            host=args.host,
            port=args.port,
            api_key=args.api_key or os.environ.get(KEY_ENV),
            secret=_secret(args.secret_file),
            speed=args.speed,
            start=args.start,
            state_file=args.state_file,
            limits=Limits(weight_per_minute=args.weight_limit),
            faults=faults,
            order_types=args.order_types,
        )
    except (ValueError, KeyError) as e:
        raise ConfigError(
            f"The exchange cannot start with these arguments: {e}. See workbench exchange --help."
        ) from None
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(exchange, args.ready_file))
    return 0


def _faults(text: str) -> Faults:
    try:
        changes: Any = json.loads(text)
    except ValueError:
        raise ConfigError(f"--faults must be a JSON object, e.g. '{{\"latency_ms\": 50}}', not {text!r}.") from None
    if not isinstance(changes, dict):
        raise ConfigError(f"--faults must be a JSON object, e.g. '{{\"latency_ms\": 50}}', not {text!r}.")
    try:
        return Faults(**checked_faults(changes))
    except ValueError as e:
        raise ConfigError(f"--faults: {e}") from None


def _secret(path: str | None) -> str | None:
    """The API secret from ``--secret-file`` or the environment (never from argv, which any
    local user can read in /proc/<pid>/cmdline)."""
    if path is None:
        return os.environ.get(SECRET_ENV)
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--secret-file {path}: cannot read it ({e.__class__.__name__}).") from None
    if not secret:
        raise ConfigError(f"--secret-file {path} is empty: put the API secret in it.")
    return secret


def write_secret_file(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` as a new file of mode 0600: a temporary file beside it (created
    by ``mkstemp``: O_EXCL, O_NOFOLLOW, 0600), then renamed over ``path``, which replaces a symlink
    there instead of following it and never reuses an existing file's mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


async def serve(exchange: LocalExchange, ready_file: str | None = None) -> None:
    try:
        await exchange.start()
    except OSError as e:
        raise ConfigError(
            f"Cannot listen on {exchange.host}:{exchange.port} ({os.strerror(e.errno or 0)}): pick another --port."
        ) from None
    try:
        symbols = ", ".join(exchange.sources)
        print(f"Local Binance exchange on {exchange.url} ({symbols}, {exchange.speed:g}x)")
        for symbol, source in exchange.sources.items():
            print(f"  {symbol}: {source}")
        print("Point a session at it with venue_url and these credentials (shown once):")
        print(f"  export BINANCE_TESTNET_API_KEY={exchange.api_key}")
        print(f"  export BINANCE_TESTNET_API_SECRET={exchange.secret}")
        print(f"Admin API: {exchange.url}/admin/{{faults,state,step,price,drop}}, signed with these credentials.")
        print("Ctrl-C stops.", flush=True)
        if ready_file:
            info = {"url": exchange.url, "api_key": exchange.api_key, "secret": exchange.secret}
            write_secret_file(ready_file, json.dumps(info))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await exchange.stop()
