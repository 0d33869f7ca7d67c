"""Strategies: functions of a bars DataFrame that return target positions, the same in every mode.

A strategy takes bars (a DataFrame indexed by bar open time with ``open``, ``high``, ``low``,
``close`` and ``volume``) and returns a Series of target positions in base units on the same
index. It must only look backwards: the target at a bar may depend on that bar and earlier
ones. ``warmup`` says how many bars it needs before its first meaningful target. ``history``
(optional) says how many of the latest bars it needs to give the same target as on all of them: a
live session computes it over that many (else over every bar of the session, as a replay does; see
:meth:`~workbench.session.TradingSession.on_bar`).

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
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
    """Call ``strategy`` once on synthetic bars; :class:`ConfigError` if it raises or answers off their index."""
    if not callable(strategy):
        raise ConfigError(f"Strategy {spec} built a {type(strategy).__name__}, which cannot be called on bars.")
    bars = probe_bars(max(PROBE_BARS, 3 * int(getattr(strategy, "warmup", 0) or 0)))
    try:
        answer = strategy(bars)
    except Exception as e:  # noqa: BLE001 - a user's code: say what it raised, in one line
        raise ConfigError(
            f"Strategy {spec} raised on a probe over {len(bars)} synthetic bars: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(answer, pd.Series | pd.DataFrame) or not answer.index.equals(bars.index):
        raise ConfigError(
            f"Strategy {spec} must return a Series (or DataFrame) on the bars' index; "
            f"it returned a {type(answer).__name__} of length {len(answer) if hasattr(answer, '__len__') else '?'}."
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
