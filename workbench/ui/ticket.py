"""The order ticket: fields checked against the exchange filters, the risk preview, the confirmation."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import ipywidgets as widgets

from workbench.config import TradingMode
from workbench.data import load_klines
from workbench.errors import ExchangeError, OrderRejected, WorkbenchError
from workbench.filters import SymbolRules, plain
from workbench.matching import Execution
from workbench.model import Order, OrderRequest, OrderType, Side, TimeInForce
from workbench.risk import CheckResult, order_notional
from workbench.session import TradingSession
from workbench.ui.banner import MODE_STYLES
from workbench.ui.base import _Panel, _table, describe_request

# Buy and sell never look alike: green buys, red sells (colour, button style).
SIDE_COLOURS: dict[Side, str] = {Side.BUY: "#1b5e20", Side.SELL: "#b71c1c"}
SIDE_BUTTONS: dict[Side, str] = {Side.BUY: "success", Side.SELL: "danger"}
_SIDE_TINTS = {Side.BUY: "#e8f5e9", Side.SELL: "#ffebee"}
SIDE_CSS = (
    "<style>"
    + "".join(
        f'.wb-side button[data-value="{side.value}"] {{color:{colour};background:{_SIDE_TINTS[side]};'
        f"border:1px solid {colour}}}"
        f'.wb-side button[data-value="{side.value}"].mod-active {{color:#ffffff;background:{colour};font-weight:bold}}'
        for side, colour in SIDE_COLOURS.items()
    )
    + "</style>"
)

# -- the order ticket -----------------------------------------------------------------------------

# Which fields each order type uses.
_USES: dict[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset({"amount", "quote_amount"}),
    OrderType.LIMIT: frozenset({"amount", "price", "time_in_force"}),
    OrderType.LIMIT_MAKER: frozenset({"amount", "price"}),
    OrderType.STOP_LOSS: frozenset({"amount", "stop_price"}),
    OrderType.TAKE_PROFIT: frozenset({"amount", "stop_price"}),
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
                widgets.HTML(SIDE_CSS),  # the side buttons: green buy, red sell
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
        self.send_button.button_style = SIDE_BUTTONS[side]
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
