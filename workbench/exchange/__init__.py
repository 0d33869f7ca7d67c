"""A local Binance Spot exchange: ccxt (async and pro) works against it unchanged, with only its
URLs pointed at 127.0.0.1. The embedded default "testnet" of the workbench, and the ground on which
every testnet and mainnet code path is tested. See :class:`LocalExchange`."""

from workbench.exchange.server import Faults, Limits, LocalExchange, admin_call
from workbench.exchange.venue import BinanceError, Venue

__all__ = ["BinanceError", "Faults", "Limits", "LocalExchange", "Venue", "admin_call"]
