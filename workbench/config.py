"""Configuration, trading modes and credentials. :func:`resolve_mode` is the one place that
decides which mode a session trades in; nothing builds a network object before it has run.

Mainnet needs two guards: ``mainnet = true`` in the config *and* the environment variable
``WORKBENCH_ALLOW_MAINNET=I_UNDERSTAND_REAL_MONEY``. Only past both does a :class:`MainnetGuard`
exist, the token the Binance executor demands before it reaches a production host. API keys come
from the environment only and are wrapped in :class:`Secret`, whose repr and str never show them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, final

from workbench.errors import ConfigError, MainnetGuardError

MAINNET_ENV = "WORKBENCH_ALLOW_MAINNET"
MAINNET_CONSENT = "I_UNDERSTAND_REAL_MONEY"
DEFAULT_STORE = Path("data") / "workbench.duckdb"


class TradingMode(StrEnum):
    PAPER = "paper"
    TESTNET = "testnet"
    MAINNET = "mainnet"

    @property
    def is_real(self) -> bool:
        """Whether orders in this mode go to a venue (testnet or mainnet) rather than paper."""
        return self is not TradingMode.PAPER


class Secret:
    """A credential that never shows itself: ``repr`` and ``str`` give ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secrets cannot be pickled; read them from the environment where they are used.")


@dataclass(frozen=True)
class Credentials:
    """An API key and secret for one mode, read from the environment."""

    api_key: Secret
    secret: Secret

    ENV = {
        TradingMode.TESTNET: ("BINANCE_TESTNET_API_KEY", "BINANCE_TESTNET_API_SECRET"),
        TradingMode.MAINNET: ("BINANCE_API_KEY", "BINANCE_API_SECRET"),
    }

    @classmethod
    def from_env(cls, mode: TradingMode, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """The credentials of ``mode`` from the environment, or ``None`` if they are not set."""
        environ = os.environ if environ is None else environ
        if mode not in cls.ENV:
            return None
        key_name, secret_name = cls.ENV[mode]
        key, secret = environ.get(key_name), environ.get(secret_name)
        if not key and not secret:
            return None
        if not key or not secret:
            missing = key_name if not key else secret_name
            raise ConfigError(f"{missing} is not set: set both {key_name} and {secret_name}, or neither.")
        return cls(Secret(key), Secret(secret))


@dataclass(frozen=True)
class RiskLimits:
    """Limits the shared risk checks enforce; ``None`` switches a check off."""

    max_order_notional: Decimal | None = Decimal(10_000)
    max_position: Decimal | None = None
    max_position_notional: Decimal | None = Decimal(50_000)
    max_open_orders: int | None = 50
    max_daily_loss: Decimal | None = Decimal(1_000)
    max_orders_per_minute: int | None = 60
    price_band_pct: Decimal | None = Decimal(5)
    allowed_symbols: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    """Everything a session needs to know. Build it with :func:`load_config`."""

    mode: TradingMode = TradingMode.TESTNET
    mainnet: bool = False
    store_path: Path = DEFAULT_STORE
    venue_url: str | None = None
    symbols: tuple[str, ...] = ("BTC/USDT",)
    quote_balance: Decimal = Decimal(10_000)
    risk: RiskLimits = field(default_factory=RiskLimits)


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """A :class:`Config` from a TOML file (optional) with keyword ``overrides`` on top.

    Raises :class:`ConfigError` naming the key for an unknown key or a bad value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist.") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Config file {path} is not valid TOML: {e}.") from None
    values.update(overrides)
    risk = values.pop("risk", {})
    if not isinstance(risk, Mapping | RiskLimits):
        raise ConfigError(f"risk must be a table of limits, e.g. [risk] max_order_notional = 500; got {risk!r}.")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown config key(s) {unknown}; known keys are {sorted(known)}.")
    try:
        config = Config(**{k: _coerce(Config, k, v) for k, v in values.items()})
        if isinstance(risk, RiskLimits):
            return replace(config, risk=risk)
        return replace(config, risk=RiskLimits(**{k: _coerce(RiskLimits, k, v) for k, v in risk.items()}))
    except TypeError as e:
        raise ConfigError(f"Bad [risk] table: {e}.") from None


def _coerce(kind: type, key: str, value: Any) -> Any:
    try:
        if key == "mode":
            return TradingMode(str(value).lower())
        if key == "mainnet":
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if key == "store_path":
            return Path(value)
        if key in ("symbols", "allowed_symbols"):
            return None if value is None else tuple(str(s) for s in ([value] if isinstance(value, str) else value))
        if key in ("max_open_orders", "max_orders_per_minute"):
            return None if value is None else int(value)
        if key in ("quote_balance",) or (kind is RiskLimits and value is not None):
            number = Decimal(str(value))
            if not number.is_finite() or number < 0:
                raise ValueError("must be a finite number >= 0")
            return number
        return value
    except (ValueError, ArithmeticError) as e:
        raise ConfigError(f"Config key {key!r} has a bad value {value!r}: {e}.") from None


def resolve_mode(config: Config, environ: Mapping[str, str] | None = None) -> TradingMode:
    """The mode a session may trade in. The one place mode is decided.

    Raises :class:`MainnetGuardError` unless mainnet has both of its guards.
    """
    if config.mode is not TradingMode.MAINNET:
        return config.mode
    environ = os.environ if environ is None else environ
    missing = []
    if config.mainnet is not True:
        missing.append("`mainnet = true` in the config")
    if environ.get(MAINNET_ENV) != MAINNET_CONSENT:
        missing.append(f"the environment variable {MAINNET_ENV}={MAINNET_CONSENT}")
    if missing:
        raise MainnetGuardError(
            "Mainnet trades real money and needs "
            + " and ".join(missing)
            + ". Use mode='testnet' (the default) or mode='paper' to rehearse."
        )
    return TradingMode.MAINNET


@final
class MainnetGuard:
    """Proof that :func:`resolve_mode` let ``config`` through to mainnet: the token without which
    the Binance executor refuses to be built for mainnet. Raises :class:`MainnetGuardError` like
    :func:`resolve_mode` when the guards are missing, or when ``config`` is not a mainnet config."""

    __slots__ = ()

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        mode = resolve_mode(config, environ)
        if mode is not TradingMode.MAINNET:
            raise MainnetGuardError(f"A mainnet guard is only for a mainnet config; this one trades on {mode}.")
