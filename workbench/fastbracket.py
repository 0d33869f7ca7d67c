"""The replay's fast path for protected entries: what the event path would do for a bracket strategy.

A strategy whose intents are a ``target`` in base units reached by MARKET orders, each position
protected by an OCO (``stop_loss`` and ``take_profit``, see :mod:`workbench.intents`), does little
per trade: a market entry, an OCO placed for what the entry bought, and then either the OCO is
canceled when the target changes again and the position is sold at market, or a leg is reached
inside a bar first (the take-profit fills as maker; the stop-loss triggers and sells to the book,
or rests at its limit until the price comes back). The event path drives every one of these
through the session, the risk checks, the matching core's book and the store's writer thread.
:func:`simulate` does the same, trade by trade: numpy finds the next bar that changes the target
or reaches a resting leg (the rest change nothing), and at those bars the session's own rules run
on Decimals: the same rounding, risk checks, filters, fees, funds, ids and timestamps, written to
the store in bulk by :func:`commit`.

Most trades are the common one: bought at a change, an OCO that no bar reaches before the next
change, which asks for nothing, so the OCO is canceled and the position sold. ``_Replay._trade``
does such a trade in one step (the prices of every change are worked out in whole ticks at once)
and records it as one tuple, from which the store's rows are built as columns and the session's
orders and the venue's fills only when first read. Every other trade is stepped bar by bar.

What it does not model (a leg only partly filled, an order bigger than the best level of the book,
a refusal by the filters, the risk checks or the balance, an exit already reached when placed,
limit entries, trailing stops, other sizes than ``target``) it does not guess: the replay hands
over to the event path at the last bar where the account was flat with nothing open before it,
and the event path replays the rest from there. So does a trade still open at the end of the data
(its orders then live in the paper venue, as the event path leaves them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from fractions import Fraction
from itertools import islice

import numpy as np
import pandas as pd

from workbench.bars import path as bar_path
from workbench.bars import price as bar_price
from workbench.errors import OrderRejected
from workbench.fastreplay import Unsupported, _filter_bounds, _no_gc, paper_engine
from workbench.filters import SymbolRules, check_order
from workbench.intents import Entry, Exits, Intent, intent_frame
from workbench.matching import BPS, BookConfig, best_prices, level_amount
from workbench.model import (
    ZERO,
    ContingencyType,
    Fill,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderRequest,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from workbench.risk import MINUTE_MS, RiskState, _day
from workbench.session import (
    STOP_LIMIT_OFFSET,
    Totals,
    TradingSession,
    _close_times,
    _IntentBook,
    _is_dust,
    _next_reached,
    _size_changes,
    _too_small,
    _total_fees,
    strategy_answers,
)
from workbench.store import Store, list_rank

SUPPORTED = {"target", "stop_loss", "take_profit"}
INFINITY = Decimal("Infinity")
_new = object.__new__


def _request(symbol: str, side: Side, type: OrderType, amount: Decimal, price: Decimal | None = None,
             stop_price: Decimal | None = None, time_in_force: TimeInForce | None = None) -> OrderRequest:  # fmt: skip
    """An :class:`OrderRequest` of parameters valid by construction, without its checks (slow)."""
    request = _new(OrderRequest)
    request.__dict__.update(
        symbol=symbol, side=side, type=type, amount=amount, price=price, stop_price=stop_price,
        time_in_force=time_in_force, quote_amount=None, client_order_id=None, trailing_delta=None,
        iceberg_amount=None, self_trade_prevention=SelfTradePrevention.EXPIRE_MAKER,
    )  # fmt: skip
    return request


ListRow = tuple[OrderList, tuple[str, ...], Decimal, int]  # with its legs' client order ids, signal price and time
Lists = list[ListRow]


@dataclass
class Outcome:
    """What the replay did up to ``resume`` (the bar the event path goes on from; ``None``: the end)."""

    symbol: str = ""
    assets: tuple[str, str] = ("", "")  # base, quote
    orders: list[tuple[Order, Decimal, int]] = field(default_factory=list)  # with signal price and time
    fills: list[Fill] = field(default_factory=list)
    lists: Lists = field(default_factory=list)
    trades: list[tuple] = field(default_factory=list)  # the common trades, each a Trade tuple (see _Replay._trade)
    drops: list[tuple[OrderRequest, Decimal, int, OrderRejected]] = field(default_factory=list)
    target_changes: list[tuple[str, int, float]] = field(default_factory=list)
    state: RiskState = field(default_factory=RiskState)
    free: dict[str, Decimal] = field(default_factory=dict)
    intent: Intent | None = None
    target: Decimal | None = None
    seq: int = 0
    order_seq: int = 0
    trade_seq: int = 0
    list_seq: int = 0
    last_price: Decimal | None = None
    now: int | None = None
    resume: int | None = None
    why: str | None = None  # why the event path goes on from ``resume`` (None: the data ended mid-trade)


class _Intents:
    """The intent of each row of ``frame`` (:func:`~workbench.intents.iter_intents` for the columns
    the fast path takes), built when first asked for and without the frozen dataclasses' slow
    ``__init__``; ``rows`` are the rows' numbers in the bars (the common trades ask for few)."""

    def __init__(self, frame: pd.DataFrame, rows: list[int]) -> None:
        n = len(frame)
        self.sizes = frame["target"].tolist()
        self._stops, self._profits = ([None if v != v else v for v in frame[c].tolist()] if c in frame else [None] * n
                                      for c in ("stop_loss", "take_profit"))  # fmt: skip
        self._at = dict(zip(rows, range(n), strict=True))
        self._built: dict[int, Intent] = {}

    def get(self, row: int) -> Intent | None:
        """The intent of bar ``row``, ``None`` if it asks for no other size."""
        intent = self._built.get(row)
        if intent is None and row in self._at:
            i = self._at[row]
            entry, exits, intent = _new(Entry), _new(Exits), _new(Intent)
            entry.__dict__.update(
                kind="target", value=float(self.sizes[i]), limit_price=None, time_in_force="GTC", cancel_after=None
            )
            exits.__dict__.update(stop_loss=self._stops[i], take_profit=self._profits[i], trailing_delta=None)
            intent.__dict__.update(entry=entry, exits=exits)
            self._built[row] = intent
        return intent


def _intents(frame: pd.DataFrame) -> list[Intent]:
    """Every row's :meth:`_Intents.get`."""
    intents = _Intents(frame, list(range(len(frame))))
    return [intents.get(i) for i in range(len(frame))]  # type: ignore[misc]


def simulate(session: TradingSession, frames: Mapping[str, pd.DataFrame], answer: object = None) -> Outcome:
    """What ``session.run(frames)`` would do for a bracket strategy, up to the last flat bar before
    anything it does not model; changes nothing. ``answer`` is the strategy's on ``frames`` if known.
    :class:`Unsupported` if it cannot even start."""
    with _no_gc():
        return _Replay(session, frames, answer).run()


