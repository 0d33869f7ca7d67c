"""Strategies: functions of a bars DataFrame that return target positions, the same in every mode.

A strategy takes bars (a DataFrame indexed by bar open time with ``open``, ``high``, ``low``,
``close`` and ``volume``) and returns a Series of target positions in base units on the same
index, or a DataFrame of order intents (limit entries, stop-loss, take-profit, trailing stops,
sizes in quote or as a fraction of equity: :mod:`workbench.intents`). It must only look
backwards: the target at a bar may depend on that bar and earlier ones. ``warmup`` says how many
bars it needs before its first meaningful target. ``history`` (optional) says how many of the
latest bars it needs to give the same target as on all of them: a live session computes it over
that many (else over every bar of the session, as a replay does; see
:meth:`~workbench.session.TradingSession.on_bar`).

A portfolio strategy has ``symbols`` (a tuple): it is called with a mapping symbol -> bars and
returns a mapping symbol -> targets or intents; its symbols share the account's budget.

Your own strategy runs in ``workbench run``/``sweep`` as ``--strategy module:Name`` or
``--strategy path/to/file.py:Name`` (see :func:`load_strategy`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import numbers
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.sizing import volatility_target


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
        return (fast > slow) * self.size


def is_portfolio(strategy: object) -> bool:
    """Whether ``strategy`` trades several symbols at once (it has a ``symbols`` tuple)."""
    symbols = getattr(strategy, "symbols", None)
    return isinstance(symbols, tuple) and len(symbols) > 0


def _check(name: str, ok: bool, what: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{name} needs {what}, got {value!r}.")


def _whole(*values: object) -> bool:
    return all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in values)


def _fraction(value: object) -> bool:
    return isinstance(value, numbers.Real) and 0 < value < 1


@dataclass(frozen=True)
class SmaBracket(SmaCross):
    """The SMA cross, each entry protected by an OCO bracket on the exchange: a stop-loss ``stop``
    below the entry bar's close and a take-profit ``profit`` above it. A bracket that fills leaves
    the position flat until the next cross up."""

    stop: float = 0.01
    profit: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            "SmaBracket",
            _fraction(self.stop) and _fraction(self.profit),
            "0 < stop, profit < 1",
            (self.stop, self.profit),
        )

    def __call__(self, bars: pd.DataFrame) -> pd.DataFrame:  # type: ignore[override]
        close = bars["close"]
        return pd.DataFrame(
            {
                "target": super().__call__(bars),
                "stop_loss": close * (1 - self.stop),
                "take_profit": close * (1 + self.profit),
            }
        )


@dataclass(frozen=True)
class RsiReversion:
    """Mean reversion: after the RSI (simple averages over ``period`` bars) falls below ``lower``,
    be long ``size`` for up to ``hold`` bars while it stays below ``upper``. Entries are LIMIT
    orders ``discount`` below the close, canceled after ``cancel_after`` bars; a trailing stop of
    ``trailing_delta`` BIPS protects the position."""

    period: int = 14
    lower: float = 30.0
    upper: float = 60.0
    hold: int = 30
    size: float = 0.001
    discount: float = 0.0005
    cancel_after: int = 5
    trailing_delta: int = 100

    def __post_init__(self) -> None:
        name = "RsiReversion"
        _check(
            name,
            _whole(self.period, self.hold, self.cancel_after, self.trailing_delta),
            "whole numbers > 0 for period, hold, cancel_after, trailing_delta",
            (self.period, self.hold, self.cancel_after, self.trailing_delta),
        )
        _check(
            name,
            isinstance(self.lower, numbers.Real)
            and isinstance(self.upper, numbers.Real)
            and 0 < self.lower < self.upper < 100,
            "0 < lower < upper < 100",
            (self.lower, self.upper),
        )
        _check(name, isinstance(self.size, numbers.Real) and 0 < self.size < math.inf, "a finite size > 0", self.size)
        _check(
            name, isinstance(self.discount, numbers.Real) and 0 <= self.discount < 1, "0 <= discount < 1", self.discount
        )

    @property
    def warmup(self) -> int:
        return self.period + self.hold + 1

    def rsi(self, close: pd.Series) -> pd.Series:
        change = close.diff()
        gain = change.clip(lower=0).rolling(self.period).mean()
        loss = (-change).clip(lower=0).rolling(self.period).mean()
        return 100 - 100 / (1 + gain / loss)

    def __call__(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"]
        rsi = self.rsi(close)
        oversold = (rsi < self.lower).astype(float).rolling(self.hold, min_periods=1).max() > 0
        return pd.DataFrame(
            {
                "target": (oversold & (rsi < self.upper)).astype(float) * self.size,
                "limit_price": close * (1 - self.discount),
                "cancel_after": float(self.cancel_after),
                "trailing_delta": float(self.trailing_delta),
            }
        )


@dataclass(frozen=True)
class MomentumRotation:
    """Every ``every`` minutes (on the clock), hold the ``top`` symbols with the best positive
    return over ``lookback`` bars, each sized to a per-bar volatility of ``vol_target`` of equity
    (:func:`~workbench.sizing.volatility_target`, at most ``gross`` of equity in all, in steps of
    ``step``); the others flat. ``budget`` (quote) sizes against that amount instead of the
    account's equity (``target_quote`` rather than ``target_fraction``): a testnet account is big."""

    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    lookback: int = 1440
    top: int = 2
    every: int = 240
    vol_window: int = 60
    vol_target: float = 0.0005
    gross: float = 0.9
    step: float = 0.1
    budget: float | None = None

    def __post_init__(self) -> None:
        name = "MomentumRotation"
        object.__setattr__(self, "symbols", tuple(self.symbols))
        _check(
            name,
            len(self.symbols) > 0 and all(isinstance(s, str) for s in self.symbols),
            "symbols like ('BTC/USDT', ...)",
            self.symbols,
        )
        _check(
            name,
            _whole(self.lookback, self.top, self.every, self.vol_window),
            "whole numbers > 0 for lookback, top, every, vol_window",
            (self.lookback, self.top, self.every, self.vol_window),
        )
        _check(
            name,
            _fraction(self.vol_target) and _fraction(self.step) and 0 < self.gross <= 1,
            "0 < vol_target, step < 1 and 0 < gross <= 1",
            (self.vol_target, self.step, self.gross),
        )
        budget = self.budget
        _check(
            name,
            budget is None or (isinstance(budget, numbers.Real) and 0 < budget < math.inf),
            "a budget > 0 (quote) or None",
            budget,
        )

    @property
    def warmup(self) -> int:
        return max(self.lookback, self.vol_window) + 1

    def __call__(self, bars: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:  # type: ignore[override]
        closes = pd.DataFrame({s: bars[s]["close"] for s in self.symbols}).astype(float)
        momentum = closes.pct_change(self.lookback, fill_method=None)
        best = momentum.rank(axis=1, ascending=False) <= self.top
        weights = volatility_target(
            closes, selected=best & (momentum > 0), target=self.vol_target, window=self.vol_window, gross=self.gross
        )
        weights = (weights / self.step + 1e-9).apply(lambda c: c // 1) * self.step
        minute = (closes.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(minutes=1)
        weights = weights.where(pd.Series(minute % self.every == 0, index=closes.index), axis=0)
        if self.budget is not None:
            return {
                s: pd.DataFrame({"target_quote": weights[s].reindex(bars[s].index) * self.budget}) for s in self.symbols
            }
        return {s: pd.DataFrame({"target_fraction": weights[s].reindex(bars[s].index)}) for s in self.symbols}


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "sma_cross": SmaCross,
    "sma_bracket": SmaBracket,
    "rsi_reversion": RsiReversion,
    "momentum_rotation": MomentumRotation,
}


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


PROBE_BARS = 500  # synthetic bars a strategy is tried on before a run starts (more if its warm-up needs)


def load_strategy(spec: str, params: dict[str, Any] | None = None, *, probe: bool = True) -> Strategy:
    """The strategy ``spec`` names, built with ``params``: a registered name (``sma_cross``),
    ``module:Name`` (an importable module, the working directory included) or
    ``path/to/file.py:Name``; ``Name`` is a class or function called with ``params``.

    ``probe`` calls it once on synthetic bars and checks it answers on their index. Raises
    :class:`ConfigError` with one line for an unknown name, a missing file or attribute, bad
    parameters, or a strategy that raises or answers wrongly on the probe."""
    params = dict(params or {})
    if ":" not in spec:
        strategy = make_strategy(spec, **params)
    else:
        where, _, name = spec.rpartition(":")
        module = _module(where, spec)
        factory = getattr(module, name, None)
        if not name.isidentifier() or not callable(factory):
            known = sorted(
                k for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__
            )
            raise ConfigError(
                f"{where} has no strategy {name!r} (give module:Name or file.py:Name); it defines {known}."
            )
        try:
            strategy = factory(**params)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's code: say what it raised, in one line
            raise ConfigError(f"Strategy {spec} refused its parameters {params}: {type(e).__name__}: {e}") from None
    if probe:
        _probe(strategy, spec)
    return strategy


def _module(where: str, spec: str) -> Any:
    """The module ``where`` names: a ``.py`` file (loaded once per path) or an importable name."""
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"Strategy file {where} does not exist (strategy {spec!r}).")
            name = f"workbench_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
            if name not in sys.modules:
                loader = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
                sys.modules[name] = module  # before it runs: dataclasses look their module up
                try:
                    loader.loader.exec_module(module)  # type: ignore[union-attr]
                except BaseException:
                    del sys.modules[name]
                    raise
            return sys.modules[name]
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # a module beside the user, as `python -m` finds it
        return importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's code: say what failed, in one line
        raise ConfigError(f"Cannot load strategy {spec}: {type(e).__name__}: {e}") from None


def _probe(strategy: Strategy, spec: str) -> None:
    """Call ``strategy`` once on synthetic bars (a portfolio: a mapping of them, one per symbol);
    :class:`ConfigError` if it raises or answers off their index."""
    if not callable(strategy):
        raise ConfigError(f"Strategy {spec} built a {type(strategy).__name__}, which cannot be called on bars.")
    n = max(PROBE_BARS, 3 * int(getattr(strategy, "warmup", 0) or 0))
    symbols = strategy.symbols if is_portfolio(strategy) else None  # type: ignore[attr-defined]
    bars = {s: probe_bars(n, seed=7 + i) for i, s in enumerate(symbols)} if symbols else probe_bars(n)
    try:
        answer = strategy(bars)  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - a user's code: say what it raised, in one line
        raise ConfigError(
            f"Strategy {spec} raised on a probe over {n} synthetic bars: {type(e).__name__}: {e}"
        ) from None
    answers = answer if symbols and isinstance(answer, Mapping) else {None: answer}
    frames = bars if symbols else {None: bars}
    for symbol, frame in frames.items():
        got = answers.get(symbol)
        if not isinstance(got, pd.Series | pd.DataFrame) or not got.index.equals(frame.index):  # type: ignore[union-attr]
            what = f"for {symbol} " if symbol else ""
            raise ConfigError(
                f"Strategy {spec} must return {what}a Series (or DataFrame) on the bars' index"
                f"{' (a portfolio: a mapping symbol -> one)' if symbols else ''}; it returned a "
                f"{type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}."
            )


def probe_bars(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` SYNTHETIC 1m bars (a seeded random walk near 100, not market data), as strategies get them."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    opened = np.concatenate([[close[0]], close[:-1]])
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="open_time")
    frame = pd.DataFrame(
        {
            "open": opened,
            "high": np.maximum(opened, close) * 1.0005,
            "low": np.minimum(opened, close) * 0.9995,
            "close": close,
            "volume": rng.gamma(2.0, 5.0, n),
        },
        index=index,
    )
    frame["close_time"] = index + pd.Timedelta(milliseconds=59_999)
    return frame
