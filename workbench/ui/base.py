"""What every panel shares: words for orders, small HTML helpers, the per-session hub that hands
executor events and clicks to the session's loop, and the panel base class."""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import ipywidgets as widgets

from workbench.filters import SymbolRules, plain
from workbench.matching import Execution
from workbench.model import Order, OrderListRequest, OrderRequest
from workbench.session import TradingSession
from workbench.ui.banner import halted_html, mode_banner

log = logging.getLogger(__name__)


def describe_request(request: OrderRequest, rules: SymbolRules) -> str:
    """One line saying exactly what ``request`` asks for, e.g. ``BUY 0.001 BTC on BTC/USDT LIMIT at 48000 GTC``."""
    return f"{request.side.value.upper()} {_size(request, rules)} on {request.symbol} {describe_terms(request)}"


def describe_list_request(request: OrderListRequest, rules: SymbolRules) -> str:
    """One line for an order list, e.g. ``OCO SELL 0.01 BTC on BTC/USDT: LIMIT_MAKER at 52000 +
    STOP_LOSS_LIMIT at 47500 stop 48000 GTC``."""
    first = request.orders[0]
    legs = " + ".join(describe_terms(leg) for leg in request.orders)
    return (
        f"{request.contingency_type.value} {first.side.value.upper()} {_size(first, rules)} on {request.symbol}: {legs}"
    )


def describe_terms(request: OrderRequest) -> str:
    """The type, prices, trailing delta and time in force of ``request``, e.g. ``LIMIT at 48000 GTC``."""
    parts = [request.type.value]
    if request.price is not None:
        parts.append(f"at {plain(request.price)}")
    if request.stop_price is not None:
        parts.append(f"stop {plain(request.stop_price)}")
    if request.trailing_delta is not None:
        parts.append(f"trailing {request.trailing_delta} bips")
    if request.time_in_force is not None:
        parts.append(request.time_in_force.value)
    return " ".join(parts)


def _size(request: OrderRequest, rules: SymbolRules) -> str:
    if request.amount is not None:
        return f"{plain(request.amount)} {rules.base}"
    return f"{plain(request.quote_amount)} {rules.quote} of {rules.base}"  # type: ignore[arg-type]


def describe_order(order: Order) -> str:
    """One line for an order in the blotter: id, side, size, symbol, type, price, status, filled."""
    size = plain(order.amount) if order.amount is not None else f"{plain(order.quote_amount or 0)} (quote)"
    text = f"{order.client_order_id}: {order.side.value.upper()} {size} {order.symbol} {order.type.value}"
    if order.price is not None:
        text += f" at {plain(order.price)}"
    if order.stop_price is not None:
        text += f" stop {plain(order.stop_price)}"
    return f"{text} · {order.status.value} · filled {plain(order.filled)}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _message(kind: str, text: str) -> str:
    colour = {"ok": "#1b5e20", "info": "#0d47a1", "warn": "#e65100", "error": "#b71c1c"}[kind]
    return f'<div style="color:{colour};white-space:pre-wrap">{html.escape(text)}</div>'