class _Replay:
    """The session's intent rules for one symbol, on Decimals, trade by trade."""

    def __init__(self, session: TradingSession, frames: Mapping[str, pd.DataFrame], answer: object) -> None:
        engine = paper_engine(session, frames)
        if len(frames) != 1:
            raise Unsupported("a replay of several symbols takes the event path")
        ((symbol, frame),) = frames.items()
        if answer is None:
            answer = strategy_answers(session.strategy, {symbol: frame})[symbol]  # type: ignore[arg-type]
        if not isinstance(answer, pd.DataFrame):
            raise Unsupported("the strategy returns targets: the plain fast path replays them")
        intents = intent_frame(answer, frame.index)
        other = set(intents.columns) - SUPPORTED
        if other or "target" not in intents:
            raise Unsupported(
                f"intents with {sorted(other or {'target_quote or target_fraction'})} take the event path"
            )
        self.symbol, self.bars = symbol, len(frame)
        self.rules: SymbolRules = session.rules[symbol]
        self.fees, self.book_config = engine.fees, replace(engine.book_config, levels=1)
        self.risk = session.risk
        limits = session.risk.limits
        self._limits = tuple(INFINITY if v is None else v for v in (  # None: off
            limits.max_order_notional, limits.max_position, limits.max_position_notional, limits.max_open_orders,
            limits.max_daily_loss, limits.max_orders_per_minute, limits.price_band_pct))  # fmt: skip
        self.changes = np.flatnonzero(_size_changes(intents))
        changed = intents.iloc[self.changes]
        self.intents = _Intents(changed, self.changes.tolist())
        prices = {k: frame[k].to_numpy(dtype=float) if k in frame else frame["close"].to_numpy(dtype=float)
                  for k in ("open", "high", "low", "close")}  # fmt: skip
        self.opens, self.highs, self.lows, self.closes = (prices[k] for k in ("open", "high", "low", "close"))
        self.at = _close_times(frame).to_numpy(dtype="int64")
        needed = np.zeros(len(frame), dtype=bool)
        needed[self.changes] = True
        self.needed = needed
        self.rows = self.changes.tolist()
        # per change: the lowest and highest price of the bars after it, up to the next change's
        after = self.changes + 1
        lows = np.append(np.minimum(self.lows, np.minimum(self.opens, self.closes)), np.inf)
        highs = np.append(np.maximum(self.highs, np.maximum(self.opens, self.closes)), -np.inf)
        self._lowest = np.minimum.reduceat(lows, after).tolist() if len(after) else []
        self._highest = np.maximum.reduceat(highs, after).tolist() if len(after) else []
        self._prices = _book_prices(self.closes[self.changes], self.rules, self.book_config)
        entries = changed["target"].to_numpy(dtype=float) > 0  # the rows a common trade starts from
        self._exits = _exit_prices(*(np.where(entries, changed[c].to_numpy(dtype=float), np.nan) if c in changed
                                     else np.full(len(changed), np.nan) for c in ("stop_loss", "take_profit")),
                                   self.rules)  # fmt: skip
        self.out = Outcome(symbol, (self.rules.base, self.rules.quote), free=dict(engine.free), seq=session._seq,
                           order_seq=engine._order_seq, trade_seq=engine._trade_seq,
                           list_seq=engine._list_seq)  # fmt: skip
        self.prefix = session._prefix
        self.base, self.quote = self.rules.base, self.rules.quote
        self.position = ZERO
        self.legs: list[Order] = []  # the open exit orders (an OCO's two, or a triggered stop alone)
        self.exit_list: OrderList | None = None
        self.protecting: tuple[Exits, Decimal] | None = None
        self.last = ZERO
        self.now = 0
        self._last_best: tuple[Decimal | None, tuple[Decimal, Decimal]] = (None, (ZERO, ZERO))
        self._market_bounds = _filter_bounds(self.rules)
        lot, market = self.rules.filter("LOT_SIZE") or {}, self.rules.filter("MARKET_LOT_SIZE") or {}
        notional = self.rules.filter("MIN_NOTIONAL") or {}, self.rules.filter("NOTIONAL") or {}
        self._least = (max([f.get("minQty", ZERO) for f in (lot, market)] + [self.rules.step_size()]),
                       max(f.get("minNotional", ZERO) for f in notional))  # fmt: skip
        self._oco = _oco_bounds(self.rules)
        self._sizes: dict[float, Decimal] = {}
        self._step = self.rules.step_size()
        self._units = (Decimal(1).scaleb(-self.rules.base_precision), Decimal(1).scaleb(-self.rules.quote_precision))

    # -- the timeline -----------------------------------------------------------------------

    def run(self) -> Outcome:
        checkpoint = None
        rows = self.rows
        try:
            row, k = 0, 0
            while k < len(rows):
                change = rows[k]
                row = self._rest(row, change)
                if not self.legs:
                    if self.protecting is None and k + 1 < len(rows) and self._trade(k):
                        row, k = rows[k + 1] + 1, k + 2  # flat again: no event path would start in it
                        continue
                    checkpoint = self._checkpoint(change)
                self._bar(change)
                row, k = change + 1, k + 1
            self._rest(row, self.bars)
        except Unsupported as e:
            return self._hand_over(checkpoint, str(e))
        if self.legs:  # still protected at the end: the event path leaves its orders in the venue
            return self._hand_over(checkpoint, None)
        self.last, self.now = bar_price(self.closes[-1]), int(self.at[-1])
        return self._finish(None, None)

    def _rest(self, row: int, end: int) -> int:
        """While exits rest, step the bars from ``row`` (up to ``end``) whose range reaches one."""
        while self.legs:
            row = _next_reached((self.lows, self.highs, self.needed), row, self._band())
            if row >= end:
                break
            self._bar(row)
            row += 1
        return row

    def _band(self) -> tuple[Decimal | None, Decimal | None]:
        """The prices that reach no open exit (:meth:`MatchingEngine.band`)."""
        floor = ceiling = None
        for leg in self.legs:
            if leg.type.is_stop and not leg.triggered:
                floor = leg.stop_price
            else:
                ceiling = leg.price
        return floor, ceiling

    def _bar(self, row: int) -> None:
        """One bar as the session steps it: its walk while exits rest, its close, its intent."""
        self.now = int(self.at[row])
        if self.legs:
            for price in bar_path(self.opens[row], self.highs[row], self.lows[row], self.closes[row])[:-1]:
                self._price(price)
        self._price(bar_price(self.closes[row]))
        intent = self.intents.get(row)
        if intent is not None:
            self._act(intent)
        elif self.out.intent is not None:
            self._sync_exits()

    def _trade(self, k: int) -> bool:
        """The common trade, flat before change ``k``: a market buy to its target, an OCO placed for
        what it bought, which no bar reaches, and at the next change, asking for nothing, the OCO
        canceled and the position sold at market. Whether it was one; if so, done as ``_bar`` does
        for both changes (the same state and ids) and recorded as one tuple (see :func:`_trade_rows`);
        if not, nothing changed and ``_bar`` steps it."""
        rules, out, symbol = self.rules, self.out, self.symbol
        c, e = self.rows[k], self.rows[k + 1]
        value, then_value = float(self.intents.sizes[k]), float(self.intents.sizes[k + 1])
        if self._exits[k] is None or value == then_value:  # an OCO of both exits (a trade starts at k: _exits)
            return False
        if out.intent is not None and out.intent.entry_key == ("target", value):
            return False
        held = self.position
        target, flat = self._size(value), self._size(then_value)
        amount = rules.round_amount(target - held)
        (last, bid, ask), now = self._prices[k], int(self.at[c])
        if flat or amount <= 0 or not self._surely_tradable(amount, last, True):
            return False
        # the buy
        times = out.state.order_times
        recent = _recent(times, now)
        if not self._allowed(True, amount, None, last, held, now, recent, 0):
            return False
        cost = ask * amount
        free = out.free
        if not self._fits(amount, ask) or cost > free.get(self.quote, ZERO):
            return False
        fee = (amount * self.fees.taker).quantize(self._units[0], ROUND_HALF_UP)
        bought = held + (amount - fee)
        size = rules.round_amount(bought) if bought > 0 else ZERO
        # its OCO, which no bar reaches before the next change
        stop, profit, limit = self._exits[k]
        if not (size and stop < last < profit and bid < profit and size <= free.get(self.base, ZERO) + (amount - fee)):
            return False
        if not (self._lowest[k] > float(stop) * (1 + 1e-9) and self._highest[k] < float(profit) * (1 - 1e-9)):
            return False
        if not (
            self._surely_tradable(size, limit, False)
            and self._surely_valid(size, limit, profit, last)
            and self._allowed(False, size, profit, last, bought, now, recent + 1, 0)
            and self._allowed(False, size, limit, last, bought, now, recent + 2, 1)
        ):
            return False
        # the sale at the next change
        (sold_at, bid_then, _), then = self._prices[k + 1], int(self.at[e])
        recent = _recent(times, then) + (3 if now > then - MINUTE_MS else 0)
        if not (
            self._surely_tradable(size, sold_at, True)
            and self._allowed(False, size, None, sold_at, bought, then, recent, 0)
        ):
            return False
        if not self._fits(size, bid_then):
            return False
        proceeds = bid_then * size
        fee_then = (proceeds * self.fees.taker).quantize(self._units[1], ROUND_HALF_UP)
        # it is: what the session does, in its order
        base, quote, state = self.base, self.quote, out.state
        out.target_changes.append((symbol, now, float(target)))
        while times and times[0] <= now - MINUTE_MS:
            times.popleft()
        times.extend((now, now, now))
        free[quote] -= cost
        free[base] = free.get(base, ZERO) + (amount - fee)
        state.record(symbol, True, ask, amount, cost, fee, ZERO, now)
        free[base] -= size  # the OCO's lock
        out.intent, out.target = self.intents.get(e), flat
        out.target_changes.append((symbol, then, float(flat)))
        free[base] += size  # canceled
        while times and times[0] <= then - MINUTE_MS:
            times.popleft()
        times.append(then)
        free[base] -= size
        free[quote] = free.get(quote, ZERO) + (proceeds - fee_then)
        state.record(symbol, False, bid_then, size, proceeds, ZERO, fee_then, then)
        self.position = state.positions[symbol]
        self.last, self.now, self.legs, self.exit_list = sold_at, then, [], None
        out.list_seq += 1
        out.trades.append((out.seq, out.order_seq, out.trade_seq, out.list_seq, now, then, last, sold_at, amount,
                           ask, cost, fee, size, profit, limit, stop, bid_then, proceeds, fee_then))  # fmt: skip
        out.seq, out.order_seq, out.trade_seq = out.seq + 5, out.order_seq + 4, out.trade_seq + 2
        return True

    # -- what the session does --------------------------------------------------------------

    def _act(self, intent: Intent) -> None:
        out = self.out
        if out.intent is None or intent.entry_key != out.intent.entry_key:
            target = self._size(intent.entry.value)
            out.intent, out.target = intent, target
            out.target_changes.append((self.symbol, self.now, float(target)))
            self._enter(target)
        self._sync_exits()

    def _enter(self, target: Decimal) -> None:
        delta = target - self.position
        if delta < 0:
            self._cancel_exits()
        if not delta:
            return
        side = Side.BUY if delta > 0 else Side.SELL
        amount = self.rules.round_amount(abs(delta)) or abs(delta)
        request = _request(self.symbol, side, OrderType.MARKET, amount)
        dust = None if self._surely_tradable(amount, self.last, True) else _too_small(request, self.rules, self.last)
        if dust is not None:
            self.out.drops.append((request, self.last, self.now, dust))
            return
        self._market(request)

    def _sync_exits(self) -> None:
        exits = self.out.intent.exits if self.out.intent is not None else Exits()
        amount = self.rules.round_amount(self.position) if self.position > 0 else ZERO
        want = (exits, amount) if exits and amount > 0 else None
        if want == self.protecting:
            return
        self._cancel_exits()
        self.protecting = want
        if want is not None:
            self._place_exits(exits, amount)

    def _cancel_exits(self) -> None:
        for leg in self.legs:
            self._close(leg, OrderStatus.CANCELED)
        if self.exit_list is not None and self.exit_list.is_open:
            self._list_done()
        self.legs, self.exit_list, self.protecting = [], None, None

    def _place_exits(self, exits: Exits, amount: Decimal) -> None:
        rules, price = self.rules, self.last
        if exits.trailing_delta is not None or exits.stop_loss is None or exits.take_profit is None:
            raise Unsupported("exits other than an OCO of stop_loss and take_profit")
        stop, profit, limit = _oco_prices(exits.stop_loss, exits.take_profit, rules)
        if price <= stop or price >= profit:
            raise Unsupported("an exit reached already when placed (sold at market)")
        legs = (
            _request(self.symbol, Side.SELL, OrderType.LIMIT_MAKER, amount, profit),
            _request(self.symbol, Side.SELL, OrderType.STOP_LOSS_LIMIT, amount, limit, stop, TimeInForce.GTC),
        )
        if not self._surely_tradable(amount, limit, False) and _is_dust(legs[-1], rules, limit):
            return
        list_id = self._next_id()
        ids = (self._next_id(), self._next_id())
        for i, leg in enumerate(legs):  # the session's checks, then the venue's
            self._check_risk(leg, i)
        if not (self._surely_tradable(amount, limit, False) and self._surely_valid(amount, limit, profit, price)):
            for i, leg in enumerate(legs):
                self._check_filters(leg, len(self.legs) + i, sum(o.type.is_stop for o in self.legs) + i)
        if profit <= self._best()[0]:
            raise Unsupported("the take-profit would take liquidity (the venue rejects the OCO)")
        if amount > self.out.free.get(self.base, ZERO):
            raise Unsupported("the balance cannot pay the OCO (the venue rejects it)")
        out = self.out
        out.list_seq += 1
        placed = []
        for leg, cid in zip(legs, ids, strict=True):
            out.state.record_order(self.now)
            out.order_seq += 1
            order = Order.from_request(leg, cid, self.now, id=str(out.order_seq))
            order.order_list_id = out.list_seq
            placed.append(order)
            out.orders.append((order, price, self.now))
        placed[0].holds_funds = False  # the pair shares one lock: the stop-loss holds it
        self._lock(amount)
        self.exit_list = OrderList(out.list_seq, list_id, self.symbol, ContingencyType.OCO,
                                   tuple(o.id for o in placed), timestamp=self.now, last_update=self.now)  # type: ignore[misc]  # fmt: skip
        out.lists.append((self.exit_list, ids, price, self.now))
        self.legs = placed

    def _market(self, request: OrderRequest) -> None:
        self._check_risk(request, 0)
        if self.legs or not self._surely_tradable(request.amount, self.last, True):  # type: ignore[arg-type]
            self._check_filters(request, len(self.legs), sum(o.type.is_stop for o in self.legs))
        buy, amount = request.side is Side.BUY, request.amount
        bid, ask = self._best()
        price = ask if buy else bid
        if not self._fits(amount, price):  # type: ignore[arg-type]
            raise Unsupported("a market order walks past the best level of the book")
        need, asset = (price * amount, self.quote) if buy else (amount, self.base)  # type: ignore[operator]
        if need > self.out.free.get(asset, ZERO):
            raise Unsupported("the balance cannot pay a market order (the venue rejects it)")
        out = self.out
        out.state.record_order(self.now)
        cid = self._next_id()
        out.order_seq += 1
        order = Order.from_request(request, cid, self.now, id=str(out.order_seq))
        out.orders.append((order, self.last, self.now))
        self._fill(order, price, amount, maker=False)  # type: ignore[arg-type]

    # -- what the venue does ----------------------------------------------------------------

    def _price(self, price: Decimal) -> None:
        """A new last price: work the open exits in the order they were placed (the venue's)."""
        self.last = price
        for leg in list(self.legs):
            if leg.status.is_final:
                continue
            if leg.type.is_stop and not leg.triggered:
                if price <= leg.stop_price:  # type: ignore[operator]
                    self._trigger(leg)
            elif price >= leg.price:  # type: ignore[operator]
                self._fill_resting(leg)

    def _trigger(self, stop: Order) -> None:
        """A stop-loss leg triggers: the take-profit expires, the stop sells to the book down to its
        limit and rests at the limit if the best bid is below it."""
        self._expire_others(stop)
        stop.triggered = True
        bid = self._best()[0]
        if bid >= stop.price:  # type: ignore[operator]
            if not self._fits(stop.remaining, bid):  # type: ignore[arg-type]
                raise Unsupported("a triggered stop walks past the best level of the book")
            self._fill(stop, bid, stop.remaining, maker=False)  # type: ignore[arg-type]

    def _fill_resting(self, order: Order) -> None:
        if not self._fits(order.remaining, order.price):  # type: ignore[arg-type]
            raise Unsupported("a resting exit fills only in part")
        self._expire_others(order)
        self._fill(order, order.price, order.remaining, maker=True)  # type: ignore[arg-type]

    def _expire_others(self, order: Order) -> None:
        others = [leg for leg in self.legs if leg is not order and not leg.status.is_final]
        for other in others:
            self._close(other, OrderStatus.EXPIRED)
        if others and not order.holds_funds:
            order.holds_funds = True  # it takes over the shared lock
            self._lock(order.remaining)  # type: ignore[arg-type]
        if self.exit_list is not None and self.exit_list.is_open:
            self._list_done()
        self.legs = [order]

    def _fill(self, order: Order, price: Decimal, amount: Decimal, *, maker: bool) -> None:
        rules, out = self.rules, self.out
        cost = price * amount
        rate = self.fees.maker if maker else self.fees.taker
        free = out.free
        if order.side is Side.BUY:
            currency = self.base
            fee = (amount * rate).quantize(Decimal(1).scaleb(-rules.base_precision), ROUND_HALF_UP)
            free[self.quote] -= cost
            free[self.base] = free.get(self.base, ZERO) + (amount - fee)
        else:
            currency = self.quote
            fee = (cost * rate).quantize(Decimal(1).scaleb(-rules.quote_precision), ROUND_HALF_UP)
            if order.type is OrderType.MARKET:  # an exit's base is locked already (taken from free)
                free[self.base] -= amount
            free[self.quote] = free.get(self.quote, ZERO) + (cost - fee)
        order.filled += amount
        order.cost += cost
        order.fees[currency] = order.fees.get(currency, ZERO) + fee
        order.last_update = self.now
        order.status = OrderStatus.FILLED
        out.trade_seq += 1
        fill = _new(Fill)  # a frozen dataclass's __init__ sets each field through object.__setattr__: slow
        fill.__dict__.update(
            trade_id=str(out.trade_seq), order_id=order.id, client_order_id=order.client_order_id,
            symbol=self.symbol, side=order.side, price=price, amount=amount, cost=cost, fee=fee,
            fee_currency=currency, is_maker=maker, timestamp=self.now,
        )  # fmt: skip
        out.fills.append(fill)
        out.state.record_fill(fill, self.base)
        self.position = out.state.positions[self.symbol]
        if order in self.legs:
            self.legs.remove(order)

    def _close(self, order: Order, status: OrderStatus) -> None:
        if order.holds_funds and order.status is not OrderStatus.FILLED:
            self._unlock(order.remaining)  # type: ignore[arg-type]
        order.status, order.last_update = status, self.now

    def _list_done(self) -> None:
        order_list = self.exit_list
        order_list.list_status_type = ListStatusType.ALL_DONE  # type: ignore[union-attr]
        order_list.list_order_status = ListOrderStatus.ALL_DONE  # type: ignore[union-attr]
        order_list.last_update = self.now  # type: ignore[union-attr]

    def _lock(self, amount: Decimal) -> None:
        """An exit locks the base it sells: out of the free balance (back when it closes unfilled)."""
        self.out.free[self.base] -= amount

    def _unlock(self, amount: Decimal) -> None:
        self.out.free[self.base] += amount

    def _size(self, value: float) -> Decimal:
        """An intent's size on the step grid (:meth:`SymbolRules.round_amount`), once per value."""
        size = self._sizes.get(value)
        if size is None:
            size = self._sizes[value] = self.rules.round_amount(Decimal(str(value)))
        return size

    def _fits(self, amount: Decimal, price: Decimal) -> bool:
        """Whether ``amount`` fits in the book's level at ``price`` (:func:`~workbench.matching.level_amount`),
        without building it if the level holds a step more."""
        step = self._step
        return (amount + step) * price <= self.book_config.level_notional or amount <= level_amount(
            price, self.rules, self.book_config, step
        )

    def _best(self) -> tuple[Decimal, Decimal]:
        """The book's best bid and ask at the last price (:func:`~workbench.matching.best_prices`)."""
        if self._last_best[0] != self.last:
            self._last_best = (self.last, best_prices(self.last, self.rules, self.book_config))
        return self._last_best[1]

    # -- checks -----------------------------------------------------------------------------

    def _surely_tradable(self, amount: Decimal, price: Decimal, market: bool) -> bool:
        """Whether ``amount`` on the step grid is surely no dust at ``price`` (above every minimum
        quantity and notional); if not, the session's own test decides."""
        if market:
            least, most, floor, ceiling = self._market_bounds
            return least <= amount <= most and floor <= amount * price <= ceiling
        least, floor = self._least
        return amount >= least and amount * price >= floor  # type: ignore[operator]

    def _check_risk(self, request: OrderRequest, before: int) -> None:
        """The session's risk checks on ``request``, ``before`` legs of its list ahead of it: the
        real ones unless :meth:`_surely_allowed` (the filters are the venue's, :meth:`_check_filters`)."""
        if self._surely_allowed(request, before):
            return
        n = len(self.legs)
        context = self.out.state.context(
            self.symbol, self.last, self.now, open_orders=n, open_orders_symbol=n, halted=""
        )
        if before:
            context = replace(context, open_orders=n + before, open_orders_symbol=n + before,
                              orders_last_minute=context.orders_last_minute + before)  # fmt: skip
        try:
            self.risk.check(request, context, filters=False)
        except OrderRejected as e:
            raise Unsupported(f"a risk check refuses an order (the event path records it): {e}") from None

    def _surely_allowed(self, request: OrderRequest, before: int) -> bool:
        """Whether every risk check but the filters surely lets ``request`` pass (the kill switch
        and the allow-list are read once, at the start); ``False`` leaves it to the checks."""
        times = self.out.state.order_times
        while times and times[0] <= self.now - MINUTE_MS:  # as RiskState.context forgets them
            times.popleft()
        return self._allowed(request.side is Side.BUY, request.amount, request.price, self.last, self.position,  # type: ignore[arg-type]
                             self.now, len(times) + before, len(self.legs) + before)  # fmt: skip

    def _allowed(self, buy: bool, amount: Decimal, price: Decimal | None, last: Decimal, held: Decimal, now: int,
                 recent: int, open_orders: int) -> bool:  # fmt: skip
        """:meth:`_surely_allowed` for an order of ``amount`` (at ``price``, or at market) when the
        last price is ``last``, the position ``held``, ``recent`` orders in the last minute and
        ``open_orders`` open."""
        notional, position, position_notional, most_open, loss, rate, band = self._limits
        if recent >= rate:
            return False
        after = held + amount if buy else held - amount
        if abs(after) > abs(held) and (
            abs(after) > position
            or abs(after) * last > position_notional
            or (loss < INFINITY and self.out.state.realised.get(_day(now), ZERO) <= -loss)
        ):
            return False
        if price is None:
            return amount * last <= notional
        return amount * price <= notional and open_orders < most_open and abs(price - last) * 100 < band * last

    def _surely_valid(self, amount: Decimal, limit: Decimal, profit: Decimal, last: Decimal) -> bool:
        """Whether an exit OCO of ``amount`` (on the step grid, no dust) with its stop-loss's limit
        at ``limit`` and its take-profit at ``profit`` (on the tick grid, ``limit`` below ``profit``)
        surely passes every filter at the last price ``last`` with nothing else open; if not,
        :func:`~workbench.filters.check_order` decides."""
        if self._oco is None:
            return False
        low, high, most, top, down, up = self._oco
        return (
            low <= limit
            and profit <= high
            and amount <= most
            and amount * profit <= top
            and (
                down is None
                or last * down <= limit
                and profit <= last * up
                and limit <= last * up
                and last * down <= profit
            )
        )

    def _check_filters(self, request: OrderRequest, open_orders: int, open_algo: int) -> None:
        """The venue's filters, with its own counts of open orders."""
        try:
            check_order(request, self.rules, avg_price=self.last, open_orders=open_orders, open_algo_orders=open_algo)
        except OrderRejected as e:
            raise Unsupported(f"the venue's filters refuse an order (the event path records it): {e}") from None

    # -- hand-over --------------------------------------------------------------------------

    def _next_id(self) -> str:
        self.out.seq += 1
        return f"{self.prefix}{self.out.seq}"

    def _checkpoint(self, row: int) -> tuple:
        """The state before ``row`` with nothing open: where the event path could take over."""
        out, realised = self.out, self.out.state.realised
        today = next(reversed(realised.items()), None)  # the days before it are done: their count is enough
        state = (dict(out.state.positions), dict(out.state.avg_cost), (len(realised), today),
                 dict(out.state.realised_by_symbol), deque(out.state.order_times))  # fmt: skip
        lengths = tuple(map(len, (out.orders, out.fills, out.lists, out.trades, out.drops, out.target_changes)))
        scalars = (out.intent, out.target, out.seq, out.order_seq, out.trade_seq, out.list_seq)
        return row, lengths, state, dict(out.free), scalars, self.last, self.now

    def _hand_over(self, checkpoint: tuple | None, why: str | None) -> Outcome:
        if checkpoint is None or checkpoint[0] == self.changes[0]:
            raise Unsupported(why or "the strategy is still protected at the end of the data")
        row, lengths, state, free, scalars, last, now = checkpoint
        out = self.out
        for name, n in zip(("orders", "fills", "lists", "trades", "drops", "target_changes"), lengths, strict=True):
            del getattr(out, name)[n:]
        positions, costs, (days, today), by_symbol, times = state
        realised = dict(islice(out.state.realised.items(), days))
        if today is not None:
            realised[today[0]] = today[1]
        out.state, out.free = RiskState(positions, costs, realised, by_symbol, times), free
        out.intent, out.target, out.seq, out.order_seq, out.trade_seq, out.list_seq = scalars
        self.last, self.now = last, now
        return self._finish(int(row), why)

    def _finish(self, resume: int | None, why: str | None) -> Outcome:
        out = self.out
        out.resume, out.why, out.last_price, out.now = resume, why, self.last, self.now
        return out


