"""Notebook trading panels (ipywidgets): the mode banner, an order ticket with its confirmation, a
live blotter and the emergency stop; :class:`TradingPanel` puts them together. The only module of
the package that imports widgets.

Every panel shows the session's mode and, while the kill switch is tripped, a HALTED bar. All panel
work runs on the session's event loop, the loop the session's first panel was made on (the kernel's,
in Jupyter), whatever thread a click, a typed value or an executor event arrives on; ``await
panel.wait()`` waits for the work buttons started. Importing this module makes IPython display a
session as its mode banner (:func:`show_banners`); the session never imports the UI.

Every confirmation, refusal and cancel made in a panel is written to the store's audit log (kinds
``ui_confirm``, ``ui_refuse``, ``ui_dismiss``, ``ui_cancel``, ``ui_emergency_stop``,
``ui_clear_halt``) with the time and the summary confirmed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import ipywidgets as widgets
from IPython import get_ipython

from workbench.config import TradingMode
from workbench.data import load_klines
from workbench.errors import ExchangeError, OrderRejected, WorkbenchError
from workbench.filters import SymbolRules, plain
from workbench.matching import Execution
from workbench.model import Balance, Fill, Order, OrderRequest, OrderType, Side, TimeInForce
from workbench.risk import CheckResult, order_notional
from workbench.session import EmergencyReport, TradingSession

__all__ = [
    "Blotter",
    "EmergencyStopButton",
    "ModeStyle",
    "OrderTicket",
    "Review",
    "TradingPanel",
    "banner_html",
    "describe_order",
    "describe_request",
    "mode_banner",
    "show_banners",
]

log = logging.getLogger(__name__)


# -- the mode banner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeStyle:
    """How a mode looks: its colours, its title and the sentence that says what an order does there."""

    background: str
    colour: str
    title: str
    words: str


MODE_STYLES: dict[TradingMode, ModeStyle] = {
    TradingMode.PAPER: ModeStyle(
        "#1565c0", "#ffffff", "PAPER", "Simulated fills in this kernel: no order leaves this machine."
    ),
    TradingMode.TESTNET: ModeStyle(
        "#e65100",
        "#ffffff",
        "TESTNET",
        "Orders go to a test exchange with test funds: the real API, no real money. Each order needs a Confirm click.",
    ),
    TradingMode.MAINNET: ModeStyle(
        "#b71c1c",
        "#ffffff",
        "MAINNET: REAL MONEY",
        "Orders go to Binance and spend real money. Each order needs its symbol and quantity typed back.",
    ),
}

# Buy and sell never look alike: green buys, red sells (colour, button style).
SIDE_COLOURS: dict[Side, str] = {Side.BUY: "#1b5e20", Side.SELL: "#b71c1c"}
SIDE_BUTTONS: dict[Side, str] = {Side.BUY: "success", Side.SELL: "danger"}

_HALTED_STYLE = "background:#212121;color:#ffeb3b;padding:6px 10px;border-radius:4px;font-weight:bold"


def account_name(session: TradingSession) -> str:
    """The account a session trades in, as the banner names it (never a key)."""
    return getattr(session.executor, "account", None) or f"{session.mode} account (simulated balances)"


def banner_html(session: TradingSession) -> str:
    """The mode banner of ``session`` as HTML: mode, what an order does there, venue URL, account and
    session id. Never an API key."""
    style = MODE_STYLES[session.mode]
    mainnet = session.mode is TradingMode.MAINNET
    border = "border:6px solid #ffeb3b;" if mainnet else ""
    size = "1.6em" if mainnet else "1.15em"
    mark = "&#9888; " if mainnet else ""
    venue, account = html.escape(str(session.executor.venue)), html.escape(account_name(session))
    return (
        f'<div style="background:{style.background};color:{style.colour};padding:6px 10px;border-radius:4px;'
        f'{border}line-height:1.4">'
        f'<span style="font-size:{size};font-weight:bold;letter-spacing:0.05em">{mark}{style.title}</span>'
        f" &mdash; {html.escape(style.words)}<br>"
        f'<span style="font-family:monospace">venue {venue} &middot; account {account} &middot; '
        f"session {html.escape(session.session_id)}</span></div>"
    )


def mode_banner(session: TradingSession) -> widgets.HTML:
    """A banner that makes ``session``'s mode impossible to miss: blue PAPER, orange TESTNET, red
    MAINNET with a yellow frame; with the venue URL and the account, never an API key."""
    banner = widgets.HTML(banner_html(session), layout=widgets.Layout(width="100%"))
    banner.add_class("wb-banner")
    banner.add_class(f"wb-mode-{session.mode.value}")
    return banner


def show_banners(shell: Any = None) -> bool:
    """Make IPython (Jupyter, nbval, papermill) display every :class:`TradingSession` as its mode
    banner; done when this module is imported. Returns whether an IPython shell was there to tell."""
    shell = shell if shell is not None else get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(TradingSession, banner_html)
    return True


def halted_html(reason: str) -> str:
    """The HALTED bar's HTML for a kill switch tripped for ``reason``."""
    return (
        f'<div style="{_HALTED_STYLE}">HALTED: the kill switch is tripped ({html.escape(reason)}). '
        "New orders are refused everywhere until it is cleared: press <i>Clear kill switch</i> on the "
        "emergency stop panel, or run <code>workbench kill-switch clear</code>.</div>"
    )


