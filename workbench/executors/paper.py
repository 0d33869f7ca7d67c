"""The paper executor: simulated fills in-process, on the shared matching core."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from workbench.config import TradingMode
from workbench.executors.base import Listener
from workbench.filters import SymbolRules
from workbench.matching import BookConfig, Execution, Fees, MatchingEngine
from workbench.model import (
    Balance,
    Fill,
    Order,
    OrderList,
    OrderListRequest,
    OrderRequest,
    PreventedMatch,
    missing_parameter,
)


class PaperExecutor:
    """Trades against :class:`~workbench.matching.MatchingEngine` with Binance's rules.

    Time is the latest market timestamp given to :meth:`update_price` (so a replay runs on the
    bars' clock), or the wall clock before any price has arrived.
    """

    mode = TradingMode.PAPER
    venue = "paper"

    def __init__(
        self,
        rules: Mapping[str, SymbolRules],
        balances: Mapping[str, Decimal | int | str],
        *,
        fees: Fees = Fees(),
        book: BookConfig = BookConfig(),
    ) -> None:
        self.engine = MatchingEngine(rules, balances, fees=fees, book=book)
        self._listeners: list[Listener] = []
        self._fill_list: list[Fill] = []
        self._unbuilt: Callable[[], list[Fill]] | None = None  # fills recorded in bulk, built when first read
        self._later: list[Fill] = []  # fills after those, while they are unbuilt
        self._time: int | None = None

    @property
    def _fills(self) -> list[Fill]:
        """Every fill, in order."""
        if self._unbuilt is not None:
            build, self._unbuilt = self._unbuilt, None
            self._fill_list.extend(build())
            self._fill_list.extend(self._later)
            self._later.clear()
        return self._fill_list

    def defer_fills(self, build: Callable[[], list[Fill]]) -> None:
        """Fills recorded in bulk (a fast replay's, after every fill so far): ``build()`` gives them
        when they are first read."""
        self._fill_list = self._fills  # builds those an earlier call deferred first
        self._unbuilt = build

    def now(self) -> int:
        return self._time if self._time is not None else int(time.time() * 1000)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update_price(self, symbol: str, price: Decimal, timestamp: int) -> None:
        self._time = timestamp
        self._emit(self.engine.set_price(symbol, price, timestamp))

    def untouched(self, symbol: str, low: Decimal, high: Decimal) -> bool:
        """Whether prices in ``[low, high]`` would change none of the open orders of ``symbol``
        (see :meth:`MatchingEngine.untouched`): a replay may then skip such a bar."""
        return self.engine.untouched(symbol, low, high)

    def band(self, symbol: str) -> tuple[Decimal | None, Decimal | None] | None:
        """The range of prices that reaches no open order of ``symbol`` (:meth:`MatchingEngine.band`)."""
        return self.engine.band(symbol)

    async def create_order(self, request: OrderRequest) -> Order:
        _require_id(request.client_order_id, "client_order_id")
        events = self.engine.create_order(request, request.client_order_id, self.now())  # type: ignore[arg-type]
        self._emit(events)
        return next(e.order for e in reversed(events) if e.order.client_order_id == request.client_order_id)

    async def create_order_list(self, request: OrderListRequest) -> OrderList:
        """Place an OCO, OTO or OTOCO; the list and every leg carry the workbench's client ids."""
        _require_id(request.list_client_order_id, "list_client_order_id")
        for leg in request.orders:
            _require_id(leg.client_order_id, "client_order_id")
        events = self.engine.create_order_list(request, request.list_client_order_id, self.now())  # type: ignore[arg-type]
        self._emit(events)
        return self.engine.get_order_list(request.symbol, list_client_order_id=request.list_client_order_id)

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        events = self.engine.cancel_order_events(symbol, client_order_id=client_order_id, now=self.now())
        self._emit(events)
        return events[0].order

    async def cancel_all_orders(self, symbol: str) -> list[Order]:
        events = self.engine.cancel_all_orders(symbol, self.now())
        self._emit(events)
        return [e.order for e in events if e.kind == "CANCELED"]

    async def cancel_order_list(self, list_client_order_id: str, symbol: str) -> OrderList:
        events = self.engine.cancel_order_list(symbol, list_client_order_id=list_client_order_id, now=self.now())
        self._emit(events)
        return events[-1].order_list  # type: ignore[return-value]

    async def fetch_order_list(self, list_client_order_id: str, symbol: str) -> OrderList:
        return self.engine.get_order_list(symbol, list_client_order_id=list_client_order_id)

    async def fetch_open_order_lists(self, symbol: str | None = None) -> list[OrderList]:
        return self.engine.order_lists_of(symbol, open_only=True)

    async def fetch_prevented_matches(self, symbol: str) -> list[PreventedMatch]:
        return self.engine.prevented_matches(symbol)

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        return self.engine.get_order(symbol, client_order_id=client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.engine.open_orders(symbol)

    async def fetch_balance(self) -> dict[str, Balance]:
        return self.engine.balances()

    async def fetch_my_trades(self, symbol: str, since: int | None = None) -> list[Fill]:
        return [f for f in self._fills if f.symbol == symbol and (since is None or f.timestamp >= since)]

    async def fetch_price(self, symbol: str) -> Decimal | None:
        return self.engine.last_price.get(symbol)

    async def start(self, known: Mapping[str, Order] | None = None) -> None:
        """Nothing to connect to: the paper venue lives in this process and starts empty."""

    async def close(self) -> None:
        """Nothing to release: the paper venue lives in this process."""

    def _emit(self, events: list[Execution]) -> None:
        """Record fills and pass every event, LIST_STATUS included, to the listeners."""
        for event in events:
            if event.fill is not None:
                (self._fill_list if self._unbuilt is None else self._later).append(event.fill)
            for listener in self._listeners:
                listener(event)


def _require_id(value: str | None, name: str) -> None:
    if not value:
        raise missing_parameter(name, "The paper executor needs one on every request; TradingSession assigns one.")
