"""Market data: the bundled real Binance klines and the symbol rules, as pandas and DuckDB.

Klines live under ``data/binance/spot/<interval>/<SYMBOL>-<interval>.csv[.gz]`` in Binance's
kline column layout (see ``data/README.md``). ``WORKBENCH_DATA`` overrides the folder. Where no
real klines are present, ``load_klines(..., allow_sample=True)`` gives a deterministic synthetic
sample instead, labelled as such in ``frame.attrs["source"]``, so examples still run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.filters import SymbolRules

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
)
_EXCHANGE_INFO = Path(__file__).with_name("exchange_info.json")
log = logging.getLogger(__name__)


def data_dir() -> Path:
    """The folder holding ``binance/``: ``$WORKBENCH_DATA`` or the repository's ``data/``."""
    return Path(os.environ.get("WORKBENCH_DATA") or Path(__file__).resolve().parent.parent / "data")


def kline_path(symbol: str, interval: str = "1m") -> Path:
    folder = data_dir() / "binance" / "spot" / interval
    name = symbol.replace("/", "")
    for path in (folder / f"{name}-{interval}.csv", folder / f"{name}-{interval}.csv.gz"):
        if path.exists():
            return path
    have = ", ".join(available_symbols(interval)) or "none"
    raise ConfigError(f"No {interval} klines for {symbol} under {folder}; bundled symbols: {have}.")


def available_symbols(interval: str = "1m") -> list[str]:
    """Symbols with bundled klines, as ``"BTC/USDT"``."""
    folder = data_dir() / "binance" / "spot" / interval
    names = sorted(p.name.split("-")[0] for p in folder.glob(f"*-{interval}.csv*"))
    rules = load_rules()
    by_id = {r.id: r.symbol for r in rules.values()}
    return [by_id.get(n, n) for n in names]


def load_klines(
    symbol: str = "BTC/USDT",
    interval: str = "1m",
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    limit: int | None = None,
    allow_sample: bool = False,
) -> pd.DataFrame:
    """Bundled klines of ``symbol`` as a DataFrame indexed by UTC open time, with ``open``,
    ``high``, ``low``, ``close``, ``volume`` (floats) and Binance's other kline columns.
    ``start``/``end`` bound the open time (inclusive); ``limit`` keeps the first rows.

    Raises :class:`ConfigError` when no klines of ``symbol`` are bundled, unless ``allow_sample``:
    then a synthetic sample is returned, with ``attrs["source"]`` saying so."""
    try:
        path = kline_path(symbol, interval)
    except ConfigError:
        if not allow_sample or interval != "1m":
            raise
        log.warning("No real klines of %s are bundled: using a synthetic sample (see data/README.md).", symbol)
        frame = sample_klines(symbol)
    else:
        frame = pd.read_csv(path)
        frame.attrs["source"] = f"Binance spot klines, {path.name}"
    frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms", utc=True).rename("open_time")
    frame["close_time"] = pd.to_datetime(frame["close_time"], unit="ms", utc=True)
    if start is not None:
        frame = frame[frame.index >= _utc(start)]
    if end is not None:
        frame = frame[frame.index <= _utc(end)]
    return frame.head(limit) if limit is not None else frame


def _utc(when: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp


SAMPLE_START = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0, "BNB/USDT": 310.0, "SOL/USDT": 100.0, "XRP/USDT": 0.6}


def sample_klines(symbol: str, bars: int = 20_160, seed: int = 20240101) -> pd.DataFrame:
    """A SYNTHETIC two-week 1m kline sample in Binance's layout: a seeded random walk with
    intrabar ranges and volume. Not market data; for examples and tests where none is bundled."""
    rules = load_rules([symbol])[symbol]
    rng = np.random.default_rng(seed + sum(map(ord, symbol)))
    opened = pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000 + 60_000 * np.arange(bars)
    close = SAMPLE_START.get(symbol, 100.0) * np.exp(np.cumsum(rng.normal(0, 0.0008, bars)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wiggle = np.abs(rng.normal(0, 0.0004, (2, bars)))
    tick = float(rules.tick_size) or 1e-8
    rounded = {
        k: np.round(v / tick) * tick
        for k, v in {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wiggle[0]),
            "low": np.minimum(open_, close) * (1 - wiggle[1]),
            "close": close,
        }.items()
    }
    volume = rng.gamma(2.0, 5.0, bars)
    frame = pd.DataFrame(
        {
            "open_time": opened,
            **rounded,
            "volume": volume,
            "close_time": opened + 59_999,
            "quote_volume": volume * close,
            "trades": rng.integers(50, 500, bars),
            "taker_buy_base_volume": volume / 2,
            "taker_buy_quote_volume": volume * close / 2,
        }
    )
    frame.attrs["source"] = f"SYNTHETIC sample of {symbol} (seeded random walk), not market data"
    return frame


def klines_to_duckdb(con: duckdb.DuckDBPyConnection, symbols: Iterable[str], interval: str = "1m") -> int:
    """Load the bundled klines of ``symbols`` into the ``klines`` table of ``con``; returns rows."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS klines (symbol VARCHAR, interval VARCHAR, open_time TIMESTAMPTZ, open DOUBLE, "
        "high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, PRIMARY KEY (symbol, interval, open_time))"
    )
    total = 0
    for symbol in symbols:
        bars = load_klines(symbol, interval)[["open", "high", "low", "close", "volume"]].reset_index()
        bars.insert(0, "interval", interval)
        bars.insert(0, "symbol", symbol)
        con.register("bars_in", bars)
        con.execute("INSERT INTO klines SELECT * FROM bars_in ON CONFLICT DO NOTHING")
        con.unregister("bars_in")
        total += len(bars)
    return total


def load_rules(symbols: Iterable[str] | None = None) -> dict[str, SymbolRules]:
    """Binance's trading rules for the bundled symbols (all, or those named), keyed by ``"BTC/USDT"``."""
    entries = json.loads(_EXCHANGE_INFO.read_text())["symbols"]
    rules = {r.symbol: r for r in map(SymbolRules.from_exchange_info, entries)}
    if symbols is None:
        return rules
    missing = sorted(set(symbols) - set(rules))
    if missing:
        raise ConfigError(f"No trading rules for {missing}; known symbols: {sorted(rules)}.")
    return {s: rules[s] for s in symbols}
