"""Trading sessions: strategy signal → session → risk checks → executor → venue, with the store
recording every step. The same session code runs paper, testnet and mainnet; only the executor
differs, and :func:`workbench.executors.build_executor` picks it from the mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import operator
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd

from workbench.bars import path as bar_path
from workbench.bars import price as bar_price
from workbench.config import Config, RiskLimits, TradingMode
from workbench.errors import ConfigError, ExchangeError, FilterError, OrderNotFound, OrderRejected, WorkbenchError
from workbench.executors.base import Executor, OrderListExecutor
from workbench.filters import SymbolRules, check_order, rules_for
from workbench.intents import Entry, Exits, Intent, intent_frame, is_intents, iter_intents
from workbench.killswitch import KillSwitch
from workbench.matching import BPS, Execution
from workbench.model import (
    ZERO,
    ContingencyType,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from workbench.risk import RiskChecks, RiskContext, RiskState
from workbench.store import Store
from workbench.strategy import Strategy, describe, is_portfolio

HALT_POLL = 0.25  # seconds between looks at the kill switch's flag files while a session runs
# Bars of each symbol a live session keeps for a strategy that declares no ``history`` (it then sees
# the whole session's bars, as a replay does, up to this many: 5 to 10 MB a symbol of kline columns).
HISTORY_CAP = 100_000

log = logging.getLogger(__name__)
STOP_LIMIT_OFFSET = Decimal("0.005")  # a protective stop's limit price lies this far past its trigger


@dataclass
class EmergencyReport:
    """What an emergency stop did: orders canceled, what failed (symbol, error), positions flattened."""

    canceled: list[Order] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    flattened: list[Order] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "canceled": [o.client_order_id for o in self.canceled],
            "failed": self.failed,
            "flattened": [o.client_order_id for o in self.flattened],
        }


def new_session_id(prefix: str = "wb") -> str:
    """A fresh session id such as ``wb-20261124T101500-3f2a``."""
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"


class TradingSession:
    """Connects signals to one executor through the shared risk checks and the kill switch.

    Orders are addressed by the client order id the session gives them: the session id's
    first 24 characters, a dash and a sequence number; order lists (OCO, OTO, OTOCO, through
    :meth:`create_order_list`) and each of their orders by ids from the same sequence. Every
    request, risk decision, response and state change is written to the store's audit log;
    orders, order lists and fills to its tables.
    """

    def __init__(
        self,
        executor: Executor,
        store: Store,
        *,
        rules: Mapping[str, SymbolRules],
        risk: RiskLimits = RiskLimits(),
        strategy: Strategy | None = None,
        session_id: str | None = None,
        kill_switch: KillSwitch | None = None,
        shadow: TradingSession | None = None,
        sweep_id: str | None = None,
    ) -> None:
        self.executor = executor
        self.mode = executor.mode
        self.store = store
        self.rules = dict(rules)
        self.risk = RiskChecks(risk, self.rules)
        self.strategy = strategy
        self.session_id = session_id or new_session_id()
        self._prefix = f"{self.session_id[:24]}-"  # of every client order id this session gives
        self.kill_switch = kill_switch or KillSwitch(store)
        self.state = RiskState()
        self.last_price: dict[str, Decimal] = {}
        self._orders: dict[str, Order] = {}
        self._backlog: OrderBacklog | None = None  # orders recorded in bulk, built when first asked for
        self._later: dict[str, Order] = {}  # orders recorded after the backlog, while it is unbuilt
        self._open: dict[str, Order] = {}  # the open subset of orders
        self.order_lists: dict[str, OrderList] = {}  # list client order id -> latest state
        self.list_legs: dict[str, tuple[str, ...]] = {}  # list client order id -> its legs' client order ids
        self.rejections: list[OrderRejected] = []
        self.sweep_id = sweep_id
        self.shadow = shadow
        self.shadow_of: str | None = None
        if shadow is not None:
            shadow.shadow_of = self.session_id
        self._targets: dict[str, Decimal] = {}
        self.target_changes: list[tuple[str, int, float]] = []  # (symbol, signal time, target) of intents
        self._books: dict[str, _IntentBook] = {}
        self._bar_times: dict[str, tuple[Any, int]] = {}  # a portfolio's latest bar per symbol (open, signal time)
        self._trade_keys: set[tuple[str, str]] = set()
        self._history: dict[str, pd.DataFrame] = {}
        self.history_cap = HISTORY_CAP
        self._forgetting: set[str] = set()  # symbols whose history reached the cap (warned once)
        self.drops: Counter[tuple[str, str]] = Counter()  # (symbol, reason): rebalances no order could carry
        self._seq = 0
        self._started = False
        self._halting = False
        self._flattening = False
        self._tasks: set[asyncio.Task[list[Order]]] = set()
        executor.subscribe(self._on_execution)
        self.kill_switch.on_trip(self._on_trip)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        strategy: Strategy | None = None,
        session_id: str | None = None,
        store: Store | None = None,
        shadow: bool = False,
        sweep_id: str | None = None,
        halt_flags: tuple[str, ...] = (),
    ) -> TradingSession:
        """A session for ``config``: its mode (decided by :func:`~workbench.config.resolve_mode`),
        executor, store and risk limits. ``shadow=True`` runs the same signals in a paper session
        beside a testnet or mainnet one, in the same store, for a paper-versus-real comparison.
        ``halt_flags`` are more kill-switch flag files (a sweep's), ``sweep_id`` groups a sweep's runs."""
        from workbench.data import load_rules
        from workbench.executors import build_executor

        rules = load_rules(config.symbols)
        executor = build_executor(config, rules)
        store = store or Store(config.store_path)
        kill_switch = KillSwitch(store, flags=halt_flags)
        common = {
            "rules": rules,
            "risk": config.risk,
            "strategy": strategy,
            "kill_switch": kill_switch,
            "sweep_id": sweep_id,
        }
        paper = None
        if shadow and executor.mode.is_real:
            paper = cls(build_executor(replace(config, mode=TradingMode.PAPER), rules), store, **common)
        return cls(executor, store, session_id=session_id, shadow=paper, **common)

    @property
    def orders(self) -> dict[str, Order]:
        """Every order of the session by client order id, in the order they were placed."""
        self._build_backlog()
        return self._orders

    def defer_orders(self, backlog: OrderBacklog) -> None:
        """Hold ``backlog``'s orders (a fast replay's, placed after every order so far) unbuilt until
        :attr:`orders` is read; :meth:`summary` reads only their totals."""
        self._build_backlog()  # an earlier backlog's orders come first
        self._backlog = backlog

    def _build_backlog(self) -> None:
        if self._backlog is not None:
            backlog, self._backlog = self._backlog, None
            self._orders.update(backlog.build())
            self._orders.update(self._later)
            self._later.clear()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Record the session in the store; called by the first order or bar if not before."""
        if self._started:
            return
        self._started = True
        known = {o.client_order_id: o for o in self.store.session_orders(self.session_id, self.mode)}
        lists = self.store.session_order_lists(self.session_id, self.mode)
        self.order_lists.update({lst.list_client_order_id: lst for lst, _ in lists})
        self.list_legs.update({lst.list_client_order_id: legs for lst, legs in lists})
        self._seq = max((int(cid.rsplit("-", 1)[1]) for cid in [*known, *self.order_lists]), default=0)
        self.orders.update(known)
        self._open.update({cid: o for cid, o in known.items() if o.is_open})
        restored = self.store.session_fills(self.session_id, self.mode) if self.mode.is_real else []
        for fill in restored:  # a real account keeps its positions (a paper venue starts empty)
            self._trade_keys.add((fill.symbol, fill.trade_id))
            self.state.record_fill(fill, self.rules[fill.symbol].base)
        self.store.start_session(
            self.session_id,
            self.mode,
            venue=self.executor.venue,
            strategy=describe(self.strategy)["name"] if self.strategy else "",
            params=describe(self.strategy) if self.strategy else {},
            symbols=self.rules,
            shadow_of=self.shadow_of,
            sweep_id=self.sweep_id,
        )
        self._audit("session.start", {"venue": self.executor.venue, "symbols": list(self.rules), "resumed": len(known)})
        await self.executor.start(known)  # reconciles them all: a fill a crash kept from the store is fetched
        await self._reconcile_lists()
        if self.shadow is not None:
            await self.shadow.start()

    async def stop(self, status: str = "completed") -> pd.DataFrame:
        """End the session: snapshot balances, record its summary, flush the store. The cancels a
        kill switch's trip started are awaited first."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        balances = await self.executor.fetch_balance()
        summary = self.summary()  # before the balances are queued: one commit for all the rows that end it
        self.store.record_balances(self.session_id, self.mode, balances.values(), self._now())
        records = {"symbols": summary.reset_index().to_dict("records"), "dropped": self.dropped().to_dict("records")}
        self.store.end_session(self.session_id, status, records)
        self._audit("session.stop", {"status": status})
        if self.shadow is not None:
            await self.shadow.stop(status)
        self.store.flush()
        return summary

    # -- orders -----------------------------------------------------------------------------

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any = None,
        price: Any = None,
        *,
        stop_price: Any = None,
        time_in_force: str | None = None,
        quote_amount: Any = None,
    ) -> Order:
        """Place an order, ccxt-style: ``await session.create_order("BTC/USDT", "limit", "buy", 0.01, 50000,
        time_in_force="GTC")``. Bad parameters raise :class:`~workbench.errors.InvalidOrder` naming
        the field and the rule, and write only an audit row. See :meth:`submit` for the rest."""
        await self.start()
        raw = {
            "symbol": symbol,
            "type": type,
            "side": side,
            "amount": amount,
            "price": price,
            "stop_price": stop_price,
            "time_in_force": time_in_force,
            "quote_amount": quote_amount,
        }
        try:
            request = OrderRequest(
                symbol,
                side,
                type,
                amount=amount,
                price=price,
                stop_price=stop_price,  # type: ignore[arg-type]
                time_in_force=time_in_force,
                quote_amount=quote_amount,
            )  # type: ignore[arg-type]
        except OrderRejected as e:
            self._reject("order.invalid", {k: str(v) for k, v in raw.items() if v is not None}, e)
        return await self.submit(request)

    async def submit(
        self,
        request: OrderRequest,
        *,
        signal_price: Decimal | None = None,
        signal_time: int | None = None,
    ) -> Order:
        """Check ``request`` with every risk check, record it, send it.

        Raises the rejecting check's error (:class:`~workbench.errors.RiskRejected`,
        :class:`~workbench.errors.FilterError`, :class:`~workbench.errors.KillSwitchActive`...)
        and writes only audit rows; an order the venue rejects keeps its record, as REJECTED. An
        :class:`~workbench.errors.ExchangeError` (the answer was lost and could not be settled)
        leaves the record PENDING_NEW for reconciliation to settle.
        """
        await self.start()
        self._seq += 1
        request = _with_id(request, f"{self._prefix}{self._seq}")
        detail = _request_detail(request) | ({"signal_time": signal_time} if signal_time is not None else {})
        self._audit("order.request", detail)
        try:
            last = await self._price(request.symbol)
            self.risk.check(request, self.risk_context(request.symbol, last))
        except OrderRejected as e:
            self._reject("risk.rejected", detail, e)
        # The arrival price is the market's when the order leaves: a live venue's latest trade (the
        # market moved since the bar closed), else the last price the session saw.
        arrival = getattr(self.executor, "market_prices", {}).get(request.symbol, last)
        self._audit("risk.passed", detail)
        self.state.record_order(self._now())
        pending = Order.from_request(request, request.client_order_id, self._now())  # type: ignore[arg-type]
        pending.status = OrderStatus.PENDING_NEW
        self.store.record_order(  # on disk before a real order is sent: a restart never sends it twice
            self.session_id,
            self.mode,
            pending,
            signal_price=signal_price,
            arrival_price=arrival,
            signal_time=signal_time,
            durable=self.mode.is_real,
        )
        try:
            order = await self.executor.create_order(request)
        except OrderRejected as e:
            pending.status = OrderStatus.REJECTED
            self.store.record_order(self.session_id, self.mode, pending)
            self._reject("order.rejected", detail, e)
        except ExchangeError as e:
            self._audit("order.unresolved", {**detail, "error": str(e)})
            raise
        self.store.record_order(
            self.session_id, self.mode, order, signal_price=signal_price, arrival_price=arrival, signal_time=signal_time
        )
        self._audit("order.response", {**detail, "status": order.status.value, "id": order.id})
        return order

    def risk_context(self, symbol: str, last: Decimal) -> RiskContext:
        """What the risk checks see for an order of ``symbol`` now, at the price ``last`` (the order
        ticket previews its checks with it)."""
        return self.state.context(
            symbol,
            last,
            self._now(),
            open_orders=len(self._open),
            open_orders_symbol=sum(o.symbol == symbol for o in self._open.values()),
            halted=self.kill_switch.reason if self.kill_switch.tripped and not self._flattening else "",
        )

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        """Cancel one order by its client order id."""
        self._audit("order.cancel", {"client_order_id": client_order_id, "symbol": symbol})
        return await self.executor.cancel_order(client_order_id, symbol)

    async def cancel_all_orders(self) -> list[Order]:
        """Cancel every open order of this session's symbols."""
        canceled = []
        for symbol in self.rules:
            canceled += await self.executor.cancel_all_orders(symbol)
        self._audit("order.cancel_all", {"canceled": [o.client_order_id for o in canceled]})
        return canceled

    # -- order lists ------------------------------------------------------------------------

    async def create_order_list(
        self,
        request: OrderListRequest,
        *,
        signal_price: Decimal | None = None,
        signal_time: int | None = None,
    ) -> OrderList:
        """Check every leg of an OCO, OTO or OTOCO with the risk checks, record the list, send it.

        The list and each leg get the session's client order ids (the request's are replaced). A
        leg a check refuses refuses the whole list, as :meth:`submit` refuses an order (audit rows
        only, the error raised); a list the venue rejects keeps its record, REJECT, its legs
        REJECTED. An :class:`~workbench.errors.ExchangeError` leaves it unacknowledged for
        reconciliation. The legs' orders are recorded as they change, like single orders."""
        executor = self._list_executor()
        await self.start()
        list_id = self._next_id()
        legs = tuple(_with_id(leg, self._next_id()) for leg in request.orders)
        request = replace(request, orders=legs, list_client_order_id=list_id)
        detail: dict[str, Any] = {
            "list_client_order_id": list_id,
            "contingency_type": request.contingency_type.value,
            "orders": [_request_detail(leg) for leg in legs],
        } | ({"signal_time": signal_time} if signal_time is not None else {})
        self._audit("order_list.request", detail)
        symbol = request.symbol
        try:
            last = await self._price(symbol)
            for i, leg in enumerate(legs):  # each leg counts the ones before it as open
                context = self.risk_context(symbol, last)
                self.risk.check(
                    leg,
                    replace(
                        context,
                        open_orders=context.open_orders + i,
                        open_orders_symbol=context.open_orders_symbol + i,
                        orders_last_minute=context.orders_last_minute + i,
                    ),
                )
        except OrderRejected as e:
            self._reject("risk.rejected", detail, e)
        self._audit("risk.passed", detail)
        arrival = getattr(self.executor, "market_prices", {}).get(symbol, last)  # as for single orders
        now = self._now()
        pending = []
        for leg in legs:
            self.state.record_order(now)
            order = Order.from_request(leg, leg.client_order_id, now)  # type: ignore[arg-type]
            order.status = OrderStatus.PENDING_NEW
            pending.append(order)
            self.store.record_order(
                self.session_id,
                self.mode,
                order,
                signal_price=signal_price,
                arrival_price=arrival,
                signal_time=signal_time,
                durable=self.mode.is_real,
            )
        self.list_legs[list_id] = tuple(leg.client_order_id for leg in legs)  # type: ignore[misc]
        unsent = OrderList(-1, list_id, symbol, request.contingency_type, (), timestamp=now, last_update=now)
        self.order_lists[list_id] = unsent
        self.store.record_order_list(  # on disk before it is sent, like a single order
            self.session_id,
            self.mode,
            unsent,
            self.list_legs[list_id],
            signal_price=signal_price,
            signal_time=signal_time,
            durable=self.mode.is_real,
        )
        try:
            order_list = await executor.create_order_list(request)
        except OrderRejected as e:
            for order in pending:
                order.status = OrderStatus.REJECTED
                self.store.record_order(self.session_id, self.mode, order)
            self._record_list(_rejected(unsent))
            self._reject("order_list.rejected", detail, e)
        except ExchangeError as e:
            self._audit("order_list.unresolved", {**detail, "error": str(e)})
            raise
        self._record_list(order_list)
        self._audit(
            "order_list.response",
            {**detail, "id": order_list.id, "status": order_list.list_order_status.value},
        )
        return order_list

    async def cancel_order_list(self, list_client_order_id: str, symbol: str) -> OrderList:
        """Cancel every open order of an order list by the list's client order id; its legs' cancels
        arrive as order events. :class:`~workbench.errors.OrderNotFound` if it is not open."""
        self._audit("order_list.cancel", {"list_client_order_id": list_client_order_id, "symbol": symbol})
        order_list = await self._list_executor().cancel_order_list(list_client_order_id, symbol)
        self._record_list(order_list)
        return order_list

    def _list_executor(self) -> OrderListExecutor:
        if not isinstance(self.executor, OrderListExecutor):
            raise WorkbenchError(f"The {self.mode} executor {type(self.executor).__name__} does not trade order lists.")
        return self.executor

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq}"

    def _record_list(self, order_list: OrderList) -> bool:
        """Keep and store the latest state of one of this session's order lists; ``False`` for
        another client's list on the same account (the user data stream has them all)."""
        list_id = order_list.list_client_order_id
        if not list_id.startswith(self._prefix):
            return False
        self.order_lists[list_id] = order_list
        self.store.record_order_list(self.session_id, self.mode, order_list, self.list_legs.get(list_id, ()))
        return True

    async def _reconcile_lists(self) -> None:
        """After a restart, ask a real venue for every list the store has open (or never saw
        acknowledged): a list it has never seen never reached it, and is recorded REJECT."""
        if not (self.mode.is_real and isinstance(self.executor, OrderListExecutor)):
            return
        for list_id, known in list(self.order_lists.items()):
            if not known.is_open:
                continue
            try:
                order_list = await self.executor.fetch_order_list(list_id, known.symbol)
            except OrderNotFound:
                if known.id >= 0:
                    self._audit("order_list.missing", {"list_client_order_id": list_id})
                    continue
                order_list = _rejected(known)
            self._record_list(order_list)
            self._audit(
                "order_list.reconciled",
                {"list_client_order_id": list_id, "status": order_list.list_order_status.value},
            )

    async def emergency_stop(
        self,
        reason: str = "emergency stop",
        *,
        source: str = "code",
        flatten: bool = False,
        confirm_flatten: bool = False,
    ) -> EmergencyReport:
        """Trip the kill switch, cancel every open order of the session's symbols and report what was
        canceled and what could not be. ``flatten`` (with ``confirm_flatten``, the second confirmation)
        then sells what the session holds with market orders; nothing else can pass the kill switch."""
        if flatten and not confirm_flatten:
            raise WorkbenchError("Flattening sends market orders: pass confirm_flatten=True to confirm it.")
        self._halting = True
        try:
            self.kill_switch.trip(reason, source)
        finally:
            self._halting = False
        report = EmergencyReport()
        for symbol in self.rules:
            try:
                report.canceled.extend(await self.executor.cancel_all_orders(symbol))
            except WorkbenchError as e:
                report.failed.append((symbol, str(e)))
        if flatten:
            await self._flatten(report)
        self._audit("emergency_stop", report.as_dict())
        return report

    async def _flatten(self, report: EmergencyReport) -> None:
        self._flattening = True
        try:
            for symbol, position in self.state.positions.items():
                amount = self.rules[symbol].round_amount(position)
                request = OrderRequest(symbol, Side.SELL, OrderType.MARKET, amount=amount) if amount > 0 else None
                if request is None or _is_dust(request, self.rules[symbol], self.last_price[symbol]):
                    continue
                try:
                    report.flattened.append(await self.submit(request))
                except WorkbenchError as e:
                    report.failed.append((symbol, f"flatten: {e}"))
        finally:
            self._flattening = False

    def _on_trip(self, reason: str) -> None:
        """The kill switch tripped (from anywhere): cancel this session's open orders."""
        if self._halting:
            return  # emergency_stop() cancels itself
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop running: the next create_order() sees the halted state
        self._tasks.add(task := loop.create_task(self.cancel_all_orders()))
        task.add_done_callback(self._tasks.discard)

    # -- signals ----------------------------------------------------------------------------

    async def on_bar(self, symbol: str, bar: pd.Series) -> Order | None:
        """Feed one closed bar (``bar.name`` is its open time): update the price, compute the
        strategy's target on the symbol's history and trade towards it if it changed.

        The history is what a replay gives the strategy: every bar of the session so far, or the
        last ``strategy.history`` bars if the strategy declares it (the bars it needs for the same
        answer). Memory is bounded: without a declared history a session keeps the last
        ``history_cap`` bars (:data:`HISTORY_CAP`) and warns once when it starts to forget."""
        self._remember(symbol, bar)
        target = self._signal(symbol)
        at = _close_ms(bar)
        # The signal exists once the bar has closed and reached the session: a venue replaying faster
        # than real time stamps its bars ahead of this clock, and then the bar's arrival is the signal's time.
        signal_time = min(at, int(time.time() * 1000))
        opened = int(pd.Timestamp(bar.name).timestamp() * 1000)
        prices = {k: float(bar[k]) for k in ("open", "high", "low", "close", "volume") if k in bar}
        detail = {"symbol": symbol, "open_time": opened, "close_time": at, "signal_time": signal_time, **prices}
        self._audit("market.bar", detail)
        self._walk(symbol, *(bar.get(k, bar["close"]) for k in ("open", "high", "low", "close")), signal_time)
        order = await self._step(symbol, Decimal(str(bar["close"])), signal_time, target)
        self._bar_times[symbol] = (bar.name, signal_time)
        return await self._portfolio_bar() or order

    async def run(
        self, bars: Mapping[str, pd.DataFrame], *, progress: bool = True, skip_idle: bool = False
    ) -> pd.DataFrame:
        """Run the strategy over historical ``bars`` (one DataFrame per symbol) and stop.

        Signals are computed once per symbol, vectorised, which gives the same targets as
        :meth:`on_bar` because strategies only look backwards. Returns :meth:`summary`.

        While an order of the session is open, each bar first trades the executor through its
        open and extremes (:meth:`_walk`, the local exchange's intrabar path), then its close
        reaches the strategy: a resting order or a stop touched inside a bar fills or triggers
        there, as at the venue.

        ``skip_idle`` (a replay's fast path) feeds the executor only the bars where something can
        happen: the target changes, an order of the session is open, or it is the symbol's last
        bar. A bar that is skipped would change nothing but the last price, which the next bar fed
        sets anyway, so orders, fills and balances are the same as without it.
        """
        if self.strategy is None:
            raise WorkbenchError("This session has no strategy: pass strategy=... to run bars through it.")
        await self.start()
        self._audit("session.data", {"symbols": {s: _data_detail(f) for s, f in bars.items()}})
        for symbol in bars:
            rules_for(symbol, self.rules)
        answers = strategy_answers(self.strategy, bars)
        if is_portfolio(self.strategy) or any(map(is_intents, answers.values())):
            await self._run_intents(bars, answers, progress, skip_idle)
            return await self.stop(self._status())
        steps = []
        for symbol, frame in bars.items():
            steps.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        **{k: frame.get(k, frame["close"]) for k in ("open", "high", "low", "close")},
                        "target": answers[symbol],
                        "at": _close_times(frame),
                    },
                    index=frame.index,
                )
            )
        timeline = pd.concat(steps).sort_index(kind="stable")
        if skip_idle:
            await self._run_sparse(timeline, progress)
            return await self.stop(self._status())
        columns = ("symbol", "open", "high", "low", "close", "target", "at")
        rows = zip(*(timeline[c] for c in columns), strict=True)
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, total=len(timeline), desc=f"{self.session_id} bars", mininterval=1.0)
        for symbol, open_, high, low, close, target, at in rows:
            if self._halted():
                break
            self._walk(symbol, open_, high, low, close, int(at))
            await self._step(symbol, Decimal(str(close)), int(at), target)
        return await self.stop(self._status())

    async def _run_sparse(self, timeline: pd.DataFrame, progress: bool) -> None:
        """Step only the bars of ``timeline`` where something can happen (see :meth:`run`)."""
        symbols = timeline["symbol"].to_numpy()
        opens, highs, lows, closes = (timeline[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
        targets = timeline["target"].to_numpy(dtype=float)
        times = timeline["at"].to_numpy(dtype="int64")
        known = pd.Series(targets, index=timeline.index).groupby(symbols, sort=False).ffill()
        previous = known.groupby(symbols, sort=False).shift().to_numpy(dtype=float)
        changed = ~np.isnan(targets) & (np.isnan(previous) | (targets != previous))
        last = ~timeline["symbol"].duplicated(keep="last").to_numpy()
        needed = np.flatnonzero(changed | last)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(timeline), desc=f"{self.session_id} bars", mininterval=1.0)
        i, done = 0, 0
        while i < len(timeline) and not self._halted():
            if self._busy():
                self._walk(symbols[i], opens[i], highs[i], lows[i], closes[i], int(times[i]))
            else:  # skip to the next bar that matters (the last bar always does)
                i = int(needed[np.searchsorted(needed, i)])
            await self._step(symbols[i], Decimal(str(closes[i])), int(times[i]), targets[i])
            i += 1
            if bar is not None:
                bar.update(i - done)
                done = i
        if bar is not None:
            bar.update(len(timeline) - done)
            bar.close()

    def _walk(self, symbol: str, open_: float, high: float, low: float, close: float, timestamp: int) -> None:
        """Trade the executor (and the shadow's) through a bar's open and extremes, in the order of
        :func:`workbench.bars.path`, before its close is stepped: resting orders fill and stops
        trigger inside the bar as they do at the local exchange. With nothing open these prices
        change nothing (the close sets the last price), so they are not fed."""
        if not self._busy():
            return
        for price in bar_path(open_, high, low, close)[:-1]:
            self.executor.update_price(symbol, price, timestamp)
        if self.shadow is not None:
            self.shadow._walk(symbol, open_, high, low, close, timestamp)

    def _busy(self) -> bool:
        """Whether an order of this session (or its shadow) is open, so that every price matters."""
        return bool(self._open) or (self.shadow is not None and self.shadow._busy())

    async def run_live(self, bars: int) -> pd.DataFrame:
        """Trade the venue's own market: every closed bar of every symbol goes through
        :meth:`on_bar` until ``bars`` bars of each have closed; then stop. Real venues only (paper
        sessions replay history with :meth:`run`)."""
        watch = getattr(self.executor, "watch_bars", None)
        if watch is None:
            raise WorkbenchError(f"The {self.mode} executor has no live market: use run() with historical bars.")
        await self.start()

        steps: set[asyncio.Future[Order | None]] = set()  # shielded: a halt never cuts an order's step short

        async def trade(symbol: str) -> None:
            seen = 0
            async for bar in watch(symbol):
                step = asyncio.ensure_future(self.on_bar(symbol, bar))
                steps.add(step)
                step.add_done_callback(steps.discard)
                await asyncio.shield(step)
                seen += 1
                if seen >= bars:
                    return

        async def watch_kill_switch() -> None:
            while not self._halted():
                await asyncio.sleep(HALT_POLL)

        trading = asyncio.ensure_future(asyncio.gather(*(trade(symbol) for symbol in self.rules)))
        watcher = asyncio.ensure_future(watch_kill_switch())
        await asyncio.wait((trading, watcher), return_when=asyncio.FIRST_COMPLETED)
        for task in (trading, watcher):
            task.cancel()
        await asyncio.gather(trading, watcher, *steps, return_exceptions=True)
        if not self._halted():
            await trading  # re-raise what ended the trading, if it failed
        return await self.stop(self._status())

    def _halted(self) -> bool:
        """Whether the kill switch is tripped (by this process or, through a flag file, another;
        :attr:`KillSwitch.tripped` looks at the flag files at most every ``killswitch.POLL``)."""
        return self.kill_switch.tripped

    def _status(self) -> str:
        """How a run ends: ``halted`` by the kill switch, else ``completed``."""
        return "halted" if self.kill_switch.tripped else "completed"

    async def _step(self, symbol: str, price: Decimal, timestamp: int, target: Any) -> Order | None:
        await self.start()
        self.last_price[symbol] = price
        self.executor.update_price(symbol, price, timestamp)
        if self.shadow is not None:
            await self.shadow._step(symbol, price, timestamp, target)
        if isinstance(target, Intent) or symbol in self._books:
            return await self._step_intent(symbol, price, timestamp, target)
        if target is None or pd.isna(target):
            return None
        target = Decimal(str(target))
        if self._targets.get(symbol) == target:
            return None
        self._targets[symbol] = target
        return await self._rebalance(symbol, target, price, timestamp)

    async def _rebalance(self, symbol: str, target: Decimal, price: Decimal, timestamp: int) -> Order | None:
        rules = self.rules[symbol]
        delta = target - self.state.positions.get(symbol, ZERO)
        if not delta:
            return None
        side = Side.BUY if delta > 0 else Side.SELL
        request = OrderRequest(symbol, side, OrderType.MARKET, amount=rules.round_amount(abs(delta)) or abs(delta))
        dust = _too_small(request, rules, price)
        if dust is not None:
            return self._drop(request, price, timestamp, dust)
        return await self._send(request, price, timestamp)

    def _drop(
        self, request: OrderRequest, price: Decimal, timestamp: int, error: OrderRejected, *, audited: bool = False
    ) -> None:
        """Count a rebalance that no order could carry (dust, or refused by a filter or risk check),
        write it to the audit log (``order.dropped``, unless a refusal row is there already) and
        warn the first time a symbol drops one for this reason; :meth:`summary` shows the counts."""
        key = (request.symbol, error.rule or "rejected")
        self.drops[key] += 1
        if not audited:
            detail = _request_detail(request) | {"price": str(price), "signal_time": timestamp}
            self._audit("order.dropped", {**detail, "rule": error.rule, "field": error.field, "error": str(error)})
        if self.drops[key] == 1:
            log.warning(
                "Session %s dropped a %s of %s %s at %s (%s): %s Further drops like it are counted in the "
                "session summary (column 'dropped') and the audit log.",
                self.session_id, request.side.value, request.amount, request.symbol, price, key[1], error,
            )  # fmt: skip

    def dropped(self) -> pd.DataFrame:
        """The rebalances no order could carry, per symbol and reason (the filter or risk rule)."""
        rows = [{"symbol": s, "reason": r, "orders": n} for (s, r), n in sorted(self.drops.items())]
        return pd.DataFrame(rows, columns=["symbol", "reason", "orders"])

    # -- intents ----------------------------------------------------------------------------

    def _signal(self, symbol: str) -> Any:
        """The strategy's answer for the latest bar of ``symbol``'s history: a target, an
        :class:`~workbench.intents.Intent` (``None`` for a row that asks nothing), or ``None``
        (a portfolio acts once every symbol's bar is in: :meth:`_portfolio_bar`)."""
        if self.strategy is None or is_portfolio(self.strategy):
            return None
        answer = self.strategy(self._history[symbol])
        if not is_intents(answer):
            return answer.iloc[-1]
        return next(iter_intents(intent_frame(answer.iloc[-1:])))

    async def _portfolio_bar(self) -> Order | None:
        """A portfolio's step once the bar of the same open time has arrived for each of its
        symbols: the strategy over their histories, and its intents acted on (sells first)."""
        if not is_portfolio(self.strategy):
            return None
        symbols = self.strategy.symbols  # type: ignore[union-attr]
        missing = [s for s in symbols if s not in self.rules]
        if missing:
            raise ConfigError(f"The portfolio trades {list(symbols)}: the session has no {missing}; add them.")
        times = {self._bar_times.get(s, (None, 0))[0] for s in symbols}
        if len(times) != 1 or None in times:
            return None
        answers = self.strategy({s: self._history[s] for s in symbols})  # type: ignore[misc]
        steps = {
            s: (next(iter_intents(intent_frame(answers[s]).iloc[-1:])), self.last_price[s], self._bar_times[s][1])
            for s in symbols
        }
        self._bar_times.clear()
        return await self._act(steps)

    async def _run_intents(
        self, bars: Mapping[str, pd.DataFrame], answers: Mapping[str, Any], progress: bool, skip_idle: bool
    ) -> None:
        """:meth:`run` for a strategy that returns intents (or a portfolio): every bar in time
        order; a portfolio acts once the bar of each of its symbols at that time has been fed.

        ``skip_idle`` steps only the bars where something can happen: the size asked for changes,
        the symbol's data ends (a portfolio: every symbol of such a time), or an order of the
        session is open and the bar may reach it (:meth:`_quiet`). A bar whose size holds acts on
        nothing but the exits already placed, so it is stepped without its intent (the same)."""
        frames = {s: intent_frame(answers[s], bars[s].index) for s in bars}
        changes = {s: _size_changes(f) if skip_idle else np.ones(len(f), bool) for s, f in frames.items()}
        intents: dict[str, list[Intent | None]] = {}
        for symbol, frame in frames.items():
            rows = np.flatnonzero(changes[symbol])
            intents[symbol] = [None] * len(frame)
            for row, intent in zip(rows.tolist(), iter_intents(frame.iloc[rows]), strict=True):
                intents[symbol][row] = intent
        portfolio = is_portfolio(self.strategy)
        steps = [
            pd.DataFrame(
                {
                    "symbol": s,
                    **{k: f.get(k, f["close"]) for k in ("open", "high", "low", "close")},
                    "at": _close_times(f),
                    "row": np.arange(len(f)),
                    "needed": changes[s] | (np.arange(len(f)) == len(f) - 1),
                }
            )
            for s, f in bars.items()
        ]
        timeline = pd.concat(steps).sort_index(kind="stable")
        last_of_time = ~timeline.index.duplicated(keep="last") if portfolio else np.zeros(len(timeline), bool)
        needed = timeline["needed"].to_numpy(dtype=bool)
        if portfolio:  # a portfolio steps every symbol of a time, or none
            needed = pd.Series(needed, index=timeline.index).groupby(level=0).transform("any").to_numpy()
        first_of_time = ~timeline.index.duplicated(keep="first") if portfolio else np.ones(len(timeline), bool)
        columns = [timeline[k].to_numpy().tolist() for k in ("symbol", "open", "high", "low", "close", "at", "row")]
        symbols, opens, highs, lows, closes, times, rows = columns
        last_of_time, first_of_time, need = last_of_time.tolist(), first_of_time.tolist(), needed.tolist()
        untouched = getattr(self.executor, "untouched", None) if skip_idle and not portfolio else None
        band = getattr(self.executor, "band", None) if skip_idle and len(bars) == 1 else None
        prices = (timeline["low"].to_numpy(dtype=float), timeline["high"].to_numpy(dtype=float), needed)
        wanted = np.flatnonzero(needed)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(timeline), desc=f"{self.session_id} bars", mininterval=1.0)
        pending: dict[str, tuple[Intent | None, Decimal, int]] = {}
        i, n, done = 0, len(timeline), 0
        while i < n:
            if first_of_time[i] and not need[i]:  # nothing can happen while the size holds and ...
                if not self._busy():  # ... no order is open: on to the next bar that matters
                    i = int(wanted[np.searchsorted(wanted, i)])  # the last bar always does
                else:
                    symbol = symbols[i]
                    if untouched and self._quiet(symbol, untouched, opens[i], highs[i], lows[i], closes[i]):
                        i = _next_reached(prices, i + 1, band(symbol)) if band else i + 1  # ... none is reached
                        continue
            if self._halted():
                break
            symbol, at = symbols[i], times[i]
            intent = intents[symbol][rows[i]]
            self._walk(symbol, opens[i], highs[i], lows[i], closes[i], at)
            price = Decimal(str(closes[i]))
            if not portfolio:
                await self._step(symbol, price, at, intent)
            else:
                await self._step(symbol, price, at, None)
                pending[symbol] = (intent, price, at)
                if last_of_time[i]:
                    await self._act(pending)
                    pending = {}
            i += 1
            if bar is not None:
                bar.update(i - done)
                done = i
        if bar is not None:
            bar.update(n - done)
            bar.close()

    def _quiet(self, symbol: str, untouched: Callable[[str, Decimal, Decimal], bool], *prices: float) -> bool:
        """Whether a bar of an intent strategy's ``symbol`` whose size holds, with these prices (its
        open, extremes and close), would change nothing but the last price: no limit entry is aging,
        no shadow follows, and the executor says no open order of the symbol is reached in the
        bar's range (no trailing stop open, every trigger and resting price outside it)."""
        book = self._books.get(symbol)
        if book is None or book.entry is not None or self.shadow is not None:
            return False
        return untouched(symbol, bar_price(min(prices)), bar_price(max(prices)))

    async def _step_intent(self, symbol: str, price: Decimal, timestamp: int, intent: Intent | None) -> Order | None:
        """One bar of an intent strategy's ``symbol``: age (and cancel) its limit entry, act on
        ``intent`` if its size changed, keep the protective exits in step with the position."""
        book = self._book(symbol)
        await self._age_entry(symbol, book)
        if intent is None:
            await self._sync_exits(symbol, book, price, timestamp)
            return None
        return await self._act({symbol: (intent, price, timestamp)})

    def _book(self, symbol: str) -> _IntentBook:
        """The intent book of ``symbol``. A new one takes over the session's open orders on it (a
        resumed session's exits, found again at restart): the first exits it places replace them."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _IntentBook()
            book.exit_orders = tuple(cid for cid, o in self._open.items() if o.symbol == symbol)
        return book

    async def _act(self, intents: Mapping[str, tuple[Intent | None, Decimal, int]]) -> Order | None:
        """Act on the intents whose size changed (sells before buys: they free the budget), then
        keep every symbol's exits in step with its position. Returns the last entry order sent."""
        changed = {}
        for symbol, (intent, _, _) in intents.items():
            book = self._book(symbol)
            if intent is not None and (book.intent is None or intent.entry_key != book.intent.entry_key):
                changed[symbol] = intent
        equity = None
        if any(i.entry.kind == "target_fraction" for i in changed.values()):
            equity = await self._equity()
        targets = {s: self._resolve(s, i.entry, intents[s][1], equity) for s, i in changed.items()}
        order = None
        for symbol in sorted(changed, key=lambda s: targets[s] >= self.state.positions.get(s, ZERO)):
            _, price, timestamp = intents[symbol]
            book = self._books[symbol]
            book.intent = changed[symbol]
            self._targets[symbol] = targets[symbol]
            self.target_changes.append((symbol, timestamp, float(targets[symbol])))
            order = await self._enter(symbol, book, targets[symbol], price, timestamp) or order
        for symbol, (_, price, timestamp) in intents.items():
            await self._sync_exits(symbol, self._books[symbol], price, timestamp)
        return order

    def _resolve(self, symbol: str, entry: Entry, price: Decimal, equity: Decimal | None) -> Decimal:
        """An entry's size in base units at ``price`` (a fraction of ``equity`` in quote)."""
        value = Decimal(str(entry.value))
        if entry.kind == "target_quote":
            value = value / price
        elif entry.kind == "target_fraction":
            value = value * equity / price  # type: ignore[operator]
        return self.rules[symbol].round_amount(value)

    async def _equity(self) -> Decimal:
        """The account's value in the session's quote asset: its balance plus what its positions
        are worth at the last prices (an asset without a price counts nothing)."""
        quotes = {r.quote for r in self.rules.values()}
        if len(quotes) != 1:
            raise ConfigError(f"target_fraction needs one quote asset for every symbol, not {sorted(quotes)}.")
        quote = quotes.pop()
        prices = {r.base: self.last_price.get(s) for s, r in self.rules.items()}
        balances = await self.executor.fetch_balance()
        return sum(
            (b.total if a == quote else b.total * (prices.get(a) or ZERO) for a, b in balances.items()),
            ZERO,
        )

    async def _enter(
        self, symbol: str, book: _IntentBook, target: Decimal, price: Decimal, timestamp: int
    ) -> Order | None:
        """Trade towards ``target`` as the book's intent says: MARKET, or LIMIT at its price."""
        await self._cancel_open(symbol, (book.entry,) if book.entry else ())
        book.entry = None
        rules = self.rules[symbol]
        delta = target - self.state.positions.get(symbol, ZERO)
        if delta < 0:
            await self._cancel_exits(symbol, book)  # they hold the base the sale needs
        if not delta:
            return None
        amount = rules.round_amount(abs(delta)) or abs(delta)  # below one step: counted as a drop
        side = Side.BUY if delta > 0 else Side.SELL
        entry = book.intent.entry  # type: ignore[union-attr]
        if entry.limit_price is None:
            request = OrderRequest(symbol, side, OrderType.MARKET, amount=amount)
        else:
            limit = rules.round_price(Decimal(str(entry.limit_price)), "ROUND_DOWN" if delta > 0 else "ROUND_UP")
            request = OrderRequest(
                symbol, side, OrderType.LIMIT, amount=amount, price=limit, time_in_force=entry.time_in_force
            )  # type: ignore[arg-type]
        dust = _too_small(request, rules, price)
        if dust is not None:
            return self._drop(request, price, timestamp, dust)
        order = await self._send(request, price, timestamp)
        if order is not None and order.is_open and entry.limit_price is not None:
            book.entry, book.entry_bars = order.client_order_id, 0
        return order

    async def _age_entry(self, symbol: str, book: _IntentBook) -> None:
        """A bar passed: cancel the open limit entry once it has waited its ``cancel_after`` bars."""
        if book.entry is None:
            return
        if book.entry not in self._open:
            book.entry = None
            return
        book.entry_bars += 1
        after = book.intent.entry.cancel_after if book.intent else None
        if after is not None and book.entry_bars >= after:
            await self._cancel_open(symbol, (book.entry,))
            book.entry = None

    async def _sync_exits(self, symbol: str, book: _IntentBook, price: Decimal, timestamp: int) -> None:
        """Protect what is held (less what an open entry sells) with the intent's exits: placed
        once the entry fills, re-placed when the position changes, canceled when flat."""
        exits = book.intent.exits if book.intent is not None else Exits()
        held = self.state.positions.get(symbol, ZERO)
        selling = self._open.get(book.entry) if book.entry else None
        if selling is not None and selling.side is Side.SELL:
            held -= selling.remaining or ZERO
        amount = self.rules[symbol].round_amount(held) if held > 0 else ZERO
        want = (exits, amount) if exits and amount > 0 else None
        if want == book.protecting:
            return
        await self._cancel_exits(symbol, book)
        book.protecting = want
        if want is not None:
            await self._place_exits(symbol, book, exits, amount, price, timestamp)

    async def _place_exits(
        self, symbol: str, book: _IntentBook, exits: Exits, amount: Decimal, price: Decimal, timestamp: int
    ) -> None:
        rules = self.rules[symbol]
        stop = None if exits.stop_loss is None else rules.round_price(Decimal(str(exits.stop_loss)))
        profit = None if exits.take_profit is None else rules.round_price(Decimal(str(exits.take_profit)), "ROUND_UP")
        sell = {"symbol": symbol, "side": Side.SELL, "amount": amount}
        if (stop is not None and price <= stop) or (profit is not None and price >= profit):
            market = OrderRequest(type=OrderType.MARKET, **sell)  # the exit is reached already: sell now
            if not _is_dust(market, rules, price):
                await self._send(market, price, timestamp)
            return
        gtc = {"time_in_force": TimeInForce.GTC, **sell}
        if exits.trailing_delta is not None:
            floor = price * (1 - exits.trailing_delta * BPS - STOP_LIMIT_OFFSET)
            legs = [
                OrderRequest(
                    type=OrderType.STOP_LOSS_LIMIT,
                    price=rules.round_price(floor, "ROUND_DOWN"),
                    trailing_delta=exits.trailing_delta,
                    **gtc,
                )
            ]
        else:
            legs = []
            if stop is not None:
                limit = rules.round_price(stop * (1 - STOP_LIMIT_OFFSET), "ROUND_DOWN")
                legs.append(OrderRequest(type=OrderType.STOP_LOSS_LIMIT, price=limit, stop_price=stop, **gtc))
            if profit is not None:
                legs.insert(
                    0,
                    OrderRequest(
                        type=OrderType.LIMIT_MAKER if stop else OrderType.LIMIT, price=profit, **(sell if stop else gtc)
                    ),
                )
        if _is_dust(legs[-1], rules, legs[-1].price or price):  # type: ignore[arg-type]
            return
        if len(legs) == 2 and not isinstance(self.executor, OrderListExecutor):
            why = f"the {self.mode} executor trades no order lists: {symbol}'s stop-loss is placed, not its take-profit"
            warnings.warn(f"An OCO exit cannot be placed: {why}.", stacklevel=2)
            self._audit("intent.unsupported", {"symbol": symbol, "why": why})
            legs = legs[-1:]
        if len(legs) == 2:
            request = OrderListRequest(ContingencyType.OCO, tuple(legs))
            try:
                placed = await self.create_order_list(request, signal_price=price, signal_time=timestamp)
            except OrderRejected as e:  # the position is unprotected: counted and warned, as a drop
                self._drop(legs[-1], price, timestamp, e, audited=True)
                return
            except ExchangeError:
                return  # unresolved: in the audit log, reconciled at restart
            book.exit_list = placed.list_client_order_id
            book.exit_orders = self.list_legs.get(placed.list_client_order_id, ())
            return
        order = await self._send(legs[0], price, timestamp)
        book.exit_orders = (order.client_order_id,) if order is not None else ()

    async def _cancel_exits(self, symbol: str, book: _IntentBook) -> None:
        if book.exit_list is not None and any(o in self._open for o in book.exit_orders):
            with contextlib.suppress(OrderRejected, OrderNotFound, ExchangeError):  # filled or canceled meanwhile
                await self.cancel_order_list(book.exit_list, symbol)
        # A leg its list left open (a triggered stop-limit rests on its own once the list is done).
        await self._cancel_open(symbol, book.exit_orders)
        book.exit_list, book.exit_orders, book.protecting = None, (), None

    async def _cancel_open(self, symbol: str, client_order_ids: tuple[str, ...]) -> None:
        for cid in client_order_ids:
            if cid in self._open:
                with contextlib.suppress(OrderRejected, OrderNotFound, ExchangeError):  # filled or canceled meanwhile
                    await self.cancel_order(cid, symbol)

    async def _send(self, request: OrderRequest, price: Decimal, timestamp: int) -> Order | None:
        """:meth:`submit` for a rebalance or an intent's order; a refusal is counted as a drop and recorded (audit
        log, ``rejections``), not raised."""
        try:
            return await self.submit(request, signal_price=price, signal_time=timestamp)
        except OrderRejected as e:
            return self._drop(request, price, timestamp, e, audited=True)
        except ExchangeError:
            return None  # the venue could not be asked (it restarted?): reconcile settles the order, audited

    # -- events and reporting ---------------------------------------------------------------

    def _on_execution(self, event: Execution) -> None:
        if event.order_list is not None:  # LIST_STATUS: its legs' changes come as events of their own
            if not self._record_list(event.order_list):
                return
            self._audit(
                "order_list.event",
                {
                    "list_client_order_id": event.order_list.list_client_order_id,
                    "status": event.order_list.list_order_status.value,
                },
            )
            return
        order = event.order
        if not order.client_order_id.startswith(self._prefix):
            return  # another client's order on the same account (the user data stream has them all)
        cid = order.client_order_id
        (self._orders if self._backlog is None or cid in self._orders else self._later)[cid] = order
        if order.is_open:
            self._open[cid] = order
        else:
            self._open.pop(cid, None)
        self.store.record_order(self.session_id, self.mode, order)
        fill = event.fill
        if fill is not None and (fill.symbol, fill.trade_id) not in self._trade_keys:
            self._trade_keys.add((fill.symbol, fill.trade_id))
            self.store.record_fill(self.session_id, self.mode, fill)
            self.state.record_fill(fill, self.rules[order.symbol].base)
        self._audit(
            "order.event",
            {
                "kind": event.kind,
                "client_order_id": order.client_order_id,
                "status": order.status.value,
                "trade_id": event.fill and event.fill.trade_id,
            },
        )

    def summary(self) -> pd.DataFrame:
        """Per symbol: orders, rebalances dropped (dust or refused, see :meth:`dropped`), fills,
        traded notional, fees, position, average cost, realised PnL and the mark-to-market value of
        the position at the last price."""
        rows = []
        self.store.flush()
        fills = self.store.fill_totals(self.session_id, self.mode)
        totals = self._backlog.totals() if self._backlog is not None else None
        if totals is None:
            totals = _order_totals(self.orders.values())
        else:  # the orders before the backlog's, its own, those after
            totals = _add_totals(_order_totals(self._orders.values()), totals, _order_totals(self._later.values()))
        for symbol in self.rules:
            orders, fees = totals.get(symbol, (0, {}))
            filled, notional = fills.get(symbol, (0, None))
            position = self.state.positions.get(symbol, ZERO)
            rows.append(
                {
                    "symbol": symbol,
                    "orders": orders,
                    "dropped": sum(n for (s, _), n in self.drops.items() if s == symbol),
                    "fills": filled,
                    "notional": float(notional or 0),
                    "fees": {asset: float(fee) for asset, fee in fees.items()},
                    "position": float(position),
                    "avg_cost": float(self.state.avg_cost.get(symbol, ZERO)),
                    "last_price": float(self.last_price.get(symbol, ZERO)),
                    "realised_pnl": float(self.state.realised_by_symbol.get(symbol, ZERO)),
                    "unrealised_pnl": float(
                        position * (self.last_price.get(symbol, ZERO) - self.state.avg_cost.get(symbol, ZERO))
                    ),
                }
            )
        return pd.DataFrame(rows).set_index("symbol")

    # -- helpers ----------------------------------------------------------------------------

    def _remember(self, symbol: str, bar: pd.Series) -> pd.DataFrame:
        """Add ``bar`` to the symbol's history, keep at most :meth:`_history_bars` of it, return it."""
        row = bar.to_frame().T.infer_objects()
        history = self._history.get(symbol)
        history = row if history is None else pd.concat([history, row])
        keep = self._history_bars()
        if len(history) > keep:
            if symbol not in self._forgetting and getattr(self.strategy, "history", None) is None:
                self._forgetting.add(symbol)
                log.warning(
                    "Session %s keeps the last %d bars of %s for %s, which declares no history: from now on "
                    "the live signal may differ from a replay's; declare `history` (the bars the strategy "
                    "needs) or raise `history_cap`.",
                    self.session_id, keep, symbol, type(self.strategy).__name__,
                )  # fmt: skip
            history = history.iloc[-keep:]
        self._history[symbol] = history
        return history

    def _history_bars(self) -> int:
        """How many bars of each symbol the strategy is computed over live: its declared
        ``history``, else the whole session's (up to ``history_cap``)."""
        declared = getattr(self.strategy, "history", None)
        return max(int(declared), 1) if declared is not None else self.history_cap

    def _now(self) -> int:
        now = getattr(self.executor, "now", None)
        return now() if now else int(datetime.now(UTC).timestamp() * 1000)

    async def _price(self, symbol: str) -> Decimal:
        """The last price of ``symbol``: the last bar's, else the venue's."""
        rules_for(symbol, self.rules)
        if symbol not in self.last_price:
            price = await self.executor.fetch_price(symbol)
            if price is None:
                raise OrderRejected(
                    f"No price for {symbol} yet: feed a bar (on_bar) or a price before placing orders.",
                    field="symbol",
                    rule="price",
                )
            self.last_price[symbol] = price
        return self.last_price[symbol]

    def _reject(self, kind: str, detail: dict[str, Any], error: OrderRejected) -> None:
        self.rejections.append(error)
        self._audit(
            kind,
            {
                **detail,
                "rule": error.rule,
                "field": error.field,
                "code": error.code,
                "msg": error.msg,
                "error": str(error),
            },
        )
        raise error

    def _audit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.store.audit(kind, detail, session_id=self.session_id, mode=self.mode)