# -- words for orders -----------------------------------------------------------------------------


def describe_request(request: OrderRequest, rules: SymbolRules) -> str:
    """One line saying exactly what ``request`` asks for, e.g. ``BUY 0.001 BTC on BTC/USDT LIMIT at 48000 GTC``."""
    if request.amount is not None:
        size = f"{plain(request.amount)} {rules.base}"
    else:
        size = f"{plain(request.quote_amount)} {rules.quote} of {rules.base}"  # type: ignore[arg-type]
    parts = [request.side.value.upper(), size, "on", request.symbol, request.type.value]
    if request.price is not None:
        parts.append(f"at {plain(request.price)}")
    if request.stop_price is not None:
        parts.append(f"stop {plain(request.stop_price)}")
    if request.time_in_force is not None:
        parts.append(request.time_in_force.value)
    return " ".join(parts)


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


# -- the order ticket -----------------------------------------------------------------------------

# Which fields each order type uses.
_USES: dict[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset({"amount", "quote_amount"}),
    OrderType.LIMIT: frozenset({"amount", "price", "time_in_force"}),
    OrderType.LIMIT_MAKER: frozenset({"amount", "price"}),
    OrderType.STOP_LOSS_LIMIT: frozenset({"amount", "price", "stop_price", "time_in_force"}),
    OrderType.TAKE_PROFIT_LIMIT: frozenset({"amount", "price", "stop_price", "time_in_force"}),
}
_LABELS = {"amount": "quantity", "quote_amount": "quote amount", "price": "price", "stop_price": "stop price"}


@dataclass
class Review:
    """What the ticket would send and what stands in its way: ``problems`` (each saying what to do),
    rounding ``hints`` with their ``suggestions`` (field -> value) and every risk check's result."""

    request: OrderRequest | None
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    suggestions: dict[str, str] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    last_price: Decimal | None = None

    @property
    def ok(self) -> bool:
        """Whether the order may be sent as it stands."""
        return self.request is not None and not self.problems


