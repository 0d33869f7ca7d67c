"""The order ticket: single orders, OCO lists and trailing stops, checked against the exchange filters
as they are typed, the risk preview of every leg, the confirmation; and the *protect position* action."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import ipywidgets as widgets

from workbench.config import TradingMode
from workbench.data import load_klines
from workbench.errors import ExchangeError, OrderRejected, WorkbenchError
from workbench.filters import SymbolRules, plain, trails_above
from workbench.matching import Execution
from workbench.model import (
    ZERO,
    ContingencyType,
    Order,
    OrderList,
    OrderListRequest,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
)
from workbench.risk import CheckResult, order_notional
from workbench.session import TradingSession
from workbench.ui.banner import MODE_STYLES
from workbench.ui.base import _Panel, _table, describe_list_request, describe_request

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

# Which fields each order type uses; the ticket offers these types where the symbol lists them (orderTypes).
_USES: dict[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset({"amount", "quote_amount"}),
    OrderType.LIMIT: frozenset({"amount", "price", "time_in_force"}),
    OrderType.LIMIT_MAKER: frozenset({"amount", "price"}),
    OrderType.STOP_LOSS: frozenset({"amount", "stop_price", "trailing_delta"}),  # market-type stops
    OrderType.TAKE_PROFIT: frozenset({"amount", "stop_price", "trailing_delta"}),
    OrderType.STOP_LOSS_LIMIT: frozenset({"amount", "price", "stop_price", "time_in_force", "trailing_delta"}),
    OrderType.TAKE_PROFIT_LIMIT: frozenset({"amount", "price", "stop_price", "time_in_force", "trailing_delta"}),
}
# An OCO: a LIMIT_MAKER at the limit price and a stop-loss (stop price, stop-limit price, trailing delta).
_OCO_USES = frozenset({"amount", "price", "stop_price", "stop_limit_price", "time_in_force", "trailing_delta"})
_NUMBERS = ("amount", "quote_amount", "price", "stop_price", "stop_limit_price")
_FIELDS = ("kind", "symbol", "side", "type", *_NUMBERS, "trailing_delta", "time_in_force")
_LABELS = {
    "amount": "quantity",
    "quote_amount": "quote amount",
    "price": "price",
    "stop_price": "stop price",
    "stop_limit_price": "stop-limit price",
    "trailing_delta": "trailing delta",
}
BIPS = Decimal("0.0001")  # a trailing delta of 100 bips is 1%

# What *protect position* proposes around the last price: a take profit 2% above and a stop 2% below
# (selling down to 0.5% under the stop), or a stop-loss trailing 200 bips (2%) behind the best price.
PROTECT_TAKE_PROFIT = Decimal("0.02")
PROTECT_STOP_LOSS = Decimal("0.02")
PROTECT_STOP_LIMIT = Decimal("0.005")
PROTECT_TRAILING_BIPS = 200


@dataclass
class Review:
    """What the ticket would send and what stands in its way: the single ``request`` or the
    ``order_list``, ``problems`` (each saying what to do), rounding ``hints`` with their
    ``suggestions`` (field -> value) and every risk check's result (of every leg of a list)."""

    request: OrderRequest | None
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    suggestions: dict[str, str] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    last_price: Decimal | None = None
    order_list: OrderListRequest | None = None

    @property
    def ok(self) -> bool:
        """Whether the order (or list) may be sent as it stands."""
        return (self.request is not None or self.order_list is not None) and not self.problems


