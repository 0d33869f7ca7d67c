"""The replay's fast path: what the event path would do for a plain-target strategy, in one pass.

A plain-target strategy (``strategy(bars) -> pd.Series`` of target positions in base units) only
ever trades with MARKET orders for the difference between its target and its position, on the bars
where the target changes. For such a replay the session's per-order machinery (risk checks, the
paper executor, the matching core's book, five audit rows and an order upsert per order through
the store's writer thread) computes something simple: :func:`simulate` computes the same thing
directly. The targets and the bars where they change are found with numpy; prices, the book's best
bid and ask on the tick grid and the filter and risk bounds become scaled integers (exact: a price
of 0.01 tick is a whole number of cents), so the one loop that must run order by order (the
position is path dependent: buy fees are paid in base, amounts are rounded down to the step size)
is integer arithmetic. What depends on every symbol at once (the shared balance, the orders of the
last minute) is checked afterwards, vectorised, and so is the daily loss, in the one pass that must
use :class:`~decimal.Decimal` as the event path does: the average cost and realised PnL, rounded to
28 digits at each step. :func:`commit` writes the orders and fills to the store in bulk, their
numbers as scaled integers and their ids as integers (no text per row); the session's orders and
the paper venue's fills are built from the same columns when they are first read (the summary
adds up their counts and fees from the columns), so a replay nobody asks for them never builds them.

It gives the same client order ids, amounts, fills, fees, balances and risk state as the event path
(tests/test_fastreplay.py compares them, Decimal for Decimal). What it does not model it refuses with
:class:`Unsupported` (saying why) before anything is written, and :func:`~workbench.replay.replay`
then runs the event path: an order that the filters or the risk checks would refuse, one the balance
cannot pay, one that walks past the best level of the book, a tripped kill switch (read once, at the
start: the fast path is over in seconds), a session with orders already, a strategy that returns
anything but a Series of numeric targets on the bars' index (a DataFrame of intents, say).

Per order the audit log gets no rows (the event path writes five); the session's start and stop
rows and one ``replay.fast`` row with the counts stand for them.
"""

from __future__ import annotations

import gc
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import RiskLimits
from workbench.errors import FilterError, OrderRejected, WorkbenchError
from workbench.filters import SymbolRules, check_order
from workbench.matching import BPS, BookConfig, Fees, synthetic_book
from workbench.model import ZERO, Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from workbench.risk import MINUTE_MS, RiskChecks, RiskContext, RiskState, _day
from workbench.session import Totals, TradingSession, _close_times, _is_dust, _too_small
from workbench.store import Store

DAY_MS = 86_400_000
NEVER = 10**60  # an integer bound no amount or notional reaches: the check is off
MAX_PLACES = 18  # the store keeps 18 decimals (DECIMAL(38, 18)); finer numbers go the event path
INT64 = 2**63 - 1
NEG_ZERO = -ZERO  # what a buy adds to the realised PnL (its fee is in base)


class Unsupported(WorkbenchError):
    """The fast path cannot replay this exactly; the message says why (the event path can)."""


class IntentsAnswer(Unsupported):
    """The strategy answers with order intents, not targets (:mod:`workbench.fastbracket` may replay
    them); ``answer`` is that answer (computed once)."""

    def __init__(self, message: str, answer: pd.DataFrame) -> None:
        super().__init__(message)
        self.answer = answer


@dataclass
class Outcome:
    """What the replay did: its orders and fills (built when first asked for) and the columns the
    store gets, the risk state, balances and clock after it."""

    orders: _Backlog | None = None
    columns: dict[str, np.ndarray | pd.Categorical] = field(default_factory=dict)
    prefix: str = ""  # of the client order ids
    symbols: list[str] = field(default_factory=list)  # of the fills
    trade_ids: list[str] = field(default_factory=list)
    scales: dict[str, int] = field(default_factory=dict)
    state: RiskState = field(default_factory=RiskState)
    free: dict[str, Decimal] = field(default_factory=dict)
    targets: dict[str, Decimal] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    seq: int = 0
    order_seq: int = 0
    trade_seq: int = 0
    now: int | None = None
    drops: list[tuple[OrderRequest, Decimal, int]] = field(default_factory=list)  # too small: the session counts them


@dataclass
class _Signals:
    """One symbol's bars where the target changes: their positions in its frame, targets,
    closes, close times (ms) and open times (ns, to merge symbols in the session's order)."""

    rows: np.ndarray
    targets: np.ndarray
    closes: np.ndarray
    at: np.ndarray
    opened: np.ndarray
    last_close: float
    last_at: int
    last_opened: int


