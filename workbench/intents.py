"""Order intents: what a strategy asks for, per bar, beyond a target position (no I/O).

A strategy returns either a Series of target positions in base units (the simple case) or a
DataFrame on the bars' index with these columns (NaN or missing means "none"):

=================== ==========================================================================
``target``          the position to hold, in base units (exactly one of the three sizes)
``target_quote``    ... or its value in quote at the price of the bar the intent changes on
``target_fraction`` ... or a fraction (0..1) of the account's equity in quote, at that price
``limit_price``     enter (and rebalance) with a LIMIT order at this price, not MARKET
``time_in_force``   of that limit order: ``GTC`` (default), ``IOC`` or ``FOK``
``cancel_after``    cancel that limit order if it is still open this many bars later
``stop_loss``       protect the position: sell it all when the price falls to this
``take_profit``     ... and/or sell it at this price; with ``stop_loss``: one OCO on the exchange
``trailing_delta``  ... or a trailing stop: sell when the price falls this many BIPS (100 = 1%)
                    from its highest since the stop was placed (Binance's ``trailingDelta``)
=================== ==========================================================================

A row whose size is NaN asks nothing (as a NaN target does): the last intent holds. The session
acts on a row whose size differs from the last one it acted on, with that row's order type, limit
price and exits (so ``close * 0.98`` on every row means 2% below the entry bar's close); it keeps
the protective exits in step with the position: placed once the entry fills, re-placed when the
position changes, canceled when flat. Exits only ever
sell what is held (spot: long only, reduce-only). :func:`intent_frame` checks a strategy's answer
and raises :class:`~workbench.errors.ConfigError` naming the column and the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.errors import ConfigError

SIZES = ("target", "target_quote", "target_fraction")
PRICES = ("limit_price", "stop_loss", "take_profit")
COLUMNS = (*SIZES, "limit_price", "time_in_force", "cancel_after", "stop_loss", "take_profit", "trailing_delta")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")


@dataclass(frozen=True)
class Entry:
    """How to reach a position: its size (``kind`` is one of :data:`SIZES`) and the order type."""

    kind: str
    value: float
    limit_price: float | None = None
    time_in_force: str = "GTC"
    cancel_after: int | None = None


@dataclass(frozen=True)
class Exits:
    """The protective exits of a position; all ``None`` means unprotected."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_delta: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.stop_loss, self.take_profit, self.trailing_delta))


@dataclass(frozen=True)
class Intent:
    """One bar's intent: the entry and the exits."""

    entry: Entry
    exits: Exits = Exits()

    @property
    def entry_key(self) -> tuple[str, float]:
        """What makes a new entry: the size asked for (its order type and price come with it)."""
        return self.entry.kind, self.entry.value


def is_intents(answer: object) -> bool:
    """Whether a strategy's answer is an intent frame (a DataFrame) rather than plain targets."""
    return isinstance(answer, pd.DataFrame)


def intent_frame(answer: object, index: pd.Index | None = None) -> pd.DataFrame:
    """A strategy's answer checked and normalised: a Series of targets becomes a one-column
    ``target`` frame; a DataFrame must use :data:`COLUMNS` only, exactly one size column, and be
    on ``index`` (the bars') if given. :class:`ConfigError` says which column breaks which rule."""
    if isinstance(answer, pd.Series):
        answer = answer.to_frame("target")
    if not isinstance(answer, pd.DataFrame):
        raise ConfigError(
            f"A strategy returns a Series of targets or a DataFrame of intents, not a {type(answer).__name__}."
        )
    unknown = [c for c in answer.columns if c not in COLUMNS]
    if unknown:
        raise ConfigError(f"Unknown intent column(s) {unknown}; the columns are {list(COLUMNS)}.")
    sizes = [c for c in SIZES if c in answer]
    if len(sizes) != 1:
        raise ConfigError(f"An intent frame needs exactly one of the columns {list(SIZES)}, it has {sizes or 'none'}.")
    if index is not None and not answer.index.equals(index):
        raise ConfigError("The strategy's intents are not on the bars' index: return one row per bar.")
    columns = {c: _time_in_force(answer[c]) if c == "time_in_force" else _numbers(answer[c], c) for c in answer.columns}
    _check_ranges(columns, sizes[0], answer.index)
    return pd.DataFrame(columns, index=answer.index)


def iter_intents(frame: pd.DataFrame) -> Iterator[Intent | None]:
    """Each row of a checked intent frame as an :class:`Intent` (``None`` where its size is NaN)."""
    n = len(frame)
    kind = next(c for c in SIZES if c in frame)
    columns = {c: (frame[c].tolist() if c in frame else [None] * n) for c in COLUMNS if c != kind}
    sizes = frame[kind].tolist()
    for i in range(n):
        size = sizes[i]
        if size != size:  # NaN
            yield None
            continue
        limit, tif, after = (_none(columns[c][i]) for c in ("limit_price", "time_in_force", "cancel_after"))
        entry = Entry(kind, float(size), limit, tif or "GTC", None if after is None else int(after))
        stop, profit, trail = (_none(columns[c][i]) for c in ("stop_loss", "take_profit", "trailing_delta"))
        yield Intent(entry, Exits(stop, profit, None if trail is None else int(trail)))


def _none(value: object) -> object:
    """``None`` for a missing value (NaN, None), else the value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _numbers(column: pd.Series, name: str) -> np.ndarray:
    try:
        values = np.asarray(column, dtype=float)
    except (ValueError, TypeError):
        raise ConfigError(f"Intent column {name!r} must hold numbers (NaN for none).") from None
    if np.isinf(values).any():
        raise ConfigError(f"Intent column {name!r} holds an infinite value at {column.index[np.isinf(values)][0]}.")
    return values


def _time_in_force(column: pd.Series) -> np.ndarray:
    values = np.array([v.upper() if isinstance(v, str) else None for v in column], dtype=object)
    bad = [
        (v, i)
        for v, i in zip(column, column.index, strict=True)
        if v is not None and v == v and (not isinstance(v, str) or v.upper() not in TIME_IN_FORCE)
    ]
    if bad:
        raise ConfigError(f"time_in_force {bad[0][0]!r} at {bad[0][1]} is not one of {list(TIME_IN_FORCE)}.")
    return values


def _check_ranges(frame: dict[str, np.ndarray], size: str, index: pd.Index) -> None:
    def refuse(mask: np.ndarray, what: str) -> None:
        if mask.any():
            raise ConfigError(f"{what}: first at {index[mask][0]}.")

    values = frame[size]
    high = 1 if size == "target_fraction" else math.inf
    refuse((values < 0) | (values > high), f"{size} must be between 0 and {high} (spot positions are long)")
    for name in PRICES:
        if name in frame:
            refuse(frame[name] <= 0, f"{name} must be a price above zero")
    for name, unit in (("cancel_after", "bars"), ("trailing_delta", "BIPS")):
        if name in frame:
            v = frame[name]
            refuse((v < 1) | (v != np.round(v)) & ~np.isnan(v), f"{name} must be a whole number of {unit} >= 1")
    stops = [frame[c] for c in ("stop_loss", "take_profit") if c in frame]
    if "trailing_delta" in frame and stops:
        both = ~np.isnan(frame["trailing_delta"]) & np.any([~np.isnan(c) for c in stops], axis=0)
        refuse(both, "trailing_delta replaces stop_loss and take_profit: give it alone on a row")
    if len(stops) == 2:
        refuse(stops[0] >= stops[1], "stop_loss must be below take_profit")
