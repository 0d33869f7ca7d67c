"""Shared risk checks: the same object guards paper, testnet and mainnet, before every order.

:meth:`RiskChecks.evaluate` returns every check's result (what an order ticket previews);
:meth:`RiskChecks.check` raises the first failure. A rejection names the check and the
numbers. :class:`RiskState` keeps what the checks need to know (positions, realised PnL of the
day, recent orders) from the fills and orders a session sees. Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from workbench.config import RiskLimits
from workbench.errors import KillSwitchActive, OrderRejected, RiskRejected
from workbench.filters import SymbolRules, check_order, rules_for
from workbench.model import ZERO, Fill, OrderRequest, OrderType, Side

MINUTE_MS = 60_000


@dataclass(frozen=True)
class RiskContext:
    """What the checks know of the account when an order is about to be sent."""

    last_price: Decimal
    position: Decimal = ZERO
    open_orders: int = 0
    open_orders_symbol: int = 0
    daily_realised_pnl: Decimal = ZERO
    orders_last_minute: int = 0
    halted: str = ""  # why the kill switch is tripped; empty while it is not


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one order: ``detail`` gives the numbers either way."""

    name: str
    passed: bool
    detail: str
    error: OrderRejected | None = None


class RiskChecks:
    """Every pre-trade check, in order: kill switch, symbol allow-list, exchange filters, order
    notional, position, open orders, daily loss, order rate and price band."""

    def __init__(self, limits: RiskLimits, rules: Mapping[str, SymbolRules]) -> None:
        self.limits = limits
        self.rules = rules

    def check(self, request: OrderRequest, context: RiskContext, *, filters: bool = True) -> None:
        """Raise the first failing check's error (:class:`RiskRejected`, a filter or kill switch
        error); return if the order may go. ``filters=False`` leaves out the exchange filters (for
        a caller that applies them itself, with the venue's counts of open orders)."""
        for name, check in self._checks():
            if filters or name != "exchange_filters":
                check(request, context)

    def evaluate(self, request: OrderRequest, context: RiskContext) -> list[CheckResult]:
        """Every check's result for ``request``; none of them stops the others."""
        results = []
        for name, check in self._checks():
            try:
                results.append(CheckResult(name, True, check(request, context)))
            except OrderRejected as e:
                results.append(CheckResult(name, False, str(e), e))
        return results

    def _checks(self) -> list[tuple[str, Callable[[OrderRequest, RiskContext], str]]]:
        return [
            ("kill_switch", self._kill_switch),
            ("allowed_symbols", self._allowed_symbols),
            ("exchange_filters", self._exchange_filters),
            ("max_order_notional", self._max_order_notional),
            ("max_position", self._max_position),
            ("max_open_orders", self._max_open_orders),
            ("max_daily_loss", self._max_daily_loss),
            ("max_orders_per_minute", self._order_rate),
            ("price_band_pct", self._price_band),
        ]

    # Each check returns a sentence with its numbers, or raises.

    def _kill_switch(self, request: OrderRequest, ctx: RiskContext) -> str:
        if ctx.halted:
            raise KillSwitchActive(
                f"The kill switch is tripped ({ctx.halted}): no new orders until it is cleared "
                "(workbench kill-switch clear, or KillSwitch.clear()).",
                rule="kill_switch",
            )
        return "kill switch not tripped"

    def _allowed_symbols(self, request: OrderRequest, ctx: RiskContext) -> str:
        allowed = self.limits.allowed_symbols
        if allowed is None:
            return "no allow-list"
        if request.symbol not in allowed:
            raise _reject("allowed_symbols", "symbol", f"{request.symbol} is not in the allow-list {list(allowed)}")
        return f"{request.symbol} is allowed"

    def _exchange_filters(self, request: OrderRequest, ctx: RiskContext) -> str:
        rules = rules_for(request.symbol, self.rules)
        check_order(request, rules, avg_price=ctx.last_price, open_orders=ctx.open_orders_symbol)
        return f"{request.symbol} filters pass"

    def _max_order_notional(self, request: OrderRequest, ctx: RiskContext) -> str:
        notional = order_notional(request, ctx.last_price)
        limit = self.limits.max_order_notional
        if limit is not None and notional > limit:
            raise _reject(
                "max_order_notional",
                "amount",
                f"order notional (amount x price) {notional:.2f} exceeds the limit {limit}",
            )
        return f"order notional {notional:.2f} (limit {limit})"

    def _max_position(self, request: OrderRequest, ctx: RiskContext) -> str:
        after = ctx.position + signed_amount(request, ctx.last_price)
        notional = abs(after) * ctx.last_price
        limit, notional_limit = self.limits.max_position, self.limits.max_position_notional
        if abs(after) > abs(ctx.position):
            if limit is not None and abs(after) > limit:
                raise _reject("max_position", "amount", f"position after the order {after:f} exceeds the limit {limit}")
            if notional_limit is not None and notional > notional_limit:
                raise _reject(
                    "max_position",
                    "amount",
                    f"position notional after the order {notional:.2f} exceeds the limit {notional_limit}",
                )
        return f"position after the order {after:f} (notional {notional:.2f})"

    def _max_open_orders(self, request: OrderRequest, ctx: RiskContext) -> str:
        limit = self.limits.max_open_orders
        if limit is not None and request.type is not OrderType.MARKET and ctx.open_orders + 1 > limit:
            raise _reject("max_open_orders", "symbol", f"{ctx.open_orders} orders are open, the limit is {limit}")
        return f"{ctx.open_orders} open orders (limit {limit})"

    def _max_daily_loss(self, request: OrderRequest, ctx: RiskContext) -> str:
        limit = self.limits.max_daily_loss
        reduces = signed_amount(request, ctx.last_price) * ctx.position < 0
        if limit is not None and ctx.daily_realised_pnl <= -limit and not reduces:
            raise _reject(
                "max_daily_loss",
                "amount",
                f"realised loss today {-ctx.daily_realised_pnl:.2f} has reached the limit {limit}; "
                "only orders that reduce the position are allowed until tomorrow (UTC)",
            )
        return f"realised PnL today {ctx.daily_realised_pnl:.2f} (loss limit {limit})"

    def _order_rate(self, request: OrderRequest, ctx: RiskContext) -> str:
        limit = self.limits.max_orders_per_minute
        if limit is not None and ctx.orders_last_minute + 1 > limit:
            raise _reject(
                "max_orders_per_minute",
                "symbol",
                f"{ctx.orders_last_minute} orders in the last minute, the limit is {limit}",
            )
        return f"{ctx.orders_last_minute} orders in the last minute (limit {limit})"

    def _price_band(self, request: OrderRequest, ctx: RiskContext) -> str:
        band = self.limits.price_band_pct
        if request.price is None or band is None:
            return "no limit price to check" if request.price is None else "no price band"
        off = abs(request.price - ctx.last_price) / ctx.last_price * 100
        if off > band:
            raise _reject(
                "price_band_pct",
                "price",
                f"price {request.price} is {off:.2f}% from the last price {ctx.last_price}, the band is {band}%",
            )
        return f"price {off:.2f}% from the last price (band {band}%)"