def signals(strategy: object, symbol: str, frame: pd.DataFrame) -> _Signals:
    """The bars of ``frame`` where ``strategy``'s target changes (as the session finds them: a
    target that is NaN keeps the last one); :class:`Unsupported` unless the strategy returns a
    Series of numbers on the bars' index."""
    targets = strategy(frame)  # type: ignore[operator]
    if not isinstance(targets, pd.Series) or not pd.api.types.is_numeric_dtype(targets):
        if isinstance(targets, pd.DataFrame):
            raise IntentsAnswer("the strategy returns order intents (a DataFrame), not a Series of targets", targets)
        what = type(targets).__name__
        raise Unsupported(f"the strategy returns a {what}, not a Series of targets: the event path replays it")
    if not targets.index.equals(frame.index):
        raise Unsupported("the strategy's targets are not on the bars' index")
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.empty:
        raise Unsupported(f"the bars of {symbol} are not indexed by time")
    t = targets.to_numpy(dtype=float)
    if np.isfinite(t).all():
        rows = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
    else:
        known = ~np.isnan(t)
        if np.isinf(t).any():
            raise Unsupported(f"the strategy's target for {symbol} is infinite")
        last_known = np.maximum.accumulate(np.where(known, np.arange(len(t)), -1))
        before = np.concatenate(([-1], last_known[:-1]))
        previous = np.where(before >= 0, t[np.maximum(before, 0)], np.nan)
        rows = np.flatnonzero(known & (np.isnan(previous) | (t != previous)))
    picked = frame[[c for c in ("close", "close_time") if c in frame]].iloc[np.append(rows, len(frame) - 1)]
    at = _close_times(picked).to_numpy(dtype="int64")
    opened = picked.index.as_unit("ns").asi8
    return _Signals(
        rows, t[rows], picked["close"].to_numpy(dtype=float)[:-1], at[:-1], opened[:-1],
        float(picked["close"].iloc[-1]), int(at[-1]), int(opened[-1]),
    )  # fmt: skip


def simulate(session: TradingSession, frames: Mapping[str, pd.DataFrame]) -> Outcome:
    """What ``session.run(frames)`` would do, computed without it; changes nothing.
    :class:`Unsupported` if that cannot be done exactly here."""
    with _no_gc():
        return _simulate(session, frames)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: building tens of thousands of orders and fills (none
    of them in a cycle) would otherwise run it over the whole heap again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def paper_engine(session: TradingSession, symbols: Iterable[str]) -> Any:
    """The paper venue's matching core of a session a fast path may replay into: fresh (no orders,
    positions or intent books), no shadow, its kill switch clear (read once: a fast path is over in
    seconds), every symbol allowed; :class:`Unsupported` saying which does not hold."""
    engine = getattr(session.executor, "engine", None)
    allowed = session.risk.limits.allowed_symbols
    if engine is None or session.shadow is not None:
        raise Unsupported("only a paper session without a shadow replays on the fast path")
    if session.orders or session.state.positions or session._books:
        raise Unsupported("the session has orders or positions already")
    if session.kill_switch.tripped:
        raise Unsupported("the kill switch is tripped")
    if allowed is not None and not set(symbols) <= set(allowed):
        raise Unsupported("a symbol is outside the risk allow-list")
    return engine


def _simulate(session: TradingSession, frames: Mapping[str, pd.DataFrame]) -> Outcome:
    engine = paper_engine(session, frames)
    limits = session.risk.limits
    symbols = list(frames)
    found = [signals(session.strategy, s, frames[s]) for s in symbols]
    markets = [
        _Market(session.rules[s], engine.fees, engine.book_config, limits, f)
        for s, f in zip(symbols, found, strict=True)
    ]
    scales = _asset_scales(markets, engine.free)
    book = _merge(markets, found, [m.orders(session.risk) for m in markets])
    out = Outcome(free=dict(engine.free), order_seq=engine._order_seq, trade_seq=engine._trade_seq)
    _check_order_rate(book, limits, out.state)
    _settle(book, markets, scales, out.free)
    decimals = _decimals(book, markets)
    _account(book, markets, limits, out.state, decimals)
    _build(book, markets, session._prefix, out, decimals)
    for m, f in zip(markets, found, strict=True):
        if len(f.targets):
            out.targets[m.rules.symbol] = Decimal(str(float(f.targets[-1])))
        out.last_price[m.rules.symbol] = Decimal(str(f.last_close))
    for m, f in zip(markets, found, strict=True):
        for i, buy, amount in m.drops:
            request = OrderRequest(m.rules.symbol, _side(buy), OrderType.MARKET, amount=amount)
            out.drops.append((request, m.price(int(m.prices[i])), int(f.at[i])))
    out.drops.sort(key=lambda d: d[2])
    last = max(range(len(found)), key=lambda i: (found[i].last_opened, i))  # the timeline's last bar
    out.now = found[last].last_at
    return out


def _places(value: Decimal) -> int:
    """How many decimal places ``value`` needs."""
    return max(0, -value.normalize().as_tuple().exponent)  # type: ignore[operator]


def _units(value: Decimal, places: int, rounding: str | None = None) -> int:
    """``value`` in units of ``10**-places``: exactly, or rounded (``ROUND_FLOOR``, ``ROUND_CEILING``)."""
    scaled = value.scaleb(places)
    whole = scaled.to_integral_value(rounding or ROUND_FLOOR)
    if rounding is None and whole != scaled:
        raise Unsupported(f"{value} has more than {places} decimals")
    return int(whole)


def _price_units(closes: np.ndarray, least: int) -> tuple[np.ndarray, int]:
    """The closes as integers in units of ``10**-places`` and those places: the fewest (at least
    ``least``) at which each is exactly the Decimal of its shortest repr, as the session reads a close."""
    magnitude = np.abs(closes)
    for places in range(least, 13):
        units = np.rint(closes * 10.0**places)
        if (
            np.all(np.abs(units) < 2**53)
            and np.array_equal(units / 10.0**places, closes)  # the decimal rounds to the close...
            and np.all(np.spacing(magnitude) < 10.0**-places)  # ...and is the only one of so few places that does
        ):
            return units.astype(np.int64), places
    raise Unsupported("a close has more than 12 decimals")


