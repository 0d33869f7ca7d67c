"""The domain model: order requests, orders, fills and balances. Plain data, no I/O.

Vocabulary follows ccxt (``symbol`` is ``"BTC/USDT"``, ``side`` is ``"buy"``/``"sell"``,
``amount``, ``filled``, ``remaining``, ``cost``, ``average``) and Binance's order types, time in
force and statuses. Prices and quantities are :class:`~decimal.Decimal` so that exchange filters
are checked exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from workbench.errors import InvalidOrder

ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """Binance spot order types the workbench supports."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"

    @property
    def is_stop(self) -> bool:
        return self in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT)


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    """Binance order statuses, in the order an order moves through them. ``PENDING_NEW`` is an
    order the workbench has recorded but the venue has not acknowledged yet."""

    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"

    @property
    def is_final(self) -> bool:
        return self not in _OPEN

    @property
    def rank(self) -> int:
        """Progress of an order: a status may only be replaced by one of higher rank."""
        return len(_OPEN) if self.is_final else _OPEN.index(self)

    @property
    def ccxt(self) -> str:
        """ccxt's unified status: ``open``, ``closed``, ``canceled``, ``rejected`` or ``expired``."""
        return _CCXT_STATUS[self]


_OPEN = (OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)
_CCXT_STATUS = {
    OrderStatus.PENDING_NEW: "open",
    OrderStatus.NEW: "open",
    OrderStatus.PARTIALLY_FILLED: "open",
    OrderStatus.PENDING_CANCEL: "open",
    OrderStatus.FILLED: "closed",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "expired",
    OrderStatus.EXPIRED_IN_MATCH: "expired",
}

# Which optional parameters each order type needs (True), allows (None) or refuses (False).
_PARAMETERS: dict[OrderType, dict[str, bool | None]] = {
    OrderType.MARKET: {"price": False, "stop_price": False, "time_in_force": False},
    OrderType.LIMIT: {"price": True, "stop_price": False, "time_in_force": True},
    OrderType.LIMIT_MAKER: {"price": True, "stop_price": False, "time_in_force": False},
    OrderType.STOP_LOSS_LIMIT: {"price": True, "stop_price": True, "time_in_force": True},
    OrderType.TAKE_PROFIT_LIMIT: {"price": True, "stop_price": True, "time_in_force": True},
}
_BINANCE_NAMES = {
    "amount": "quantity",
    "quote_amount": "quoteOrderQty",
    "price": "price",
    "stop_price": "stopPrice",
    "time_in_force": "timeInForce",
}
_LEGAL_DECIMAL = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"


def to_decimal(value: object, name: str) -> Decimal | None:
    """``value`` as a finite, non-negative Decimal (``None`` stays ``None``).

    Raises :class:`InvalidOrder` with Binance's -1100 for NaN, infinity, negatives and text
    that is not a number.
    """
    if value is None:
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        binance = _BINANCE_NAMES.get(name, name)
        raise InvalidOrder(
            f"{name}={value!r} is not a valid number: it must be finite and not negative.",
            code=-1100,
            msg=f"Illegal characters found in parameter '{binance}'; legal range is '{_LEGAL_DECIMAL}'.",
            field=name,
            rule="number",
        )
    return number


