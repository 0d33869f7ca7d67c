"""workbench: research-to-execution for Binance spot, from a notebook.

One strategy, one set of signals, three modes: paper, testnet (the default) and mainnet
(guarded). The names below are the public API. They are loaded when first used (PEP 562), so that
``import workbench`` and the command line start without pandas, DuckDB or ccxt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.config import Config, Credentials, RiskLimits, Secret, TradingMode, load_config, resolve_mode
    from workbench.data import load_klines, load_rules
    from workbench.errors import (
        ConfigError,
        ExchangeError,
        FilterError,
        InsufficientBalance,
        InvalidOrder,
        KillSwitchActive,
        MainnetGuardError,
        OrderNotFound,
        OrderRejected,
        RiskRejected,
        UnknownSymbol,
        WorkbenchError,
    )
    from workbench.executors import Executor, PaperExecutor, build_executor
    from workbench.filters import SymbolRules, check_order
    from workbench.killswitch import KillSwitch
    from workbench.matching import BookConfig, Fees, MatchingEngine
    from workbench.model import (
        Balance,
        ContingencyType,
        Fill,
        Order,
        OrderList,
        OrderListRequest,
        OrderRequest,
        OrderStatus,
        OrderType,
        Side,
        TimeInForce,
    )
    from workbench.risk import RiskChecks
    from workbench.session import TradingSession
    from workbench.store import Store
    from workbench.strategy import SmaCross, Strategy, load_strategy, make_strategy

# The module that defines each public name.
_MODULES = {
    "config": ("Config", "Credentials", "RiskLimits", "Secret", "TradingMode", "load_config", "resolve_mode"),
    "data": ("load_klines", "load_rules"),
    "errors": (
        "ConfigError",
        "ExchangeError",
        "FilterError",
        "InsufficientBalance",
        "InvalidOrder",
        "KillSwitchActive",
        "MainnetGuardError",
        "OrderNotFound",
        "OrderRejected",
        "RiskRejected",
        "UnknownSymbol",
        "WorkbenchError",
    ),
    "executors": ("Executor", "PaperExecutor", "build_executor"),
    "filters": ("SymbolRules", "check_order"),
    "killswitch": ("KillSwitch",),
    "matching": ("BookConfig", "Fees", "MatchingEngine"),
    "model": (
        "Balance",
        "ContingencyType",
        "Fill",
        "Order",
        "OrderList",
        "OrderListRequest",
        "OrderRequest",
        "OrderStatus",
        "OrderType",
        "Side",
        "TimeInForce",
    ),
    "risk": ("RiskChecks",),
    "session": ("TradingSession",),
    "store": ("Store",),
    "strategy": ("SmaCross", "Strategy", "load_strategy", "make_strategy"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Balance",
    "BookConfig",
    "Config",
    "ConfigError",
    "ContingencyType",
    "Credentials",
    "ExchangeError",
    "Executor",
    "Fees",
    "Fill",
    "FilterError",
    "InsufficientBalance",
    "InvalidOrder",
    "KillSwitch",
    "KillSwitchActive",
    "MainnetGuardError",
    "MatchingEngine",
    "Order",
    "OrderList",
    "OrderListRequest",
    "OrderNotFound",
    "OrderRejected",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PaperExecutor",
    "RiskChecks",
    "RiskLimits",
    "RiskRejected",
    "Secret",
    "Side",
    "SmaCross",
    "Store",
    "Strategy",
    "SymbolRules",
    "TimeInForce",
    "TradingMode",
    "TradingSession",
    "UnknownSymbol",
    "WorkbenchError",
    "build_executor",
    "check_order",
    "load_config",
    "load_klines",
    "load_rules",
    "load_strategy",
    "make_strategy",
    "resolve_mode",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"workbench.{module}"), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