def _rounding(shift: int) -> tuple[int, int, int]:
    """``(mul, add, div)`` such that ``(x * mul + add) // div`` is ``x * 10**shift`` rounded half
    up to a whole number (``x`` >= 0), as ``Decimal.quantize(..., ROUND_HALF_UP)`` rounds a fee."""
    if shift >= 0:
        return 10**shift, 0, 1
    return 1, 10**-shift // 2, 10**-shift


def _wide(*maxima: float) -> type:
    """``np.int64`` if a product of numbers up to ``maxima`` surely fits in it, else ``object``
    (Python's integers: exact at any size, slower)."""
    bound = 1.0
    for m in maxima:
        bound *= float(m) + 1
    return np.int64 if bound < 2**62 else object


@dataclass
class _Orders:
    """One symbol's orders (or every symbol's, merged in the session's order): per order the
    index of its bar among the changes, side, amount, fill price and fee, as integers in their
    symbol's places (the fee in the base's precision on buys, the quote's on sells)."""

    rows: np.ndarray
    buy: np.ndarray
    amount: np.ndarray
    price: np.ndarray
    fee: np.ndarray
    symbol: np.ndarray | None = None  # merged: each order's index into the markets
    signal: np.ndarray | None = None  # merged: the close it was placed at (the market's price places)
    at: np.ndarray | None = None  # merged: its bar's close time, ms


