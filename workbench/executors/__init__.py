"""Executors: one protocol, one adapter per venue. :func:`build_executor` picks one from the mode."""

from __future__ import annotations

from collections.abc import Mapping

from workbench.config import Config, Credentials, MainnetGuard, TradingMode, resolve_mode
from workbench.errors import ConfigError
from workbench.executors.base import Executor, Listener
from workbench.executors.paper import PaperExecutor
from workbench.filters import SymbolRules

__all__ = ["Executor", "Listener", "PaperExecutor", "build_executor"]


def build_executor(config: Config, rules: Mapping[str, SymbolRules]) -> Executor:
    """The executor for ``config``'s mode, after the mainnet guard (:func:`resolve_mode`) passed.

    Paper starts with ``config.quote_balance`` of each symbol's quote asset; testnet and mainnet
    read their API keys from the environment and trade at ``config.venue_url`` when it is set (a
    local exchange), else at Binance's testnet or mainnet.
    """
    mode = resolve_mode(config)
    if mode is TradingMode.PAPER:
        balances = {r.quote: config.quote_balance for r in rules.values()}
        return PaperExecutor(rules, balances)
    from workbench.executors.binance import BinanceExecutor

    credentials = Credentials.from_env(mode)
    if credentials is None:
        names = " and ".join(Credentials.ENV[mode])
        raise ConfigError(f"{mode} trading needs API keys: set {names} in the environment.")
    guard = MainnetGuard(config) if mode is TradingMode.MAINNET else None
    return BinanceExecutor(mode, rules, credentials, venue_url=config.venue_url, guard=guard)
