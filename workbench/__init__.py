"""workbench: research-to-execution for Binance spot, from a notebook.

One strategy, one set of signals, three modes: paper, testnet (the default) and mainnet
(guarded). The names below are the public API.
"""

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
from workbench.model import Balance, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from workbench.risk import RiskChecks
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross, Strategy, make_strategy

__all__ = [
    "Balance",
    "BookConfig",
    "Config",
    "ConfigError",
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
    "make_strategy",
    "resolve_mode",
]
