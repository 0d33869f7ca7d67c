"""The replay's fast path: what the event path would do for a plain-target strategy, in one pass.

A plain-target strategy (``strategy(bars) -> pd.Series`` of target positions in base units) only
ever trades with MARKET orders for the difference between its target and its position, on the bars
where the target changes. For such a replay the session's per-order machinery (risk checks, the
paper executor, the matching core's book, five audit rows and an order upsert per order through
the store's writer thread) computes something simple: :func:`simulate` computes the same thing
directly, vectorised where it can be (targets, the bars where they change) and with a tight loop
over those bars only (the position and balances are path dependent: buy fees are paid in base,
amounts are rounded down to the step size). It gives the same client order ids, amounts, fills,
fees, balances and risk state, and :func:`commit` writes the orders and fills to the store in bulk.

What it does not model it refuses with :class:`Unsupported` (saying why) before anything is
written, and :func:`~workbench.replay.replay` then runs the event path: an order that the filters
or the risk checks would refuse, one the balance cannot pay, one that walks past the best level of
the book, a tripped kill switch (read once, at the start: the fast path is over in seconds), a
session with orders already, a strategy that returns anything but a Series of targets.

The store has no bulk insert, so :func:`write` inserts into its ``paper_orders`` and ``paper_fills``
on the store's own DuckDB connection, in one transaction, after flushing its writer thread. Per
order the audit log gets no rows (the event path writes five); the session's start and stop rows
and one ``replay.fast`` row with the counts stand for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from workbench.config import RiskLimits
from workbench.errors import FilterError, OrderRejected, WorkbenchError
from workbench.filters import SymbolRules, _on_grid, check_order
from workbench.matching import BPS, BookConfig, Fees, synthetic_book
from workbench.model import ZERO, Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from workbench.risk import MINUTE_MS, RiskChecks, RiskContext, RiskState, _day
from workbench.session import TradingSession, _close_times, _is_dust, _too_small
from workbench.store import Store

DAY_MS = 86_400_000


class Unsupported(WorkbenchError):
    """The fast path cannot replay this exactly; the message says why (the event path can)."""


@dataclass
class Outcome:
    """What the replay did: its orders and fills, the risk state, balances and clock after it."""

    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    signal_prices: list[Decimal] = field(default_factory=list)
    state: RiskState = field(default_factory=RiskState)
    free: dict[str, Decimal] = field(default_factory=dict)
    targets: dict[str, Decimal] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    seq: int = 0
    order_seq: int = 0
    trade_seq: int = 0
    now: int | None = None
    drops: list[tuple[OrderRequest, Decimal, int]] = field(default_factory=list)  # too small: the session counts them


def timeline(strategy: object, frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every bar of every symbol in time order (as the session runs them) with its target;
    :class:`Unsupported` if the strategy does not return a Series of numbers on the bars' index."""
    steps = []
    for symbol, frame in frames.items():
        targets = strategy(frame)  # type: ignore[operator]
        if not isinstance(targets, pd.Series) or not pd.api.types.is_numeric_dtype(targets):
            what = "order intents (a DataFrame)" if isinstance(targets, pd.DataFrame) else f"a {type(targets).__name__}"
            raise Unsupported(f"the strategy returns {what}, not a Series of targets: the event path replays it")
        if not targets.index.equals(frame.index):
            raise Unsupported("the strategy's targets are not on the bars' index")
        steps.append(
            pd.DataFrame({"symbol": symbol, "close": frame["close"], "target": targets, "at": _close_times(frame)})
        )
    return pd.concat(steps).sort_index(kind="stable")


