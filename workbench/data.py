"""Market data: Binance spot klines from the catalog, the symbol rules, and a labelled synthetic sample.

:func:`load_klines` reads every :class:`~workbench.catalog.Catalog` that holds the symbol, as one
series: the repository's ``data/binance`` (the bundled real slice, plus what ``workbench data
download`` adds) and, when it is there, the full year in ``<repo>/../shared/data/binance``
(``$WORKBENCH_SHARED_DATA`` names another folder; set it empty to leave it out). ``$WORKBENCH_DATA``
replaces both with one data folder. The synthetic sample (:func:`sample_klines`) is only returned
where asked for with ``allow_sample=True`` and no real klines exist, labelled in ``attrs["source"]``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from workbench.catalog import INTERVAL_MS, KLINE_COLUMNS, Catalog
from workbench.errors import ConfigError
from workbench.filters import SymbolRules

__all__ = ["KLINE_COLUMNS", "Catalog", "catalogs", "find_gaps", "load_klines", "load_rules", "sample_klines"]

_EXCHANGE_INFO = Path(__file__).with_name("exchange_info.json")
_REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def data_dir() -> Path:
    """The data folder holding ``binance/``: ``$WORKBENCH_DATA`` or the repository's ``data/``."""
    return Path(os.environ.get("WORKBENCH_DATA") or _REPO / "data")


def shared_dir() -> Path | None:
    """The shared full year, if present: ``$WORKBENCH_SHARED_DATA`` (empty: none), else the nearest
    ``shared/data/binance`` beside the repository (``<repo>/../shared``) or beside one of its parents."""
    if os.environ.get("WORKBENCH_DATA"):
        return None
    named = os.environ.get("WORKBENCH_SHARED_DATA")
    if named is not None:
        return Path(named) if named and Path(named).is_dir() else None
    beside = (parent / "shared" / "data" / "binance" for parent in _REPO.parents)  # a clone or a worktree of one
    return next((folder for folder in beside if folder.is_dir()), None)


def catalogs(folder: str | Path | None = None) -> list[Catalog]:
    """The catalogs :func:`load_klines` reads, in order: the data folder's, then the shared year's;
    or only ``folder``'s (a data folder holding ``binance/``)."""
    if folder is not None:
        return [Catalog(Path(folder) / "binance")]
    shared = shared_dir()
    return [Catalog(data_dir() / "binance"), *([Catalog(shared)] if shared else [])]


def symbol_id(symbol: str) -> str:
    """``"BTC/USDT"`` or ``"btcusdt"`` as Binance's id ``"BTCUSDT"``."""
    return symbol.replace("/", "").upper()


def available_symbols(interval: str = "1m", folder: str | Path | None = None) -> list[str]:
    """Symbols with real klines in the catalogs, as ``"BTC/USDT"`` where the rules know them."""
    by_id = {r.id: r.symbol for r in load_rules().values()}
    return [by_id.get(n, n) for n in sorted({s for c in catalogs(folder) for s in c.symbols(interval)})]


