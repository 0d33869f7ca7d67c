"""A matching core with Binance spot semantics. Pure: no I/O, no clock; time is passed in.

One :class:`MatchingEngine` holds one account's balances and orders against a synthetic book
built around each symbol's last price:

* MARKET orders walk the book level by level (by quantity or by quote amount) and expire
  whatever the book cannot fill;
* LIMIT orders take what is marketable, then rest (GTC), expire the rest (IOC) or fill
  completely or not at all (FOK); resting orders fill, as maker, when the last price reaches
  them, up to one book level per price update, so large orders fill partially;
* LIMIT_MAKER orders that would take are rejected (-2010);
* STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT orders wait for their trigger (stop-loss: buy when the
  price rises to the stop, sell when it falls to it; take-profit the reverse), then work as
  limit orders; a stop that would trigger at once is rejected (-2010);
* fees are charged on what the account receives: base on buys, quote on sells, rounded to the
  asset's precision; funds for open orders are locked and balances never go negative.

Every call returns the :class:`Execution` events it caused, in order, for a store, a user data
stream or a blotter to consume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from workbench.errors import InsufficientBalance, InvalidOrder, OrderNotFound, OrderRejected
from workbench.filters import SymbolRules, _on_grid, check_order, rules_for
from workbench.model import (
    ZERO,
    Balance,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

BPS = Decimal("0.0001")


@dataclass(frozen=True)
class Fees:
    """Commission rates as fractions: Binance's standard spot rate is 0.1% for both."""

    maker: Decimal = Decimal("0.001")
    taker: Decimal = Decimal("0.001")


@dataclass(frozen=True)
class BookConfig:
    """Shape of the synthetic book: full spread and level spacing in basis points, quote
    notional per level, number of levels a side."""

    spread_bps: Decimal = Decimal(2)
    level_step_bps: Decimal = Decimal(1)
    level_notional: Decimal = Decimal(100_000)
    levels: int = 10