def simulate(session: TradingSession, frames: Mapping[str, pd.DataFrame]) -> Outcome:
    """What ``session.run(frames)`` would do, computed without it; changes nothing.
    :class:`Unsupported` if that cannot be done exactly here."""
    engine = getattr(session.executor, "engine", None)
    limits = session.risk.limits
    if engine is None or session.shadow is not None:
        raise Unsupported("only a paper session without a shadow replays on the fast path")
    if session.orders or session.state.positions:
        raise Unsupported("the session has orders or positions already")
    if session.kill_switch.tripped:
        raise Unsupported("the kill switch is tripped")
    if limits.allowed_symbols is not None and not set(frames) <= set(limits.allowed_symbols):
        raise Unsupported("a symbol is outside the risk allow-list")
    bars = timeline(session.strategy, frames)
    symbols = bars["symbol"].to_numpy()
    targets = bars["target"].to_numpy(dtype=float)
    known = pd.Series(targets).groupby(symbols, sort=False).ffill()
    previous = known.groupby(symbols, sort=False).shift().to_numpy(dtype=float)
    changed = np.flatnonzero(~np.isnan(targets) & (np.isnan(previous) | (targets != previous)))
    closes = bars["close"].to_numpy(dtype=float)
    times = bars["at"].to_numpy(dtype="int64")

    out = Outcome(free=dict(engine.free), state=RiskState(), order_seq=engine._order_seq, trade_seq=engine._trade_seq)
    markets = {s: _Market(session.rules[s], engine.fees, engine.book_config, limits) for s in frames}
    prefix = session._prefix
    state, free = out.state, out.free
    order_times, day = state.order_times, (-1, "")
    decimals: dict[float, Decimal] = {}  # a target strategy has few distinct targets
    rows = zip(
        symbols[changed].tolist(),
        times[changed].tolist(),
        targets[changed].tolist(),
        closes[changed].tolist(),
        strict=True,
    )
    for symbol, at, value, close in rows:
        target = decimals.get(value)
        if target is None:
            target = decimals[value] = Decimal(str(value))
        if out.targets.get(symbol) == target:
            continue
        out.targets[symbol] = target
        market = markets[symbol]
        price = Decimal(str(close))
        position = state.positions.get(symbol, ZERO)
        delta = target - position
        amount = _on_grid(abs(delta), market.lot_step, ROUND_DOWN)  # rules.round_amount, its step found once
        if not delta:
            continue
        side = Side.BUY if delta > 0 else Side.SELL
        if not amount or not market.surely_passes_filters(amount, price) and market.is_dust(side, amount, price):
            out.drops.append((OrderRequest(symbol, side, OrderType.MARKET, amount=amount or abs(delta)), price, at))
            continue
        out.seq += 1
        while order_times and order_times[0] <= at - MINUTE_MS:  # what state.context() keeps, inline
            order_times.popleft()
        if at // DAY_MS != day[0]:
            day = (at // DAY_MS, _day(at))
        daily = state.realised.get(day[1], ZERO)
        if not market.surely_passes_risk(side, amount, price, position, daily, len(order_times)):
            context = state.context(symbol, price, at, open_orders=0, open_orders_symbol=0, halted="")
            market.check_risk(session.risk, side, amount, price, context)
        fill_price = market.best(side, amount, price)
        rules = market.rules
        cost = fill_price * amount
        spend, asset = (cost, rules.quote) if side is Side.BUY else (amount, rules.base)
        if spend > free.get(asset, ZERO):
            raise Unsupported(f"the balance cannot pay an order of {amount} {symbol} (the event path rejects it)")
        state.record_order(at)
        fee = market.fee(side, amount, cost)
        if side is Side.BUY:
            fee_currency = rules.base
            free[rules.quote] -= cost
            free[rules.base] = free.get(rules.base, ZERO) + amount - fee
        else:
            fee_currency = rules.quote
            free[rules.base] -= amount
            free[rules.quote] = free.get(rules.quote, ZERO) + cost - fee
        out.order_seq += 1
        out.trade_seq += 1
        cid, oid = f"{prefix}{out.seq}", str(out.order_seq)
        order = Order(
            symbol, side, OrderType.MARKET, amount, None, None, None, cid, oid,
            status=OrderStatus.FILLED, filled=amount, cost=cost, timestamp=at, last_update=at,
            fees={fee_currency: fee},
        )  # fmt: skip
        fill = Fill(str(out.trade_seq), oid, cid, symbol, side, fill_price, amount, cost, fee, fee_currency, False, at)
        state.record_fill(fill, rules.base)
        out.orders.append(order)
        out.fills.append(fill)
        out.signal_prices.append(price)
    last = ~pd.Series(symbols).duplicated(keep="last").to_numpy()
    for i in np.flatnonzero(last).tolist():
        out.last_price[symbols[i]] = Decimal(str(closes[i]))
    out.now = int(times[-1]) if len(times) else None
    return out


class _Market:
    """One symbol's rules, book and limits, with the sure-to-pass bounds worked out once."""

    def __init__(self, rules: SymbolRules, fees: Fees, book: BookConfig, limits: RiskLimits) -> None:
        self.rules, self.fees, self.limits = rules, fees, limits
        self._book = replace(book, levels=1)  # a MARKET order within the best level sees only it
        self._half = book.spread_bps * BPS / 2
        self._tick = rules.tick_size or Decimal("1e-8")
        self.lot_step = rules.step_size()
        self._step = self.lot_step or Decimal("1e-8")
        self._depth = book.level_notional
        self._quantum = {
            Side.BUY: Decimal(1).scaleb(-rules.base_precision),
            Side.SELL: Decimal(1).scaleb(-rules.quote_precision),
        }
        self.min_qty, self.max_qty, self.min_notional, self.max_notional = _bounds(rules)

    def surely_passes_filters(self, amount: Decimal, price: Decimal) -> bool:
        """Whether every filter passes a MARKET order of ``amount`` (on the step grid) at ``price``;
        ``False`` means: ask :func:`~workbench.filters.check_order`."""
        notional = amount * price
        return self.min_qty <= amount <= self.max_qty and self.min_notional <= notional <= self.max_notional

    def is_dust(self, side: Side, amount: Decimal, price: Decimal) -> bool:
        """The session's own test: a rebalance below the minimum is skipped; any other refusal the
        event path records, so the fast path hands over."""
        request = OrderRequest(self.rules.symbol, side, OrderType.MARKET, amount=amount)
        if _is_dust(request, self.rules, price):
            return True
        try:
            check_order(request, self.rules, avg_price=price)
        except FilterError as e:
            raise Unsupported(f"the filters refuse an order of {amount} {self.rules.symbol}: {e}") from None
        return False

    def surely_passes_risk(
        self, side: Side, amount: Decimal, price: Decimal, position: Decimal, daily: Decimal, last_minute: int
    ) -> bool:
        """Whether every risk check passes the MARKET order (its checks, with their numbers), given
        the position, today's realised PnL and the orders of the last minute; ``False`` means: ask
        :class:`~workbench.risk.RiskChecks`."""
        limits = self.limits
        signed = amount if side is Side.BUY else -amount
        after = position + signed
        grows = abs(after) > abs(position)
        return (
            (limits.max_order_notional is None or amount * price <= limits.max_order_notional)
            and (not grows or limits.max_position is None or abs(after) <= limits.max_position)
            and (
                not grows or limits.max_position_notional is None or abs(after) * price <= limits.max_position_notional
            )
            and (limits.max_daily_loss is None or daily > -limits.max_daily_loss)
            and (limits.max_orders_per_minute is None or last_minute < limits.max_orders_per_minute)
        )

    def check_risk(self, risk: RiskChecks, side: Side, amount: Decimal, price: Decimal, context: RiskContext) -> None:
        request = OrderRequest(self.rules.symbol, side, OrderType.MARKET, amount=amount)
        try:
            risk.check(request, context)
        except OrderRejected as e:
            raise Unsupported(f"a risk check refuses an order (the event path records it): {e}") from None

    def best(self, side: Side, amount: Decimal, price: Decimal) -> Decimal:
        """The price a MARKET order of ``amount`` gets at the last price ``price``: the best level's
        of the matching core's book (its rounding on the tick grid), when the order fits in it."""
        rules = self.rules
        half = price * self._half
        bid = _on_grid(price - half, self._tick, ROUND_FLOOR)
        best = max(_on_grid(price + half, self._tick, ROUND_CEILING), bid + self._tick) if side is Side.BUY else bid
        if bid <= 0:
            raise Unsupported(f"the book of {rules.symbol} at {price} has no bid")
        if (amount + self._step) * best > self._depth:  # perhaps more than the best level holds: look
            book = synthetic_book(price, rules, self._book)
            level = book.asks[0] if side is Side.BUY else book.bids[0]
            if amount > level.amount or level.price != best:
                raise Unsupported(f"an order of {amount} {rules.symbol} walks past the best level of the book")
        return best

    def fee(self, side: Side, amount: Decimal, cost: Decimal) -> Decimal:
        """The taker fee, as the matching core charges it: on what the account receives."""
        return ((amount if side is Side.BUY else cost) * self.fees.taker).quantize(self._quantum[side], ROUND_HALF_UP)


def _bounds(rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal, Decimal]:
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


def commit(session: TradingSession, out: Outcome) -> None:
    """Put ``out`` into the session, its executor and its store: orders and fills in bulk, one
    transaction (a DuckDB insert from a DataFrame, not row by row through the writer thread)."""
    engine = session.executor.engine  # type: ignore[attr-defined]
    session.state = out.state
    session.orders.update({o.client_order_id: o for o in out.orders})
    session._seq = out.seq
    session._targets.update(out.targets)
    session._trade_keys.update((f.symbol, f.trade_id) for f in out.fills)
    session.last_price.update(out.last_price)
    engine.free.update(out.free)
    for asset in out.free:
        engine.locked.setdefault(asset, ZERO)
    engine.last_price.update(out.last_price)
    engine._order_seq, engine._trade_seq = out.order_seq, out.trade_seq
    session.executor._fills.extend(out.fills)  # type: ignore[attr-defined]
    if out.now is not None:
        session.executor._time = out.now  # type: ignore[attr-defined]
    for request, price, at in out.drops:
        session._drop(request, price, at, _too_small(request, session.rules[request.symbol], price))  # type: ignore[arg-type]
    write(session.store, session.session_id, out)
    session._audit("replay.fast", {"orders": len(out.orders), "fills": len(out.fills)})


def write(store: Store, session_id: str, out: Outcome) -> None:
    """Insert the orders and fills of ``out`` into ``paper_orders`` and ``paper_fills`` at once."""
    orders, fills = out.orders, out.fills
    times = pd.to_datetime(pd.Series([o.timestamp for o in orders], dtype="int64"), unit="ms", utc=True)
    order_rows = {
        "session_id": session_id,
        "client_order_id": [o.client_order_id for o in orders],
        "order_id": [o.id for o in orders],
        "symbol": [o.symbol for o in orders],
        "side": [o.side.value for o in orders],
        "type": OrderType.MARKET.value,
        "amount": [str(o.amount) for o in orders],
        "status": OrderStatus.FILLED.value,
        "status_rank": OrderStatus.FILLED.rank,
        "filled": [str(o.filled) for o in orders],
        "cost": [str(o.cost) for o in orders],
        "average": [str(o.average) for o in orders],
        "signal_price": [str(p) for p in out.signal_prices],
        "arrival_price": [str(p) for p in out.signal_prices],
        "signal_time": times,
        "created_at": times,
        "updated_at": times,
    }
    fill_rows = {
        "session_id": session_id,
        "trade_id": [f.trade_id for f in fills],
        "order_id": [f.order_id for f in fills],
        "client_order_id": [f.client_order_id for f in fills],
        "symbol": [f.symbol for f in fills],
        "side": [f.side.value for f in fills],
        "price": [str(f.price) for f in fills],
        "amount": [str(f.amount) for f in fills],
        "cost": [str(f.cost) for f in fills],
        "fee": [str(f.fee) for f in fills],
        "fee_currency": [f.fee_currency for f in fills],
        "is_maker": False,
        "timestamp": pd.to_datetime(pd.Series([f.timestamp for f in fills], dtype="int64"), unit="ms", utc=True),
    }
    store.insert_frames(
        {
            "paper_orders": pd.DataFrame(order_rows, index=range(len(orders))),
            "paper_fills": pd.DataFrame(fill_rows, index=range(len(fills))),
        }
    )