class OrderTicket(_Panel):
    """An order ticket for ``session``: symbol, side, type, quantity or quote amount, price, stop price
    and time in force.

    Fields are checked as they change against the symbol's exchange filters (with tick- and
    step-rounded suggestions) and every risk check's result is previewed. *Send* sends a paper
    order at once; a testnet order waits for a *Confirm* click on its summary; a mainnet order also
    needs its symbol and quantity typed back. Confirmations and refusals go to the audit log.
    """

    def __init__(self, session: TradingSession, *, header: bool = True) -> None:
        symbols = list(session.rules)
        wide = {"description_width": "100px"}
        self.symbol = widgets.Dropdown(options=symbols, value=symbols[0], description="Symbol", style=wide)
        self.side = widgets.ToggleButtons(options=["buy", "sell"], value="buy", description="Side", style=wide)
        self.type = widgets.Dropdown(
            options=[t.value for t in OrderType], value=OrderType.LIMIT.value, description="Type", style=wide
        )
        self.amount = widgets.Text(description="Quantity", placeholder="base quantity, e.g. 0.001", style=wide)
        self.quote_amount = widgets.Text(
            description="Quote amount", placeholder="MARKET only, instead of a quantity", style=wide
        )
        self.price = widgets.Text(description="Price", placeholder="limit price", style=wide)
        self.stop_price = widgets.Text(description="Stop price", placeholder="trigger price", style=wide)
        self.time_in_force = widgets.Dropdown(
            options=[t.value for t in TimeInForce], value="GTC", description="Time in force", style=wide
        )
        self.last_price = widgets.HTML()
        self.refresh_price_button = widgets.Button(description="Refresh price", icon="refresh")
        self.hints = widgets.HTML()
        self.apply_button = widgets.Button(description="Use rounded values", icon="magic")
        self.preview = widgets.HTML()
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.confirm_summary = widgets.HTML()
        self.confirm_symbol = widgets.Text(description="Type symbol", placeholder="e.g. BTC/USDT", style=wide)
        self.confirm_quantity = widgets.Text(description="Type quantity", placeholder="as in the summary", style=wide)
        mainnet = session.mode is TradingMode.MAINNET
        self.confirm_button = widgets.Button(
            description="Confirm: send it", button_style="danger" if mainnet else "warning", icon="check"
        )
        self.back_button = widgets.Button(description="Back: do not send", icon="times")
        super().__init__(session, header=header)
        for name in ("symbol", "side", "type", "amount", "quote_amount", "price", "stop_price", "time_in_force"):
            getattr(self, name).add_class(f"wb-{name.replace('_', '-')}")
        for widget, css in (
            (self.last_price, "wb-last-price"),
            (self.hints, "wb-hints"),
            (self.apply_button, "wb-apply"),
            (self.preview, "wb-preview"),
            (self.send_button, "wb-send"),
            (self.confirm_summary, "wb-confirm-summary"),
            (self.confirm_symbol, "wb-confirm-symbol"),
            (self.confirm_quantity, "wb-confirm-quantity"),
            (self.confirm_button, "wb-confirm"),
            (self.back_button, "wb-back"),
        ):
            widget.add_class(css)
        typed = [self.confirm_symbol, self.confirm_quantity] if mainnet else []
        self.confirmation = widgets.VBox(
            [self.confirm_summary, *typed, widgets.HBox([self.confirm_button, self.back_button])],
            layout=widgets.Layout(display="none", border="2px solid " + MODE_STYLES[session.mode].background,
                                  padding="6px"),
        )  # fmt: skip
        self.confirmation.add_class("wb-confirmation")
        self.widget = widgets.VBox(
            [
                *self._head(),
                widgets.HTML("<b>Order ticket</b>"),
                self.symbol,
                self.side,
                self.type,
                self.amount,
                self.quote_amount,
                self.price,
                self.stop_price,
                self.time_in_force,
                widgets.HBox([self.last_price, self.refresh_price_button]),
                self.hints,
                self.apply_button,
                widgets.HTML("<b>Risk preview</b>"),
                self.preview,
                self.send_button,
                self.confirmation,
                self.message,
            ],
            layout=widgets.Layout(width="520px"),
        )
        self.widget.add_class("wb-ticket")
        self.pending: OrderRequest | None = None
        self.pending_summary: dict[str, Any] = {}
        self.sent: list[Order] = []
        self._busy = False
        for name in ("symbol", "side", "type", "amount", "quote_amount", "price", "stop_price", "time_in_force"):
            getattr(self, name).observe(lambda change: self._soon(self._changed, change), names="value")
        self.send_button.on_click(lambda _: self._spawn(self.send()))
        self.confirm_button.on_click(lambda _: self._spawn(self.confirm()))
        self.back_button.on_click(lambda _: self._soon(self.dismiss))
        self.apply_button.on_click(lambda _: self._soon(self.apply_suggestions))
        self.refresh_price_button.on_click(lambda _: self._spawn(self.refresh_price()))
        self._hub.watched.add(self.symbol.value)
        self.update()
        if self.symbol.value not in session.last_price:
            self._spawn(self.refresh_price(), quiet=True)

    # -- reviewing --------------------------------------------------------------------------------

    def review(self) -> Review:
        """Check the ticket as it stands: parse the fields, build the request, suggest tick and step
        rounding and run every risk check against the last known price."""
        symbol = self.symbol.value
        rules = self.session.rules[symbol]
        order_type = OrderType(self.type.value)
        uses = _USES[order_type]
        review = Review(None, last_price=self.session.last_price.get(symbol))
        if self.halted:
            review.problems.append(
                f"HALTED ({self.session.kill_switch.reason}): no new orders until the kill switch is cleared."
            )
        values: dict[str, Decimal | None] = {}
        unreadable = False
        for name in ("amount", "quote_amount", "price", "stop_price"):
            text = getattr(self, name).value.strip() if name in uses else ""
            values[name] = None
            if text:
                try:
                    number = Decimal(text)
                except InvalidOperation:
                    number = Decimal("NaN")
                if not number.is_finite() or number <= 0:
                    review.problems.append(f"The {_LABELS[name]} {text!r} is not a positive number: type e.g. 0.001.")
                    unreadable = True
                else:
                    values[name] = number
        self._rounding_hints(review, rules, order_type, Side(self.side.value), values)
        if "price" in uses and not self.price.value.strip():
            last = f" (the last price is {plain(review.last_price)})" if review.last_price is not None else ""
            review.problems.append(f"The price field is empty: type the limit price{last}.")
            return review
        if unreadable:
            return review
        try:
            review.request = OrderRequest(
                symbol,
                self.side.value,
                order_type,
                amount=values["amount"],
                price=values["price"],
                stop_price=values["stop_price"],
                time_in_force=self.time_in_force.value if "time_in_force" in uses else None,
                quote_amount=values["quote_amount"],
            )
        except OrderRejected as e:
            fix = {
                "required": f" Fill in the {_LABELS.get(e.field or '', e.field)} field.",
                "market_quantity": " Fill in either the quantity or the quote amount, and clear the other.",
            }.get(e.rule or "", "")
            review.problems.append(f"{e}{fix}")
            return review
        if review.last_price is None:
            review.problems.append(f"No price for {symbol} yet: press Refresh price (the checks need one).")
            return review
        context = self.session.risk_context(symbol, review.last_price)
        review.checks = self.session.risk.evaluate(review.request, context)
        review.problems += [f"{c.name}: {c.detail}" for c in review.checks if not c.passed and c.name != "kill_switch"]
        return review

    @staticmethod
    def _rounding_hints(
        review: Review, rules: SymbolRules, order_type: OrderType, side: Side, values: Mapping[str, Decimal | None]
    ) -> None:
        market = order_type is OrderType.MARKET
        prices = rules.filter("PRICE_FILTER") or {}
        tick, low = prices.get("tickSize") or Decimal(0), prices.get("minPrice") or Decimal(0)
        for name in ("price", "stop_price"):
            value = values.get(name)
            if value is not None and tick and (value - low) % tick:  # type: ignore[operator]
                rounded = max(rules.round_price(value), tick)  # type: ignore[type-var]
                review.hints.append(
                    f"The {_LABELS[name]} {plain(value)} is not a multiple of the tick size {plain(tick)}: "
                    f"use {plain(rounded)}."
                )
                review.suggestions[name] = plain(rounded)
        amount = values.get("amount")
        if amount is None:
            return
        lot = rules.filter("LOT_SIZE") or {}
        step, minimum = rules.step_size(market), lot.get("minQty") or Decimal(0)
        rounded = rules.round_amount(amount, market)
        if rounded != amount:
            review.hints.append(
                f"The quantity {plain(amount)} is not a multiple of the step size {plain(step)}: "
                f"use {plain(rounded)} (rounded down)."
            )
        if minimum and rounded < minimum:  # type: ignore[operator]
            review.hints.append(f"The quantity is below the minimum {plain(minimum)}: use {plain(minimum)}.")
            rounded = minimum  # type: ignore[assignment]
        price = review.last_price if market else _sane_price(review, rules, side, values.get("price"))
        notional = rules.filter("NOTIONAL") or rules.filter("MIN_NOTIONAL") or {}
        applies = not market or notional.get("applyMinToMarket", notional.get("applyToMarket", True))
        least = notional.get("minNotional")
        if price and least and applies and rounded * price < least:  # type: ignore[operator]
            needed = least / price  # type: ignore[operator]
            if step:
                needed = (needed / step).quantize(Decimal(1), rounding=ROUND_CEILING) * step
            review.hints.append(
                f"The order's value {plain(rounded * price)} is below the minimum notional {plain(least)}: "
                f"use a quantity of at least {plain(needed)}."
            )
            rounded = needed
        if rounded != amount:
            review.suggestions["amount"] = plain(rounded)

    def apply_suggestions(self) -> dict[str, str]:
        """Put the rounded values the review suggests into the fields; returns what changed."""
        suggestions = self.review().suggestions
        for name, value in suggestions.items():
            getattr(self, name).value = value
        return suggestions

    def update(self) -> Review:
        """Redraw the ticket from its fields: enabled fields, hints, risk preview and Send's state."""
        order_type = OrderType(self.type.value)
        uses = _USES[order_type]
        for name in ("amount", "quote_amount", "price", "stop_price", "time_in_force"):
            getattr(self, name).disabled = name not in uses
        symbol = self.symbol.value
        last = self.session.last_price.get(symbol)
        self.price.placeholder = f"limit price (last {plain(last)})" if last is not None else "limit price"
        side = Side(self.side.value)
        self.side.button_style = self.send_button.button_style = SIDE_BUTTONS[side]
        self.send_button.description = f"Send {side.value.upper()}"
        for other in Side:
            (self.widget.add_class if other is side else self.widget.remove_class)(f"wb-side-{other.value}")
        review = self.review()
        self._show_halt()
        self.last_price.value = (
            f"Last price of {html.escape(symbol)}: <b>{plain(last)}</b>"
            if last is not None
            else f"No price for {html.escape(symbol)} yet."
        )
        lines = [f'<li style="color:#b71c1c">{html.escape(p)}</li>' for p in review.problems]
        lines += [f'<li style="color:#e65100">{html.escape(h)}</li>' for h in review.hints]
        self.hints.value = f'<ul style="margin:2px 0">{"".join(lines)}</ul>' if lines else ""
        self.apply_button.layout.display = None if review.suggestions else "none"
        rows = "".join(
            f'<tr><td style="color:{"#1b5e20" if c.passed else "#b71c1c"};padding:0 6px">'
            f'{"&#10003;" if c.passed else "&#10007;"}</td><td style="padding:0 6px">{html.escape(c.name)}</td>'
            f'<td style="padding:0 6px">{html.escape(c.detail)}</td></tr>'
            for c in review.checks
        )
        self.preview.value = (
            f'<table style="font-size:0.9em">{rows}</table>'
            if rows
            else '<i style="color:#616161">Every check\'s result appears here once the ticket is complete.</i>'
        )
        self.send_button.disabled = not review.ok or self._busy
        return review

    def _changed(self, change: Mapping[str, Any]) -> None:
        if self.pending is not None:
            self.dismiss("The ticket changed after Send: review it and press Send again.")
        if change.get("owner") is self.symbol:
            self._hub.watched.add(self.symbol.value)
            if self.symbol.value not in self.session.last_price:
                self._spawn(self.refresh_price(), quiet=True)
        self.update()

    async def refresh_price(self) -> Decimal | None:
        """Ask the venue for the symbol's last price and review the ticket against it."""
        symbol = self.symbol.value
        try:
            price = await self.session.executor.fetch_price(symbol)
            if price is None and self.session.mode is TradingMode.PAPER:
                price = await self._start_paper_market(symbol)
        except Exception as e:  # ccxt's network errors are not WorkbenchErrors
            self._say(
                "error", f"Could not fetch the price of {symbol}: {e}. Check the venue, then press Refresh price."
            )
            return None
        if price is None:
            self._say("warn", f"The venue has no price for {symbol} yet: feed a bar or wait for a trade, then retry.")
        else:
            self.session.last_price[symbol] = price
        self.update()
        return price

    async def _start_paper_market(self, symbol: str) -> Decimal:
        """A paper venue without a price starts at the close of the latest bundled bar of ``symbol``."""
        bars = await asyncio.to_thread(load_klines, symbol, allow_sample=True)
        bar = bars.iloc[-1]
        price = Decimal(str(bar["close"]))
        self.session.executor.update_price(symbol, price, int(bar["close_time"].timestamp() * 1000))
        self._say(
            "info",
            f"The paper market of {symbol} starts at {plain(price)}, the close of the latest bar of "
            f"{bars.attrs.get('source', 'the bundled klines')} ({bar['close_time']:%Y-%m-%d %H:%M} UTC).",
        )
        return price

    # -- sending ----------------------------------------------------------------------------------

    def summary_of(self, request: OrderRequest, last_price: Decimal | None) -> dict[str, Any]:
        """What a confirmation shows and the audit log records: the order, its estimated value, mode and venue."""
        rules = self.session.rules[request.symbol]
        estimate = order_notional(request, last_price) if last_price is not None else None
        return {
            "text": describe_request(request, rules),
            "symbol": request.symbol,
            "side": request.side.value,
            "type": request.type.value,
            "amount": plain(request.amount) if request.amount is not None else None,
            "quote_amount": plain(request.quote_amount) if request.quote_amount is not None else None,
            "price": plain(request.price) if request.price is not None else None,
            "stop_price": plain(request.stop_price) if request.stop_price is not None else None,
            "time_in_force": request.time_in_force.value if request.time_in_force else None,
            "last_price": plain(last_price) if last_price is not None else None,
            "estimated_notional": f"{estimate:.2f} {rules.quote}" if estimate is not None else None,
            "mode": self.session.mode.value,
            "venue": str(self.session.executor.venue),
        }

    async def send(self) -> Order | None:
        """Review the ticket, then send a paper order at once, or open the confirmation (testnet: a
        click; mainnet: the symbol and quantity typed back). Returns the order if it was sent."""
        if self._busy:
            self._say("warn", "Still working on the last order: wait for its answer.")
            return None
        self._busy = True
        try:
            self.dismiss(audit=False)
            if self.session.mode.is_real or self.symbol.value not in self.session.last_price:
                await self.refresh_price()  # review against the venue's price of now
            review = self.update()
            if not review.ok:
                reason = review.problems[0] if review.problems else "the ticket is incomplete"
                self._refuse(f"Not sent: {reason}", self._draft_summary(review))
                return None
            request = review.request
            assert request is not None
            summary = self.summary_of(request, review.last_price)
            if self.session.mode is TradingMode.PAPER:
                self._audit("ui_confirm", {"confirmation": "none: paper orders go straight through", **summary})
                return await self._submit(request, summary)
            self.pending, self.pending_summary = request, summary
            self._open_confirmation(summary)
            return None
        finally:
            self._busy = False
            self.update()

    async def confirm(self) -> Order | None:
        """Send the order under review if it is confirmed: a click in testnet; in mainnet only when the
        symbol and quantity typed back match it exactly. Returns the order if it was sent."""
        request, summary = self.pending, self.pending_summary
        if request is None:
            self._say("warn", "Nothing to confirm: fill in the ticket and press Send first.")
            return None
        typed: dict[str, str] = {}
        if self.session.mode is TradingMode.MAINNET:
            typed = {"symbol": self.confirm_symbol.value, "quantity": self.confirm_quantity.value}
            mismatch = _typed_mismatch(request, typed["symbol"], typed["quantity"])
            if mismatch:
                self._refuse(mismatch, summary, typed=typed)
                return None  # the confirmation stays open: type again
        self.pending, self.pending_summary = None, {}
        self._close_confirmation()
        if self.halted:
            self._refuse(f"Not sent: HALTED ({self.session.kill_switch.reason}); clear the kill switch first.", summary)
            return None
        how = "typed symbol and quantity" if typed else "Confirm click"
        self._audit("ui_confirm", {"confirmation": how, **({"typed": typed} if typed else {}), **summary})
        return await self._submit(request, summary)

    def dismiss(self, reason: str = "Not sent: you went back to the ticket.", *, audit: bool = True) -> None:
        """Close the confirmation without sending (the *Back* button)."""
        if self.pending is None:
            self._close_confirmation()
            return
        summary = self.pending_summary
        self.pending, self.pending_summary = None, {}
        self._close_confirmation()
        if audit:
            self._audit("ui_dismiss", {"reason": reason, **summary})
            self._say("info", reason)

    async def _submit(self, request: OrderRequest, summary: Mapping[str, Any]) -> Order | None:
        self._say("info", f"Sending {summary['text']}…")
        try:
            order = await self.session.submit(request)
        except OrderRejected as e:
            self._say("error", f"The order was refused: {e}")
            return None
        except ExchangeError as e:
            self._say("error", f"{e} Check the blotter before sending it again.")
            return None
        except WorkbenchError as e:
            self._say("error", f"The order could not be sent: {e}")
            return None
        self.sent.append(order)
        self._say("ok", f"Sent {summary['text']}: order {order.client_order_id} is {order.status.value}.")
        return order

    def _refuse(self, reason: str, summary: Mapping[str, Any], **extra: Any) -> None:
        self._audit("ui_refuse", {"reason": reason, **extra, **summary})
        self._say("error", reason)

    def _draft_summary(self, review: Review) -> dict[str, Any]:
        if review.request is not None:
            return self.summary_of(review.request, review.last_price)
        fields = ("symbol", "side", "type", "amount", "quote_amount", "price", "stop_price", "time_in_force")
        return {"text": "incomplete ticket", **{name: str(getattr(self, name).value) for name in fields}}

    def _open_confirmation(self, summary: Mapping[str, Any]) -> None:
        style = MODE_STYLES[self.session.mode]
        rows = [
            [_LABELS.get(k, k).replace("_", " "), str(v)] for k, v in summary.items() if v is not None and k != "text"
        ]
        if self.session.mode is TradingMode.MAINNET:
            quantity = summary["amount"] or summary["quote_amount"]
            ask = (
                f"REAL MONEY. To send it, type the symbol ({summary['symbol']}) and the quantity ({quantity}) "
                "below exactly, then press Confirm."
            )
        else:
            ask = "Check the summary, then press Confirm to send exactly this, or Back to change it."
        self.confirm_symbol.value = self.confirm_quantity.value = ""
        side = Side(summary["side"])
        self.confirm_summary.value = (
            f'<div style="background:{style.background};color:{style.colour};padding:4px 8px;font-weight:bold">'
            f"{html.escape(style.title)}: about to send "
            f'<span class="wb-side-badge" style="background:{SIDE_COLOURS[side]};color:#ffffff;padding:1px 8px;'
            f'border-radius:3px;border:1px solid #ffffff">{side.value.upper()}</span> '
            f"{html.escape(summary['text'])}</div>"
            + _table(["field", "value"], rows, "")
            + f"<div><b>{html.escape(ask)}</b></div>"
        )
        self.confirmation.layout.display = None
        self._say("info", ask)

    def _close_confirmation(self) -> None:
        self.confirmation.layout.display = "none"

    def _on_halt(self) -> None:
        super()._on_halt()
        self.update()

    def _on_prices(self) -> None:
        self.update()

    def _on_execution(self, event: Execution) -> None:
        self.update()  # open orders, position and order rate feed the risk preview


