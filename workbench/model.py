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
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"

    @property
    def is_stop(self) -> bool:
        """Whether orders of this type wait for a trigger (Binance's "algo" orders)."""
        return self in _STOPS

    @property
    def is_market(self) -> bool:
        """Whether orders of this type trade at the market, with no limit price: MARKET, and
        STOP_LOSS / TAKE_PROFIT once triggered."""
        return self in (OrderType.MARKET, OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)

    @property
    def is_stop_loss(self) -> bool:
        return self in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)


_STOPS = frozenset({OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT})


class SelfTradePrevention(StrEnum):
    """Binance's ``selfTradePreventionMode``: what happens when an order would trade with the
    same account's resting order (faqs/stp_faq.md). Binance's default is ``EXPIRE_MAKER``."""

    EXPIRE_TAKER = "EXPIRE_TAKER"
    EXPIRE_MAKER = "EXPIRE_MAKER"
    EXPIRE_BOTH = "EXPIRE_BOTH"
    DECREMENT = "DECREMENT"
    NONE = "NONE"


class ContingencyType(StrEnum):
    """The kind of an order list; Binance reports an OTOCO's ``contingencyType`` as ``OTO``."""

    OCO = "OCO"
    OTO = "OTO"
    OTOCO = "OTOCO"


class ListStatusType(StrEnum):
    RESPONSE = "RESPONSE"
    EXEC_STARTED = "EXEC_STARTED"
    UPDATED = "UPDATED"  # an order of the list changed its client order id (an amendment)
    ALL_DONE = "ALL_DONE"


class ListOrderStatus(StrEnum):
    EXECUTING = "EXECUTING"
    ALL_DONE = "ALL_DONE"
    REJECT = "REJECT"


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
    OrderType.STOP_LOSS: {"price": False, "stop_price": True, "time_in_force": False},
    OrderType.TAKE_PROFIT: {"price": False, "stop_price": True, "time_in_force": False},
    OrderType.STOP_LOSS_LIMIT: {"price": True, "stop_price": True, "time_in_force": True},
    OrderType.TAKE_PROFIT_LIMIT: {"price": True, "stop_price": True, "time_in_force": True},
}
_BINANCE_NAMES = {
    "amount": "quantity",
    "quote_amount": "quoteOrderQty",
    "price": "price",
    "stop_price": "stopPrice",
    "time_in_force": "timeInForce",
    "trailing_delta": "trailingDelta",
    "iceberg_amount": "icebergQty",
    "self_trade_prevention": "selfTradePreventionMode",
    "client_order_id": "newClientOrderId",
    "list_client_order_id": "listClientOrderId",
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
    ``price``; stop orders also ``stop_price`` (or ``trailing_delta``, or both). STOP_LOSS and
    TAKE_PROFIT are market-type stops: ``amount`` and a trigger, no ``price`` and no
    ``time_in_force``; triggered, they trade as a MARKET order. Construction validates the parameters for the
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
    trailing_delta: int | None = None
    iceberg_amount: Decimal | None = None
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "side", _enum(Side, self.side, "side", -1117, "Invalid side."))
        set_(self, "type", _enum(OrderType, self.type, "type", -1116, "Invalid orderType."))
        if self.time_in_force is not None:
            tif = _enum(TimeInForce, self.time_in_force, "time_in_force", -1115, "Invalid timeInForce.")
            set_(self, "time_in_force", tif)
        for name in ("amount", "price", "stop_price", "quote_amount", "iceberg_amount"):
            set_(self, name, to_decimal(getattr(self, name), name))
        set_(self, "self_trade_prevention", _stp_mode(self.self_trade_prevention))
        if not isinstance(self.symbol, str) or not self.symbol:
            raise missing_parameter("symbol")
        self._check_parameters()
        self._check_trailing_and_iceberg()

    def _check_trailing_and_iceberg(self) -> None:
        delta = self.trailing_delta
        if delta is not None:
            if not self.type.is_stop:
                raise _not_required("trailing_delta", f"only stop and take-profit orders trail, not {self.type}.")
            if isinstance(delta, bool) or not isinstance(delta, int) or delta <= 0:
                raise InvalidOrder(
                    f"trailing_delta={delta!r} must be a whole, positive number of basis points (100 = 1%).",
                    code=-1100,
                    msg="Illegal characters found in parameter 'trailingDelta'; legal range is '^([0-9]{1,20})$'.",
                    field="trailing_delta",
                    rule="number",
                )
        iceberg = self.iceberg_amount
        if iceberg is None:
            return
        if self.type.is_market or self.time_in_force not in (None, TimeInForce.GTC):
            raise InvalidOrder(
                f"iceberg_amount needs a resting order: LIMIT_MAKER or a GTC limit, not {self.type} "
                f"{self.time_in_force or ''}".rstrip()
                + ".",
                code=-2010,
                msg="Unsupported order combination",
                field="iceberg_amount",
                rule="iceberg",
            )
        if not 0 < iceberg < self.amount:  # type: ignore[operator]
            raise InvalidOrder(
                f"iceberg_amount {iceberg} must be above zero and below the order's amount {self.amount}.",
                code=-2010,
                msg="IcebergQty exceeds QTY.",
                field="iceberg_amount",
                rule="iceberg",
            )

    def _check_parameters(self) -> None:
        rules = _PARAMETERS[self.type]
        for name, needed in rules.items():
            given = getattr(self, name) is not None
            if name == "stop_price" and self.trailing_delta is not None:
                needed = None  # a trailing stop may leave out its stop price (trailing-stop FAQ)
            if needed and not given:
                raise missing_parameter(name, f"{self.type} orders need {name}.")
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
            raise missing_parameter("amount", f"{self.type} orders need amount.")
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


