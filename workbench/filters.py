"""Symbol rules from Binance ``exchangeInfo`` and Binance's filter checks, exactly.

A rule set is kept as Binance publishes it (``filters`` is the list of filter objects), so it
round-trips through ``exchangeInfo`` unchanged; :func:`check_order` applies the filters in the
order Binance does and raises :class:`~workbench.errors.FilterError` with Binance's code and
message (``-1013 Filter failure: LOT_SIZE``) plus a sentence naming the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any

from workbench.errors import FilterError, InvalidOrder, OrderRejected, UnknownSymbol
from workbench.model import ZERO, OrderRequest, OrderType, Side

ONE = Decimal(1)
# What BTCUSDT and ETHUSDT list in Binance's exchangeInfo (shared/data/binance/exchangeInfo.json):
# no market-type STOP_LOSS or TAKE_PROFIT. A symbol's own ``orderTypes`` overrides it.
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_NOT_SUPPORTED = {  # errors.md, the matching engine's -2010 messages
    OrderType.MARKET: "Market orders are not supported for this symbol.",
    OrderType.STOP_LOSS: "Stop loss orders are not supported for this symbol.",
    OrderType.STOP_LOSS_LIMIT: "Stop loss limit orders are not supported for this symbol.",
    OrderType.TAKE_PROFIT: "Take profit orders are not supported for this symbol.",
    OrderType.TAKE_PROFIT_LIMIT: "Take profit limit orders are not supported for this symbol.",
}


@dataclass(frozen=True)
class SymbolRules:
    """One symbol's trading rules: ``symbol`` is ccxt's ``"BTC/USDT"``, ``id`` Binance's ``"BTCUSDT"``."""

    symbol: str
    id: str
    base: str
    quote: str
    filters: tuple[Mapping[str, Any], ...]
    base_precision: int = 8
    quote_precision: int = 8
    order_types: tuple[str, ...] = ORDER_TYPES

    @classmethod
    def from_exchange_info(cls, entry: Mapping[str, Any]) -> SymbolRules:
        """Rules from one element of ``exchangeInfo["symbols"]``."""
        return cls(
            symbol=f"{entry['baseAsset']}/{entry['quoteAsset']}",
            id=entry["symbol"],
            base=entry["baseAsset"],
            quote=entry["quoteAsset"],
            filters=tuple(dict(f) for f in entry["filters"]),
            base_precision=int(entry.get("baseAssetPrecision", 8)),
            quote_precision=int(entry.get("quoteAssetPrecision", 8)),
            order_types=tuple(entry.get("orderTypes", ORDER_TYPES)),
        )

    def to_exchange_info(self) -> dict[str, Any]:
        """This rule set as Binance lists it in ``exchangeInfo["symbols"]``."""
        return {
            "symbol": self.id,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": self.base_precision,
            "quoteAsset": self.quote,
            "quotePrecision": self.quote_precision,
            "quoteAssetPrecision": self.quote_precision,
            "baseCommissionPrecision": self.base_precision,
            "quoteCommissionPrecision": self.quote_precision,
            "orderTypes": list(self.order_types),
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [dict(f) for f in self.filters],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT", "NONE"],
        }

    def filter(self, name: str) -> dict[str, Decimal | bool | int] | None:
        """The named filter with its numbers as Decimals, or ``None`` if the symbol has none."""
        parsed = self._parsed.get(name)
        return None if parsed is None else dict(parsed)

    @cached_property
    def _parsed(self) -> dict[str, dict[str, Decimal | bool | int]]:
        """Each filter type's first filter, parsed once (rounding runs on every order and book)."""
        parsed: dict[str, dict[str, Decimal | bool | int]] = {}
        for f in self.filters:
            parsed.setdefault(f["filterType"], {k: _value(v) for k, v in f.items() if k != "filterType"})
        return parsed

    @property
    def tick_size(self) -> Decimal:
        price = self._parsed.get("PRICE_FILTER")
        return price["tickSize"] if price else ZERO  # type: ignore[return-value]

    def step_size(self, market: bool = False) -> Decimal:
        lot = (self._parsed.get("MARKET_LOT_SIZE") if market else None) or {}
        if not lot.get("stepSize"):
            lot = self._parsed.get("LOT_SIZE") or {}
        return lot.get("stepSize", ZERO)  # type: ignore[return-value]

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
        """``price`` on the tick grid (nearest tick by default)."""
        return _on_grid(price, self.tick_size, rounding)

    def round_amount(self, amount: Decimal, market: bool = False) -> Decimal:
        """``amount`` rounded down to the step size (never more than asked for)."""
        return _on_grid(amount, self.step_size(market), ROUND_DOWN)