def _sane_price(review: Review, rules: SymbolRules, side: Side, price: Decimal | None) -> Decimal | None:
    """``price`` if a quantity may be sized at it: known, and inside the band around the last price
    that the exchange allows (PERCENT_PRICE_BY_SIDE); else ``None``, with a hint saying why."""
    last = review.last_price
    band = rules.filter("PERCENT_PRICE_BY_SIDE")
    if price is None or last is None or band is None:
        return price if last is not None else None
    key = "bid" if side is Side.BUY else "ask"
    low, high = last * band[f"{key}MultiplierDown"], last * band[f"{key}MultiplierUp"]  # type: ignore[operator]
    if low <= price <= high:
        return price
    review.hints.append(
        f"The price {plain(price)} is outside {plain(low)}..{plain(high)}, the band the exchange allows around the "
        f"last price {plain(last)} for a {side.value} (PERCENT_PRICE_BY_SIDE): fix the price first; the quantity "
        "is not resized at it."
    )
    return None


def _typed_mismatch(request: OrderRequest, symbol: str, quantity: str) -> str:
    """Why what was typed back does not match ``request`` (empty if it does)."""
    wrong = []
    if symbol.strip().upper() != request.symbol.upper():
        wrong.append(f"the symbol typed ({symbol.strip()!r}) is not {request.symbol}")
    expected = request.amount if request.amount is not None else request.quote_amount
    try:
        typed = Decimal(quantity.strip())
    except InvalidOperation:
        typed = Decimal("NaN")
    if not typed.is_finite() or typed != expected:
        wrong.append(f"the quantity typed ({quantity.strip()!r}) is not {plain(expected)}")  # type: ignore[arg-type]
    if not wrong:
        return ""
    return f"Not sent: {' and '.join(wrong)}. Type both exactly as in the summary, then press Confirm again."