@dataclass
class _IntentBook:
    """What an intent strategy has asked for on one symbol and which orders carry it out."""

    intent: Intent | None = None  # the last intent acted on
    entry: str | None = None  # the open limit entry's client order id
    entry_bars: int = 0  # bars it has waited
    protecting: tuple[Exits, Decimal] | None = None  # the exits placed and the amount they sell
    exit_orders: tuple[str, ...] = ()
    exit_list: str | None = None  # the OCO's list client order id


def _next_reached(
    prices: tuple[np.ndarray, np.ndarray, np.ndarray], start: int, band: tuple[Decimal | None, Decimal | None] | None
) -> int:
    """The first bar from ``start`` that matters (``prices``: lows, highs, needed) while the open
    orders rest in ``band`` (the open range of prices that reaches none of them, see
    :meth:`MatchingEngine.band`): needed, or its low or high outside the band shrunk by a relative
    1e-9, so that float rounding can only step a bar too many, never skip one; the end if none."""
    lows, highs, needed = prices
    floor = -np.inf if band is None or band[0] is None else float(band[0]) * (1 + 1e-9)
    ceiling = -np.inf if band is None else np.inf if band[1] is None else float(band[1]) * (1 - 1e-9)
    window = 64
    while start < len(lows):  # windows that double: the work is proportional to the bars skipped
        stop = min(start + window, len(lows))
        hits = np.flatnonzero(needed[start:stop] | (lows[start:stop] <= floor) | (highs[start:stop] >= ceiling))
        if len(hits):
            return start + int(hits[0])
        start, window = stop, window * 2
    return start