def _value(v: Any) -> Decimal | bool | int:
    if isinstance(v, bool | int):
        return v
    return Decimal(str(v))


def _on_grid(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if not step:
        return value
    return ((value / step).quantize(ONE, rounding=rounding) * step).normalize()


def plain(value: Decimal | bool | int) -> str:
    """A number as people write it: ``0.01``, not ``0.01000000`` or ``1E-2``."""
    return format(Decimal(value).normalize(), "f")


def _off_grid(value: Decimal, minimum: Decimal, step: Decimal) -> bool:
    return bool(step) and (value - minimum) % step != 0


def _fail(name: str, field: str, message: str) -> FilterError:
    return FilterError(f"{message} ({name}).", code=-1013, msg=f"Filter failure: {name}", field=field, rule=name)


def rules_for(symbol: str, rules: Mapping[str, SymbolRules]) -> SymbolRules:
    """The rules of ``symbol``; :class:`UnknownSymbol` (Binance -1121) if it is not listed."""
    try:
        return rules[symbol]
    except KeyError:
        listed = ", ".join(sorted(rules)) or "none"
        raise UnknownSymbol(
            f"symbol={symbol!r} is not listed on this venue; listed: {listed}.",
            code=-1121,
            msg="Invalid symbol.",
            field="symbol",
            rule="listed",
        ) from None


def check_order(
    request: OrderRequest,
    rules: SymbolRules,
    *,
    avg_price: Decimal,
    open_orders: int = 0,
    open_algo_orders: int = 0,
) -> None:
    """Apply every filter of ``rules`` to ``request`` as Binance would.

    ``avg_price`` is the symbol's average price (Binance's ``avgPrice``, or the last price), used
    for PERCENT_PRICE_BY_SIDE and for the notional of MARKET orders; ``open_orders`` is how many
    orders are already open on the symbol, ``open_algo_orders`` how many of them are stop or
    take-profit ("algo") orders. Raises :class:`FilterError` on the first failure and
    :class:`InvalidOrder` (-1111) when a quantity has more decimals than the asset allows.
    """
    check_order_type(request, rules)
    for name, value in (("amount", request.amount), ("quote_amount", request.quote_amount)):
        precision = rules.quote_precision if name == "quote_amount" else rules.base_precision
        if value is not None and -value.as_tuple().exponent > precision:  # type: ignore[operator]
            raise InvalidOrder(
                f"{name}={plain(value)} has more than {precision} decimals, the most {rules.symbol} allows.",
                code=-1111,
                msg="Precision is over the maximum defined for this asset.",
                field=name,
                rule="precision",
            )
    market = request.type.is_market  # STOP_LOSS and TAKE_PROFIT trade as MARKET orders once triggered
    _check_price_filter(request, rules)
    if not market:
        _check_percent_price(request, rules, avg_price)
    _check_lot_size(request, rules, market)
    _check_notional(request, rules, market, avg_price)
    _check_iceberg_parts(request, rules)
    _check_trailing_delta(request, rules)
    _check_max_num_orders(rules, open_orders)
    if request.type.is_stop:
        _check_max_count(rules, "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders", open_algo_orders, "stop orders")


def check_order_type(request: OrderRequest, rules: SymbolRules) -> None:
    """The symbol lists the order's type in its ``orderTypes``; Binance's -2010 otherwise."""
    if request.type.value not in rules.order_types:
        raise OrderRejected(
            f"{rules.symbol} does not take {request.type} orders; it takes {', '.join(rules.order_types)}.",
            code=-2010,
            msg=_NOT_SUPPORTED.get(request.type, "Unsupported order combination"),
            field="type",
            rule="order_types",
        )


def check_amend(request: OrderRequest, rules: SymbolRules, *, avg_price: Decimal, amendments: int) -> None:
    """The filters an amended quantity meets: ``request`` is the order with its new amount;
    ``amendments`` is how often the order was amended before (MAX_NUM_ORDER_AMENDS, -2038)."""
    market = request.type.is_market
    _check_lot_size(request, rules, market)
    _check_notional(request, rules, market, avg_price)
    f = rules._parsed.get("MAX_NUM_ORDER_AMENDS")
    if f is not None and amendments + 1 > f["maxNumOrderAmends"]:  # type: ignore[operator]
        raise OrderRejected(
            f"This order was amended {amendments} times already, the most {rules.symbol} allows.",
            code=-2038,
            msg="Filter failure: MAX_NUM_ORDER_AMENDS",
            field="amount",
            rule="MAX_NUM_ORDER_AMENDS",
        )


def check_order_list(rules: SymbolRules, open_lists: int) -> None:
    """MAX_NUM_ORDER_LISTS: ``open_lists`` order lists are open on the symbol (an OTOCO is one)."""
    _check_max_count(rules, "MAX_NUM_ORDER_LISTS", "maxNumOrderLists", open_lists, "order lists")


def _check_price_filter(request: OrderRequest, rules: SymbolRules) -> None:
    f = rules._parsed.get("PRICE_FILTER")
    if f is None:
        return
    for field, price in (("price", request.price), ("stop_price", request.stop_price)):
        if price is None:
            continue
        low, high, tick = f["minPrice"], f["maxPrice"], f["tickSize"]
        if low and price < low:
            raise _fail("PRICE_FILTER", field, f"{field} {plain(price)} is below the minimum price {plain(low)}")
        if high and price > high:
            raise _fail("PRICE_FILTER", field, f"{field} {plain(price)} is above the maximum price {plain(high)}")
        if _off_grid(price, low, tick):  # type: ignore[arg-type]
            down = rules.round_price(price, ROUND_DOWN)
            raise _fail(
                "PRICE_FILTER",
                field,
                f"{field} {plain(price)} is not a multiple of the tick size {plain(tick)}; "
                f"try {plain(down)} or {plain(down + tick)}",
            )


def _check_percent_price(request: OrderRequest, rules: SymbolRules, avg_price: Decimal) -> None:
    f = rules._parsed.get("PERCENT_PRICE_BY_SIDE")
    if f is None or request.price is None or not avg_price:
        return
    side = "bid" if request.side is Side.BUY else "ask"
    up, down = f[f"{side}MultiplierUp"], f[f"{side}MultiplierDown"]
    high, low = avg_price * up, avg_price * down  # type: ignore[operator]
    if request.price > high or request.price < low:
        raise _fail(
            "PERCENT_PRICE_BY_SIDE",
            "price",
            f"price {plain(request.price)} is outside {plain(low)}..{plain(high)}, the band "
            f"{plain(down)}x..{plain(up)}x around the average price {plain(avg_price)} for a {request.side.value}",
        )


def _check_lot_size(request: OrderRequest, rules: SymbolRules, market: bool) -> None:
    if request.amount is None:
        return
    names = ("LOT_SIZE", "MARKET_LOT_SIZE") if market else ("LOT_SIZE",)
    for name in names:
        f = rules._parsed.get(name)
        if f is None:
            continue
        low, high, step = f["minQty"], f["maxQty"], f["stepSize"]
        amount = request.amount
        if amount < low:  # type: ignore[operator]
            raise _fail(name, "amount", f"amount {plain(amount)} is below the minimum quantity {plain(low)}")
        if high and amount > high:  # type: ignore[operator]
            raise _fail(name, "amount", f"amount {plain(amount)} is above the maximum quantity {plain(high)}")
        if _off_grid(amount, low, step):  # type: ignore[arg-type]
            down = _on_grid(amount, step, ROUND_DOWN)  # type: ignore[arg-type]
            raise _fail(
                name,
                "amount",
                f"amount {plain(amount)} is not a multiple of the step size {plain(step)}; try {plain(down)}",
            )


def _check_notional(request: OrderRequest, rules: SymbolRules, market: bool, avg_price: Decimal) -> None:
    if request.quote_amount is not None:
        notional, what = request.quote_amount, "quote_amount"
    else:
        price = request.price if not market else request.stop_price or avg_price
        notional = request.amount * price  # type: ignore[operator]
        kind = "" if not market else "stop " if request.stop_price else "average "
        what = f"amount x {kind}price = {plain(request.amount)} x {plain(price)}"  # type: ignore[arg-type]
    legacy = rules._parsed.get("MIN_NOTIONAL")
    applies = legacy is not None and (not market or legacy["applyToMarket"])
    if applies and notional < legacy["minNotional"]:  # type: ignore[index, operator]
        raise _fail(
            "MIN_NOTIONAL",
            "amount",
            f"notional ({what}) {plain(notional)} is below the minimum {plain(legacy['minNotional'])}",  # type: ignore[index]
        )
    f = rules._parsed.get("NOTIONAL")
    if f is None:
        return
    if (not market or f["applyMinToMarket"]) and notional < f["minNotional"]:  # type: ignore[operator]
        raise _fail(
            "NOTIONAL", "amount", f"notional ({what}) {plain(notional)} is below the minimum {plain(f['minNotional'])}"
        )
    if (not market or f["applyMaxToMarket"]) and f["maxNotional"] and notional > f["maxNotional"]:  # type: ignore[operator]
        raise _fail(
            "NOTIONAL", "amount", f"notional ({what}) {plain(notional)} is above the maximum {plain(f['maxNotional'])}"
        )


def _check_max_num_orders(rules: SymbolRules, open_orders: int) -> None:
    _check_max_count(rules, "MAX_NUM_ORDERS", "maxNumOrders", open_orders, "orders")


def _check_max_count(rules: SymbolRules, name: str, key: str, open_: int, what: str) -> None:
    f = rules._parsed.get(name)
    if f is not None and open_ + 1 > f[key]:  # type: ignore[operator]
        raise _fail(name, "symbol", f"{open_} {what} are already open on {rules.symbol}, the most allowed is {f[key]}")


def _check_iceberg_parts(request: OrderRequest, rules: SymbolRules) -> None:
    f = rules._parsed.get("ICEBERG_PARTS")
    if f is None or request.iceberg_amount is None:
        return
    parts = (request.amount / request.iceberg_amount).to_integral_value(ROUND_CEILING)  # type: ignore[operator]
    if parts > f["limit"]:  # type: ignore[operator]
        raise _fail(
            "ICEBERG_PARTS",
            "iceberg_amount",
            f"amount {plain(request.amount)} in parts of {plain(request.iceberg_amount)} makes {parts} parts, "  # type: ignore[arg-type]
            f"more than {f['limit']}; raise iceberg_amount to at least {plain(request.amount / f['limit'])}",  # type: ignore[arg-type, operator]
        )


def trails_above(request: OrderRequest) -> bool:
    """Whether a trailing stop triggers on a rise (stop-loss buy, take-profit sell): Binance's
    "above" deltas of TRAILING_DELTA apply to it, the "below" ones otherwise."""
    return request.type.is_stop_loss == (request.side is Side.BUY)


def _check_trailing_delta(request: OrderRequest, rules: SymbolRules) -> None:
    f = rules._parsed.get("TRAILING_DELTA")
    delta = request.trailing_delta
    if f is None or delta is None:
        return
    where = "Above" if trails_above(request) else "Below"
    low, high = f[f"minTrailing{where}Delta"], f[f"maxTrailing{where}Delta"]
    if not low <= delta <= high:  # type: ignore[operator]
        raise _fail(
            "TRAILING_DELTA",
            "trailing_delta",
            f"trailing_delta {delta} bps is outside {low}..{high} for a {request.type} {request.side.value}",
        )