class OrderTicket(_Panel):
    """An order ticket for ``session``: a single order (symbol, side, type, quantity or quote amount,
    price, stop price, trailing delta in bips, time in force) or an OCO (limit price, stop price,
    stop-limit price), and *protect position*, which fills in a sell OCO or a trailing stop sized to
    the symbol's position.

    Fields are checked as they change against the symbol's exchange filters (with tick- and
    step-rounded suggestions) and every risk check's result is previewed, for each leg of an OCO.
    *Send* sends a paper order at once; a testnet order waits for a *Confirm* click on its summary; a
    mainnet order also needs its symbol and quantity typed back. Confirmations and refusals go to the
    audit log.
    """

    def __init__(self, session: TradingSession, *, header: bool = True) -> None:
        symbols = list(session.rules)
        wide = {"description_width": "100px"}
        self.kind = widgets.ToggleButtons(
            options=[("Single order", "single"), ("OCO", "oco")], value="single", description="Order", style=wide
        )
        self.symbol = widgets.Dropdown(options=symbols, value=symbols[0], description="Symbol", style=wide)
        self.side = widgets.ToggleButtons(options=["buy", "sell"], value="buy", description="Side", style=wide)
        self.type = widgets.Dropdown(
            options=_offered(session.rules[symbols[0]]), value=OrderType.LIMIT.value, description="Type",
            style=wide,
        )  # fmt: skip
        self.amount = widgets.Text(description="Quantity", placeholder="base quantity, e.g. 0.001", style=wide)
        self.quote_amount = widgets.Text(
            description="Quote amount", placeholder="MARKET only, instead of a quantity", style=wide
        )
        self.price = widgets.Text(description="Price", placeholder="limit price", style=wide)
        self.stop_price = widgets.Text(description="Stop price", placeholder="trigger price", style=wide)
        self.stop_limit_price = widgets.Text(
            description="Stop-limit price", placeholder="the stop leg's limit, once triggered", style=wide
        )
        self.trailing_delta = widgets.Text(
            description="Trailing delta", placeholder="bips, 100 = 1% (stops only, optional)", style=wide
        )
        self.time_in_force = widgets.Dropdown(
            options=[t.value for t in TimeInForce], value="GTC", description="Time in force", style=wide
        )
        self.last_price = widgets.HTML()
        self.refresh_price_button = widgets.Button(description="Refresh price", icon="refresh")
        self.position_info = widgets.HTML()
        self.protect_oco_button = widgets.Button(
            description="Protect: OCO",
            tooltip="a sell OCO, take profit and stop-loss, sized to the position",
            icon="shield",
            layout=widgets.Layout(width="auto"),
        )
        self.protect_trailing_button = widgets.Button(
            description="Protect: trailing stop",
            tooltip="a trailing stop-loss sized to the position",
            icon="shield",
            layout=widgets.Layout(width="auto"),
        )
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
        for name in _FIELDS:
            getattr(self, name).add_class(f"wb-{name.replace('_', '-')}")
        for widget, css in (
            (self.last_price, "wb-last-price"),
            (self.position_info, "wb-position"),
            (self.protect_oco_button, "wb-protect-oco"),
            (self.protect_trailing_button, "wb-protect-trailing"),
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
                self.kind,
                self.symbol,
                widgets.HTML(SIDE_CSS),  # the side buttons: green buy, red sell
                self.side,
                self.type,
                self.amount,
                self.quote_amount,
                self.price,
                self.stop_price,
                self.stop_limit_price,
                self.trailing_delta,
                self.time_in_force,
                widgets.HBox([self.last_price, self.refresh_price_button]),
                self.position_info,
                widgets.HBox([self.protect_oco_button, self.protect_trailing_button]),
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
        self.pending: OrderRequest | OrderListRequest | None = None
        self.pending_summary: dict[str, Any] = {}
        self.sent: list[Order] = []
        self.sent_lists: list[OrderList] = []
        self._busy = False
        for name in _FIELDS:
            getattr(self, name).observe(lambda change: self._soon(self._changed, change), names="value")
        self.send_button.on_click(lambda _: self._spawn(self.send()))
        self.confirm_button.on_click(lambda _: self._spawn(self.confirm()))
        self.back_button.on_click(lambda _: self._soon(self.dismiss))
        self.apply_button.on_click(lambda _: self._soon(self.apply_suggestions))
        self.refresh_price_button.on_click(lambda _: self._spawn(self.refresh_price()))
        self.protect_oco_button.on_click(lambda _: self._soon(self.protect, "oco"))
        self.protect_trailing_button.on_click(lambda _: self._soon(self.protect, "trailing"))
        self._hub.watched.add(self.symbol.value)
        self.update()
        if self.symbol.value not in session.last_price:
            self._spawn(self.refresh_price(), quiet=True)

    @property
    def is_oco(self) -> bool:
        """Whether the ticket holds an OCO (else a single order)."""
        return self.kind.value == "oco"

    def _uses(self) -> frozenset[str]:
        return _OCO_USES if self.is_oco else _USES[OrderType(self.type.value)]

    # -- reviewing --------------------------------------------------------------------------------

    def review(self) -> Review:
        """Check the ticket as it stands: parse the fields, build the request (or the OCO's legs),
        suggest tick and step rounding and run every risk check, on every leg, against the last known price."""
        symbol = self.symbol.value
        rules = self.session.rules[symbol]
        side = Side(self.side.value)
        uses = self._uses()
        review = Review(None, last_price=self.session.last_price.get(symbol))
        if self.halted:
            review.problems.append(
                f"HALTED ({self.session.kill_switch.reason}): no new orders until the kill switch is cleared."
            )
        values, trailing, readable = self._read(review, uses)
        order_type = OrderType(self.type.value)
        if self.is_oco:
            market_stop = not values.get("stop_limit_price") and _takes(rules, OrderType.STOP_LOSS)
            stop_limit = "stop_price" if market_stop else "stop_limit_price"
            sized_at: tuple[str, ...] = ("price", stop_limit)
        else:
            sized_at = ("price",) if "price" in uses else ("stop_price",)
        market = order_type is OrderType.MARKET and not self.is_oco
        self._rounding_hints(review, rules, side, values, market=market, sized_at=sized_at)
        if "price" in uses and not self.price.value.strip():
            last = f" (the last price is {plain(review.last_price)})" if review.last_price is not None else ""
            if self.is_oco:
                where = "above" if side is Side.SELL else "below"
                review.problems.append(
                    f"The limit price field is empty: type the limit leg's price, {where} the market{last}."
                )
            else:
                review.problems.append(f"The price field is empty: type the limit price{last}.")
            return review
        if not readable:
            return review  # its problem says which field and what to type
        if self.is_oco:
            self._build_oco(review, rules, side, values, trailing)
        else:
            self._build_single(review, symbol, side, order_type, values, trailing)
        legs = self._legs(review)
        if not legs:
            return review
        _trailing_hints(review, rules, [leg for _, leg in legs])
        if review.last_price is None:
            review.problems.append(f"No price for {symbol} yet: press Refresh price (the checks need one).")
            return review
        if review.order_list is not None:
            _oco_against_market(review, side, values)
        context = self.session.risk_context(symbol, review.last_price)
        for i, (label, leg) in enumerate(legs):  # each leg counts the ones before it as open, as the session does
            seen = replace(
                context,
                open_orders=context.open_orders + i,
                open_orders_symbol=context.open_orders_symbol + i,
                orders_last_minute=context.orders_last_minute + i,
            )
            for check in self.session.risk.evaluate(leg, seen):
                review.checks.append(replace(check, name=f"{label} · {check.name}") if label else check)
                if not check.passed and check.name != "kill_switch":
                    where = f"{label.capitalize()}, " if label else ""
                    review.problems.append(f"{where}{check.name}: {check.detail}")
        return review

    @staticmethod
    def _legs(review: Review) -> list[tuple[str, OrderRequest]]:
        """The orders a review would send, with the label the preview gives each ("" for a single order)."""
        if review.request is not None:
            return [("", review.request)]
        if review.order_list is None:
            return []
        return [("limit leg" if o.type is OrderType.LIMIT_MAKER else "stop leg", o) for o in review.order_list.orders]

    def _read(self, review: Review, uses: frozenset[str]) -> tuple[dict[str, Decimal | None], int | None, bool]:
        """The numbers typed in the fields ``uses`` (``None`` where empty or unreadable), the trailing delta
        and whether every field could be read (a problem says which could not)."""
        values: dict[str, Decimal | None] = {}
        readable = True
        for name in _NUMBERS:
            text = getattr(self, name).value.strip() if name in uses else ""
            values[name] = None
            if text:
                try:
                    number = Decimal(text)
                except InvalidOperation:
                    number = Decimal("NaN")
                if not number.is_finite() or number <= 0:
                    review.problems.append(f"The {_LABELS[name]} {text!r} is not a positive number: type e.g. 0.001.")
                    readable = False
                else:
                    values[name] = number
        text = self.trailing_delta.value.strip() if "trailing_delta" in uses else ""
        if not text:
            return values, None, readable
        if not text.isdigit() or int(text) <= 0:
            review.problems.append(
                f"The trailing delta {text!r} is not a whole, positive number of bips (100 bips = 1%): type e.g. 200."
            )
            return values, None, False
        return values, int(text), readable

    def _build_single(
        self,
        review: Review,
        symbol: str,
        side: Side,
        order_type: OrderType,
        values: Mapping[str, Decimal | None],
        trailing: int | None,
    ) -> None:
        try:
            review.request = OrderRequest(
                symbol,
                side,
                order_type,
                amount=values["amount"],
                price=values["price"],
                stop_price=values["stop_price"],
                time_in_force=self.time_in_force.value if "time_in_force" in _USES[order_type] else None,
                quote_amount=values["quote_amount"],
                trailing_delta=trailing,
            )
        except OrderRejected as e:
            review.problems.append(f"{e}{_fix(e)}")

    def _build_oco(
        self, review: Review, rules: SymbolRules, side: Side, values: Mapping[str, Decimal | None], trailing: int | None
    ) -> None:
        """An OCO's legs: a LIMIT_MAKER at the limit price and a STOP_LOSS_LIMIT at the stop and stop-limit
        prices (a market STOP_LOSS without a stop-limit price, where the symbol lists STOP_LOSS); a sell's
        limit leg above, a buy's below."""
        symbol, amount, stop_limit = rules.symbol, values["amount"], values["stop_limit_price"]
        if stop_limit is None and not _takes(rules, OrderType.STOP_LOSS):
            where = "below" if side is Side.SELL else "above"
            review.problems.append(
                f"The stop-limit price field is empty: type the price the stop leg trades at once triggered "
                f"(a little {where} the stop price)."
            )
            return
        try:
            limit = OrderRequest(symbol, side, OrderType.LIMIT_MAKER, amount=amount, price=values["price"])
            stop = OrderRequest(
                symbol,
                side,
                OrderType.STOP_LOSS_LIMIT if stop_limit is not None else OrderType.STOP_LOSS,
                amount=amount,
                price=stop_limit,
                stop_price=values["stop_price"],
                time_in_force=self.time_in_force.value if stop_limit is not None else None,  # type: ignore[arg-type]
                trailing_delta=trailing,
            )
            legs = (limit, stop) if side is Side.SELL else (stop, limit)  # (above, below)
            review.order_list = OrderListRequest(ContingencyType.OCO, legs)
        except OrderRejected as e:
            review.problems.append(f"{e}{_fix(e)}")

    @staticmethod
    def _rounding_hints(
        review: Review,
        rules: SymbolRules,
        side: Side,
        values: Mapping[str, Decimal | None],
        *,
        market: bool,
        sized_at: tuple[str, ...],
    ) -> None:
        """Tick hints for every price, step and minimum hints for the quantity, and the minimum notional
        at the lowest of the prices ``sized_at`` (at the last price for a MARKET order)."""
        prices = rules.filter("PRICE_FILTER") or {}
        tick, low = prices.get("tickSize") or Decimal(0), prices.get("minPrice") or Decimal(0)
        for name in ("price", "stop_price", "stop_limit_price"):
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
        if market:
            price = review.last_price
        else:
            sane = [_sane_price(review, rules, side, values.get(name)) for name in sized_at]
            price = None if None in sane else min(sane)  # type: ignore[type-var]
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
        oco, uses = self.is_oco, self._uses()
        for name in (*_NUMBERS, "trailing_delta", "time_in_force"):
            getattr(self, name).disabled = name not in uses
        self.type.layout.display = "none" if oco else None  # an OCO's legs have their own types
        self.stop_limit_price.layout.display = None if oco else "none"
        self.price.description = "Limit price" if oco else "Price"
        symbol = self.symbol.value
        rules = self.session.rules[symbol]
        last = self.session.last_price.get(symbol)
        side = Side(self.side.value)
        where = "limit leg, " + ("above" if side is Side.SELL else "below") if oco else "limit price"
        self.price.placeholder = f"{where} (last {plain(last)})" if last is not None else where
        self.send_button.button_style = SIDE_BUTTONS[side]
        self.send_button.description = f"Send {side.value.upper()}{' OCO' if oco else ''}"
        for other in Side:
            (self.widget.add_class if other is side else self.widget.remove_class)(f"wb-side-{other.value}")
        position = self.session.state.positions.get(symbol, ZERO)
        self.position_info.value = (
            f"Position in {html.escape(symbol)}: <b>{plain(position)} {html.escape(rules.base)}</b>"
        )
        self.protect_oco_button.disabled = self.protect_trailing_button.disabled = position <= 0
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
        legs = "".join(
            f'<div style="font-size:0.9em">{html.escape(label)}: {html.escape(describe_request(leg, rules))}</div>'
            for label, leg in self._legs(review)
            if label
        )
        self.preview.value = (
            f'{legs}<table style="font-size:0.9em">{rows}</table>'
            if rows
            else '<i style="color:#616161">Every check\'s result appears here once the ticket is complete.</i>'
        )
        self.send_button.disabled = not review.ok or self._busy
        return review

    def _changed(self, change: Mapping[str, Any]) -> None:
        if self.pending is not None:
            self.dismiss("The ticket changed after Send: review it and press Send again.")
        if change.get("owner") is self.symbol:
            offered = _offered(self.session.rules[self.symbol.value])
            if list(self.type.options) != offered:  # the types this symbol lists; LIMIT if the type is not one
                keep = self.type.value if self.type.value in offered else OrderType.LIMIT.value
                self.type.options, self.type.value = offered, keep
            self._hub.watched.add(self.symbol.value)
            if self.symbol.value not in self.session.last_price:
                self._spawn(self.refresh_price(), quiet=True)
        self.update()

    # -- protecting a position --------------------------------------------------------------------

    def protect(self, how: str = "oco") -> bool:
        """Fill the ticket with a sell that protects the symbol's position, its quantity the position
        rounded down to the step size: ``"oco"``, a take profit PROTECT_TAKE_PROFIT above the last price
        and a stop PROTECT_STOP_LOSS below it (selling down to PROTECT_STOP_LIMIT under the stop);
        ``"trailing"``, a stop-loss trailing PROTECT_TRAILING_BIPS behind the best price since it was
        placed (a market STOP_LOSS where the symbol lists it, else a STOP_LOSS_LIMIT whose limit is twice
        the delta under the last price). Nothing is sent: the preview reviews it, *Send* sends it.
        Returns whether the ticket was filled in."""
        if how not in ("oco", "trailing"):
            raise ValueError(f"how={how!r}: protect a position with 'oco' or 'trailing'.")
        symbol = self.symbol.value
        rules = self.session.rules[symbol]
        position = self.session.state.positions.get(symbol, ZERO)
        last = self.session.last_price.get(symbol)
        if position <= 0:
            self._say(
                "warn",
                f"No position in {symbol} to protect ({plain(position)} {rules.base}): buy first, or pick the symbol "
                "you hold.",
            )
            return False
        if last is None:
            self._say("warn", f"No price for {symbol} yet: press Refresh price, then protect the position again.")
            return False
        amount = rules.round_amount(position)
        if not amount:
            self._say(
                "warn",
                f"The position of {plain(position)} {rules.base} rounds down to 0 at the step size "
                f"{plain(rules.step_size())}: too small to sell, nothing to protect.",
            )
            return False
        fields = {"kind": "oco" if how == "oco" else "single", "side": "sell"}
        if how == "oco":
            stop = rules.round_price(last * (1 - PROTECT_STOP_LOSS))
            take, floor = (
                rules.round_price(last * (1 + PROTECT_TAKE_PROFIT)),
                rules.round_price(stop * (1 - PROTECT_STOP_LIMIT)),
            )
            fields |= {"price": plain(take), "stop_price": plain(stop), "stop_limit_price": plain(floor)}
            fields |= {"trailing_delta": "", "time_in_force": "GTC"}
            what = (
                f"a sell OCO: take profit at {plain(take)} (+{PROTECT_TAKE_PROFIT:.0%}), stop at {plain(stop)} "
                f"(-{PROTECT_STOP_LOSS:.0%}) selling down to {plain(floor)}"
            )
        else:
            market = _takes(rules, OrderType.STOP_LOSS)
            order_type = OrderType.STOP_LOSS if market else OrderType.STOP_LOSS_LIMIT
            sell_stop = OrderRequest(
                symbol, Side.SELL, OrderType.STOP_LOSS_LIMIT, amount=Decimal(1), price=last,
                trailing_delta=PROTECT_TRAILING_BIPS, time_in_force=TimeInForce.GTC,
            )  # fmt: skip
            delta = _in_trailing_range(rules, sell_stop)
            fields |= {"type": order_type.value, "stop_price": "", "trailing_delta": str(delta)}
            what = (
                f"a trailing stop-loss: it sells once the price falls {delta} bips ({delta * BIPS:.2%}) from its "
                "highest since placement"
            )
            if not market:
                floor = rules.round_price(last * (1 - 2 * delta * BIPS))
                fields |= {"price": plain(floor), "time_in_force": "GTC"}
                what += f", at a limit of {plain(floor)} at worst"
        fields["amount"] = plain(amount)
        for name, value in fields.items():
            getattr(self, name).value = value
        rounded = "" if amount == position else f", rounded down to the step size {plain(rules.step_size())}"
        self._say(
            "info",
            f"Protecting the position of {plain(position)} {rules.base}{rounded}: {plain(amount)} {rules.base} in "
            f"{what}. Nothing is sent yet: check the preview, change what you like, then press Send.",
        )
        return True

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

    def summary_of(self, request: OrderRequest | OrderListRequest, last_price: Decimal | None) -> dict[str, Any]:
        """What a confirmation shows and the audit log records: the order (or the OCO: its limit leg's price,
        its stop leg's stop, stop-limit price and trailing delta), its estimated value, mode and venue."""
        rules = self.session.rules[request.symbol]
        if isinstance(request, OrderListRequest):
            limit, stop = sorted(request.orders, key=lambda leg: leg.type is not OrderType.LIMIT_MAKER)
            text, head, legs, kind = describe_list_request(request, rules), limit, request.orders, "OCO"
        else:
            text, head, stop, legs, kind = describe_request(request, rules), request, request, (request,), ""
        estimate = max(order_notional(leg, last_price) for leg in legs) if last_price is not None else None
        return {
            "text": text,
            "symbol": request.symbol,
            "side": head.side.value,
            "type": kind or head.type.value,
            "amount": _plain(head.amount),
            "quote_amount": _plain(head.quote_amount),
            "price": _plain(head.price),
            "stop_price": _plain(stop.stop_price),
            "stop_limit_price": _plain(stop.price) if kind else None,
            "trailing_delta": stop.trailing_delta,
            "time_in_force": stop.time_in_force.value if stop.time_in_force else None,
            "last_price": _plain(last_price),
            "estimated_notional": f"{estimate:.2f} {rules.quote}" if estimate is not None else None,
            "mode": self.session.mode.value,
            "venue": str(self.session.executor.venue),
        }

    async def send(self) -> Order | OrderList | None:
        """Review the ticket, then send a paper order (or OCO) at once, or open the confirmation (testnet:
        a click; mainnet: the symbol and quantity typed back). Returns the order or list if it was sent."""
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
            request = review.request or review.order_list
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

    async def confirm(self) -> Order | OrderList | None:
        """Send the order (or OCO) under review if it is confirmed: a click in testnet; in mainnet only when
        the symbol and quantity typed back match it exactly. Returns the order or list if it was sent."""
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

    async def _submit(
        self, request: OrderRequest | OrderListRequest, summary: Mapping[str, Any]
    ) -> Order | OrderList | None:
        self._say("info", f"Sending {summary['text']}…")
        what = "order list" if isinstance(request, OrderListRequest) else "order"
        try:
            if isinstance(request, OrderListRequest):
                placed: Order | OrderList = await self.session.create_order_list(request)
            else:
                placed = await self.session.submit(request)
        except OrderRejected as e:
            self._say("error", f"The {what} was refused: {e}")
            return None
        except ExchangeError as e:
            self._say("error", f"{e} Check the blotter before sending it again.")
            return None
        except WorkbenchError as e:
            self._say("error", f"The {what} could not be sent: {e}")
            return None
        if isinstance(placed, OrderList):
            self.sent_lists.append(placed)
            status = placed.list_order_status.value
            self._say("ok", f"Sent {summary['text']}: order list {placed.list_client_order_id} is {status}.")
        else:
            self.sent.append(placed)
            self._say("ok", f"Sent {summary['text']}: order {placed.client_order_id} is {placed.status.value}.")
        return placed

    def _refuse(self, reason: str, summary: Mapping[str, Any], **extra: Any) -> None:
        self._audit("ui_refuse", {"reason": reason, **extra, **summary})
        self._say("error", reason)

    def _draft_summary(self, review: Review) -> dict[str, Any]:
        request = review.request or review.order_list
        if request is not None:
            return self.summary_of(request, review.last_price)
        return {"text": "incomplete ticket", **{name: str(getattr(self, name).value) for name in _FIELDS}}

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


def _offered(rules: SymbolRules) -> list[str]:
    """The order types the ticket offers on a symbol: those it knows that the symbol lists."""
    return [t.value for t in _USES if _takes(rules, t)]


def _takes(rules: SymbolRules, order_type: OrderType) -> bool:
    return order_type.value in rules.order_types


def _plain(value: Decimal | None) -> str | None:
    return plain(value) if value is not None else None


def _fix(error: OrderRejected) -> str:
    """What to do about a request the model refused to build."""
    return {
        "required": f" Fill in the {_LABELS.get(error.field or '', error.field)} field.",
        "market_quantity": " Fill in either the quantity or the quote amount, and clear the other.",
    }.get(error.rule or "", "")


def _trailing_range(rules: SymbolRules, leg: OrderRequest) -> tuple[int, int] | None:
    """The trailing deltas (bips) the TRAILING_DELTA filter allows ``leg`` (its "above" or "below" pair)."""
    f = rules.filter("TRAILING_DELTA")
    if f is None:
        return None
    where = "Above" if trails_above(leg) else "Below"
    return f[f"minTrailing{where}Delta"], f[f"maxTrailing{where}Delta"]  # type: ignore[return-value]


def _in_trailing_range(rules: SymbolRules, leg: OrderRequest) -> int:
    delta = leg.trailing_delta or 0
    bounds = _trailing_range(rules, leg)
    return delta if bounds is None else min(max(delta, bounds[0]), bounds[1])


def _trailing_hints(review: Review, rules: SymbolRules, legs: list[OrderRequest]) -> None:
    """A hint, and the nearest allowed delta as a suggestion, for a trailing delta outside TRAILING_DELTA."""
    for leg in legs:
        bounds = _trailing_range(rules, leg)
        if leg.trailing_delta is None or bounds is None or bounds[0] <= leg.trailing_delta <= bounds[1]:
            continue
        use = _in_trailing_range(rules, leg)
        review.hints.append(
            f"The trailing delta {leg.trailing_delta} bips is outside {bounds[0]}..{bounds[1]}, the range the exchange "
            f"allows for a {leg.side.value} {leg.type.value} (TRAILING_DELTA): use {use} ({use * BIPS:.2%})."
        )
        review.suggestions["trailing_delta"] = str(use)


def _oco_against_market(review: Review, side: Side, values: Mapping[str, Decimal | None]) -> None:
    """Binance's price order for an OCO: a sell's limit above the last price and its stop below; a buy's
    the other way round. Otherwise a leg would trade or trigger at once, and the venue refuses the list."""
    last = review.last_price
    assert last is not None
    sell = side is Side.SELL
    limit, stop = values.get("price"), values.get("stop_price")
    if limit is not None and (limit <= last if sell else limit >= last):
        review.problems.append(
            f"The limit price {plain(limit)} is not {'above' if sell else 'below'} the last price {plain(last)}: a "
            f"{side.value} OCO's limit leg rests {'above' if sell else 'below'} the market (a LIMIT_MAKER that would "
            "trade at once is refused)."
        )
    if stop is not None and (stop >= last if sell else stop <= last):
        review.problems.append(
            f"The stop price {plain(stop)} is not {'below' if sell else 'above'} the last price {plain(last)}: the "
            f"stop would trigger at once; a {side.value} OCO's stop leg waits {'below' if sell else 'above'} the "
            "market."
        )


def _typed_mismatch(request: OrderRequest | OrderListRequest, symbol: str, quantity: str) -> str:
    """Why what was typed back does not match ``request`` (empty if it does)."""
    head = request.orders[0] if isinstance(request, OrderListRequest) else request
    wrong = []
    if symbol.strip().upper() != request.symbol.upper():
        wrong.append(f"the symbol typed ({symbol.strip()!r}) is not {request.symbol}")
    expected = head.amount if head.amount is not None else head.quote_amount
    try:
        typed = Decimal(quantity.strip())
    except InvalidOperation:
        typed = Decimal("NaN")
    if not typed.is_finite() or typed != expected:
        wrong.append(f"the quantity typed ({quantity.strip()!r}) is not {plain(expected)}")  # type: ignore[arg-type]
    if not wrong:
        return ""
    return f"Not sent: {' and '.join(wrong)}. Type both exactly as in the summary, then press Confirm again."
