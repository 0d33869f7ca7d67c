"""Strategies: functions of a bars DataFrame that return target positions, the same in every mode.

A strategy takes bars (a DataFrame indexed by bar open time with ``open``, ``high``, ``low``,
``close`` and ``volume``) and returns a Series of target positions in base units on the same
index. It must only look backwards: the target at a bar may depend on that bar and earlier
ones. ``warmup`` says how many bars it needs before its first meaningful target.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from workbench.errors import ConfigError


@runtime_checkable
class Strategy(Protocol):
    warmup: int

    def __call__(self, bars: pd.DataFrame) -> pd.Series: ...


@dataclass(frozen=True)
class SmaCross:
    """Long ``size`` base units while the fast SMA of the close is above the slow one, else flat."""

    fast: int = 10
    slow: int = 50
    size: float = 0.001

    def __post_init__(self) -> None:
        whole = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in (self.fast, self.slow))
        if not whole or not 0 < self.fast < self.slow:
            raise ConfigError(f"SmaCross needs whole numbers 0 < fast < slow, got {self.fast!r} and {self.slow!r}.")
        if not isinstance(self.size, numbers.Real) or not 0 < self.size < math.inf:
            raise ConfigError(f"SmaCross needs a finite size > 0, got {self.size!r}.")

    @property
    def warmup(self) -> int:
        return self.slow

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        close = bars["close"]
        fast = close.rolling(self.fast).mean()
        slow = close.rolling(self.slow).mean()
        return (fast > slow).astype(float) * self.size


STRATEGIES: dict[str, Callable[..., Strategy]] = {"sma_cross": SmaCross}


def make_strategy(name: str, **params: Any) -> Strategy:
    """The strategy registered as ``name`` built with ``params``; :class:`ConfigError` if unknown."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"Unknown strategy {name!r}; known: {sorted(STRATEGIES)}.") from None
    try:
        return factory(**params)
    except TypeError as e:
        raise ConfigError(f"Bad parameters for strategy {name!r}: {e}.") from None


def describe(strategy: Strategy) -> dict[str, Any]:
    """The strategy's name and parameters, for the sessions table."""
    params = asdict(strategy) if hasattr(strategy, "__dataclass_fields__") else {}  # type: ignore[call-overload]
    return {"name": type(strategy).__name__, **params}