@dataclass(frozen=True)
class Level:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Book:
    """Best first on both sides."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @property
    def mid(self) -> Decimal:
        return (self.bids[0].price + self.asks[0].price) / 2


def synthetic_book(last_price: Decimal, rules: SymbolRules, config: BookConfig) -> Book:
    """A book of ``config.levels`` levels a side around ``last_price``, on the tick and step grid."""
    tick = rules.tick_size or Decimal("1e-8")
    half = last_price * config.spread_bps * BPS / 2
    best_bid = rules.round_price(last_price - half, ROUND_FLOOR)
    best_ask = max(rules.round_price(last_price + half, ROUND_CEILING), best_bid + tick)
    gap = max(rules.round_price(last_price * config.level_step_bps * BPS, ROUND_CEILING), tick)
    lot_step = rules.step_size()
    step = lot_step or Decimal("1e-8")

    def level(price: Decimal) -> Level:
        return Level(price, max(_on_grid(config.level_notional / price, lot_step, ROUND_DOWN), step))

    bids = tuple(level(best_bid - i * gap) for i in range(config.levels) if best_bid - i * gap > 0)
    asks = tuple(level(best_ask + i * gap) for i in range(config.levels))
    return Book(bids, asks)


@dataclass(frozen=True)
class Execution:
    """One event of an order: ``kind`` is Binance's execution type (NEW, TRADE, CANCELED,
    EXPIRED); ``order`` is a snapshot after the event; ``fill`` is set for TRADE."""

    kind: str
    order: Order
    fill: Fill | None = None


class MatchingEngine:
    """One account trading against synthetic books. See the module docstring for the rules."""

    def __init__(
        self,
        rules: Mapping[str, SymbolRules],
        balances: Mapping[str, Decimal | int | str],
        *,
        fees: Fees = Fees(),
        book: BookConfig = BookConfig(),
    ) -> None:
        self.rules = dict(rules)
        self.fees = fees
        self.book_config = book
        self.free: dict[str, Decimal] = {asset: Decimal(str(v)) for asset, v in balances.items()}
        self.locked: dict[str, Decimal] = {asset: ZERO for asset in self.free}
        self.last_price: dict[str, Decimal] = {}
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}  # the open subset of orders, by id
        self._by_client: dict[str, str] = {}
        self._books: dict[str, tuple[Decimal, Book]] = {}
        self._order_seq = 0
        self._trade_seq = 0

    # -- queries ----------------------------------------------------------------------------

    def balances(self) -> dict[str, Balance]:
        return {a: Balance(a, self.free[a], self.locked[a]) for a in sorted(self.free)}

    def book(self, symbol: str) -> Book:
        rules = rules_for(symbol, self.rules)
        if symbol not in self.last_price:
            raise InvalidOrder(
                f"{symbol} has no market price yet: feed one with set_price() before trading.",
                code=-1013,
                msg="Market is closed.",
                field="symbol",
                rule="price",
            )
        last = self.last_price[symbol]
        cached = self._books.get(symbol)
        if cached is None or cached[0] != last:  # books are immutable: one per price is enough
            cached = self._books[symbol] = (last, synthetic_book(last, rules, self.book_config))
        return cached[1]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o.snapshot() for o in self._open.values() if symbol in (None, o.symbol)]

    def get_order(self, symbol: str, *, id: str | None = None, client_order_id: str | None = None) -> Order:
        """The order with venue ``id`` or ``client_order_id``; :class:`OrderNotFound` if none."""
        return self._find(symbol, id, client_order_id).snapshot()

    # -- commands ---------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | int | str, now: int) -> list[Execution]:
        """A new last price: trigger stops and fill resting orders it reaches."""
        self.last_price[symbol] = Decimal(str(price))
        events: list[Execution] = []
        for order in [o for o in self._open.values() if o.symbol == symbol]:  # a copy: fills close orders
            if order.type.is_stop and not order.triggered:
                if not self._trigger_reached(order, self.last_price[symbol]):
                    continue
                order.triggered = True
                events += self._take(order, order.price, now)
                events += self._finish_taker(order, now)
            else:
                events += self._fill_resting(order, now)
        return events

    def create_order(self, request: OrderRequest, client_order_id: str, now: int) -> list[Execution]:
        """Validate, accept and match one order. Raises an :class:`OrderRejected` subclass, with
        Binance's code and message, and changes nothing, when the order is refused."""
        rules = rules_for(request.symbol, self.rules)
        book = self.book(request.symbol)
        previous = self._by_client.get(client_order_id)
        if previous is not None and self.orders[previous].is_open:
            raise OrderRejected(
                f"An open order with client_order_id={client_order_id!r} exists already.",
                code=-2010,
                msg="Duplicate order sent.",
                field="client_order_id",
                rule="unique",
            )
        last = self.last_price[request.symbol]
        check_order(request, rules, avg_price=last, open_orders=len(self.open_orders(request.symbol)))
        self._check_would_trigger_or_take(request, book, last)
        self._check_funds(request, rules, book)

        self._order_seq += 1
        order = Order.from_request(request, client_order_id, now, id=str(self._order_seq))
        self.orders[order.id] = order  # type: ignore[index]
        self._open[order.id] = order  # type: ignore[index]
        self._by_client[client_order_id] = order.id  # type: ignore[assignment]
        self._lock(order, order.remaining)  # type: ignore[arg-type]
        events = [Execution("NEW", order.snapshot())]
        if not order.type.is_stop:
            limit = None if order.type is OrderType.MARKET else order.price
            events += self._take(order, limit, now)
            events += self._finish_taker(order, now)
        return events

    def cancel_order(
        self, symbol: str, *, id: str | None = None, client_order_id: str | None = None, now: int
    ) -> Execution:
        """Cancel one open order; :class:`OrderNotFound` (-2011) if it is not open."""
        order = self._find(symbol, id, client_order_id)
        if not order.is_open:
            raise OrderNotFound(
                f"Order {order.client_order_id} on {symbol} is {order.status}, not open: nothing to cancel."
            )
        return self._close(order, OrderStatus.CANCELED, now)

    def cancel_all_orders(self, symbol: str, now: int) -> list[Execution]:
        return [self._close(self.orders[o.id], OrderStatus.CANCELED, now) for o in self.open_orders(symbol)]  # type: ignore[index]

    # -- rules ------------------------------------------------------------------------------

    @staticmethod
    def _trigger_reached(order: Order | OrderRequest, price: Decimal) -> bool:
        rising = (order.type is OrderType.STOP_LOSS_LIMIT) == (order.side is Side.BUY)
        return price >= order.stop_price if rising else price <= order.stop_price  # type: ignore[operator]

    def _check_would_trigger_or_take(self, request: OrderRequest, book: Book, last: Decimal) -> None:
        if request.type.is_stop and self._trigger_reached(request, last):
            raise OrderRejected(
                f"stop_price {request.stop_price} would trigger at once: the last price is {last}.",
                code=-2010,
                msg="Order would trigger immediately.",
                field="stop_price",
                rule="trigger",
            )
        if request.type is OrderType.LIMIT_MAKER and _marketable(request.side, request.price, book):
            best = book.asks[0].price if request.side is Side.BUY else book.bids[0].price
            raise OrderRejected(
                f"LIMIT_MAKER price {request.price} would take liquidity at {best}; move it behind the spread.",
                code=-2010,
                msg="Order would immediately match and take.",
                field="price",
                rule="maker_only",
            )

    def _check_funds(self, request: OrderRequest, rules: SymbolRules, book: Book) -> None:
        if request.type is not OrderType.MARKET:
            asset = rules.quote if request.side is Side.BUY else rules.base
            need = request.amount * request.price if request.side is Side.BUY else request.amount  # type: ignore[operator]
        elif request.side is Side.BUY:
            asset = rules.quote
            need = request.quote_amount or sum(
                (f.price * f.amount for f in _walk(book.asks, request.amount, None, None, rules)[0]), ZERO
            )
        else:
            asset = rules.base
            need = request.amount or sum(
                (f.amount for f in _walk(book.bids, None, request.quote_amount, None, rules)[0]), ZERO
            )
        have = self.free.get(asset, ZERO)
        if need > have:
            raise InsufficientBalance(
                f"This order needs {need.normalize()} {asset} but only {have.normalize()} {asset} is free.",
                code=-2010,
                msg="Account has insufficient balance for requested action.",
                field="amount",
                rule="balance",
            )

    # -- matching ---------------------------------------------------------------------------

    def _take(self, order: Order, limit: Decimal | None, now: int) -> list[Execution]:
        rules = self.rules[order.symbol]
        book = self.book(order.symbol)
        levels = book.asks if order.side is Side.BUY else book.bids
        quote_left = None if order.quote_amount is None else order.quote_amount - order.cost
        portions, exhausted = _walk(levels, order.remaining, quote_left, limit, rules, order.side)
        taken = sum((p.amount for p in portions), ZERO)
        if order.time_in_force is TimeInForce.FOK and taken < order.remaining:  # type: ignore[operator]
            return []
        if order.amount is None and not exhausted:  # the quote is spent to the last whole step
            order.amount = taken
        return [self._fill(order, p.price, p.amount, False, now) for p in portions]

    def _finish_taker(self, order: Order, now: int) -> list[Execution]:
        """After taking: market, IOC and FOK orders expire what is left; others rest."""
        if not order.is_open:
            return []
        if order.type is OrderType.MARKET or order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return [self._close(order, OrderStatus.EXPIRED, now)]
        return []

    def _fill_resting(self, order: Order, now: int) -> list[Execution]:
        last = self.last_price[order.symbol]
        crossed = last <= order.price if order.side is Side.BUY else last >= order.price  # type: ignore[operator]
        if not crossed:
            return []
        rules = self.rules[order.symbol]
        available = max(rules.round_amount(self.book_config.level_notional / order.price), rules.step_size())  # type: ignore[operator]
        return [self._fill(order, order.price, min(available, order.remaining), True, now)]  # type: ignore[arg-type, type-var]

    def _fill(self, order: Order, price: Decimal, amount: Decimal, maker: bool, now: int) -> Execution:
        rules = self.rules[order.symbol]
        cost = price * amount
        rate = self.fees.maker if maker else self.fees.taker
        if order.side is Side.BUY:
            fee_currency, precision = rules.base, rules.base_precision
            fee = (amount * rate).quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP)
            self._unlock(order, amount)
            self.free[rules.quote] -= cost
            self._credit(rules.base, amount - fee)
        else:
            fee_currency, precision = rules.quote, rules.quote_precision
            fee = (cost * rate).quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP)
            self._unlock(order, amount)
            self.free[rules.base] -= amount
            self._credit(rules.quote, cost - fee)
        order.filled += amount
        order.cost += cost
        order.fees[fee_currency] = order.fees.get(fee_currency, ZERO) + fee
        order.last_update = now
        complete = order.amount is not None and order.filled >= order.amount
        order.status = OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED
        if complete:
            self._open.pop(order.id, None)  # type: ignore[arg-type]
        self._trade_seq += 1
        fill = Fill(
            trade_id=str(self._trade_seq),
            order_id=order.id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            amount=amount,
            cost=cost,
            fee=fee,
            fee_currency=fee_currency,
            is_maker=maker,
            timestamp=now,
        )
        return Execution("TRADE", order.snapshot(), fill)

    def _close(self, order: Order, status: OrderStatus, now: int) -> Execution:
        if order.amount is None:  # a quote-amount market order: what it filled is what it was
            order.amount = order.filled
        self._unlock(order, order.remaining)  # type: ignore[arg-type]
        self._open.pop(order.id, None)  # type: ignore[arg-type]
        order.status = status
        order.last_update = now
        return Execution(status.value, order.snapshot())

    # -- balances ---------------------------------------------------------------------------

    def _lock(self, order: Order, amount: Decimal) -> None:
        """Move the funds a resting order may spend from free to locked."""
        if order.type is OrderType.MARKET:
            return
        asset, value = self._held(order, amount)
        self.free[asset] -= value
        self.locked[asset] = self.locked.get(asset, ZERO) + value

    def _unlock(self, order: Order, amount: Decimal) -> None:
        """Return the locked funds of ``amount`` of ``order`` to free (fills then spend them)."""
        if order.type is OrderType.MARKET:
            return
        asset, value = self._held(order, amount)
        self.locked[asset] -= value
        self.free[asset] += value

    def _held(self, order: Order, amount: Decimal) -> tuple[str, Decimal]:
        rules = self.rules[order.symbol]
        if order.side is Side.BUY:
            return rules.quote, amount * order.price  # type: ignore[operator]
        return rules.base, amount

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount
        self.locked.setdefault(asset, ZERO)

    def _find(self, symbol: str, id: str | None, client_order_id: str | None) -> Order:
        key = id if id is not None else self._by_client.get(client_order_id or "")
        order = self.orders.get(key or "")
        if order is None or order.symbol != symbol:
            raise OrderNotFound(
                f"No order id={id!r} client_order_id={client_order_id!r} on {symbol}; "
                "check the symbol and the id (fetch_open_orders lists open ones)."
            )
        return order


