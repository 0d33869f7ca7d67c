"""The workbench's error hierarchy: one base class, a handful of subclasses.

Every message says what was wrong, with the numbers, and what to do. Errors that mirror a
Binance rejection carry Binance's ``code`` and ``msg`` so that paper, the local exchange and the
real venue reject the same order the same way.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError):
    """The configuration is missing, malformed or inconsistent."""


class MainnetGuardError(ConfigError):
    """Mainnet was asked for without both of its guards in place."""


class OrderRejected(WorkbenchError):
    """An order was refused before or by the venue.

    ``code`` and ``msg`` are Binance's error code and message when the rejection mirrors one;
    ``field`` names the offending parameter and ``rule`` the rule it broke.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        msg: str | None = None,
        field: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.msg = msg
        self.field = field
        self.rule = rule


class InvalidOrder(OrderRejected):
    """The order's parameters are malformed, missing or not allowed for its type."""


class UnknownSymbol(InvalidOrder):
    """The symbol is not listed on the venue (Binance -1121)."""


class FilterError(OrderRejected):
    """The order breaks one of the symbol's exchange filters (Binance -1013 and friends)."""


class InsufficientBalance(OrderRejected):
    """The account cannot pay for the order (Binance -2010)."""


class RiskRejected(OrderRejected):
    """One of the workbench's own risk checks refused the order; ``rule`` names the check."""


class KillSwitchActive(OrderRejected):
    """The kill switch is tripped: no new orders until it is cleared explicitly."""


class OrderNotFound(WorkbenchError):
    """No order with that id is known (Binance -2011 / -2013)."""


class ExchangeError(WorkbenchError):
    """The venue answered with an error the workbench could not resolve."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class MalformedMessage(ExchangeError):
    """A response or stream event from the venue could not be understood; it was not applied."""


class VenueUnavailable(ExchangeError):
    """The venue did not answer (timeout, 5xx, lost connection): the request may or may not have
    taken effect. Orders are looked up by client order id; reconciliation settles the rest."""


class DataError(WorkbenchError):
    """Market data could not be fetched or was refused (a corrupt archive, a checksum mismatch)."""