def _stp_mode(value: object) -> SelfTradePrevention:
    text = value.value if isinstance(value, SelfTradePrevention) else str(value).upper()
    if text in SelfTradePrevention.__members__:
        return SelfTradePrevention(text)
    modes = ", ".join(SelfTradePrevention)
    raise InvalidOrder(
        f"self_trade_prevention={value!r} is not one of {modes}.",
        code=-1100,
        msg=f"Illegal characters found in parameter 'selfTradePreventionMode'; legal range is '{modes}'.",
        field="self_trade_prevention",
        rule="enum",
    )


def missing_parameter(name: str, why: str = "") -> InvalidOrder:
    """Binance's -1102 for a parameter that was not sent."""
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
    order_list_id: int = -1
    trailing_delta: int | None = None
    trailing_time: int | None = None
    iceberg_amount: Decimal | None = None
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER
    prevented_quantity: Decimal = ZERO
    prevented_match_id: int | None = None
    trail_extreme: Decimal | None = None  # the best price since a trailing stop started tracking
    holds_funds: bool = True  # False for the OCO leg that shares its sibling's locked funds

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
            trailing_delta=request.trailing_delta,
            iceberg_amount=request.iceberg_amount,
            self_trade_prevention=request.self_trade_prevention,
        )

    @property
    def remaining(self) -> Decimal | None:
        """What may still fill: amount less filled less what self-trade prevention took away."""
        return None if self.amount is None else self.amount - self.filled - self.prevented_quantity

    @property
    def visible(self) -> Decimal | None:
        """What the book shows of this order: an iceberg shows at most ``iceberg_amount``."""
        if self.iceberg_amount is None:
            return self.remaining
        return min(self.iceberg_amount, self.remaining)  # type: ignore[type-var]

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
class OrderListRequest:
    """An order list: OCO ``(above, below)``, OTO ``(working, pending)`` or OTOCO ``(working,
    pending_above, pending_below)``; every leg carries its own ``client_order_id``.

    Construction checks the shape Binance requires (rest-api.md, "New order list"): OCO legs share
    symbol, side and amount, one is LIMIT_MAKER or TAKE_PROFIT(_LIMIT) and the other
    STOP_LOSS(_LIMIT) (market-type legs too, since 2024-12: CHANGELOG); an OTO's working order
    is LIMIT or LIMIT_MAKER and its pending order is not a quote-amount MARKET order. Prices
    against the last price are the venue's to check.
    """

    contingency_type: ContingencyType
    orders: tuple[OrderRequest, ...]
    list_client_order_id: str | None = None

    def __post_init__(self) -> None:
        kind = _enum(ContingencyType, self.contingency_type, "contingency_type", -1100, "Invalid contingencyType.")
        object.__setattr__(self, "contingency_type", kind)
        object.__setattr__(self, "orders", tuple(self.orders))
        sizes = {ContingencyType.OCO: 2, ContingencyType.OTO: 2, ContingencyType.OTOCO: 3}
        if len(self.orders) != sizes[kind]:
            raise InvalidOrder(
                f"An {kind} list has {sizes[kind]} orders, not {len(self.orders)}.",
                code=-1102,
                msg="Mandatory parameter 'orders' was not sent, was empty/null, or malformed.",
                field="orders",
                rule="list_shape",
            )
        if len({o.symbol for o in self.orders}) > 1:
            raise _combination("orders", "every order of a list must be on the same symbol.")
        if kind is not ContingencyType.OCO:
            self._check_oto(self.orders[0], self.orders[1:])
        if kind is not ContingencyType.OTO:
            _check_oco_pair(*self.orders[-2:])

    @property
    def symbol(self) -> str:
        return self.orders[0].symbol

    @staticmethod
    def _check_oto(working: OrderRequest, pending: tuple[OrderRequest, ...]) -> None:
        if working.type not in (OrderType.LIMIT, OrderType.LIMIT_MAKER):
            raise InvalidOrder(
                f"The working order of an OTO must be LIMIT or LIMIT_MAKER, not {working.type}.",
                code=-1158,
                msg="Order type not supported in OCO.",
                field="orders",
                rule="list_type",
            )
        if any(o.quote_amount is not None for o in pending):
            raise _combination("orders", "a pending order cannot be a quote_amount MARKET order.")