def _tick_places(rules: SymbolRules) -> int | None:
    """The decimals of the symbol's tick if it is a power of ten (0.01: 2), else ``None``."""
    tick = rules.tick_size.normalize()
    exponent = tick.as_tuple().exponent
    if not tick or tick.as_tuple().digits != (1,) or not isinstance(exponent, int) or exponent > 0:
        return None
    return -exponent


def _book_prices(closes: np.ndarray, rules: SymbolRules, book: BookConfig) -> list[tuple[Decimal, Decimal, Decimal]]:
    """Per close: itself as the Decimal it prints as (:func:`workbench.bars.price`) and the book's
    best bid and ask at it (:func:`~workbench.matching.best_prices`): in whole ticks where the tick
    is a power of ten and the close on it, one by one where not."""
    places, half = _tick_places(rules), Fraction(book.spread_bps * BPS / 2)
    if places is None or half.denominator > 10**6:
        on = np.zeros(len(closes), dtype=bool)
        ticks = np.ones(len(closes), dtype=np.int64)
    else:
        ticks = np.rint(closes * 10**places)
        on = (ticks / 10**places == closes) & (ticks > 0) & (ticks < 2**40)  # so the close prints as its ticks
        ticks = np.where(on, ticks, 1).astype(np.int64)
    num, den = half.numerator, half.denominator
    bids = ticks * (den - num) // den  # floor(close - half spread), in ticks
    asks = np.maximum(-(-ticks * (den + num) // den), bids + 1)
    unit = Decimal(1).scaleb(-(places or 0))
    columns = ticks.tolist(), bids.tolist(), asks.tolist(), on.tolist(), closes.tolist()
    return [
        (unit * t, unit * b, unit * a) if o else _close_and_best(bar_price(p), rules, book)
        for t, b, a, o, p in zip(*columns, strict=True)
    ]


def _close_and_best(close: Decimal, rules: SymbolRules, book: BookConfig) -> tuple[Decimal, Decimal, Decimal]:
    return (close, *best_prices(close, rules, book))


def _oco_prices(stop_loss: float, take_profit: float, rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal]:
    """An exit OCO's stop price (the nearest tick), take-profit price (a tick up) and stop-loss
    limit (``STOP_LIMIT_OFFSET`` below the stop, a tick down), as the session rounds them."""
    stop = rules.round_price(Decimal(str(stop_loss)))
    limit = rules.round_price(stop * (1 - STOP_LIMIT_OFFSET), ROUND_DOWN)
    return stop, rules.round_price(Decimal(str(take_profit)), ROUND_UP), limit


def _exit_prices(
    stops: np.ndarray, profits: np.ndarray, rules: SymbolRules
) -> list[tuple[Decimal, Decimal, Decimal] | None]:
    """Per intent row with both: its OCO's stop price, take-profit price and stop-loss limit, as
    :func:`_oco_prices` rounds them; in whole ticks where the tick is a power of
    ten and no rounding is a near tie in floats, one by one where not; ``None`` without both."""
    has = ~np.isnan(stops) & ~np.isnan(profits)
    places = _tick_places(rules)
    scale = 10 ** (places or 0)
    stop_units, profit_units = np.where(has, stops, 1.0) * scale, np.where(has, profits, 1.0) * scale
    tie, whole = np.abs(stop_units % 1 - 0.5), np.abs((profit_units + 0.5) % 1 - 0.5)
    clear = (places is not None) & has & (stop_units > 0) & (profit_units < 2**40) & (tie > 1e-6) & (whole > 1e-6)
    stop_ticks = np.where(clear, np.floor(stop_units + 0.5), 1).astype(np.int64)
    profit_ticks = np.where(clear, np.ceil(profit_units), 1).astype(np.int64)
    below = Fraction(1 - STOP_LIMIT_OFFSET)
    limit_ticks = stop_ticks * below.numerator // below.denominator
    unit = Decimal(1).scaleb(-(places or 0))
    columns = (stop_ticks.tolist(), profit_ticks.tolist(), limit_ticks.tolist(), clear.tolist(), has.tolist(),
               stops.tolist(), profits.tolist())  # fmt: skip
    return [
        (unit * s, unit * p, unit * q) if c else _oco_prices(stop, profit, rules) if h else None
        for s, p, q, c, h, stop, profit in zip(*columns, strict=True)
    ]


def _recent(times: deque[int], now: int) -> int:
    """How many of ``times`` (ascending) fall in the minute before ``now``, as :meth:`RiskState.context`
    counts them, without forgetting the others."""
    cutoff, old = now - MINUTE_MS, 0
    for at in times:
        if at > cutoff:
            break
        old += 1
    return len(times) - old


def _oco_bounds(rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal | None, Decimal | None] | None:
    """What an exit OCO on the grids (a LIMIT_MAKER and a STOP_LOSS_LIMIT sell, no dust, nothing else
    open) keeps within to surely pass every filter: the lowest price, the highest, the most amount,
    the top notional, the ask's PERCENT_PRICE_BY_SIDE multipliers down and up (``None``: no such
    filter); ``None`` where the filters leave doubt (a type not taken, grids that do not line up,
    fewer than two open orders or stops allowed)."""
    if not {OrderType.LIMIT_MAKER.value, OrderType.STOP_LOSS_LIMIT.value} <= set(rules.order_types):
        return None
    price, lot = rules.filter("PRICE_FILTER") or {}, rules.filter("LOT_SIZE") or {}
    tick, step = price.get("tickSize", ZERO), lot.get("stepSize", ZERO)
    if (tick and price.get("minPrice", ZERO) % tick) or (step and lot.get("minQty", ZERO) % step):
        return None
    if step and -step.normalize().as_tuple().exponent > rules.base_precision:  # type: ignore[union-attr, operator]
        return None
    for name, key in (("MAX_NUM_ORDERS", "maxNumOrders"), ("MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders")):
        f = rules.filter(name)
        if f is not None and f[key] < 2:  # type: ignore[operator]
            return None
    huge = Decimal("1e30")
    side = rules.filter("PERCENT_PRICE_BY_SIDE")
    return (
        price.get("minPrice", ZERO), price.get("maxPrice") or huge, lot.get("maxQty") or huge,  # type: ignore[return-value]
        (rules.filter("NOTIONAL") or {}).get("maxNotional") or huge,
        side and side["askMultiplierDown"], side and side["askMultiplierUp"],
    )  # fmt: skip


def commit(session: TradingSession, out: Outcome) -> None:
    """Put ``out`` into the session, its paper venue and its store (orders, lists and fills in bulk)."""
    with _no_gc():
        _commit(session, out)


def _commit(session: TradingSession, out: Outcome) -> None:
    engine = session.executor.engine  # type: ignore[attr-defined]
    session.state = out.state
    prefix, symbol = session._prefix, out.symbol
    backlog = _Backlog(out, prefix)
    session.defer_orders(backlog)
    lists = sorted(out.lists + _trade_lists(out, prefix), key=_list_id)
    session.order_lists.update((lst.list_client_order_id, lst) for lst, _, _, _ in lists)
    session.list_legs.update((lst.list_client_order_id, legs) for lst, legs, _, _ in lists)
    session._seq = out.seq
    session.target_changes.extend(out.target_changes)
    session._trade_keys.update((f.symbol, f.trade_id) for f in out.fills)
    session._trade_keys.update((symbol, str(t[TRADE_SEQ] + i)) for t in out.trades for i in (1, 2))
    if out.intent is not None:
        session._books[symbol] = _IntentBook(intent=out.intent)
        session._targets[symbol] = out.target  # type: ignore[assignment]
    if out.now:
        session.last_price[symbol] = out.last_price  # type: ignore[assignment]
        engine.last_price[symbol] = out.last_price
        session.executor._time = out.now  # type: ignore[attr-defined]
    engine.free.update(out.free)
    for asset in out.free:
        engine.locked.setdefault(asset, ZERO)
    engine._order_seq, engine._trade_seq, engine._list_seq = out.order_seq, out.trade_seq, out.list_seq
    session.executor.defer_fills(backlog.fills)  # type: ignore[attr-defined]
    for request, price, at, error in out.drops:
        session._drop(request, price, at, error)
    orders, fills = len(out.orders) + 4 * len(out.trades), len(out.fills) + 2 * len(out.trades)
    detail = {"orders": orders, "fills": fills, "lists": len(lists), "common_trades": len(out.trades),
              "event_path_from": out.resume, "why": out.why}  # fmt: skip
    session._audit("replay.fast", detail)
    write(session.store, session.session_id, out, prefix)  # last: its flush commits the audit rows too


# A common trade's tuple (_Replay._trade): the counters before it, its two bars' close times and
# prices, the buy's amount, price, cost and fee, the OCO's amount and prices, the sale's price,
# proceeds and fee.
SEQ, ORDER_SEQ, TRADE_SEQ, LIST_SEQ, NOW, THEN, LAST, SOLD_AT = range(8)
AMOUNT, ASK, COST, FEE, SIZE, PROFIT, LIMIT, STOP, BID, PROCEEDS, FEE_THEN = range(8, 19)


_DONE_RANK = list_rank(OrderList(0, "", "", ContingencyType.OCO, (), ListStatusType.ALL_DONE, ListOrderStatus.ALL_DONE))


def _list_id(item: ListRow) -> int:
    return item[0].id


def _trade_lists(out: Outcome, prefix: str) -> Lists:
    """The common trades' OCOs as the session holds them (and :attr:`Outcome.lists` has them)."""
    done, oco = ListStatusType.ALL_DONE, ContingencyType.OCO
    lists = []
    for t in out.trades:
        seq, oseq = t[SEQ], t[ORDER_SEQ]
        order_list = _new(OrderList)
        order_list.__dict__.update(
            id=t[LIST_SEQ], list_client_order_id=f"{prefix}{seq + 2}", symbol=out.symbol, kind=oco,
            orders=(str(oseq + 2), str(oseq + 3)), list_status_type=done, list_order_status=ListOrderStatus.ALL_DONE,
            timestamp=t[NOW], last_update=t[THEN],
        )  # fmt: skip
        lists.append((order_list, (f"{prefix}{seq + 3}", f"{prefix}{seq + 4}"), t[LAST], t[NOW]))
    return lists


class _Backlog:
    """The fast path's orders as the session holds them and its fills as the paper venue does: those
    it stepped one by one and the common trades', built from their tuples when first asked for."""

    def __init__(self, out: Outcome, prefix: str) -> None:
        self.out, self.prefix = out, prefix

    def build(self) -> dict[str, Order]:
        out, prefix, symbol = self.out, self.prefix, self.out.symbol
        base, quote = out.assets
        orders = [order for order, _, _ in out.orders]
        filled, canceled, sell = OrderStatus.FILLED, OrderStatus.CANCELED, Side.SELL
        with _no_gc():
            for t in out.trades:
                seq, oseq, now, then, size = t[SEQ], t[ORDER_SEQ], t[NOW], t[THEN], t[SIZE]
                orders += (
                    Order(symbol, Side.BUY, OrderType.MARKET, t[AMOUNT], None, None, None, f"{prefix}{seq + 1}",
                          str(oseq + 1), status=filled, filled=ZERO + t[AMOUNT], cost=ZERO + t[COST], timestamp=now,
                          last_update=now, fees={base: ZERO + t[FEE]}),
                    Order(symbol, sell, OrderType.LIMIT_MAKER, size, t[PROFIT], None, None, f"{prefix}{seq + 3}",
                          str(oseq + 2), status=canceled, timestamp=now, last_update=then, order_list_id=t[LIST_SEQ],
                          holds_funds=False),
                    Order(symbol, sell, OrderType.STOP_LOSS_LIMIT, size, t[LIMIT], t[STOP], TimeInForce.GTC,
                          f"{prefix}{seq + 4}", str(oseq + 3), status=canceled, timestamp=now, last_update=then,
                          order_list_id=t[LIST_SEQ]),
                    Order(symbol, sell, OrderType.MARKET, size, None, None, None, f"{prefix}{seq + 5}", str(oseq + 4),
                          status=filled, filled=ZERO + size, cost=ZERO + t[PROCEEDS], timestamp=then, last_update=then,
                          fees={quote: ZERO + t[FEE_THEN]}),
                )  # fmt: skip
        orders.sort(key=_order_seq)
        return {o.client_order_id: o for o in orders}

    def fills(self) -> list[Fill]:
        out, prefix = self.out, self.prefix
        base, quote = out.assets
        fills = list(out.fills)
        with _no_gc():
            for t in out.trades:
                seq, oseq, tseq = t[SEQ], t[ORDER_SEQ], t[TRADE_SEQ]
                for trade, order, cid, side, price, amount, cost, fee, currency, at in (
                    (tseq + 1, oseq + 1, seq + 1, Side.BUY, t[ASK], t[AMOUNT], t[COST], t[FEE], base, t[NOW]),
                    (tseq + 2, oseq + 4, seq + 5, Side.SELL, t[BID], t[SIZE], t[PROCEEDS], t[FEE_THEN], quote, t[THEN]),
                ):
                    fill = _new(Fill)  # a frozen dataclass's __init__ sets each field through object.__setattr__: slow
                    fill.__dict__.update(
                        trade_id=str(trade), order_id=str(order), client_order_id=f"{prefix}{cid}", symbol=out.symbol,
                        side=side, price=price, amount=amount, cost=cost, fee=fee, fee_currency=currency,
                        is_maker=False, timestamp=at,
                    )  # fmt: skip
                    fills.append(fill)
        fills.sort(key=_trade_seq)
        return fills

    def totals(self) -> Totals:
        """The orders and their fees per asset (:func:`workbench.session._order_totals`)."""
        out = self.out
        base, quote = out.assets
        fees = [order.fees for order, _, _ in out.orders]
        if out.trades:
            trades = {base: sum((t[FEE] for t in out.trades), ZERO),
                      quote: sum((t[FEE_THEN] for t in out.trades), ZERO)}  # fmt: skip
            first = not out.orders or out.trades[0][ORDER_SEQ] < int(out.orders[0][0].id)  # type: ignore[arg-type]
            fees.insert(0 if first else len(fees), trades)
        n = len(out.orders) + 4 * len(out.trades)
        return {out.symbol: (n, _total_fees(fees))} if n else {}


def _order_seq(order: Order) -> int:
    return int(order.id)  # type: ignore[arg-type]


def _trade_seq(fill: Fill) -> int:
    return int(fill.trade_id)


def _times(values: list[int]) -> pd.DatetimeIndex:
    return pd.to_datetime(np.array(values, dtype="int64"), unit="ms", utc=True)


def _text(values: Iterable[Decimal | None]) -> list[str | None]:
    """Decimals (or ``None``) as text, which DuckDB casts to its DECIMAL exactly."""
    return [None if v is None else str(v) for v in values]


def write(store: Store, session_id: str, out: Outcome, prefix: str) -> None:
    """Insert the orders, order lists and fills of ``out`` into the paper tables at once (client
    order ids as their numbers after ``prefix``, which the store puts back)."""
    frames = _stepped_rows(out, prefix)
    if out.trades:
        trades = _trade_rows(out, prefix)
        frames = {table: pd.concat([f for f in (frames[table], trades[table]) if len(f)], ignore_index=True)
                  for table in frames}  # fmt: skip
    for frame in frames.values():
        frame.insert(0, "session_id", session_id)
        frame.insert(1, "symbol", out.symbol)
    orders = frames["paper_orders"]
    orders["arrival_price"] = orders["signal_price"]  # a paper order arrives at the price it was signalled at
    store.insert_frames(
        frames, texts={"client_order_id": prefix, "list_client_order_id": prefix, "order_id": "", "trade_id": ""}
    )


def _stepped_rows(out: Outcome, prefix: str) -> dict[str, pd.DataFrame]:
    """The rows of the orders, fills and order lists :class:`_Replay` stepped one by one."""
    o = [order for order, _, _ in out.orders]
    f = out.fills
    lists = out.lists
    cut = len(prefix)
    orders = {
        "client_order_id": [int(x.client_order_id[cut:]) for x in o],
        "order_id": [int(x.id) for x in o],  # type: ignore[arg-type]
        "side": [x.side.value for x in o],
        "type": [x.type.value for x in o],
        "time_in_force": [x.time_in_force and x.time_in_force.value for x in o],
        "amount": _text(x.amount for x in o),
        "price": _text(x.price for x in o),
        "stop_price": _text(x.stop_price for x in o),
        "status": [x.status.value for x in o],
        "status_rank": [x.status.rank for x in o],
        "filled": _text(x.filled for x in o),
        "cost": _text(x.cost for x in o),
        "average": _text(x.average for x in o),
        "signal_price": _text(signal for _, signal, _ in out.orders),
        "signal_time": _times([at for _, _, at in out.orders]),
        "created_at": _times([x.timestamp for x in o]),
        "updated_at": _times([x.last_update for x in o]),
    }
    fills = {
        "trade_id": [int(x.trade_id) for x in f],
        "order_id": [int(x.order_id) for x in f],
        "client_order_id": [int(x.client_order_id[cut:]) for x in f],
        "side": [x.side.value for x in f],
        "price": _text(x.price for x in f),
        "amount": _text(x.amount for x in f),
        "cost": _text(x.cost for x in f),
        "fee": _text(x.fee for x in f),
        "fee_currency": [x.fee_currency for x in f],
        "is_maker": [x.is_maker for x in f],
        "timestamp": _times([x.timestamp for x in f]),
    }
    order_lists = {
        "list_client_order_id": [int(x.list_client_order_id[cut:]) for x, _, _, _ in lists],
        "order_list_id": [x.id for x, _, _, _ in lists],
        "contingency_type": [x.kind.value for x, _, _, _ in lists],
        "list_status_type": [x.list_status_type.value for x, _, _, _ in lists],
        "list_order_status": [x.list_order_status.value for x, _, _, _ in lists],
        "status_rank": [list_rank(x) for x, _, _, _ in lists],
        "legs": [list(legs) for _, legs, _, _ in lists],
        "signal_price": _text(signal for _, _, signal, _ in lists),
        "signal_time": _times([at for _, _, _, at in lists]),
        "created_at": _times([x.timestamp for x, _, _, _ in lists]),
        "updated_at": _times([x.last_update for x, _, _, _ in lists]),
    }
    return {
        table: pd.DataFrame(columns)
        for table, columns in (("paper_orders", orders), ("paper_fills", fills), ("paper_order_lists", order_lists))
    }


def _trade_rows(out: Outcome, prefix: str) -> dict[str, pd.DataFrame]:
    """The common trades' rows: in ``paper_orders`` the buy, the OCO's take-profit and stop-loss
    and the sale, in ``paper_fills`` the buy's and the sale's, in ``paper_order_lists`` the OCO. An
    order's filled amount and cost are its fill's, their ratio (its average) the fill's price."""
    t = list(zip(*out.trades, strict=True))
    seq, oseq, tseq = (np.array(t[i], dtype=np.int64) for i in (SEQ, ORDER_SEQ, TRADE_SEQ))
    now, then = _times(t[NOW]), _times(t[THEN])
    text = {i: np.array(_text(t[i]), dtype=object) for i in (AMOUNT, SIZE, ASK, BID, COST, PROCEEDS, LAST, SOLD_AT,
                                                                  PROFIT, LIMIT, STOP, FEE, FEE_THEN)}  # fmt: skip
    buy, sell, market = Side.BUY.value, Side.SELL.value, OrderType.MARKET.value
    filled, canceled = OrderStatus.FILLED, OrderStatus.CANCELED

    def orders(cid, oid, side, type, tif, amount, price, stop, status, done, cost, average, signal, at, update):  # noqa: ANN001, ANN202
        return pd.DataFrame({
            "client_order_id": cid, "order_id": oid, "side": side, "type": type, "time_in_force": tif,
            "amount": amount, "price": price, "stop_price": stop, "status": status.value, "status_rank": status.rank,
            "filled": done, "cost": cost, "average": average, "signal_price": signal, "signal_time": at,
            "created_at": at, "updated_at": update,
        })  # fmt: skip

    def fills(tid, oid, cid, side, price, amount, cost, fee, currency, at):  # noqa: ANN001, ANN202
        return pd.DataFrame({
            "trade_id": tid, "order_id": oid, "client_order_id": cid, "side": side, "price": price, "amount": amount,
            "cost": cost, "fee": fee, "fee_currency": currency, "is_maker": False, "timestamp": at,
        })  # fmt: skip

    amount, size, last, cost, proceeds = text[AMOUNT], text[SIZE], text[LAST], text[COST], text[PROCEEDS]
    return {
        "paper_orders": pd.concat([
            orders(seq + 1, oseq + 1, buy, market, None, amount, None, None, filled, amount, cost, text[ASK], last, now,
                   now),
            orders(seq + 3, oseq + 2, sell, OrderType.LIMIT_MAKER.value, None, size, text[PROFIT], None, canceled, "0",
                   "0", None, last, now, then),
            orders(seq + 4, oseq + 3, sell, OrderType.STOP_LOSS_LIMIT.value, TimeInForce.GTC.value, size, text[LIMIT],
                   text[STOP], canceled, "0", "0", None, last, now, then),
            orders(seq + 5, oseq + 4, sell, market, None, size, None, None, filled, size, proceeds, text[BID],
                   text[SOLD_AT], then, then),
        ], ignore_index=True),
        "paper_fills": pd.concat([
            fills(tseq + 1, oseq + 1, seq + 1, buy, text[ASK], amount, cost, text[FEE], out.assets[0], now),
            fills(tseq + 2, oseq + 4, seq + 5, sell, text[BID], size, proceeds, text[FEE_THEN], out.assets[1], then),
        ], ignore_index=True),
        "paper_order_lists": pd.DataFrame({
            "list_client_order_id": seq + 2, "order_list_id": np.array(t[LIST_SEQ], dtype=np.int64),
            "contingency_type": ContingencyType.OCO.value, "list_status_type": ListStatusType.ALL_DONE.value,
            "list_order_status": ListOrderStatus.ALL_DONE.value, "status_rank": _DONE_RANK,
            "legs": [[f"{prefix}{s + 3}", f"{prefix}{s + 4}"] for s in t[SEQ]], "signal_price": last,
            "signal_time": now, "created_at": now, "updated_at": then,
        }),
    }  # fmt: skip