# -- the blotter ----------------------------------------------------------------------------------


class Blotter(_Panel):
    """Open orders (each with a Cancel button), recent fills, balances and positions with
    unrealised PnL, updated from the executor's events as they happen.

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

    def render(self) -> None:
        """Redraw every table from what the panel knows (no I/O)."""
        self._show_halt()
        open_orders = self.open_orders
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
            self._rows[cid].children[1].value = html.escape(describe_order(order))  # type: ignore[attr-defined]
        self.orders_box.children = [self._rows[o.client_order_id] for o in open_orders] or [
            widgets.HTML('<i style="color:#616161">No open orders.</i>')
        ]
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


# -- the emergency stop ---------------------------------------------------------------------------


class EmergencyStopButton(_Panel):
    """A red button that trips the kill switch and cancels every open order of the session
    (:meth:`TradingSession.emergency_stop`), then shows what was canceled and what could not be.
    Every panel of the session shows HALTED until *Clear kill switch* is pressed."""

    def __init__(self, session: TradingSession, *, header: bool = True) -> None:
        super().__init__(session, header=header)
        self.button = widgets.Button(
            description="EMERGENCY STOP",
            button_style="danger",
            icon="stop",
            tooltip="Trip the kill switch and cancel every open order",
            layout=widgets.Layout(width="220px", height="48px"),
        )
        self.button.add_class("wb-emergency")
        self.clear_button = widgets.Button(description="Clear kill switch", icon="unlock", button_style="warning")
        self.clear_button.add_class("wb-clear-halt")
        self.report_html = widgets.HTML()
        self.report_html.add_class("wb-emergency-report")
        self.report: EmergencyReport | None = None
        self.button.on_click(lambda _: self._spawn(self.stop()))
        self.clear_button.on_click(lambda _: self._soon(self.clear))
        self.widget = widgets.VBox([*self._head(), self.button, self.report_html, self.clear_button, self.message])
        self.widget.add_class("wb-emergency-panel")
        self._show_halt()

    async def stop(self, reason: str = "emergency stop button") -> EmergencyReport | None:
        """Trip the kill switch, cancel every open order and show the report."""
        self._audit("ui_emergency_stop", {"reason": reason})
        try:
            report = await self.session.emergency_stop(reason, source="ui")
        except Exception as e:  # e.g. a ccxt network error while canceling
            self._say(
                "error",
                f"The emergency stop failed part way: {e}. The kill switch is tripped if it got that far; "
                "check the open orders on the venue and press the button again.",
            )
            return None
        self.report = report
        lines = [f"Kill switch tripped. Canceled {len(report.canceled)} order(s)."]
        lines += [f"canceled {describe_order(o)}" for o in report.canceled]
        lines += [f"could not cancel on {symbol}: {error}" for symbol, error in report.failed]
        lines.append("New orders are refused until you press Clear kill switch.")
        self.report_html.value = "<br>".join(html.escape(line) for line in lines)
        self._show_halt()
        return report

    def clear(self, by: str = "notebook panel") -> None:
        """Clear the kill switch (audited) so that orders may be sent again."""
        if not self.halted:
            self._say("info", "The kill switch is not tripped: nothing to clear.")
            return
        self.session.kill_switch.clear(by)
        self._audit("ui_clear_halt", {"by": by})
        self.report_html.value = ""
        self._say("ok", "Kill switch cleared: orders may be sent again.")
        self._hub.halt_changed()

    def _show_halt(self) -> None:
        super()._show_halt()
        if hasattr(self, "clear_button"):
            self.clear_button.layout.display = None if self.halted else "none"


# -- everything together --------------------------------------------------------------------------


class TradingPanel(_Panel):
    """The mode banner, the order ticket, the emergency stop and the blotter of ``session``, with one
    HALTED bar for all of them. ``refresh_every`` (seconds) also refreshes balances and marks on a timer."""

    def __init__(self, session: TradingSession, *, refresh_every: float | None = None) -> None:
        super().__init__(session, header=True)
        self.ticket = OrderTicket(session, header=False)
        self.emergency = EmergencyStopButton(session, header=False)
        self.blotter = Blotter(session, header=False, refresh_every=refresh_every)
        right = widgets.VBox(
            [self.emergency.widget, self.blotter.widget],
            layout=widgets.Layout(flex="1 1 420px", min_width="420px", margin="0 0 0 16px"),
        )
        self.widget = widgets.VBox(
            [*self._head(), widgets.HBox([self.ticket.widget, right], layout=widgets.Layout(flex_flow="row wrap"))]
        )
        self.widget.add_class("wb-trading-panel")

    async def wait(self) -> None:
        """Wait until the work of every part's buttons has finished."""
        for part in (self.ticket, self.emergency, self.blotter):
            await part.wait()
        await super().wait()

    def close(self) -> None:
        for part in (self.ticket, self.emergency, self.blotter):
            part.close()
        super().close()


show_banners()