class _Market:
    """One symbol's rules, book and limits as integers: amounts in units of ``10**-amount_places``
    (the step's), positions and targets of ``10**-position_places``, prices of ``10**-price_places``
    (the closes' and the tick's), fill prices of ``10**-tick_places``."""

    def __init__(self, rules: SymbolRules, fees: Fees, book: BookConfig, limits: RiskLimits, sig: _Signals) -> None:
        self.rules, self.fees, self.limits, self.sig = rules, fees, limits, sig
        self._book = replace(book, levels=1)  # a MARKET order within the best level sees only it
        step, tick = rules.step_size(), rules.tick_size
        if not step > 0 or not tick > 0:
            raise Unsupported(f"{rules.symbol} has no LOT_SIZE step or PRICE_FILTER tick")
        if fees.taker < 0:
            raise Unsupported("a negative taker fee")
        self.distinct = {v: Decimal(str(v)) for v in np.unique(sig.targets).tolist()}
        self.amount_places = _places(step)
        self.position_places = max(
            [self.amount_places, rules.base_precision] + [_places(d) for d in self.distinct.values()]
        )
        self.tick_places = _places(tick)
        self.prices, self.price_places = _price_units(sig.closes, self.tick_places)
        for places in (self.amount_places, self.tick_places, self.price_places, rules.base_precision,
                       rules.quote_precision, self.amount_places + self.tick_places):  # fmt: skip
            if places > MAX_PLACES:
                raise Unsupported(f"{rules.symbol}'s numbers have more than {MAX_PLACES} decimals")
        self.step = _units(step, self.amount_places)
        self.tick = _units(tick, self.tick_places)
        self.depth = _units(book.level_notional, self.amount_places + self.tick_places, ROUND_FLOOR)
        self.bids, self.asks = self._best(book)
        taker_places = _places(fees.taker)
        self.taker = _units(fees.taker, taker_places)
        self.buy_fee = _rounding(rules.base_precision - self.amount_places - taker_places)
        self.sell_fee = _rounding(rules.quote_precision - self.amount_places - self.tick_places - taker_places)
        self.bounds = self._bounds(limits)
        self.drops: list[tuple[int, bool, Decimal]] = []  # (row, buy, amount) of rebalances too small to trade

    def _best(self, book: BookConfig) -> tuple[np.ndarray, np.ndarray]:
        """The best bid and ask (in units of the tick's places) of the matching core's book at each
        close: the close less and plus half the spread, floored and ceiled onto the tick grid."""
        half = book.spread_bps * BPS / 2
        half_places = _places(half)
        one, h = 10**half_places, _units(half, half_places)
        tick = _units(self.rules.tick_size, self.price_places)
        prices = self.prices
        prices = prices.astype(_wide(np.abs(prices).max(initial=0), one + h, self.tick))
        grid = tick * one
        bid = (prices * (one - h)) // grid
        ask = np.maximum(-((-prices * (one + h)) // grid), bid + 1)
        return bid * self.tick, ask * self.tick

    def _bounds(self, limits: RiskLimits) -> tuple[int, ...]:
        """Integer bounds within which a MARKET order on the step grid surely passes every filter
        and risk check but the daily loss and the order rate (checked later, across symbols)."""
        a, p, q = self.amount_places, self.price_places, self.position_places
        min_qty, max_qty, min_notional, max_notional = _filter_bounds(self.rules)
        return (
            _units(min_qty, a, ROUND_CEILING), _units(max_qty, a, ROUND_FLOOR),
            _units(min_notional, a + p, ROUND_CEILING), _units(max_notional, a + p, ROUND_FLOOR),
            NEVER if limits.max_order_notional is None else _units(limits.max_order_notional, a + p, ROUND_FLOOR),
            NEVER if limits.max_position is None else _units(limits.max_position, q, ROUND_FLOOR),
            NEVER if limits.max_position_notional is None else _units(limits.max_position_notional, q + p, ROUND_FLOOR),
        )  # fmt: skip

    def orders(self, risk: RiskChecks) -> _Orders:
        """The orders this symbol's targets give, in time order. The position is path dependent
        (amounts are rounded down to the step, buy fees are paid in base), so this is a loop, over
        integers; what follows from the amounts (fill prices, fees, the book's depth) is vectorised."""
        rules = self.rules
        up = 10 ** (self.position_places - self.amount_places)
        step = self.step * up
        units = {v: _units(d, self.position_places) for v, d in self.distinct.items()}
        targets = list(map(units.__getitem__, self.sig.targets.tolist()))
        min_qty, max_qty, min_notional, max_notional, max_order, max_pos, max_pos_notional = self.bounds
        mul, add, div = self.buy_fee
        mul *= self.taker
        fee_up = 10 ** (self.position_places - rules.base_precision)
        rows: list[int] = []
        amounts: list[int] = []  # negative to sell
        position = 0
        for i, (target, price) in enumerate(zip(targets, self.prices.tolist(), strict=True)):
            delta = target - position
            if delta > 0:
                size = delta // step * step
                after = position + size
            else:
                size = -delta // step * step
                after = position - size
            if not size:
                if delta:  # below one lot step
                    self.drops.append((i, delta > 0, Decimal(abs(delta)).scaleb(-self.position_places)))
                continue
            amount = size // up
            notional = amount * price
            surely = min_qty <= amount <= max_qty and min_notional <= notional <= max_notional
            if not surely and self._is_dust(delta > 0, amount, price):
                self.drops.append((i, delta > 0, self.amount(amount)))
                continue
            held = abs(after)
            if notional > max_order or (held > max_pos or held * price > max_pos_notional) and held > abs(position):
                self._check_risk(risk, delta > 0, amount, price, position)
            if delta > 0:
                position = after - (amount * mul + add) // div * fee_up
                amounts.append(amount)
            else:
                position = after
                amounts.append(-amount)
            rows.append(i)
        try:
            signed = np.array(amounts, dtype=np.int64)
        except OverflowError:
            raise Unsupported(f"an amount of {rules.symbol} too large for 64-bit integers") from None
        return self._fill(np.array(rows, dtype=np.int64), signed)

    def _fill(self, rows: np.ndarray, signed: np.ndarray) -> _Orders:
        """Fill prices and fees of the orders (the best level's price, which each must fit in)."""
        buy, amount = signed > 0, np.abs(signed)
        bids = self.bids[rows]
        if np.any(bids <= 0):
            at = int(np.argmax(bids <= 0))
            raise Unsupported(f"the book of {self.rules.symbol} at {self.price(int(self.prices[rows[at]]))} has no bid")
        price = np.where(buy, self.asks[rows], bids)
        top = np.abs(price).max(initial=0)
        largest = amount.max(initial=0)
        deep = (amount.astype(_wide(largest + self.step, top)) + self.step) * price > self.depth
        for k in np.flatnonzero(deep).tolist():  # perhaps more than the best level holds: look
            self._check_depth(bool(buy[k]), int(amount[k]), int(self.prices[rows[k]]), int(price[k]))
        mul, add, div = self.buy_fee
        buy_fee = (amount.astype(_wide(largest, mul * self.taker)) * (mul * self.taker) + add) // div
        mul, add, div = self.sell_fee
        cost = amount.astype(_wide(largest, top, mul * self.taker)) * price
        sell_fee = (cost * (mul * self.taker) + add) // div
        fee = np.where(buy, buy_fee, sell_fee)
        if fee.dtype == object or price.dtype == object:
            try:
                fee, price = fee.astype(np.int64), price.astype(np.int64)
            except OverflowError:
                raise Unsupported(f"a price or fee of {self.rules.symbol} too large for 64-bit integers") from None
        return _Orders(rows, buy, amount, price, fee)

    # Decimals for what the integers leave to the event path's own code (rare: near a bound).

    def amount(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.amount_places).normalize()

    def price(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.price_places)

    def _is_dust(self, buy: bool, amount: int, price: int) -> bool:
        """The session's own test: a rebalance below the minimum is skipped; any other refusal the
        event path records, so the fast path hands over."""
        request = OrderRequest(self.rules.symbol, _side(buy), OrderType.MARKET, amount=self.amount(amount))
        if _is_dust(request, self.rules, self.price(price)):
            return True
        try:
            check_order(request, self.rules, avg_price=self.price(price))
        except FilterError as e:
            raise Unsupported(f"the filters refuse an order of {request.amount} {self.rules.symbol}: {e}") from None
        return False

    def _check_risk(self, risk: RiskChecks, buy: bool, amount: int, price: int, position: int) -> None:
        """The risk checks on the order (but the daily loss and the order rate, checked later)."""
        request = OrderRequest(self.rules.symbol, _side(buy), OrderType.MARKET, amount=self.amount(amount))
        context = RiskContext(self.price(price), Decimal(position).scaleb(-self.position_places))
        later = replace(risk.limits, max_daily_loss=None, max_orders_per_minute=None)
        try:
            RiskChecks(later, risk.rules).check(request, context)
        except OrderRejected as e:
            raise Unsupported(f"a risk check refuses an order (the event path records it): {e}") from None

    def _check_depth(self, buy: bool, amount: int, price: int, best: int) -> None:
        book = synthetic_book(self.price(price), self.rules, self._book)
        level = book.asks[0] if buy else book.bids[0]
        if self.amount(amount) > level.amount or level.price != Decimal(best).scaleb(-self.tick_places):
            raise Unsupported(
                f"an order of {self.amount(amount)} {self.rules.symbol} walks past the best level of the book"
            )


def _side(buy: bool) -> Side:
    return Side.BUY if buy else Side.SELL


def _filter_bounds(rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Quantity and notional bounds within which a MARKET order on the LOT_SIZE grid surely passes
    every filter (an empty range where the grids or precision leave doubt)."""
    never = (Decimal(1), ZERO, ZERO, ZERO)
    lot, market = rules.filter("LOT_SIZE") or {}, rules.filter("MARKET_LOT_SIZE") or {}
    step = lot.get("stepSize", ZERO)
    for f in (lot, market):
        grid = f.get("stepSize", ZERO)
        if grid and (not step or step % grid or f.get("minQty", ZERO) % grid):
            return never
    if step and -step.normalize().as_tuple().exponent > rules.base_precision:  # type: ignore[union-attr, operator]
        return never
    num = rules.filter("MAX_NUM_ORDERS")
    if num is not None and num["maxNumOrders"] < 1:  # type: ignore[operator]
        return never
    huge = Decimal("1e30")
    min_qty = max([f.get("minQty", ZERO) for f in (lot, market)] + [step])  # type: ignore[type-var]
    max_qty = min([f["maxQty"] for f in (lot, market) if f.get("maxQty")] or [huge])  # type: ignore[type-var]
    legacy, notional = rules.filter("MIN_NOTIONAL") or {}, rules.filter("NOTIONAL") or {}
    min_notional = max(
        legacy.get("minNotional", ZERO) if legacy.get("applyToMarket") else ZERO,
        notional.get("minNotional", ZERO) if notional.get("applyMinToMarket") else ZERO,
    )  # type: ignore[type-var]
    top = notional.get("maxNotional") if notional.get("applyMaxToMarket") else None
    return min_qty, max_qty, min_notional, top or huge  # type: ignore[return-value]


def _merge(markets: Sequence[_Market], found: Sequence[_Signals], parts: Sequence[_Orders]) -> _Orders:
    """Every symbol's orders in the session's order: by bar open time, then symbol."""
    if len(parts) == 1:
        (p,) = parts
        return replace(p, symbol=np.zeros(len(p.rows), dtype=np.int64), signal=markets[0].prices[p.rows],
                       at=found[0].at[p.rows])  # fmt: skip
    order = np.argsort(np.concatenate([f.opened[p.rows] for f, p in zip(found, parts, strict=True)]), kind="stable")

    def column(values: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(values)[order]

    return _Orders(
        rows=column([p.rows for p in parts]),
        buy=column([p.buy for p in parts]),
        amount=column([p.amount for p in parts]),
        price=column([p.price for p in parts]),
        fee=column([p.fee for p in parts]),
        symbol=column([np.full(len(p.rows), i) for i, p in enumerate(parts)]),
        signal=column([m.prices[p.rows] for m, p in zip(markets, parts, strict=True)]),
        at=column([f.at[p.rows] for f, p in zip(found, parts, strict=True)]),
    )


def _check_order_rate(book: _Orders, limits: RiskLimits, state: RiskState) -> None:
    """The orders of the last minute before each order, as the risk checks count them; leaves in
    ``state.order_times`` what the session's would hold after the last order."""
    at = book.at
    if not len(at):
        return
    if np.any(np.diff(at) < 0):
        raise Unsupported("the bars' close times go back in time")
    limit = limits.max_orders_per_minute
    if limit is not None and (np.arange(len(at)) - np.searchsorted(at, at - MINUTE_MS, side="right")).max() >= limit:
        raise Unsupported(f"a risk check refuses an order (the event path records it): max_orders_per_minute {limit}")
    state.order_times.extend(at[np.searchsorted(at, at[-1] - MINUTE_MS, side="right") :].tolist())


def _asset_scales(markets: Sequence[_Market], free: Mapping[str, Decimal]) -> dict[str, int]:
    """Per asset, the decimal places its balance needs: its starting balance's and those of what
    the symbols pay and receive in it (amounts and base fees; costs and quote fees)."""
    scales = {asset: _places(amount) for asset, amount in free.items()}
    for m in markets:
        base, quote = m.rules.base, m.rules.quote
        scales[base] = max(scales.get(base, 0), m.amount_places, m.rules.base_precision)
        scales[quote] = max(scales.get(quote, 0), m.amount_places + m.tick_places, m.rules.quote_precision)
    if max(scales.values(), default=0) > MAX_PLACES:
        raise Unsupported(f"a balance has more than {MAX_PLACES} decimals")
    return scales


def _settle(book: _Orders, markets: Sequence[_Market], scales: Mapping[str, int], free: dict[str, Decimal]) -> None:
    """Pay for every order in turn from the balances in ``free`` (updated in place), as the paper
    venue does; :class:`Unsupported` at the first that the balance cannot pay."""
    for asset in dict.fromkeys(a for m in markets for a in (m.rules.base, m.rules.quote)):
        start = _units(free.get(asset, ZERO), scales[asset])
        flows = _flows(book, markets, asset, scales[asset], start)
        if flows is None:
            continue
        change, spends = flows
        after = start + np.cumsum(change)
        short = spends & (after < 0)
        if short.any():
            k = int(np.argmax(short))
            m = markets[book.symbol[k]]
            raise Unsupported(
                f"the balance cannot pay an order of {m.amount(int(book.amount[k]))} {m.rules.symbol} "
                "(the event path rejects it)"
            )
        free[asset] = Decimal(int(after[-1])).scaleb(-scales[asset])


def _flows(
    book: _Orders, markets: Sequence[_Market], asset: str, scale: int, start: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each order's change of the balance of ``asset`` (in units of ``10**-scale``: a buy pays
    its cost in quote and receives its amount less the fee in base, a sell the other way round) and
    whether it spends ``asset``; ``None`` if no order touches it."""
    table = np.array(
        [
            (m.rules.base == asset, m.rules.quote == asset, 10 ** (scale - m.amount_places),
             10 ** (scale - m.rules.base_precision), 10 ** (scale - m.amount_places - m.tick_places),
             10 ** (scale - m.rules.quote_precision))
            for m in markets
        ],
        dtype=np.int64,
    )[book.symbol]  # fmt: skip
    is_base, is_quote = table[:, 0] == 1, table[:, 1] == 1
    if not (is_base.any() or is_quote.any()):
        return None
    to_amount, to_base_fee = np.where(is_base, table[:, 2], 0), np.where(is_base, table[:, 3], 0)
    to_cost, to_quote_fee = np.where(is_quote, table[:, 4], 0), np.where(is_quote, table[:, 5], 0)
    amount, price, fee = book.amount.astype(float), book.price.astype(float), book.fee.astype(float)
    bound = abs(start) + float(
        np.sum(amount * to_amount + fee * (to_base_fee + to_quote_fee) + amount * price * to_cost)
    )
    wide = _wide(bound)
    amount, fee = book.amount.astype(wide), book.fee.astype(wide)
    units, cost = amount * to_amount, amount * book.price.astype(wide) * to_cost
    buy = book.buy
    change = np.where(buy, units - fee * to_base_fee - cost, cost - fee * to_quote_fee - units)
    return change, np.where(buy, is_quote, is_base)


_Decimals = tuple[list[Decimal], list[Decimal], list[Decimal], list[Decimal]]


def _decimals(book: _Orders, markets: Sequence[_Market]) -> _Decimals:
    """The orders' amounts and fill prices (normalised, as the event path rounds them onto their
    grids), costs (their product) and fees (in their asset's precision, as quantized)."""

    def exponents(places: Callable[[_Market], int], on_buys: Callable[[_Market], int] | None = None) -> np.ndarray:
        per_order = np.array([-places(m) for m in markets])[book.symbol]
        if on_buys is None:
            return per_order
        return np.where(book.buy, np.array([-on_buys(m) for m in markets])[book.symbol], per_order)

    amounts = _decimal_column(book.amount, exponents(lambda m: m.amount_places), normalize=True)
    prices = _decimal_column(book.price, exponents(lambda m: m.tick_places), normalize=True)
    fees = _decimal_column(
        book.fee, exponents(lambda m: m.rules.quote_precision, lambda m: m.rules.base_precision), normalize=False
    )
    return amounts, prices, list(map(operator.mul, prices, amounts)), fees


def _decimal_column(units: np.ndarray, exponents: np.ndarray, *, normalize: bool) -> list[Decimal]:
    """``Decimal(units[i]).scaleb(exponents[i])`` for each order (normalised); a value that many
    orders share (amounts and buy fees repeat) is built once."""
    if normalize:
        units, exponents = _without_trailing_zeros(units, exponents)
    low = int(exponents.min(initial=0))
    span = int(exponents.max(initial=0)) - low + 1
    if units.size and int(np.abs(units).max()) < (1 << 62) // span:
        distinct, inverse = np.unique(units * span + (exponents - low), return_inverse=True)
        if len(distinct) * 4 < len(units):
            built = _decimal_column(distinct // span, distinct % span + low, normalize=False)
            return np.array(built, dtype=object)[inverse].tolist()
    powers = np.array([Decimal(1).scaleb(e) for e in range(low, low + span)], dtype=object)
    return list(map(operator.mul, map(Decimal, units.tolist()), powers[exponents - low].tolist()))


def _without_trailing_zeros(units: np.ndarray, exponents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same values with no trailing zero in their units (what ``Decimal.normalize`` does; zero's
    exponent is 0)."""
    units, exponents = units.copy(), exponents.copy()
    exponents[units == 0] = 0
    more = np.flatnonzero((units % 10 == 0) & (units != 0))
    while more.size:
        units[more] //= 10
        exponents[more] += 1
        more = more[units[more] % 10 == 0]
    return units, exponents


def _account(
    book: _Orders, markets: Sequence[_Market], limits: RiskLimits, state: RiskState, decimals: _Decimals
) -> None:
    """The risk state's positions, average costs and realised PnL after every fill, as
    :meth:`RiskState.record_fill` computes them (Decimals, rounded as it rounds); :class:`Unsupported`
    if the daily loss check would refuse an order."""
    floor = -limits.max_daily_loss if limits.max_daily_loss is not None else Decimal("-Infinity")
    amounts, prices, costs, fees = decimals
    n = len(markets)
    positions, averages, by_symbol = [ZERO] * n, [ZERO] * n, [ZERO] * n
    days = book.at // DAY_MS
    starts = np.flatnonzero(np.diff(days, prepend=-1)).tolist() + [len(days)]
    symbols, sides = book.symbol.tolist(), book.buy.tolist()
    for first, end in zip(starts[:-1], starts[1:], strict=True):
        day = _day(int(book.at[first]))
        today = ZERO
        day_orders = (symbols, sides, amounts, prices, costs, fees)
        for s, buy, amount, price, cost, fee in zip(*(column[first:end] for column in day_orders), strict=True):
            position = positions[s]
            if today <= floor and not (position < 0 if buy else position > 0):
                raise Unsupported(f"a risk check refuses an order (the event path records it): max_daily_loss {-floor}")
            if buy:  # its PnL is minus no quote fee: nothing
                total = position + (amount - fee)
                averages[s] = (position * averages[s] + cost) / total if total else ZERO
                positions[s] = total
            else:
                pnl = -fee
                pnl += (price - averages[s]) * amount
                position -= amount
                positions[s] = position
                if not position:
                    averages[s] = ZERO
                today += pnl
                by_symbol[s] += pnl
        state.realised[day] = today
    traded = np.unique(book.symbol, return_index=True)
    for s in traded[0][np.argsort(traded[1])].tolist():  # in the order of their first fills
        symbol = markets[s].rules.symbol
        state.positions[symbol], state.avg_cost[symbol] = positions[s], averages[s]
        state.realised_by_symbol[symbol] = by_symbol[s]


_new = object.__new__


def _build(book: _Orders, markets: Sequence[_Market], prefix: str, out: Outcome, decimals: _Decimals) -> None:
    """The orders and fills as the session and the paper venue hold them, and the store's columns."""
    n = len(book.rows)
    seqs = np.arange(out.seq + 1, out.seq + n + 1), np.arange(out.order_seq + 1, out.order_seq + n + 1)
    trades = np.arange(out.trade_seq + 1, out.trade_seq + n + 1)
    names = np.array([m.rules.symbol for m in markets], dtype=object)
    assets = list(dict.fromkeys(a for m in markets for a in (m.rules.base, m.rules.quote)))
    code = {a: i for i, a in enumerate(assets)}
    currency = np.where(
        book.buy, np.array([code[m.rules.base] for m in markets])[book.symbol],
        np.array([code[m.rules.quote] for m in markets])[book.symbol],
    )  # fmt: skip
    out.symbols, out.trade_ids = names[book.symbol].tolist(), list(map(str, trades.tolist()))

    def columns() -> tuple[list, ...]:
        """What the orders and fills are built from: a column per field that differs among them."""
        amounts, prices, costs, fees = decimals
        sides = [Side.BUY if b else Side.SELL for b in book.buy.tolist()]
        cids = [f"{prefix}{i}" for i in seqs[0].tolist()]
        currencies = np.array(assets, dtype=object)[currency].tolist()
        order_ids = list(map(str, seqs[1].tolist()))
        return (out.symbols, sides, amounts, prices, costs, fees, currencies, cids, order_ids, out.trade_ids,
                book.at.tolist())  # fmt: skip

    out.orders = _Backlog(columns, n, _fee_totals(book, markets))
    out.seq += n
    out.order_seq += n
    out.trade_seq += n
    out.prefix = prefix
    _columns(book, markets, out, (*seqs, trades), _category(book.symbol, list(names)), _category(currency, assets))


class _Backlog:
    """The orders as the session holds them and the fills as the paper venue does, built from their
    columns when first asked for (nothing may ever ask: a sweep's replays); their totals at once."""

    def __init__(self, columns: Callable[[], tuple[list, ...]], n: int, totals: Totals | None) -> None:
        self._make, self._n, self._totals = columns, n, totals
        self._made: tuple[list, ...] | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def _columns(self) -> tuple[list, ...]:
        if self._made is None:
            self._made = self._make()
        return self._made

    def totals(self) -> Totals | None:
        return self._totals

    def build(self) -> dict[str, Order]:
        market, filled = OrderType.MARKET, OrderStatus.FILLED
        orders = {}
        with _no_gc():
            for symbol, side, amount, _, cost, fee, currency, cid, oid, _, at in zip(*self._columns, strict=True):
                orders[cid] = Order(
                    symbol, side, market, amount, None, None, None, cid, oid, status=filled, filled=amount,
                    cost=cost, timestamp=at, last_update=at, fees={currency: fee},
                )  # fmt: skip
        return orders

    def fills(self) -> list[Fill]:
        fills = []
        with _no_gc():
            for symbol, side, amount, price, cost, fee, currency, cid, oid, tid, at in zip(*self._columns, strict=True):
                fill = _new(Fill)  # a frozen dataclass's __init__ sets each field through object.__setattr__: slow
                fill.__dict__.update(
                    trade_id=tid, order_id=oid, client_order_id=cid, symbol=symbol, side=side, price=price,
                    amount=amount, cost=cost, fee=fee, fee_currency=currency, is_maker=False, timestamp=at,
                )  # fmt: skip
                fills.append(fill)
        return fills


def _fee_totals(book: _Orders, markets: Sequence[_Market]) -> Totals | None:
    """Per symbol: its orders and their fees per asset (base on buys, quote on sells; the asset of
    its first order first), as the session sums them; ``None`` if a sum has more digits than its
    Decimals hold exactly (the session then sums the orders' own)."""
    totals = {}
    for i, m in enumerate(markets):
        mine = book.symbol == i
        if not mine.any():
            continue
        sums = {}
        first = bool(book.buy[np.argmax(mine)])
        for buy in (first, not first):
            side = mine & (book.buy == buy)
            if side.any():
                units = sum(book.fee[side].tolist())
                if len(str(units)) > 28:
                    return None
                places = m.rules.base_precision if buy else m.rules.quote_precision
                sums[m.rules.base if buy else m.rules.quote] = Decimal(units).scaleb(-places)
        totals[m.rules.symbol] = (int(mine.sum()), sums)
    return totals


def _category(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    """``names[codes[i]]`` for each ``i``, without a string per row."""
    return pd.Categorical.from_codes(codes, categories=names)


def _columns(
    book: _Orders, markets: Sequence[_Market], out: Outcome, ids: tuple[np.ndarray, np.ndarray, np.ndarray],
    symbols: pd.Categorical, currencies: pd.Categorical,
) -> None:  # fmt: skip
    """The store's columns: ids as integers (the client order ids after ``out.prefix``), names as
    categories, numbers as integers in units of ``10**-out.scales[column]``, one scale per column
    (the finest of the symbols')."""

    def rescale(units: np.ndarray, places: list[int], column: str) -> np.ndarray:
        top = max(places)
        out.scales[column] = top
        if min(places) == top:
            return units
        factors = np.array([10 ** (top - p) for p in places], dtype=object)[book.symbol]
        scaled = units.astype(object) * factors
        try:
            return scaled.astype(np.int64)
        except OverflowError:
            raise Unsupported(f"a {column} too large for 64-bit integers") from None

    cost = book.amount.astype(_wide(book.amount.max(initial=0), book.price.max(initial=0))) * book.price
    fee_places = [max(m.rules.base_precision, m.rules.quote_precision) for m in markets]
    fee_shift = np.where(
        book.buy,
        np.array([fp - m.rules.base_precision for fp, m in zip(fee_places, markets, strict=True)])[book.symbol],
        np.array([fp - m.rules.quote_precision for fp, m in zip(fee_places, markets, strict=True)])[book.symbol],
    )
    out.columns = {
        "client_order_id": ids[0],
        "order_id": ids[1],
        "trade_id": ids[2],
        "symbol": symbols,
        "side": _category(np.where(book.buy, 0, 1), [Side.BUY.value, Side.SELL.value]),
        "fee_currency": currencies,
        "amount": rescale(book.amount, [m.amount_places for m in markets], "amount"),
        "cost": rescale(cost, [m.amount_places + m.tick_places for m in markets], "cost"),
        "price": rescale(book.price, [m.tick_places for m in markets], "price"),
        "signal_price": rescale(book.signal, [m.price_places for m in markets], "signal_price"),
        "fee": rescale(book.fee * 10**fee_shift, fee_places, "fee"),
        "at": book.at,
    }


def commit(session: TradingSession, out: Outcome) -> None:
    """Put ``out`` into the session, its executor and its store: orders and fills in bulk, one
    transaction (a DuckDB insert from a DataFrame, not row by row through the writer thread)."""
    with _no_gc():
        _commit(session, out)


def _commit(session: TradingSession, out: Outcome) -> None:
    engine = session.executor.engine  # type: ignore[attr-defined]
    session.state = out.state
    if out.orders is not None:
        session.defer_orders(out.orders)
        session.executor.defer_fills(out.orders.fills)  # type: ignore[attr-defined]
    session._seq = out.seq
    session._targets.update(out.targets)
    session._trade_keys.update(zip(out.symbols, out.trade_ids, strict=True))
    session.last_price.update(out.last_price)
    engine.free.update(out.free)
    for asset in out.free:
        engine.locked.setdefault(asset, ZERO)
    engine.last_price.update(out.last_price)
    engine._order_seq, engine._trade_seq = out.order_seq, out.trade_seq
    if out.now is not None:
        session.executor._time = out.now  # type: ignore[attr-defined]
    for request, price, at in out.drops:
        session._drop(request, price, at, _too_small(request, session.rules[request.symbol], price))  # type: ignore[arg-type]
    n = len(out.orders or ())
    session._audit("replay.fast", {"orders": n, "fills": n})  # one fill an order
    write(session.store, session.session_id, out)  # last: its flush commits the audit rows with the session's start


def write(store: Store, session_id: str, out: Outcome) -> None:
    """Insert the orders and fills of ``out`` into ``paper_orders`` and ``paper_fills`` at once."""
    c = out.columns
    n = len(c["at"])
    times = pd.to_datetime(c["at"], unit="ms", utc=True)
    zeros = np.zeros(n, dtype=np.int8)
    session = _category(zeros, [session_id])
    orders = pd.DataFrame(
        {
            "session_id": session,
            "client_order_id": c["client_order_id"],
            "order_id": c["order_id"],
            "symbol": c["symbol"],
            "side": c["side"],
            "type": _category(zeros, [OrderType.MARKET.value]),
            "amount": c["amount"],
            "status": _category(zeros, [OrderStatus.FILLED.value]),
            "status_rank": OrderStatus.FILLED.rank,
            "filled": c["amount"],
            "cost": c["cost"],
            "average": c["price"],  # one fill: its cost over its amount is its price, exactly
            "signal_price": c["signal_price"],
            "arrival_price": c["signal_price"],
            "signal_time": times,
            "created_at": times,
            "updated_at": times,
        },
        index=range(n),
    )
    fills = pd.DataFrame(
        {
            "session_id": session,
            "trade_id": c["trade_id"],
            "order_id": c["order_id"],
            "client_order_id": c["client_order_id"],
            "symbol": c["symbol"],
            "side": c["side"],
            "price": c["price"],
            "amount": c["amount"],
            "cost": c["cost"],
            "fee": c["fee"],
            "fee_currency": c["fee_currency"],
            "is_maker": False,
            "timestamp": times,
        },
        index=range(n),
    )
    scales = {**out.scales, "filled": out.scales["amount"], "average": out.scales["price"],
              "arrival_price": out.scales["signal_price"]}  # fmt: skip
    texts = {"client_order_id": out.prefix, "order_id": "", "trade_id": ""}
    store.insert_frames({"paper_orders": orders, "paper_fills": fills}, scales=scales, texts=texts)