_ABOVE_OR_BELOW = (OrderType.LIMIT_MAKER, OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT)  # an OCO's "limit" leg


def _check_oco_pair(above: OrderRequest, below: OrderRequest) -> None:
    if above.side is not below.side or above.amount != below.amount:
        raise _combination("orders", "both legs of an OCO need the same side and amount.")
    if {above.type, below.type} - {*_ABOVE_OR_BELOW, OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT}:
        raise InvalidOrder(
            f"OCO legs are LIMIT_MAKER, TAKE_PROFIT(_LIMIT) or STOP_LOSS(_LIMIT), not {above.type}/{below.type}.",
            code=-1158,
            msg="Order type not supported in OCO.",
            field="orders",
            rule="list_type",
        )
    stops = [o for o in (above, below) if o.type.is_stop_loss]
    if len(stops) != 1:
        raise InvalidOrder(
            "An OCO needs one STOP_LOSS(_LIMIT) leg and one LIMIT_MAKER or TAKE_PROFIT(_LIMIT) leg.",
            code=-1168,
            msg="At least one OCO order must be contingent.",
            field="orders",
            rule="list_type",
        )
    buy = above.side is Side.BUY
    if (stops[0] is above) != buy:  # a sell OCO's stop-loss is below, a buy OCO's above
        limit = above if buy else below
        code, msg = (
            (-1165, "A limit order in a buy OCO must be below.")
            if buy
            else (
                -1166,
                "A limit order in a sell OCO must be above.",
            )
        )
        if limit.type is not OrderType.LIMIT_MAKER:
            code, msg = (
                (-1198, "A take profit order in a buy OCO must be below.")
                if buy
                else (
                    -1199,
                    "A take profit order in a sell OCO must be above.",
                )
            )
        raise InvalidOrder(f"{msg} Swap the legs.", code=code, msg=msg, field="orders", rule="list_legs")


def _combination(name: str, why: str) -> InvalidOrder:
    return InvalidOrder(
        f"Invalid order list: {why}",
        code=-1128,
        msg="Combination of optional parameters invalid.",
        field=name,
        rule="list_shape",
    )


@dataclass
class OrderList:
    """An order list as the venue knows it: ``orders`` are the venue ids of its orders, in the
    order of the request."""

    id: int
    list_client_order_id: str
    symbol: str
    kind: ContingencyType
    orders: tuple[str, ...]
    list_status_type: ListStatusType = ListStatusType.EXEC_STARTED
    list_order_status: ListOrderStatus = ListOrderStatus.EXECUTING
    timestamp: int = 0
    last_update: int = 0

    @property
    def contingency_type(self) -> ContingencyType:
        """Binance's ``contingencyType``: ``OCO`` or ``OTO`` (an OTOCO reports ``OTO``)."""
        return ContingencyType.OCO if self.kind is ContingencyType.OCO else ContingencyType.OTO

    @property
    def is_open(self) -> bool:
        return self.list_order_status is ListOrderStatus.EXECUTING

    def snapshot(self) -> OrderList:
        return replace(self)


@dataclass(frozen=True)
class Amendment:
    """One quantity reduction of an order that kept its priority (Binance's ``order/amendments``
    entry): ``amount`` went from ``orig_amount`` to ``new_amount`` and the client order id from
    ``orig_client_order_id`` to ``new_client_order_id``."""

    id: int
    symbol: str
    order_id: str
    orig_client_order_id: str
    new_client_order_id: str
    orig_amount: Decimal
    new_amount: Decimal
    timestamp: int


@dataclass(frozen=True)
class PreventedMatch:
    """A trade self-trade prevention stopped (Binance's ``myPreventedMatches`` entry)."""

    id: int
    symbol: str
    taker_order_id: str
    maker_order_id: str
    mode: SelfTradePrevention
    price: Decimal
    taker_prevented_quantity: Decimal | None
    maker_prevented_quantity: Decimal | None
    timestamp: int


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