def _size_changes(frame: pd.DataFrame) -> np.ndarray:
    """Per row of a checked intent frame: whether it asks for a size other than the last one asked."""
    size = frame[next(c for c in ("target", "target_quote", "target_fraction") if c in frame)].to_numpy()
    previous = pd.Series(size).ffill().shift().to_numpy()
    return ~np.isnan(size) & (np.isnan(previous) | (size != previous))


def strategy_answers(strategy: Strategy, bars: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The strategy's answer per symbol: targets or intents; a portfolio is called once with all
    its symbols' bars (:class:`~workbench.errors.ConfigError` if one is missing)."""
    if not is_portfolio(strategy):
        return {s: strategy(frame) for s, frame in bars.items()}
    symbols = strategy.symbols  # type: ignore[attr-defined]
    missing = [s for s in symbols if s not in bars]
    if missing or set(bars) - set(symbols):
        raise ConfigError(
            f"The portfolio trades {list(symbols)}: give bars of exactly those symbols, not {list(bars)}."
        )
    answers = strategy({s: bars[s] for s in symbols})  # type: ignore[operator]
    return {s: answers[s] for s in symbols}


Totals = dict[str, tuple[int, dict[str, Decimal]]]  # per symbol: orders, fees per asset


def _order_totals(orders: Iterable[Order]) -> Totals:
    """Per symbol: how many ``orders`` and their fees per asset (in the order the assets first come)."""
    by_symbol: dict[str, list[Order]] = {}
    for order in orders:
        by_symbol.setdefault(order.symbol, []).append(order)
    return {symbol: (len(group), _total_fees(map(_fees_of, group))) for symbol, group in by_symbol.items()}


def _total_fees(fees: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for each in fees:
        for asset, fee in each.items():
            totals[asset] = totals.get(asset, ZERO) + fee
    return totals


def _add_totals(*parts: Totals) -> Totals:
    """The totals of the orders of each of ``parts`` together."""
    out: dict[str, tuple[int, list[dict[str, Decimal]]]] = {}
    for part in parts:
        for symbol, (n, fees) in part.items():
            count, all_fees = out.get(symbol, (0, []))
            out[symbol] = (count + n, [*all_fees, fees])
    return {symbol: (n, _total_fees(fees)) for symbol, (n, fees) in out.items()}


_fees_of = operator.attrgetter("fees")


class OrderBacklog(Protocol):
    """Orders recorded in bulk that a session builds only when they are asked for."""

    def build(self) -> dict[str, Order]:
        """The orders by client order id, in the order they were placed."""

    def totals(self) -> Totals | None:
        """What :func:`_order_totals` gives for them, or ``None`` if only the orders can tell."""


def _rejected(order_list: OrderList) -> OrderList:
    """``order_list`` as a list the venue refused or never received (Binance's REJECT)."""
    return replace(order_list, list_status_type=ListStatusType.ALL_DONE, list_order_status=ListOrderStatus.REJECT)


def _with_id(request: OrderRequest, client_order_id: str) -> OrderRequest:
    """A copy of the (valid) ``request`` with the session's client order id, which no check of a
    request reads: not validated again, as ``dataclasses.replace`` would."""
    copied = copy.copy(request)
    object.__setattr__(copied, "client_order_id", client_order_id)
    return copied


def _request_detail(request: OrderRequest) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in vars(request).items() if v is not None}


def _data_detail(frame: pd.DataFrame) -> dict[str, Any]:
    """Where a session's historical bars came from: their source, first and last open time, count."""
    first, last = (str(frame.index[0]), str(frame.index[-1])) if len(frame) else (None, None)
    return {"source": str(frame.attrs.get("source", "")), "first": first, "last": last, "bars": len(frame)}


def _is_dust(request: OrderRequest, rules: SymbolRules, price: Decimal) -> bool:
    """Whether a rebalance is too small to be a valid order (below the minimum quantity or notional)."""
    return _dust_error(request, rules, price) is not None


def _dust_error(request: OrderRequest, rules: SymbolRules, price: Decimal) -> FilterError | None:
    """The filter's error if ``request`` is too small to be a valid order (below the minimum
    quantity or notional), else ``None`` (any other refusal is the risk checks' to make)."""
    try:
        check_order(request, rules, avg_price=price)
    except FilterError as e:
        small = e.rule in ("LOT_SIZE", "MARKET_LOT_SIZE", "NOTIONAL", "MIN_NOTIONAL") and "below" in str(e)
        return e if small else None
    return None


def _too_small(request: OrderRequest, rules: SymbolRules, price: Decimal) -> FilterError | None:
    """Why a rebalance of ``request.amount`` cannot be an order (smaller than one lot step, below the
    minimum quantity or notional), or ``None``."""
    if rules.round_amount(request.amount):  # type: ignore[arg-type]
        return _dust_error(request, rules, price)
    return FilterError(
        f"{request.symbol}: a {request.side.value} of {request.amount} is below one lot step "
        f"({rules.step_size().normalize():f}) and rounds to 0; trade in larger steps.",
        field="amount",
        rule="LOT_SIZE",
    )


def _close_times(bars: pd.DataFrame) -> pd.Series:
    """Each bar's close time in ms: its ``close_time``, or else one minute after its open time."""
    if "close_time" in bars:
        return pd.to_datetime(bars["close_time"], utc=True).dt.as_unit("ms").astype("int64")
    opened = pd.Series(bars.index.as_unit("ms").astype("int64"), index=bars.index)
    return opened + 60_000 - 1


def _close_ms(bar: pd.Series) -> int:
    """The millisecond timestamp at which ``bar`` closed: its ``close_time``, or else one
    minute after its open time (``bar.name``), as Binance stamps 1m klines."""
    close_time = bar.get("close_time")
    if close_time is not None and not pd.isna(close_time):
        return int(pd.Timestamp(close_time).timestamp() * 1000)
    return int(pd.Timestamp(bar.name).timestamp() * 1000) + 60_000 - 1