def _table(header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<div style="color:#616161"><i>{html.escape(empty)}</i></div>'
    head = "".join(f'<th style="text-align:left;padding:1px 8px">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding:1px 8px;white-space:nowrap">{html.escape(c)}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;font-size:0.95em"><tr>{head}</tr>{body}</table>'


# -- shared plumbing ------------------------------------------------------------------------------


Work = asyncio.Future[Any] | concurrent.futures.Future[Any]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _call(action: Callable[..., Any], *args: Any) -> Any:
    return action(*args)


class _Hub:
    """One per session: subscribes once to the executor and the kill switch and passes what happens
    to the session's panels, on the thread and event loop the first panel was made on (the
    session's loop: in Jupyter the kernel's, where cells run and ccxt's client lives)."""

    def __init__(self, session: TradingSession) -> None:
        self.loop = _running_loop()
        self.thread = threading.get_ident()
        self.watched: set[str] = set()  # symbols a ticket shows: their prices are refreshed with the balances
        self._panels: list[weakref.ref[_Panel]] = []
        session.executor.subscribe(self._on_execution)
        session.kill_switch.on_trip(self._on_trip)

    def add(self, panel: _Panel) -> None:
        self._panels.append(weakref.ref(panel))

    def halt_changed(self) -> None:
        self._call(lambda panel: panel._on_halt())

    def prices_changed(self) -> None:
        self._call(lambda panel: panel._on_prices())

    def _on_execution(self, event: Execution) -> None:
        self._call(lambda panel: panel._on_execution(event))

    def _on_trip(self, reason: str) -> None:
        self.halt_changed()

    def _call(self, action: Callable[[_Panel], None]) -> None:
        loop = self.loop
        if loop is not None and threading.get_ident() != self.thread and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, action)  # widgets change on their own loop only
        else:
            self._deliver(action)

    def _deliver(self, action: Callable[[_Panel], None]) -> None:
        alive = []
        for ref in self._panels:
            panel = ref()
            if panel is None:
                continue
            alive.append(ref)
            try:
                action(panel)
            except Exception:  # a panel must never break the executor's event stream
                log.exception("A trading panel failed to update")
        self._panels = alive


_hubs: weakref.WeakKeyDictionary[TradingSession, _Hub] = weakref.WeakKeyDictionary()


def _hub_for(session: TradingSession) -> _Hub:
    hub = _hubs.get(session)
    if hub is None:
        hub = _hubs[session] = _Hub(session)
    elif hub.loop is None and (loop := _running_loop()) is not None:  # earlier panels were made outside a loop
        hub.loop, hub.thread = loop, threading.get_ident()
    return hub


class _Panel:
    """What every panel shares: the session, the mode banner and HALTED bar, tasks, the audit log."""

    widget: widgets.Box

    def __init__(self, session: TradingSession, *, header: bool = True) -> None:
        self.session = session
        self._header = header
        self.banner = mode_banner(session)
        self.halted_bar = widgets.HTML()
        self.halted_bar.add_class("wb-halted")
        self.message = widgets.HTML()
        self.message.add_class("wb-message")
        self._tasks: set[Work] = set()  # on the session's loop; added to from any thread
        self._hub = _hub_for(session)
        self._hub.add(self)
        self._show_halt()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _head(self) -> list[widgets.Widget]:
        return [self.banner, self.halted_bar] if self._header else []

    @property
    def halted(self) -> bool:
        """Whether the session's kill switch is tripped (no new orders)."""
        return self.session.kill_switch.tripped

    async def wait(self) -> None:
        """Wait until the work this panel's buttons started has finished (on any thread's click)."""
        while pending := [t for t in tuple(self._tasks) if not t.done()]:
            await asyncio.gather(*map(asyncio.wrap_future, pending), return_exceptions=True)

    def close(self) -> None:
        """Stop this panel's background work and close its widgets."""
        for task in tuple(self._tasks):
            task.cancel()
        self.widget.close()

    # -- for subclasses ---------------------------------------------------------------------------

    def _on_execution(self, event: Execution) -> None:
        """An order or fill event from the executor (on the panel's loop)."""

    def _on_halt(self) -> None:
        self._show_halt()

    def _on_prices(self) -> None:
        """``session.last_price`` changed (a blotter refreshed it)."""

    def _show_halt(self) -> None:
        tripped = self.halted
        self.halted_bar.value = halted_html(self.session.kill_switch.reason) if tripped else ""
        self.halted_bar.layout.display = None if tripped else "none"

    def _say(self, kind: str, text: str) -> None:
        self.message.value = _message(kind, text)

    def _spawn(self, work: Coroutine[Any, Any, Any], *, quiet: bool = False) -> Work | None:
        """Run ``work`` on the session's loop (the loop the session's first panel was made on), whatever
        thread calls: JupyterLab delivers widget messages on a kernel subshell, a thread with its own
        loop, where ccxt's rate limiter would wait forever. ``await panel.wait()`` waits for it.
        Without a running loop, background work (``quiet``) is skipped; a button's work says why."""
        here = _running_loop()
        loop = self._hub.loop if self._hub.loop is not None and not self._hub.loop.is_closed() else here
        future: Work
        if loop is not None and loop is here:
            future = loop.create_task(work)
        elif loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(work, loop)
        else:
            work.close()
            if not quiet:
                self._say(
                    "error",
                    "No event loop is running here: use the panels in Jupyter, or await their methods "
                    "(e.g. await ticket.send()) in async code.",
                )
            return None
        self._tasks.add(future)
        future.add_done_callback(self._finished)
        return future

    def _soon(self, action: Callable[..., Any], *args: Any) -> None:
        """Call ``action(*args)`` now on the session's loop, or hand it there from another thread."""
        loop = self._hub.loop
        if loop is None or loop is _running_loop() or not loop.is_running():
            action(*args)
        else:
            self._spawn(_call(action, *args))

    def _finished(self, task: Work) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("A trading panel's action failed", exc_info=error)
            self._say("error", f"Unexpected error: {error!r}. Nothing more was done; see the log, then try again.")

    def _audit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.session.store.audit(
            kind, {"at": _now_iso(), **detail}, session_id=self.session.session_id, mode=self.session.mode
        )
