"""The ``workbench`` command line.

Every command checks what it was given before it starts work: a mistake is one line on stderr
(``workbench: ...``), exit status 2, and nothing created or changed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from workbench.checks import command_line, positive_int, positive_number, timestamp
from workbench.config import DEFAULT_STORE, load_config
from workbench.errors import ConfigError, WorkbenchError

# The module that adds each command (None: this one). Running one of these commands imports only its
# own module, since each module loads pandas, DuckDB or aiohttp; the others' commands are placeholders.
_COMMANDS = {
    "paper": None,
    "kill-switch": None,
    "data": "download",
    "run": "runs",
    "sweep": "runs",
    "halt-sweep": "runs",
    "merge": "runs",
    "report": "report",
    "explain": "report",
}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, ``workbench: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"workbench: {' '.join(message.split())} (see {self.prog} --help)\n")


def _paper(args: argparse.Namespace) -> int:
    import asyncio

    import pandas as pd

    from workbench import runs
    from workbench.data import load_klines
    from workbench.session import TradingSession
    from workbench.strategy import make_strategy

    overrides = {"mode": "paper", "store_path": args.store} if args.store else {"mode": "paper"}
    if args.symbols:
        overrides["symbols"] = args.symbols
    config = load_config(args.config, **overrides)
    strategy = make_strategy("sma_cross", fast=args.fast, slow=args.slow, size=args.size)
    bars = {s: load_klines(s, start=args.start, limit=args.bars, allow_sample=True) for s in config.symbols}
    empty = [s for s, b in bars.items() if b.empty]
    if empty:
        raise ConfigError(f"No bars of {empty} from {args.start}: give an earlier --start.")
    session = TradingSession.from_config(config, strategy=strategy)
    summary = asyncio.run(session.run(bars, progress=not args.quiet))
    session.store.close()
    first = min(b.index[0] for b in bars.values())
    last = max(b.index[-1] for b in bars.values())
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"Paper session {session.session_id}: {sum(len(b) for b in bars.values())} bars, {first} .. {last}")
        print("Data: " + "; ".join(b.attrs.get("source", "klines") for b in bars.values()))
        print("\n".join(runs.summary_lines(summary.reset_index(), session.dropped())))
    print(f"Orders and fills are in {config.store_path} (session_id = '{session.session_id}').")
    return 0


def _kill_switch(args: argparse.Namespace) -> int:
    store_path = Path(args.store or DEFAULT_STORE)
    if not store_path.is_file():
        raise ConfigError(f"The store {store_path} does not exist: give the --store your sessions trade in.")
    from workbench.killswitch import KillSwitch, flag_path, trip_flag
    from workbench.store import Store

    if args.action == "trip":
        trip_flag(store_path, args.reason, "cli")
        print(f"Kill switch tripped for every session on {store_path} ({flag_path(store_path)}).")
        return 0
    with Store(store_path) as store:
        switch = KillSwitch(store)
        if args.action == "clear":
            switch.clear("cli")
            print(f"Kill switch cleared on {store_path}.")
        else:
            print(f"Kill switch on {store_path}: {'TRIPPED (' + switch.reason + ')' if switch.tripped else 'clear'}")
    return 0


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. ``command``: the first argument, when known; if it names a command, the
    modules of the others (pandas, DuckDB, aiohttp) are not loaded."""
    p = Parser(prog="workbench", description="Research-to-execution workbench for Binance spot.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="see workbench COMMAND --help")

    paper = sub.add_parser("paper", help="run the SMA-cross strategy over the bundled klines in paper mode")
    paper.add_argument("--config", help="TOML config file")
    paper.add_argument("--symbols", nargs="+", help="symbols, e.g. BTC/USDT ETH/USDT")
    paper.add_argument("--store", help=f"DuckDB file (default {DEFAULT_STORE})")
    paper.add_argument("--start", type=command_line(timestamp), help="first bar's open time, e.g. 2024-01-01")
    paper.add_argument("--bars", type=command_line(positive_int, int), help="how many bars per symbol (default: all)")
    paper.add_argument("--fast", type=command_line(positive_int, int), default=10, help="fast SMA window in bars")
    paper.add_argument("--slow", type=command_line(positive_int, int), default=50, help="slow SMA window in bars")
    size = command_line(positive_number, float)
    paper.add_argument("--size", type=size, default=0.001, help="position size in base units")
    paper.add_argument("--quiet", action="store_true", help="no progress bar")
    paper.set_defaults(func=_paper)

    kill = sub.add_parser("kill-switch", help="trip, clear or show the kill switch of a store")
    kill.add_argument("action", choices=["status", "trip", "clear"], help="show, trip or clear the switch")
    kill.add_argument("--store", help=f"DuckDB file (default {DEFAULT_STORE})")
    kill.add_argument("--reason", default="tripped from the command line", help="why, for the audit log")
    kill.set_defaults(func=_kill_switch)
    known = command in _COMMANDS
    for module in ("download", "runs", "report"):
        if known and _COMMANDS[command] != module:
            for name in (c for c, m in _COMMANDS.items() if m == module):
                sub.add_parser(name)  # a placeholder: another command runs
        else:
            importlib.import_module(f"workbench.{module}").register(sub)
    if command in sub.choices:
        sub.add_parser("exchange")  # a placeholder: another command runs
    else:
        from workbench.exchange import cli as exchange_cli

        exchange_cli.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv``; returns its exit status (2: a mistake, told on one line of stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser(argv[0] if argv else None).parse_args(argv)
    except SystemExit as e:  # a usage error or --help, already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except WorkbenchError as e:
        print(f"workbench: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: say which, without a traceback
        print(f"workbench: {e.strerror or e}{f': {e.filename}' if e.filename else ''}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
