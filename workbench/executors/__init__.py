"""Executors: one protocol, one adapter per venue. :func:`build_executor` picks one from the mode."""

from __future__ import annotations

from collections.abc import Mapping

from workbench.config import Config, TradingMode, resolve_mode
from workbench.errors import ConfigError
from workbench.executors.base import Executor, Listener
from workbench.executors.paper import PaperExecutor
from workbench.filters import SymbolRules

__all__ = ["Executor", "Listener", "PaperExecutor", "build_executor"]


def build_executor(config: Config, rules: Mapping[str, SymbolRules]) -> Executor:
    """The executor for ``config``'s mode, after the mainnet guard (:func:`resolve_mode`) passed.

    Paper starts with ``config.quote_balance`` of each symbol's quote asset.
    """
    mode = resolve_mode(config)
    if mode is TradingMode.PAPER:
        balances = {r.quote: config.quote_balance for r in rules.values()}
        return PaperExecutor(rules, balances)
    raise ConfigError(f"The {mode} executor is not available in this version yet; use mode='paper' for now.")