def _reject(check: str, field: str, text: str) -> RiskRejected:
    return RiskRejected(f"Risk check {check} refused the order: {text}.", field=field, rule=check)


def order_notional(request: OrderRequest, last_price: Decimal) -> Decimal:
    """The quote value of ``request``, at its limit price or else the last price."""
    if request.quote_amount is not None:
        return request.quote_amount
    return request.amount * (request.price or last_price)  # type: ignore[operator]


def signed_amount(request: OrderRequest, last_price: Decimal) -> Decimal:
    """The base quantity ``request`` adds to the position (negative for sells)."""
    amount = request.amount if request.amount is not None else request.quote_amount / last_price  # type: ignore[operator]
    return amount if request.side is Side.BUY else -amount


@dataclass
class RiskState:
    """Positions, average costs, realised PnL by UTC day and recent order times, from what a
    session has done. Realised PnL is in quote, net of fees, on an average-cost basis."""

    positions: dict[str, Decimal] = field(default_factory=dict)
    avg_cost: dict[str, Decimal] = field(default_factory=dict)
    realised: dict[str, Decimal] = field(default_factory=dict)
    realised_by_symbol: dict[str, Decimal] = field(default_factory=dict)
    order_times: deque[int] = field(default_factory=deque)

    def record_order(self, timestamp: int) -> None:
        self.order_times.append(timestamp)

    def record_fill(self, fill: Fill, base: str) -> None:
        base_fee = fill.fee if fill.fee_currency == base else ZERO
        quote_fee = ZERO if fill.fee_currency == base else fill.fee
        self.record(fill.symbol, fill.side is Side.BUY, fill.price, fill.amount, fill.cost, base_fee, quote_fee,
                    fill.timestamp)  # fmt: skip

    def record(self, symbol: str, buy: bool, price: Decimal, amount: Decimal, cost: Decimal, base_fee: Decimal,
               quote_fee: Decimal, timestamp: int) -> None:  # fmt: skip
        """A fill of ``amount`` at ``price`` (:meth:`record_fill` of its fields)."""
        position = self.positions.get(symbol, ZERO)
        average = self.avg_cost.get(symbol, ZERO)
        pnl = -quote_fee
        if buy:
            received = amount - base_fee
            average = (position * average + cost) / (position + received) if position + received else ZERO
            position += received
        else:
            pnl += (price - average) * amount
            position -= amount
            average = average if position else ZERO
        self.positions[symbol] = position
        self.avg_cost[symbol] = average
        day = _day(timestamp)
        self.realised[day] = self.realised.get(day, ZERO) + pnl
        self.realised_by_symbol[symbol] = self.realised_by_symbol.get(symbol, ZERO) + pnl

    def context(
        self, symbol: str, last_price: Decimal, now: int, *, open_orders: int, open_orders_symbol: int, halted: str
    ) -> RiskContext:
        while self.order_times and self.order_times[0] <= now - MINUTE_MS:
            self.order_times.popleft()
        return RiskContext(
            last_price=last_price,
            position=self.positions.get(symbol, ZERO),
            open_orders=open_orders,
            open_orders_symbol=open_orders_symbol,
            daily_realised_pnl=self.realised.get(_day(now), ZERO),
            orders_last_minute=len(self.order_times),
            halted=halted,
        )


def _day(timestamp_ms: int) -> str:
    return _date(timestamp_ms // 86_400_000)


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    """The UTC date of day number ``day`` since the epoch, ISO (every fill asks: one per day is enough)."""
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
