"""The one protocol every executor implements, in ccxt's vocabulary."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Protocol, runtime_checkable

from workbench.config import TradingMode
from workbench.matching import Execution
from workbench.model import Balance, Fill, Order, OrderList, OrderListRequest, OrderRequest

Listener = Callable[[Execution], None]


@runtime_checkable
class Executor(Protocol):
    """Places and cancels orders on one venue and reports what happens to them.

    ``create_order`` takes a request that already carries the workbench's ``client_order_id``;
    orders are addressed by that id. Every order and fill event is passed to the listeners
    given to :meth:`subscribe`, as it happens.
    """

    mode: TradingMode
    venue: str

    async def create_order(self, request: OrderRequest) -> Order: ...

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order: ...

    async def cancel_all_orders(self, symbol: str) -> list[Order]: ...

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

    async def fetch_my_trades(self, symbol: str, since: int | None = None) -> list[Fill]: ...

    async def fetch_price(self, symbol: str) -> Decimal | None:
        """The venue's last price of ``symbol``, or ``None`` if it has none yet."""

    def update_price(self, symbol: str, price: Decimal, timestamp: int) -> None:
        """A new market price: paper executors fill against it; real venues have their own."""

    def subscribe(self, listener: Listener) -> None: ...

    async def start(self, known: Mapping[str, Order] | None = None) -> None:
        """Connect, and reconcile the orders a restarted session ``known`` (client id -> order)."""

    async def close(self) -> None: ...


@runtime_checkable
class OrderListExecutor(Protocol):
    """What an executor that trades order lists (OCO, OTO, OTOCO) adds; lists are addressed by
    the workbench's ``list_client_order_id``. A separate protocol, so executors adopt it one by one."""

    async def create_order_list(self, request: OrderListRequest) -> OrderList: ...

    async def cancel_order_list(self, list_client_order_id: str, symbol: str) -> OrderList: ...

    async def fetch_order_list(self, list_client_order_id: str, symbol: str) -> OrderList: ...

    async def fetch_open_order_lists(self, symbol: str | None = None) -> list[OrderList]: ...
