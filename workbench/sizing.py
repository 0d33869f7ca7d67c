"""Sizing helpers for portfolio strategies: fractions of equity, and base units on each symbol's
filters (no I/O). Frames are wide: one column per symbol, one row per bar."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import numpy as np
import pandas as pd

from workbench.filters import SymbolRules


def equal_weight(selected: pd.DataFrame, *, gross: float = 1.0) -> pd.DataFrame:
    """``gross`` of equity split equally between the symbols ``selected`` (True) on each row; 0 for
    the others, 0 everywhere on a row that selects none."""
    chosen = selected.fillna(False).astype(bool)
    count = chosen.sum(axis=1)
    return chosen.astype(float).div(count.where(count > 0), axis=0).fillna(0.0) * gross


def volatility_target(
    closes: pd.DataFrame,
    *,
    selected: pd.DataFrame | None = None,
    target: float = 0.001,
    window: int = 60,
    gross: float = 1.0,
) -> pd.DataFrame:
    """Fractions of equity that give each (selected) symbol a volatility of ``target`` per bar: its
    fraction is ``target`` over the standard deviation of its log returns over ``window`` bars,
    all of a row scaled down together so they add up to at most ``gross``. NaN until ``window``
    bars of returns are known."""
    volatility = np.log(closes).diff().rolling(window).std()
    raw = target / volatility.where(volatility > 0)
    if selected is not None:
        raw = raw.where(selected.fillna(False).astype(bool), 0.0).where(volatility.notna())
    total = raw.sum(axis=1, min_count=1)
    scale = (gross / total).clip(upper=1.0)
    return raw.mul(scale, axis=0)


def at_risk(equity: float, fraction: float, entry: float, stop: float, rules: SymbolRules) -> Decimal:
    """Base units so that a fall from ``entry`` to ``stop`` loses ``fraction`` of ``equity`` (fixed
    fractional sizing), at most what ``equity`` buys at ``entry``, rounded down to the step size."""
    if not 0 < stop < entry:
        raise ValueError(f"at_risk needs 0 < stop < entry, got stop={stop} and entry={entry}.")
    amount = min(equity * fraction / (entry - stop), equity / entry)
    return rules.round_amount(Decimal(str(amount)))


def to_units(
    fractions: pd.DataFrame, equity: float, closes: pd.DataFrame, rules: Mapping[str, SymbolRules]
) -> pd.DataFrame:
    """Fractions of ``equity`` as base units at each bar's close, rounded down to each symbol's
    step size (as the session sizes a ``target_fraction``); NaN stays NaN."""
    units = fractions * equity / closes
    for symbol in units.columns:
        step = float(rules[symbol].step_size())
        column = units[symbol]
        decimals = max(0, -Decimal(str(step)).normalize().as_tuple().exponent)  # type: ignore[operator]
        units[symbol] = (np.floor(column / step + 1e-9) * step).round(decimals) if step else column
    return units
