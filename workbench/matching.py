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
  limit orders; STOP_LOSS and TAKE_PROFIT trigger alike, then take the book as a MARKET order
  (a buy that the free funds no longer cover then expires: it locks nothing while it waits, a
  sell locks its amount); a stop that would trigger at once is rejected (-2010); a type the
  symbol does not list in its ``orderTypes`` is rejected (-2010);
* fees are charged on what the account receives: base on buys, quote on sells, rounded to the
  asset's precision; funds for open orders are locked and balances never go negative;
* trailing stops (``trailing_delta`` in bips) start tracking at placement, or once the stop price
  is reached when one is given, and trigger when the price retraces by the delta from the best
  price since (buys: a rise from the lowest, sells: a fall from the highest; trailing-stop FAQ);
* icebergs show ``iceberg_amount`` at a time: a resting iceberg fills at most one part a price update;
* self-trade prevention: a taker that reaches the account's own working order on the other side
  (at that order's price, ahead of the synthetic liquidity at the same or worse prices) applies
  its ``self_trade_prevention`` mode (stp_faq.md) instead of trading; ``NONE`` lets the taker
  trade the synthetic book past it (the own order fills later, when the price reaches it);
* order lists (rest-api.md "New order list"): an OCO's legs share one lock of funds; when one
  leg triggers, fills or is STP-expired the other expires, and the list is ``ALL_DONE``; an
  OTO(CO)'s pending orders are ``PENDING_NEW``, hold nothing, and are placed when the working
  order fills completely (expired if it ends otherwise); canceling any order of a list cancels
  the list; ``LIST_STATUS`` executions report a list's ``EXEC_STARTED`` and ``ALL_DONE``;
* amend keep priority (faqs/order_amend_keep_priority.md): an open order's amount is reduced in
  place, keeping its id and its place in the queue (``REPLACED``); an OCO pair's legs change
  together; a list order whose client order id changes reports its list ``UPDATED``.

Every call returns the :class:`Execution` events it caused, in order, for a store, a user data
stream or a blotter to consume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from workbench.errors import InsufficientBalance, InvalidOrder, OrderNotFound, OrderRejected
from workbench.filters import (
    SymbolRules,
    _on_grid,
    check_amend,
    check_order,
    check_order_list,
    rules_for,
    trails_above,
)
from workbench.model import (
    ZERO,
    Amendment,
    Balance,
    ContingencyType,
    Fill,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    PreventedMatch,
    SelfTradePrevention,
    Side,
    TimeInForce,
    missing_parameter,
    to_decimal,
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
    best_bid, best_ask = best_prices(last_price, rules, config)
    gap = max(rules.round_price(last_price * config.level_step_bps * BPS, ROUND_CEILING), tick)

    lot_step = rules.step_size()

    def level(price: Decimal) -> Level:
        return Level(price, level_amount(price, rules, config, lot_step))

    bids = tuple(level(best_bid - i * gap) for i in range(config.levels) if best_bid - i * gap > 0)
    asks = tuple(level(best_ask + i * gap) for i in range(config.levels))
    return Book(bids, asks)


def best_prices(last_price: Decimal, rules: SymbolRules, config: BookConfig) -> tuple[Decimal, Decimal]:
    """The best bid and ask of :func:`synthetic_book` at ``last_price``: half the spread away, on the tick."""
    half = last_price * config.spread_bps * BPS / 2
    best_bid = rules.round_price(last_price - half, ROUND_FLOOR)
    tick = rules.tick_size or Decimal("1e-8")
    return best_bid, max(rules.round_price(last_price + half, ROUND_CEILING), best_bid + tick)


def level_amount(price: Decimal, rules: SymbolRules, config: BookConfig, lot_step: Decimal | None = None) -> Decimal:
    """What one level of :func:`synthetic_book` at ``price`` holds: its notional in whole steps (one at
    least); ``lot_step`` is the symbol's (given once for a whole book)."""
    lot_step = rules.step_size() if lot_step is None else lot_step
    return max(_on_grid(config.level_notional / price, lot_step, ROUND_DOWN), lot_step or Decimal("1e-8"))


@dataclass(frozen=True)
class Execution:
    """One event of an order: ``kind`` is Binance's execution type (NEW, TRADE, CANCELED,
    EXPIRED, TRADE_PREVENTION, REPLACED) or LIST_STATUS; ``order`` is a snapshot after the event; ``fill``
    is set for TRADE; ``order_list`` (a snapshot) for LIST_STATUS, whose ``order`` is the order
    that changed the list."""

    kind: str
    order: Order
    fill: Fill | None = None
    order_list: OrderList | None = None


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
        self.order_lists: dict[int, OrderList] = {}
        self._open_lists: dict[int, OrderList] = {}  # the open subset of order_lists, by id
        self._lists_by_client: dict[str, int] = {}
        self._list_seq = 0
        self.prevented: list[PreventedMatch] = []
        self.amendments: list[Amendment] = []

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

    def get_order_list(
        self, symbol: str | None = None, *, id: int | None = None, list_client_order_id: str | None = None
    ) -> OrderList:
        """The order list with ``id`` or ``list_client_order_id``; :class:`OrderNotFound` if none."""
        return self._find_list(symbol, id, list_client_order_id).snapshot()

    def order_lists_of(self, symbol: str | None = None, *, open_only: bool = False) -> list[OrderList]:
        """Order lists oldest first (Binance's ``allOrderList``; ``openOrderList`` with ``open_only``)."""
        lists = self._open_lists if open_only else self.order_lists
        return [lst.snapshot() for lst in lists.values() if symbol in (None, lst.symbol)]

    def prevented_matches(self, symbol: str, *, order_id: str | None = None) -> list[PreventedMatch]:
        """Self-trades prevented on ``symbol`` (Binance's ``myPreventedMatches``), optionally of one order."""
        return [
            m for m in self.prevented if m.symbol == symbol and order_id in (None, m.taker_order_id, m.maker_order_id)
        ]

    def amendments_of(self, symbol: str, order_id: str) -> list[Amendment]:
        """The amendments of one order, oldest first (Binance's ``order/amendments``)."""
        return [a for a in self.amendments if a.symbol == symbol and a.order_id == order_id]

    def band(self, symbol: str) -> tuple[Decimal | None, Decimal | None] | None:
        """The open range ``(floor, ceiling)`` of last prices of ``symbol`` that change no open
        order (:meth:`set_price` would only set the price): above every untriggered falling stop
        and resting buy, below every rising stop and resting sell; ``None`` ends are unbounded.
        ``None`` while a trailing stop is open (it tracks every price)."""
        floor = ceiling = None
        for order in self._open.values():
            if order.symbol != symbol or order.status is OrderStatus.PENDING_NEW:
                continue
            if order.trailing_delta is not None:
                return None
            if order.type.is_stop and not order.triggered:
                level, rises = order.stop_price, trails_above(order)  # type: ignore[arg-type]
            else:
                level, rises = order.price, order.side is Side.SELL  # a sell fills at or above its price
            if rises:
                ceiling = level if ceiling is None else min(ceiling, level)  # type: ignore[type-var]
            else:
                floor = level if floor is None else max(floor, level)  # type: ignore[type-var]
        return floor, ceiling

    def untouched(self, symbol: str, low: Decimal, high: Decimal) -> bool:
        """Whether no last price of ``symbol`` in ``[low, high]`` would change any open order: the
        range lies inside :meth:`band`."""
        band = self.band(symbol)
        return band is not None and (band[0] is None or low > band[0]) and (band[1] is None or high < band[1])

    # -- commands ---------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | int | str, now: int) -> list[Execution]:
        """A new last price: trigger stops and fill resting orders it reaches."""
        self.last_price[symbol] = Decimal(str(price))
        events: list[Execution] = []
        for order in [o for o in self._open.values() if o.symbol == symbol]:  # a copy: fills close orders
            events += self._follow(self._work(order, now), now)
        return events

    def create_order(self, request: OrderRequest, client_order_id: str, now: int) -> list[Execution]:
        """Validate, accept and match one order. Raises an :class:`OrderRejected` subclass, with
        Binance's code and message, and changes nothing, when the order is refused."""
        rules = rules_for(request.symbol, self.rules)
        book = self.book(request.symbol)
        self._check_unique(client_order_id, "client_order_id", self._by_client, self.orders)
        last = self.last_price[request.symbol]
        open_orders, open_algo = self._open_counts(request.symbol)
        check_order(request, rules, avg_price=last, open_orders=open_orders, open_algo_orders=open_algo)
        self._check_would_trigger_or_take(request, book, last)
        self._check_funds(request, rules, book)

        order = self._accept(request, client_order_id, now)
        events = [Execution("NEW", order.snapshot())]
        if not order.type.is_stop:
            events += self._take_now(order, now)
        return self._follow(events, now)

    def create_order_list(self, request: OrderListRequest, list_client_order_id: str, now: int) -> list[Execution]:
        """Validate, accept and start one order list (OCO, OTO or OTOCO): every leg must carry a
        ``client_order_id``. Returns the NEW events of its orders (pending ones read
        ``PENDING_NEW``), its ``EXEC_STARTED`` LIST_STATUS, then whatever the working order did.
        Raises an :class:`OrderRejected` subclass, and changes nothing, when the list is refused."""
        symbol, kind, legs = request.symbol, request.contingency_type, request.orders
        rules = rules_for(symbol, self.rules)
        book = self.book(symbol)
        last = self.last_price[symbol]
        self._check_unique(list_client_order_id, "list_client_order_id", self._lists_by_client, self.order_lists)
        ids = [leg.client_order_id for leg in legs]
        if None in ids or len(set(ids)) < len(ids):
            raise missing_parameter("client_order_id", "Every order of a list needs its own.")
        for cid in ids:
            self._check_unique(cid, "client_order_id", self._by_client, self.orders)  # type: ignore[arg-type]
        check_order_list(rules, sum(lst.symbol == symbol for lst in self._open_lists.values()))
        open_orders, open_algo = self._open_counts(symbol)
        for leg in legs:
            check_order(leg, rules, avg_price=last, open_orders=open_orders, open_algo_orders=open_algo)
            open_orders, open_algo = open_orders + 1, open_algo + leg.type.is_stop
        working = legs if kind is ContingencyType.OCO else legs[:1]
        for leg in working:
            self._check_would_trigger_or_take(leg, book, last)
        if kind is ContingencyType.OCO:
            _check_oco_prices(legs[0], legs[1], last)
        pair = () if kind is ContingencyType.OTO else legs[-2:]
        sharing = min(pair, key=lambda leg: self._held(leg, leg.amount)[1]) if pair else None  # type: ignore[arg-type]
        self._check_funds(legs[0] if kind is not ContingencyType.OCO else _other(pair, sharing), rules, book)

        self._list_seq += 1
        placed = [
            self._accept(leg, leg.client_order_id, now, self._list_seq, leg not in working, leg is not sharing)  # type: ignore[arg-type]
            for leg in legs
        ]
        order_list = OrderList(
            self._list_seq,
            list_client_order_id,
            symbol,
            kind,
            tuple(o.id for o in placed),  # type: ignore[misc]
            timestamp=now,
            last_update=now,
        )
        self.order_lists[order_list.id] = self._open_lists[order_list.id] = order_list
        self._lists_by_client[list_client_order_id] = order_list.id
        events = [Execution("NEW", o.snapshot()) for o in placed]
        events.append(Execution("LIST_STATUS", placed[0].snapshot(), order_list=order_list.snapshot()))
        if kind is not ContingencyType.OCO:
            events += self._follow(self._take_now(placed[0], now), now)
        return events

    def amend_order(
        self,
        symbol: str,
        *,
        id: str | None = None,
        client_order_id: str | None = None,
        new_amount: Decimal | str,
        new_client_order_id: str,
        now: int,
    ) -> list[Execution]:
        """Reduce an open order's amount to ``new_amount`` in place, keeping its priority (Binance's
        "order amend keep priority"), and give it ``new_client_order_id`` (its own keeps it). An
        OCO pair's legs share their amount, so both change. An order left with nothing to fill
        expires. Returns the REPLACED events, the amended order's first, then (when a list order's
        client order id changed) its list's LIST_STATUS ``UPDATED``, then what ended. Raises
        :class:`OrderNotFound` if the order is not open and :class:`OrderRejected` (-2038 for the
        matching engine's refusals, -1013 for filters) without changing anything."""
        order = self._find(symbol, id, client_order_id)
        if not order.is_open:
            raise OrderNotFound(f"Order {order.client_order_id} on {symbol} is {order.status}: nothing to amend.")
        amount = to_decimal(new_amount, "amount")
        if amount >= order.amount:  # type: ignore[operator]
            same = amount == order.amount
            raise OrderRejected(
                f"new amount {amount} must be below the order's amount {order.amount}: an amendment only reduces.",
                code=-2038,
                msg="The requested action would change no state; rejecting"
                if same
                else "Order amend (quantity increase) is not supported.",
                field="amount",
                rule="amend",
            )
        renamed = new_client_order_id != order.client_order_id
        if renamed:
            self._check_unique(new_client_order_id, "client_order_id", self._by_client, self.orders, code=-2038)
        iceberg = order.iceberg_amount if order.iceberg_amount is not None and order.iceberg_amount < amount else None
        request = OrderRequest(  # the order as it would be: the filters of its new amount apply
            order.symbol, order.side, order.type, amount=amount, price=order.price, stop_price=order.stop_price,
            time_in_force=order.time_in_force, trailing_delta=order.trailing_delta, iceberg_amount=iceberg,
            self_trade_prevention=order.self_trade_prevention,
        )  # fmt: skip
        rules = self.rules[symbol]
        done = len(self.amendments_of(symbol, order.id))  # type: ignore[arg-type]
        check_amend(request, rules, avg_price=self.last_price[symbol], amendments=done)
        events = []
        for leg in [order, *self._pair(order)]:
            before, old_id = leg.remaining, leg.client_order_id
            if leg is order and renamed:
                self._by_client.pop(old_id, None)
                self._by_client[new_client_order_id] = leg.id  # type: ignore[assignment]
                leg.client_order_id = new_client_order_id
            seq = len(self.amendments) + 1
            self.amendments.append(Amendment(seq, symbol, leg.id, old_id, leg.client_order_id, leg.amount, amount, now))  # type: ignore[arg-type]
            leg.amount = max(amount, leg.filled + leg.prevented_quantity)
            leg.last_update = now
            self._unlock(leg, before - leg.remaining)  # type: ignore[operator]
            events.append(
                self._close(leg, OrderStatus.EXPIRED, now, kind="REPLACED")
                if leg.remaining <= 0  # type: ignore[operator]
                else Execution("REPLACED", leg.snapshot())
            )
        order_list = self.order_lists.get(order.order_list_id)
        if order_list is not None and renamed:
            updated = replace(order_list.snapshot(), list_status_type=ListStatusType.UPDATED, last_update=now)
            events.append(Execution("LIST_STATUS", order.snapshot(), order_list=updated))
        return self._follow(events, now)

    def cancel_order(
        self, symbol: str, *, id: str | None = None, client_order_id: str | None = None, now: int
    ) -> Execution:
        """Cancel one open order; :class:`OrderNotFound` (-2011) if it is not open."""
        return self.cancel_order_events(symbol, id=id, client_order_id=client_order_id, now=now)[0]

    def cancel_order_events(
        self, symbol: str, *, id: str | None = None, client_order_id: str | None = None, now: int
    ) -> list[Execution]:
        """Cancel one open order: its CANCELED event, then, if it belongs to an order list, the
        cancellation of the list's other open orders and the list's ALL_DONE."""
        order = self._find(symbol, id, client_order_id)
        if not order.is_open:
            raise OrderNotFound(
                f"Order {order.client_order_id} on {symbol} is {order.status}, not open: nothing to cancel."
            )
        return self._follow([self._close(order, OrderStatus.CANCELED, now)], now)

    def cancel_all_orders(self, symbol: str, now: int) -> list[Execution]:
        """Cancel every open order of ``symbol``, order lists included (with their LIST_STATUS)."""
        events: list[Execution] = []
        for order in [o for o in self._open.values() if o.symbol == symbol]:
            if order.is_open:  # canceling a list's order cancels its siblings
                events += self._follow([self._close(order, OrderStatus.CANCELED, now)], now)
        return events

    def cancel_order_list(
        self, symbol: str, *, id: int | None = None, list_client_order_id: str | None = None, now: int
    ) -> list[Execution]:
        """Cancel every open order of an order list: their CANCELED events and the list's ALL_DONE;
        :class:`OrderNotFound` if the list is unknown or done."""
        order_list = self._find_list(symbol, id, list_client_order_id)
        if not order_list.is_open:
            raise OrderNotFound(
                f"Order list {order_list.list_client_order_id} on {symbol} is ALL_DONE: nothing to cancel."
            )
        first = next(self.orders[i] for i in order_list.orders if self.orders[i].is_open)
        return self._follow([self._close(first, OrderStatus.CANCELED, now)], now)

    # -- rules ------------------------------------------------------------------------------

    @staticmethod
    def _trigger_reached(order: Order | OrderRequest, price: Decimal) -> bool:
        """Whether ``price`` meets the stop price (stop-loss buys and take-profit sells: at or above)."""
        return price >= order.stop_price if trails_above(order) else price <= order.stop_price  # type: ignore[arg-type, operator]

    def _should_trigger(self, order: Order, price: Decimal, now: int) -> bool:
        """Whether a stop triggers at ``price``; a trailing stop also tracks its best price here."""
        if order.trailing_delta is None:
            return self._trigger_reached(order, price)
        best = order.trail_extreme
        if best is None:  # not tracking yet: it starts when the stop price is reached
            if self._trigger_reached(order, price):
                order.trail_extreme, order.trailing_time = price, now
            return False
        retrace = order.trailing_delta * BPS
        if order.side is Side.BUY:  # buys trigger on a rise from the lowest price
            order.trail_extreme = min(best, price)
            return price >= order.trail_extreme * (1 + retrace)
        order.trail_extreme = max(best, price)  # sells on a fall from the highest
        return price <= order.trail_extreme * (1 - retrace)

    def _check_unique(
        self, key: str, name: str, index: Mapping[str, object], items: Mapping[object, object], code: int = -2010
    ) -> None:
        previous = index.get(key)
        if previous is not None and items[previous].is_open:  # type: ignore[attr-defined]
            raise OrderRejected(
                f"An open order or list with {name}={key!r} exists already.",
                code=code,
                msg="Duplicate order sent.",
                field=name,
                rule="unique",
            )

    def _open_counts(self, symbol: str) -> tuple[int, int]:
        """How many orders, and how many algo (stop) orders, are open on ``symbol``."""
        open_ = [o for o in self._open.values() if o.symbol == symbol]
        return len(open_), sum(o.type.is_stop for o in open_)

    def _check_would_trigger_or_take(self, request: OrderRequest, book: Book, last: Decimal) -> None:
        if request.type.is_stop and request.trailing_delta is None and self._trigger_reached(request, last):
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

    def _check_funds(self, request: OrderRequest | Order, rules: SymbolRules, book: Book) -> None:
        if not request.type.is_market:
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

    # -- accepting and working --------------------------------------------------------------

    def _accept(
        self,
        request: OrderRequest,
        client_order_id: str,
        now: int,
        list_id: int = -1,
        pending: bool = False,
        holds_funds: bool = True,
    ) -> Order:
        self._order_seq += 1
        order = Order.from_request(request, client_order_id, now, id=str(self._order_seq))
        order.order_list_id, order.holds_funds = list_id, holds_funds
        if pending:
            order.status = OrderStatus.PENDING_NEW
        self.orders[order.id] = order  # type: ignore[index]
        self._open[order.id] = order  # type: ignore[index]
        self._by_client[client_order_id] = order.id  # type: ignore[assignment]
        if not pending:
            self._start(order, now)
        return order

    def _start(self, order: Order, now: int) -> None:
        """An order goes on the book: its funds are locked, a trailing stop may start tracking."""
        self._lock(order, order.remaining)  # type: ignore[arg-type]
        if order.trailing_delta is not None and order.stop_price is None:
            last = self.last_price[order.symbol]
            order.trail_extreme, order.trailing_time = last, now

    def _take_now(self, order: Order, now: int) -> list[Execution]:
        """A new non-stop order takes what it can; market, IOC and FOK orders expire the rest."""
        limit = None if order.type.is_market else order.price
        return self._take(order, limit, now) + self._finish_taker(order, now)

    def _work(self, order: Order, now: int) -> list[Execution]:
        """What the last price does to one open order: trigger a stop or fill a resting order."""
        if not order.is_open or order.status is OrderStatus.PENDING_NEW:
            return []
        last = self.last_price[order.symbol]
        if order.type.is_stop and not order.triggered:
            if not self._should_trigger(order, last, now):
                return []
            events = self._resolve_oco(order, now)
            order.triggered = True
            if order.type.is_market and order.side is Side.BUY:  # it locked nothing: can it still pay?
                try:
                    self._check_funds(order, self.rules[order.symbol], self.book(order.symbol))
                except InsufficientBalance:
                    return events + [self._close(order, OrderStatus.EXPIRED, now)]
            return events + self._take(order, order.price, now) + self._finish_taker(order, now)
        return self._fill_resting(order, now)

    # -- order lists ------------------------------------------------------------------------

    def _find_list(self, symbol: str | None, id: int | None, list_client_order_id: str | None) -> OrderList:
        key = id if id is not None else self._lists_by_client.get(list_client_order_id or "")
        order_list = self.order_lists.get(key)  # type: ignore[arg-type]
        if order_list is None or symbol not in (None, order_list.symbol):
            raise OrderNotFound(
                f"No order list id={id!r} list_client_order_id={list_client_order_id!r} on {symbol}; "
                "check the symbol and the id (open order lists are listed by order_lists_of)."
            )
        return order_list

    def _pair(self, order: Order) -> list[Order]:
        """The other leg of ``order``'s OCO pair (an OCO's two orders, an OTOCO's pending ones)."""
        order_list = self.order_lists.get(order.order_list_id)
        pair = () if order_list is None or order_list.kind is ContingencyType.OTO else order_list.orders[-2:]
        return [self.orders[i] for i in pair if i != order.id] if order.id in pair else []

    def _resolve_oco(self, order: Order, now: int) -> list[Execution]:
        """One OCO leg triggers, fills or is prevented: the other expires and hands it the funds."""
        events = [self._close(o, OrderStatus.EXPIRED, now) for o in self._pair(order) if o.is_open]
        if events and order.is_open and not order.holds_funds:
            order.holds_funds = True
            self._lock(order, order.remaining)  # type: ignore[arg-type]
        return events

    def _follow(self, events: list[Execution], now: int) -> list[Execution]:
        """``events`` with what they cause in their order lists, in order; a list that ends says
        so (LIST_STATUS ALL_DONE) after the events that ended it."""
        out: list[Execution] = []
        touched: list[tuple[OrderList, Order]] = []
        for event in events:
            out.append(event)
            order_list = self.order_lists.get(event.order.order_list_id)
            if order_list is not None and order_list.is_open:
                order = self.orders[event.order.id]  # type: ignore[index]
                out += self._follow(self._list_step(order_list, order, event.kind, now), now)
                touched.append((order_list, order))
        for order_list, order in touched:
            out += self._list_done(order_list, order, now)
        return out

    def _list_step(self, order_list: OrderList, order: Order, kind: str, now: int) -> list[Execution]:
        """What one event of ``order`` does to the other orders of its list."""
        members = [self.orders[i] for i in order_list.orders]
        if kind == "CANCELED":  # canceling one order cancels the list
            return [self._close(o, OrderStatus.CANCELED, now) for o in members if o.is_open]
        if order_list.kind is not ContingencyType.OCO and order is members[0]:  # an OTO's working order
            if order.status is OrderStatus.FILLED:
                return self._activate(members[1:], now)
            if order.status.is_final:
                return [self._close(o, OrderStatus.EXPIRED, now) for o in members[1:] if o.is_open]
            return []
        return self._resolve_oco(order, now) if kind == "TRADE_PREVENTION" else []

    def _list_done(self, order_list: OrderList, order: Order, now: int) -> list[Execution]:
        """ALL_DONE once no order of the list can still act on another."""
        open_ = [self.orders[i] for i in order_list.orders if self.orders[i].is_open]
        if not order_list.is_open or len(open_) > 1 or any(o.status is OrderStatus.PENDING_NEW for o in open_):
            return []
        order_list.list_status_type = ListStatusType.ALL_DONE
        order_list.list_order_status = ListOrderStatus.ALL_DONE
        del self._open_lists[order_list.id]
        order_list.last_update = now
        return [Execution("LIST_STATUS", order.snapshot(), order_list=order_list.snapshot())]

    def _activate(self, pending: list[Order], now: int) -> list[Execution]:
        """An OTO's working order filled: its pending orders go on the book (expired if unfunded)."""
        rules = self.rules[pending[0].symbol]
        events: list[Execution] = []
        for order in pending:
            order.status, order.last_update = OrderStatus.NEW, now
            try:
                if order.holds_funds:
                    self._check_funds(order, rules, self.book(order.symbol))  # type: ignore[arg-type]
            except InsufficientBalance:
                events.append(self._close(order, OrderStatus.EXPIRED, now))
                continue
            self._start(order, now)
            events.append(Execution("NEW", order.snapshot()))
        for order in pending:
            if order.type.is_stop or order.type is OrderType.LIMIT_MAKER:
                events += self._work(order, now)
            elif order.is_open:
                events += self._take_now(order, now)
        return events

    # -- self-trade prevention --------------------------------------------------------------

    def _own_makers(self, taker: Order, limit: Decimal | None) -> list[Order]:
        """The account's working orders a taker would reach, best price first, then oldest."""
        if taker.self_trade_prevention is SelfTradePrevention.NONE:
            return []
        buy = taker.side is Side.BUY
        makers = [
            o
            for o in self._open.values()
            if o.symbol == taker.symbol
            and o.side is not taker.side
            and o.status is not OrderStatus.PENDING_NEW
            and (o.triggered or not o.type.is_stop)
            and (limit is None or (o.price <= limit if buy else o.price >= limit))  # type: ignore[operator]
        ]
        return sorted(makers, key=lambda o: (o.price if buy else -o.price, int(o.id)))  # type: ignore[operator, arg-type]

    def _take(self, order: Order, limit: Decimal | None, now: int) -> list[Execution]:
        """Take the synthetic book up to ``limit``, meeting the account's own orders on the way."""
        events: list[Execution] = []
        tick = self.rules[order.symbol].tick_size or Decimal("1e-8")
        start = None
        for maker in self._own_makers(order, limit):
            before = maker.price - tick if order.side is Side.BUY else maker.price + tick  # type: ignore[operator]
            events += self._take_book(order, before, now, start)
            if order.status is OrderStatus.FILLED:
                return events
            events += self._follow(self._prevent(order, maker, now), now)
            if not order.is_open:
                return events
            start = maker.price
        return events + self._take_book(order, limit, now, start)

    def _prevent(self, taker: Order, maker: Order, now: int) -> list[Execution]:
        """Apply the taker's STP mode to a match with ``maker`` (stp_faq.md)."""
        mode, mine, theirs = taker.self_trade_prevention, taker.remaining, maker.remaining
        if mode is SelfTradePrevention.DECREMENT:  # both lose the match; the smaller expires
            quantity = theirs if mine is None else min(mine, theirs)  # type: ignore[type-var]
            amounts = (None if mine is None else quantity, quantity)
            expire = (mine is not None and mine <= theirs, mine is None or theirs <= mine)  # type: ignore[operator]
        else:
            expire = (mode is not SelfTradePrevention.EXPIRE_MAKER, mode is not SelfTradePrevention.EXPIRE_TAKER)
            amounts = (mine if expire[0] else None, theirs if expire[1] else None)
        match = PreventedMatch(
            len(self.prevented) + 1,
            taker.symbol,
            taker.id,
            maker.id,
            mode,
            maker.price,
            *amounts,
            now,  # type: ignore[arg-type]
        )
        self.prevented.append(match)
        events = []
        for order, amount, expires in ((maker, amounts[1], expire[1]), (taker, amounts[0], expire[0])):
            if amount is None and not expires:  # an order the match did not touch
                continue
            order.prevented_match_id, order.last_update = match.id, now
            if amount is not None:
                self._unlock(order, amount)
                order.prevented_quantity += amount
            if expires:
                events.append(self._close(order, OrderStatus.EXPIRED_IN_MATCH, now, kind="TRADE_PREVENTION"))
            else:
                events.append(Execution("TRADE_PREVENTION", order.snapshot()))
        return events

    # -- matching ---------------------------------------------------------------------------

    def _take_book(
        self, order: Order, limit: Decimal | None, now: int, start: Decimal | None = None
    ) -> list[Execution]:
        """Walk the synthetic book up to ``limit`` from ``start`` (levels better than it are taken)."""
        rules = self.rules[order.symbol]
        book = self.book(order.symbol)
        buy = order.side is Side.BUY
        levels = [
            v
            for v in (book.asks if buy else book.bids)
            if start is None or (v.price >= start if buy else v.price <= start)
        ]
        quote_left = None if order.quote_amount is None else order.quote_amount - order.cost
        portions, exhausted = _walk(levels, order.remaining, quote_left, limit, rules, order.side)
        taken = sum((p.amount for p in portions), ZERO)
        if order.time_in_force is TimeInForce.FOK and taken < order.remaining:  # type: ignore[operator]
            return []
        if order.amount is None and not exhausted:  # the quote is spent to the last whole step
            order.amount = order.filled + taken
        return [self._fill(order, p.price, p.amount, False, now) for p in portions]

    def _finish_taker(self, order: Order, now: int) -> list[Execution]:
        """After taking: market, IOC and FOK orders expire what is left; others rest."""
        if not order.is_open:
            return []
        if order.type.is_market or order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return [self._close(order, OrderStatus.EXPIRED, now)]
        return []

    def _fill_resting(self, order: Order, now: int) -> list[Execution]:
        last = self.last_price[order.symbol]
        crossed = last <= order.price if order.side is Side.BUY else last >= order.price  # type: ignore[operator]
        if not crossed:
            return []
        rules = self.rules[order.symbol]
        available = level_amount(order.price, rules, self.book_config)  # type: ignore[arg-type]  # one level a price update
        events = self._resolve_oco(order, now)
        return events + [self._fill(order, order.price, min(available, order.visible), True, now)]  # type: ignore[arg-type, type-var]

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
        complete = order.amount is not None and order.remaining <= 0  # type: ignore[operator]
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

    def _close(self, order: Order, status: OrderStatus, now: int, kind: str | None = None) -> Execution:
        if order.amount is None:  # a quote-amount market order: what it filled is what it was
            order.amount = order.filled
        self._unlock(order, order.remaining)  # type: ignore[arg-type]
        self._open.pop(order.id, None)  # type: ignore[arg-type]
        order.status = status
        order.last_update = now
        return Execution(kind or status.value, order.snapshot())

    # -- balances ---------------------------------------------------------------------------

    def _lock(self, order: Order, amount: Decimal) -> None:
        """Move the funds a resting order may spend from free to locked."""
        if not _holds(order):
            return
        asset, value = self._held(order, amount)
        self.free[asset] -= value
        self.locked[asset] = self.locked.get(asset, ZERO) + value

    def _unlock(self, order: Order, amount: Decimal) -> None:
        """Return the locked funds of ``amount`` of ``order`` to free (fills then spend them)."""
        if not _holds(order):
            return
        asset, value = self._held(order, amount)
        self.locked[asset] -= value
        self.free[asset] += value

    def _held(self, order: Order, amount: Decimal) -> tuple[str, Decimal]:
        rules = self.rules[order.symbol]
        if order.side is Side.BUY:  # a market-type buy stop locks nothing: its cost is not known yet
            return rules.quote, ZERO if order.price is None else amount * order.price
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


def _holds(order: Order) -> bool:
    """Whether ``order`` has funds locked: not market orders, pending orders, or the OCO leg
    that shares its sibling's lock."""
    return order.type is not OrderType.MARKET and order.holds_funds and order.status is not OrderStatus.PENDING_NEW


def _other(pair: tuple[OrderRequest, ...], leg: OrderRequest | None) -> OrderRequest:
    return pair[1] if pair[0] is leg else pair[0]


def _check_oco_prices(above: OrderRequest, below: OrderRequest, last: Decimal) -> None:
    """Binance's OCO price rule: the limit leg's price (a sell's above, a buy's below the last
    price) and the stop-loss leg's stop price on the other side of the last price."""
    limit, stop = (below, above) if above.type.is_stop_loss else (above, below)
    sell = above.side is Side.SELL
    price = limit.stop_price if limit.type is OrderType.TAKE_PROFIT else limit.price  # TAKE_PROFIT: its stop price
    ok = price is None or (price > last if sell else price < last)
    if stop.stop_price is not None:
        ok = ok and (stop.stop_price < last if sell else stop.stop_price > last)
    if not ok:
        rule = "limit price > last price > stop price" if sell else "limit price < last price < stop price"
        raise OrderRejected(
            f"A {above.side.value} OCO needs {rule}; the last price is {last}.",
            code=-2010,
            msg="The relationship of the prices for the orders is not correct.",
            field="price",
            rule="oco_prices",
        )


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