def _marketable(side: Side, price: Decimal | None, book: Book) -> bool:
    return price >= book.asks[0].price if side is Side.BUY else price <= book.bids[0].price  # type: ignore[operator]


def _walk(
    levels: Iterable[Level],
    amount: Decimal | None,
    quote: Decimal | None,
    limit: Decimal | None,
    rules: SymbolRules,
    side: Side = Side.BUY,
) -> tuple[list[Level], bool]:
    """The portions of ``levels`` an order for ``amount`` (or ``quote`` to spend) takes, up to
    ``limit``, and whether it ran out of levels (or reached its limit) before it was done.
    Quote-amount portions are rounded down to the market step size."""
    portions = []
    for level in levels:
        if limit is not None and (level.price > limit if side is Side.BUY else level.price < limit):
            return portions, True
        if amount is not None:
            take = min(level.amount, amount)
            amount -= take
        else:
            take = min(level.amount, _floor(quote / level.price, rules))  # type: ignore[operator]
            quote -= take * level.price  # type: ignore[operator]
        if take > 0:
            portions.append(Level(level.price, take))
        if take < level.amount:
            return portions, False
    return portions, True


def _floor(amount: Decimal, rules: SymbolRules) -> Decimal:
    step = rules.step_size(market=True)
    return (amount / step).to_integral_value(ROUND_DOWN) * step if step else amount