def load_klines(
    symbol: str = "BTC/USDT",
    interval: str = "1m",
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    limit: int | None = None,
    allow_sample: bool = False,
    folder: str | Path | None = None,
) -> pd.DataFrame:
    """Real klines of ``symbol`` as a DataFrame indexed by UTC open time, with ``open``, ``high``,
    ``low``, ``close``, ``volume`` (floats) and Binance's other kline columns; ``attrs["source"]``
    names the data and its period. ``start``/``end`` bound the open time (inclusive); ``limit``
    keeps the first rows. Missing minutes stay missing (see :func:`find_gaps`). ``folder`` reads only
    that data folder's catalog (see :func:`catalogs`).

    Raises :class:`ConfigError` when no catalog holds klines of ``symbol``, unless ``allow_sample``:
    then a synthetic sample is returned, with ``attrs["source"]`` saying so; and when ``start``..``end``
    selects no bar."""
    found = [c for c in catalogs(folder) if c.files(symbol_id(symbol), interval)]
    if not found:
        if not allow_sample or interval != "1m":
            have = ", ".join(available_symbols(interval, folder)) or "none"
            where = ", ".join(str(c.root) for c in catalogs(folder))
            raise ConfigError(
                f"No {interval} klines for {symbol} in {where}; bundled symbols: {have}. "
                f"Fetch them with `workbench data download {symbol_id(symbol)} --start YYYY-MM-DD`."
            )
        log.warning("No real klines of %s: using a SYNTHETIC sample (see data/README.md).", symbol)
        frame = _indexed(sample_klines(symbol))
    else:
        frame = _cached(
            symbol_id(symbol),
            interval,
            tuple((p, p.stat().st_mtime_ns) for c in found for p in c.files(symbol_id(symbol), interval)),
            tuple(c.root for c in found),
        )
    opened = frame.index
    first = opened.searchsorted(_utc(start)) if start is not None else 0
    last = opened.searchsorted(_utc(end), side="right") if end is not None else len(frame)
    if limit is not None:
        last = min(last, first + limit)
    if first >= last:
        raise ConfigError(
            f"No {interval} klines of {symbol} between {start} and {end}: "
            f"there are {frame.index[0]} .. {frame.index[-1]}."
        )
    window = frame.iloc[first:last].copy()
    window.attrs["source"] = _describe(frame.attrs["source"], window)
    return window


@functools.lru_cache(maxsize=8)
def _cached(symbol: str, interval: str, files: tuple[tuple[Path, int], ...], roots: tuple[Path, ...]) -> pd.DataFrame:
    parts = [Catalog(root).read(symbol, interval) for root in roots]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        frame = frame.drop_duplicates("open_time").sort_values("open_time", ignore_index=True)
    frame = _indexed(frame)
    frame.attrs["source"] = f"Binance spot {interval} klines of {symbol} ({', '.join(map(_short, roots))})"
    return frame


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    source = frame.attrs.get("source")
    frame = frame.copy()
    frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms", utc=True).rename("open_time")
    frame["close_time"] = pd.to_datetime(frame["close_time"], unit="ms", utc=True)
    if source:
        frame.attrs["source"] = source
    return frame


def _describe(source: str, window: pd.DataFrame) -> str:
    if source.startswith("SYNTHETIC"):
        return source
    span = f"{window.index[0]:%Y-%m-%d %H:%M} .. {window.index[-1]:%Y-%m-%d %H:%M} UTC"
    return f"{source}, {span}, {len(window):,} bars"


def _short(root: Path) -> str:
    """``data/binance`` inside the repository, ``shared/data/binance`` beside it, else the full path."""
    for base in (_REPO, *_REPO.parents):
        if root.resolve().is_relative_to(base):
            return str(root.resolve().relative_to(base))
    return str(root)


def find_gaps(frame: pd.DataFrame, interval: str = "1m") -> pd.DataFrame:
    """Missing bars between consecutive klines of ``frame`` (indexed by open time): one row per gap with
    the first and last ``missing`` open time and how many bars (``bars``) are missing."""
    step = pd.Timedelta(milliseconds=INTERVAL_MS[interval])
    opened = frame.index
    holes = np.flatnonzero(np.diff(opened.as_unit("ns").asi8) > step.value)
    return pd.DataFrame(
        {
            "first_missing": opened[holes] + step,
            "last_missing": opened[holes + 1] - step,
            "bars": ((opened[holes + 1] - opened[holes]) // step - 1).astype("int64"),
        }
    )


def _utc(when: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp


SAMPLE_START = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0, "BNB/USDT": 310.0, "SOL/USDT": 100.0, "XRP/USDT": 0.6}


def sample_klines(symbol: str, bars: int = 20_160, seed: int = 20240101) -> pd.DataFrame:
    """A SYNTHETIC two-week 1m kline sample in Binance's layout: a seeded random walk with
    intrabar ranges and volume. Not market data: only for tests that need a constructed price path."""
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
