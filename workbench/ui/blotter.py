"""The blotter: open orders with Cancel buttons (an order list's orders tagged with their list),
order lists, positions, recent fills and balances."""

from __future__ import annotations

import asyncio
import html
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ipywidgets as widgets

from workbench.filters import plain
from workbench.matching import Execution
from workbench.model import Balance, Fill, Order, OrderList
from workbench.session import TradingSession
from workbench.ui.base import _Panel, _table, describe_order


class Blotter(_Panel):
    """Open orders (each with a Cancel button; an order of a list names its list), the session's
    order lists (OCO, OTO, OTOCO) with the state of each of their orders, recent fills, balances
    and positions with unrealised PnL, updated from the executor's events as they happen.

    Open orders are the session's (``session.orders``); balances and the marks of open positions
    are fetched from the venue after each event (one fetch at a time), on *Refresh*, and every
    ``refresh_every`` seconds when that is given.
    """

    def __init__(
        self,
        session: TradingSession,
        *,
        header: bool = True,
        max_fills: int = 20,
        refresh_every: float | None = None,
    ) -> None:
        super().__init__(session, header=header)
        self.fills: deque[Fill] = deque(maxlen=max_fills)
        self.balances: dict[str, Balance] = {}
        self.cancel_buttons: dict[str, widgets.Button] = {}
        self._rows: dict[str, widgets.HBox] = {}
        self.orders_box = widgets.VBox()
        self.orders_box.add_class("wb-open-orders")
        self.fills_html = widgets.HTML()
        self.fills_html.add_class("wb-fills")
        self.lists_html = widgets.HTML()
        self.lists_html.add_class("wb-order-lists")
        self.positions_html = widgets.HTML()
        self.positions_html.add_class("wb-positions")
        self.balances_html = widgets.HTML()
        self.balances_html.add_class("wb-balances")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.cancel_all_button = widgets.Button(description="Cancel all", icon="ban", button_style="warning")
        self.cancel_all_button.add_class("wb-cancel-all")
        self.refresh_button.on_click(lambda _: self._soon(self.request_refresh))
        self.cancel_all_button.on_click(lambda _: self._spawn(self.cancel_all()))
        self.widget = widgets.VBox(
            [
                *self._head(),
                widgets.HBox([widgets.HTML("<b>Blotter</b>"), self.refresh_button, self.cancel_all_button]),
                widgets.HTML("<b>Open orders</b>"),
                self.orders_box,
                widgets.HTML("<b>Order lists</b>"),
                self.lists_html,
                widgets.HTML("<b>Positions</b>"),
                self.positions_html,
                widgets.HTML("<b>Recent fills</b>"),
                self.fills_html,
                widgets.HTML("<b>Balances</b>"),
                self.balances_html,
                self.message,
            ]
        )
        self.widget.add_class("wb-blotter")
        self._refresh_task: asyncio.Task[Any] | None = None
        self._refresh_again = False
        self.render()
        self.request_refresh()
        self._timer: asyncio.Task[None] | None = None
        if refresh_every:
            try:
                self._timer = asyncio.get_running_loop().create_task(self._refresh_forever(refresh_every))
            except RuntimeError:
                self._say("warn", "No event loop is running: balances refresh on events and on Refresh only.")

    @property
    def open_orders(self) -> list[Order]:
        """The session's open orders, oldest first."""
        return [o for o in self.session.orders.values() if o.is_open]

    def lists_of(self) -> dict[str, OrderList]:
        """The order list of each order that belongs to one (client order id -> its list)."""
        session = self.session
        return {cid: lst for lid, lst in session.order_lists.items() for cid in session.list_legs.get(lid, ())}

    def _list_rows(self, most: int = 20) -> list[list[str]]:
        """The session's order lists, newest first: id, type, status and each order's status."""
        rows = []
        for list_id, order_list in list(reversed(self.session.order_lists.items()))[:most]:
            orders = [self.session.orders.get(cid) for cid in self.session.list_legs.get(list_id, ())]
            states = ", ".join(f"{o.client_order_id} {o.type.value} {o.status.value}" for o in orders if o is not None)
            status = "SENT" if order_list.id < 0 and order_list.is_open else order_list.list_order_status.value
            rows.append([list_id, order_list.kind.value, status, states])
        return rows

    def render(self) -> None:
        """Redraw every table from what the panel knows (no I/O)."""
        self._show_halt()
        open_orders = self.open_orders
        lists_of = self.lists_of()
        for cid in list(self._rows):
            if cid not in {o.client_order_id for o in open_orders}:
                self._rows.pop(cid).close()
                self.cancel_buttons.pop(cid).close()
        for order in open_orders:
            cid = order.client_order_id
            if cid not in self._rows:
                button = widgets.Button(description="Cancel", icon="times", tooltip=f"Cancel {cid}")
                button.add_class("wb-cancel")
                button.on_click(lambda _, cid=cid: self._spawn(self.cancel(cid)))
                text = widgets.HTML()
                text.add_class("wb-order")
                self.cancel_buttons[cid] = button
                self._rows[cid] = widgets.HBox([button, text])
            text = describe_order(order) + _list_tag(lists_of.get(cid))
            self._rows[cid].children[1].value = html.escape(text)  # type: ignore[attr-defined]
        self.orders_box.children = [self._rows[o.client_order_id] for o in open_orders] or [
            widgets.HTML('<i style="color:#616161">No open orders.</i>')
        ]
        self.lists_html.value = _table(["list", "type", "status", "orders"], self._list_rows(), "No order lists.")
        self.fills_html.value = _table(
            ["time (UTC)", "order", "side", "quantity", "price", "fee"],
            [
                [
                    datetime.fromtimestamp(f.timestamp / 1000, UTC).strftime("%H:%M:%S"),
                    f.client_order_id,
                    f.side.value,
                    f"{plain(f.amount)} {f.symbol}",
                    plain(f.price),
                    f"{plain(f.fee)} {f.fee_currency}",
                ]
                for f in self.fills
            ],
            "No fills yet.",
        )
        state, marks = self.session.state, self.session.last_price
        rows = []
        for symbol, position in state.positions.items():
            if not position:
                continue
            cost, mark = state.avg_cost.get(symbol, Decimal(0)), marks.get(symbol)
            pnl = f"{position * (mark - cost):.2f}" if mark is not None else "no price yet"
            rows.append([symbol, plain(position), f"{cost:.2f}", plain(mark) if mark else "-", pnl])
        self.positions_html.value = _table(
            ["symbol", "position", "average cost", "mark", "unrealised PnL"], rows, "No positions."
        )
        self.balances_html.value = _table(
            ["asset", "free", "locked"],
            [[b.asset, plain(b.free), plain(b.locked)] for b in sorted(self.balances.values(), key=lambda b: b.asset)],
            "Balances appear after the first refresh.",
        )

    def request_refresh(self) -> None:
        """Fetch balances and marks soon; many requests while one runs make one more fetch."""
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_again = True
            return
        self._refresh_task = self._spawn(self._refresh_until_settled(), quiet=True)

    async def refresh(self) -> None:
        """Fetch balances and the last price of every symbol held, ordered or shown in a ticket; redraw."""
        session = self.session
        held = {symbol for symbol, position in session.state.positions.items() if position}
        symbols = (held | {o.symbol for o in self.open_orders} | self._hub.watched) & set(session.rules)
        try:
            self.balances = await session.executor.fetch_balance()
            for symbol in sorted(symbols):
                price = await session.executor.fetch_price(symbol)
                if price is not None:
                    session.last_price[symbol] = price
        except Exception as e:  # ccxt's network errors are not WorkbenchErrors
            self._say("error", f"Could not refresh balances and prices: {e}. Press Refresh to try again.")
        self.render()
        self._hub.prices_changed()

    async def cancel(self, client_order_id: str) -> Order | None:
        """Cancel one open order (its Cancel button); the cancel is written to the audit log first."""
        order = self.session.orders.get(client_order_id)
        if order is None or not order.is_open:
            self._say("warn", f"{client_order_id} is not open any more: nothing to cancel.")
            return None
        detail = {"client_order_id": client_order_id, "symbol": order.symbol, "text": describe_order(order)}
        self._audit("ui_cancel", detail)
        try:
            canceled = await self.session.cancel_order(client_order_id, order.symbol)
        except Exception as e:  # the venue may have filled it meanwhile; ccxt errors are not WorkbenchErrors
            self._say("error", f"Could not cancel {client_order_id}: {e}. It may have filled; press Refresh.")
            return None
        self._say("ok", f"Canceled {client_order_id}: it is {canceled.status.value}.")
        self.render()
        return canceled

    async def cancel_all(self) -> list[Order]:
        """Cancel every open order of the session's symbols (the *Cancel all* button), audited first."""
        orders = [describe_order(o) for o in self.open_orders]
        self._audit("ui_cancel", {"all": True, "text": f"cancel all {len(orders)} open order(s)", "orders": orders})
        try:
            canceled = await self.session.cancel_all_orders()
        except Exception as e:  # ccxt errors are not WorkbenchErrors
            self._say("error", f"Cancel all failed part way: {e}. Press Refresh, then cancel what is left.")
            return []
        self._say("ok", f"Canceled {len(canceled)} order(s).")
        self.render()
        return canceled

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().close()

    def _on_execution(self, event: Execution) -> None:
        if event.fill is not None:
            self.fills.appendleft(event.fill)
        self.render()
        if event.fill is not None or not event.order.is_open:
            self.request_refresh()

    def _on_halt(self) -> None:
        self.render()

    async def _refresh_until_settled(self) -> None:
        while True:
            self._refresh_again = False
            await self.refresh()
            if not self._refresh_again:
                return

    async def _refresh_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.request_refresh()


def _list_tag(order_list: OrderList | None) -> str:
    return "" if order_list is None else f" · {order_list.kind.value} {order_list.list_client_order_id}"