@dataclass(frozen=True)
class OrderRequest:
    """What a user or strategy asks for, before risk checks and before any venue sees it.

    A MARKET order gives either ``amount`` (base quantity) or ``quote_amount`` (quote to
    spend or receive, Binance's ``quoteOrderQty``). Limit-style orders give ``amount`` and
    ``price``; stop orders also ``stop_price``. Construction validates the parameters for the
    type and raises :class:`InvalidOrder` (with Binance's code) when they do not fit.
    """

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    quote_amount: Decimal | None = None
    client_order_id: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "side", _enum(Side, self.side, "side", -1117, "Invalid side."))
        set_(self, "type", _enum(OrderType, self.type, "type", -1116, "Invalid orderType."))
        if self.time_in_force is not None:
            tif = _enum(TimeInForce, self.time_in_force, "time_in_force", -1115, "Invalid timeInForce.")
            set_(self, "time_in_force", tif)
        for name in ("amount", "price", "stop_price", "quote_amount"):
            set_(self, name, to_decimal(getattr(self, name), name))
        if not isinstance(self.symbol, str) or not self.symbol:
            raise _missing("symbol")
        self._check_parameters()

    def _check_parameters(self) -> None:
        rules = _PARAMETERS[self.type]
        for name, needed in rules.items():
            given = getattr(self, name) is not None
            if needed and not given:
                raise _missing(name, f"{self.type} orders need {name}.")
            if needed is False and given:
                raise _not_required(name, f"{self.type} orders do not take {name}.")
        if self.type is OrderType.MARKET:
            if (self.amount is None) == (self.quote_amount is None):
                raise InvalidOrder(
                    "A MARKET order needs exactly one of amount or quote_amount.",
                    code=-1102,
                    msg="Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                    field="amount",
                    rule="market_quantity",
                )
        elif self.quote_amount is not None:
            raise _not_required("quote_amount", f"only MARKET orders take quote_amount, not {self.type}.")
        elif self.amount is None:
            raise _missing("amount", f"{self.type} orders need amount.")
        for name in ("amount", "quote_amount", "price", "stop_price"):
            if getattr(self, name) == 0:
                what = "price" if "price" in name else "quantity"
                raise InvalidOrder(
                    f"{name} must be greater than zero.",
                    code=-1013,
                    msg=f"Invalid {what}.",
                    field=name,
                    rule="positive",
                )


def _enum(kind: type, value: object, name: str, code: int, msg: str):  # type: ignore[no-untyped-def]
    text = value.value if isinstance(value, kind) else str(value)
    for member in kind:  # type: ignore[attr-defined]
        if member.value.lower() == text.lower():
            return member
    choices = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
    raise InvalidOrder(f"{name}={value!r} is not one of {choices}.", code=code, msg=msg, field=name, rule="enum")


def _missing(name: str, why: str = "") -> InvalidOrder:
    binance = _BINANCE_NAMES.get(name, name)
    return InvalidOrder(
        f"{name} is required. {why}".strip(),
        code=-1102,
        msg=f"Mandatory parameter '{binance}' was not sent, was empty/null, or malformed.",
        field=name,
        rule="required",
    )


def _not_required(name: str, why: str) -> InvalidOrder:
    binance = _BINANCE_NAMES[name]
    return InvalidOrder(
        f"{name} is not allowed here: {why}",
        code=-1106,
        msg=f"Parameter '{binance}' sent when not required.",
        field=name,
        rule="not_allowed",
    )


@dataclass
class Order:
    """An order as the venue knows it. ``id`` is the venue's id, ``client_order_id`` ours."""

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce | None
    client_order_id: str
    id: str | None = None
    quote_amount: Decimal | None = None
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    timestamp: int = 0
    last_update: int = 0
    triggered: bool = False
    fees: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: OrderRequest, client_order_id: str, timestamp: int, id: str | None = None) -> Order:
        return cls(
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            amount=request.amount,
            price=request.price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            client_order_id=client_order_id,
            id=id,
            quote_amount=request.quote_amount,
            timestamp=timestamp,
            last_update=timestamp,
        )

    @property
    def remaining(self) -> Decimal | None:
        return None if self.amount is None else self.amount - self.filled

    @property
    def average(self) -> Decimal | None:
        return self.cost / self.filled if self.filled else None

    @property
    def is_open(self) -> bool:
        return not self.status.is_final

    def snapshot(self) -> Order:
        """A copy that later changes to this order do not touch."""
        return replace(self, fees=dict(self.fees))


@dataclass(frozen=True)
class Fill:
    """One trade of one order: ``amount`` base at ``price``; ``cost`` is in quote."""

    trade_id: str
    order_id: str | None
    client_order_id: str
    symbol: str
    side: Side
    price: Decimal
    amount: Decimal
    cost: Decimal
    fee: Decimal
    fee_currency: str
    is_maker: bool
    timestamp: int


@dataclass(frozen=True)
class Balance:
    """What an account holds of one asset."""

    asset: str
    free: Decimal
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT"`` -> ``("BTC", "USDT")``."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise InvalidOrder(
            f"symbol={symbol!r} is not of the form BASE/QUOTE, e.g. 'BTC/USDT'.",
            code=-1121,
            msg="Invalid symbol.",
            field="symbol",
            rule="format",
        )
    return base, quote
