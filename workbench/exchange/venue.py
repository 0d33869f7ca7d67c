"""The local exchange's venue: one account on the shared matching core, a market replaying klines,
and Binance's JSON shapes for both. No networking here (the server speaks HTTP and WebSocket);
the only I/O is the optional state file, written atomically after every change.

Everything is keyed by Binance's symbol id (``"BTCUSDT"``) on the way in and out; the matching
core underneath keeps ccxt's ``"BTC/USDT"``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import string
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.bars import path as bar_path
from workbench.errors import OrderNotFound, OrderRejected
from workbench.exchange import order_lists  # a module: it imports this one too
from workbench.filters import SymbolRules
from workbench.matching import BookConfig, Execution, Fees, MatchingEngine
from workbench.model import ZERO, Amendment, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

CLIENT_ID_RULE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ID_CHARS = set(string.ascii_letters + string.digits + "._:/-")
ORDER_PARAMS = {
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
    "strategyId", "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType",
    "selfTradePreventionMode", "recvWindow", "timestamp", "signature", "computeCommissionRates",
}  # fmt: skip
MINUTE, DAY = 60_000, 86_400_000
TAPE_LENGTH = 200_000  # public trades remembered per symbol for the tickers' windows (up to 7 days)
# exchangeInfo flags the venue sets itself, true only for what it implements (the rules' own flags say the rest)
FEATURES = {"opoAllowed": False, "amendAllowed": True, "pegInstructionsAllowed": False,
            "cancelReplaceAllowed": True}  # fmt: skip
CANCEL_REPLACE_PARAMS = {"cancelReplaceMode", "cancelNewClientOrderId", "cancelOrigClientOrderId", "cancelOrderId",
                         "cancelRestrictions", "orderRateLimitExceededMode"}  # fmt: skip
CANCEL_RESTRICTIONS = {"ONLY_NEW": OrderStatus.NEW, "ONLY_PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED}
INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360,
             "8h": 480, "12h": 720, "1d": 1440}  # fmt: skip


class BinanceError(Exception):
    """A Binance error answer: HTTP ``status`` with ``{"code": code, "msg": msg}``."""

    def __init__(
        self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None, data: Any = None
    ) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg = status, code, msg
        self.headers = dict(headers or {})
        self.data = data  # Binance's ``data`` beside code and msg (cancel-replace), if any

    def body(self) -> dict[str, Any]:
        """The error as Binance writes it: code, msg and, when there is one, data."""
        return {"code": self.code, "msg": self.msg} | ({} if self.data is None else {"data": self.data})


def bad_request(code: int, msg: str) -> BinanceError:
    return BinanceError(400, code, msg)


_INTEGER = re.compile(r"[0-9]{1,20}")
_DECIMAL = re.compile(r"([0-9]{1,20})(\.[0-9]{1,20})?")
DECIMAL_PARAMS = ("quantity", "quoteOrderQty", "price", "stopPrice", "icebergQty")
_INT64_MAX = 2**63 - 1


def integer(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """The integer parameter ``name`` (``default`` when absent or empty), checked as Binance
    checks ids, times and limits: ASCII digits, at most 20, within a signed 64-bit integer."""
    raw = params.get(name)
    if not raw:
        return default
    if not _INTEGER.fullmatch(raw) or int(raw) > _INT64_MAX:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def checked_client_id(client_id: str, name: str) -> str:
    """A client order (or list) id as Binance takes it: at most 36 of ``[.A-Z:/a-z0-9_-]``, else -1100."""
    if len(client_id) > 36 or not set(client_id) <= _CLIENT_ID_CHARS:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{CLIENT_ID_RULE}'.")
    return client_id


def fmt(value: Decimal | None) -> str:
    """A decimal as Binance writes it: eight places, ``"0.00000000"`` for none."""
    return f"{value or ZERO:.8f}"


def new_client_id() -> str:
    """A 22-character id like the ones Binance generates."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


@dataclass
class Market:
    """Klines replayed bar by bar: ``cursor`` is the index of the newest replayed bar.

    One market clock: bar ``i`` of a symbol opens at its recorded open time plus ``offset[symbol]``
    ms. The offset is set so that the newest replayed bar opens in the current minute of the
    server's clock, and it never decreases: replayed in real time (or slower) the newest bar is
    the current minute; replayed faster, each new bar opens one minute after the one before, so
    the bars run ahead of the clock until it catches up. See docs/binance-spot-api.md §9.
    """

    klines: dict[str, pd.DataFrame]
    cursor: int
    trade_ids: dict[str, int] = field(default_factory=dict)  # the last public trade id, per symbol
    depth_seq: dict[str, int] = field(default_factory=dict)
    prints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # recent public trades
    tape: dict[str, list[tuple[int, int, Decimal, Decimal]]] = field(default_factory=dict)  # time, id, price, qty
    last_depth: dict[str, dict[str, Any]] = field(default_factory=dict)  # the book last streamed
    offset: dict[str, int] = field(default_factory=dict)
    bar_trades: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last trade id of the newest bar

    @property
    def length(self) -> int:
        return min(len(frame) for frame in self.klines.values())

    def restamp(self, now: int) -> None:
        """Move the offsets (never back) so that the newest bar opens no earlier than ``now``'s minute."""
        minute = now - now % MINUTE
        for symbol_id, frame in self.klines.items():
            recorded = int(frame.index[self.cursor].value // 1_000_000)
            self.offset[symbol_id] = max(self.offset.get(symbol_id, minute - recorded), minute - recorded)

    def opened(self, symbol_id: str, frame: pd.DataFrame) -> np.ndarray:
        """The open times (ms, on the market clock) of ``frame``'s bars."""
        return frame.index.as_unit("ms").asi8 + self.offset[symbol_id]

    def stamped(self, symbol_id: str, stop: int, start: int = 0) -> pd.DataFrame:
        """Bars ``start..stop-1`` indexed by their open time on the market clock."""
        frame = self.klines[symbol_id].iloc[max(0, start) : stop]
        return frame.set_axis(pd.to_datetime(self.opened(symbol_id, frame), unit="ms", utc=True))

    def bar(self, symbol_id: str, index: int | None = None) -> pd.Series:
        return self.klines[symbol_id].iloc[self.cursor if index is None else index]

    def path(self, symbol_id: str, index: int) -> tuple[Decimal, ...]:
        """The prices a bar walks through (:func:`workbench.bars.path`): open, the nearer extreme,
        the other, and close."""
        bar = self.bar(symbol_id, index)
        return bar_path(bar["open"], bar["high"], bar["low"], bar["close"])


@dataclass
class VenueEvents:
    """Where the venue reports what happens: user data events (Binance event dicts) and market
    stream payloads (stream name, payload)."""

    user: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    market: list[Callable[[str, Any], None]] = field(default_factory=list)
    wanted: Callable[[str], bool] = lambda stream: True  # noqa: E731 - is anyone subscribed to this stream?


class Venue:
    """One account trading on the matching core against a replayed market, answering in Binance's
    JSON. Methods raise :class:`BinanceError` with Binance's status, code and message."""

    def __init__(
        self,
        rules: Mapping[str, SymbolRules],
        klines: Mapping[str, pd.DataFrame],
        balances: Mapping[str, Decimal | int | str],
        *,
        clock: Callable[[], int],
        fees: Fees = Fees(),
        book: BookConfig = BookConfig(),
        warmup: int = 500,
        state_path: str | Path | None = None,
    ) -> None:
        self.rules = {r.id: r for r in rules.values()}
        self.engine = MatchingEngine(rules, balances, fees=fees, book=book)
        frames = {rules[sym].id: frame for sym, frame in klines.items()}
        self.market = Market(frames, cursor=0)
        self.market.cursor = min(warmup, self.market.length // 2)  # history to serve, and bars left to replay
        self.clock = clock
        self.trades: list[Fill] = []
        self.created: dict[str, int] = {}  # order id -> creation time (order.timestamp moves on cancel)
        self.events = VenueEvents()
        self.state_path = Path(state_path) if state_path else None
        self._execution_id = 0
        self.amendment_executions: dict[int, int] = {}  # amendment id -> the executionId of its REPLACED report
        if self.state_path and self.state_path.exists():
            self._load(self.state_path)
        self.market.restamp(self.clock())
        for symbol_id in self.market.klines:
            self.engine.set_price(self.rules[symbol_id].symbol, self.market.bar(symbol_id)["close"], self.clock())

    # -- lookups ----------------------------------------------------------------------------

    def rules_for(self, symbol: str) -> SymbolRules:
        """Rules by Binance id or ccxt symbol; -1121 if the symbol is not listed."""
        rules = self.rules.get(symbol) or next((r for r in self.rules.values() if r.symbol == symbol), None)
        if rules is None or rules.id not in self.market.klines:
            raise bad_request(-1121, "Invalid symbol.")
        return rules

    def _order(self, symbol_id: str, order_id: str | None, client_id: str | None, code: int, msg: str) -> Order:
        if order_id is None and client_id is None:
            raise bad_request(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        symbol = self.rules_for(symbol_id).symbol
        try:
            order = self.engine.get_order(symbol, id=order_id, client_order_id=None if order_id else client_id)
        except OrderNotFound:
            raise bad_request(code, msg) from None
        if order_id and client_id and order.client_order_id != client_id:
            raise bad_request(code, msg)
        return order

    # -- orders -----------------------------------------------------------------------------

    def request_from(self, params: Mapping[str, str]) -> tuple[OrderRequest, str]:
        """Binance's order parameters as an order request and its client order id, checked as
        Binance checks them (before filters and funds)."""
        unknown = sorted(set(params) - ORDER_PARAMS)
        if unknown:
            raise bad_request(-1104, f"Not all sent parameters were read; read '{len(params) - len(unknown)}' "
                                     f"parameter(s) but was sent '{len(params)}'.")  # fmt: skip
        for name in ("symbol", "side", "type"):
            if not params.get(name):
                raise bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        rules = self.rules_for(params["symbol"])
        type_ = params["type"].upper()
        if type_ == "MARKET" and params.get("timeInForce"):
            raise bad_request(-1106, "Parameter 'timeInForce' sent when not required.")
        if type_ == "LIMIT_MAKER" and params.get("timeInForce"):
            raise bad_request(-1114, "TimeInForce parameter sent when not required.")
        for name in DECIMAL_PARAMS:
            if params.get(name) and not _DECIMAL.fullmatch(params[name]):
                raise bad_request(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                         f"'^{_DECIMAL.pattern}$'.")  # fmt: skip
        client_id = checked_client_id(params.get("newClientOrderId") or new_client_id(), "newClientOrderId")
        try:
            request = OrderRequest(
                symbol=rules.symbol,
                side=Side(params["side"].lower()) if params["side"] in ("BUY", "SELL") else params["side"],  # type: ignore[arg-type]
                type=type_,  # type: ignore[arg-type]
                amount=params.get("quantity"),  # type: ignore[arg-type]
                price=params.get("price"),  # type: ignore[arg-type]
                stop_price=params.get("stopPrice"),  # type: ignore[arg-type]
                time_in_force=params.get("timeInForce"),  # type: ignore[arg-type]
                quote_amount=params.get("quoteOrderQty"),  # type: ignore[arg-type]
                client_order_id=client_id,
                trailing_delta=integer(params, "trailingDelta"),
                iceberg_amount=params.get("icebergQty"),  # type: ignore[arg-type]
                self_trade_prevention=params.get("selfTradePreventionMode") or "EXPIRE_MAKER",  # type: ignore[arg-type]
            )
        except OrderRejected as e:
            raise bad_request(e.code or -1102, e.msg or str(e)) from None
        if params["side"] not in ("BUY", "SELL"):
            raise bad_request(-1117, "Invalid side.")
        return request, client_id

    def create_order(self, params: Mapping[str, str], *, test: bool = False) -> dict[str, Any]:
        """``POST /api/v3/order`` (or ``order/test``): the answer in the requested response type."""
        request, client_id = self.request_from(params)
        now = self.clock()
        if test:
            self._check_only(request, client_id, now)
            if params.get("computeCommissionRates") != "true":
                return {}
            rates = {k: {side: v[side] for side in ("maker", "taker")}
                     for k, v in self.commission(params["symbol"]).items() if k.endswith("Commission")}  # fmt: skip
            return {f"{k}ForOrder": v for k, v in rates.items()} | {"discount": self._discount()}
        try:
            executions = self.engine.create_order(request, client_id, now)
        except OrderRejected as e:
            raise bad_request(e.code or -1013, e.msg or str(e)) from None
        order = executions[-1].order
        self.created[order.id] = now  # type: ignore[index]
        self._publish(executions, now)
        default = "FULL" if request.type in (OrderType.MARKET, OrderType.LIMIT) else "ACK"
        kind = params.get("newOrderRespType", default).upper()
        ack = {
            "symbol": self.rules_for(order.symbol).id,
            "orderId": int(order.id),  # type: ignore[arg-type]
            "orderListId": order.order_list_id,
            "clientOrderId": client_id,
            "transactTime": now,
        }
        if kind == "ACK":
            return ack
        result = ack | self.order_json(order, with_times=False) | {"workingTime": now if _has_worked(order) else -1}
        if kind == "RESULT":
            return result
        fills = [e.fill for e in executions if e.fill is not None]
        return result | {
            "fills": [
                {"price": fmt(f.price), "qty": fmt(f.amount), "commission": fmt(f.fee),
                 "commissionAsset": f.fee_currency, "tradeId": int(f.trade_id)}
                for f in fills
            ]
        }  # fmt: skip

    def _check_only(self, request: OrderRequest, client_id: str, now: int) -> None:
        """Validate like create_order without changing anything (``order/test``)."""
        try:
            copy.deepcopy(self.engine).create_order(request, client_id, now)
        except OrderRejected as e:
            raise bad_request(e.code or -1013, e.msg or str(e)) from None

    def fetch_order(self, symbol_id: str, order_id: str | None, client_id: str | None) -> dict[str, Any]:
        return self.order_json(self._order(symbol_id, order_id, client_id, -2013, "Order does not exist."))

    def cancel_order(
        self, symbol_id: str, order_id: str | None, client_id: str | None, new_client_id_: str | None = None
    ) -> dict[str, Any]:
        order = self._order(symbol_id, order_id, client_id, -2011, "Unknown order sent.")
        if not order.is_open:
            raise bad_request(-2011, "Unknown order sent.")
        now = self.clock()
        executions = self.engine.cancel_order_events(order.symbol, id=order.id, now=now)  # and its list's
        cancel_id = new_client_id_ or new_client_id()
        self._publish(executions, now, cancel_id=cancel_id)
        return self._cancel_json(executions[0].order, cancel_id, now)

    def cancel_replace(self, params: Mapping[str, str], refused: BinanceError | None = None) -> dict[str, Any]:
        """``POST order/cancelReplace``: cancel one order and place another on the same symbol.
        ``refused`` is the order-count error when the account is over its unfilled order count
        (the new order is then not placed). Partial or total failure is :class:`BinanceError`
        -2021 / -2022 with Binance's ``data`` (HTTP 409, 400, or 429 when ``refused``)."""
        mode = params.get("cancelReplaceMode")
        if not mode:
            raise bad_request(-1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or "
                                     "malformed.")  # fmt: skip
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise bad_request(-1100, "Illegal characters found in parameter 'cancelReplaceMode'; legal range is "
                                     "'STOP_ON_FAILURE, ALLOW_FAILURE'.")  # fmt: skip
        restriction = params.get("cancelRestrictions")
        if restriction and restriction not in CANCEL_RESTRICTIONS:
            raise bad_request(-1145, "Invalid cancelRestrictions")
        if params.get("orderRateLimitExceededMode", "DO_NOTHING") not in ("DO_NOTHING", "CANCEL_ONLY"):
            raise bad_request(-1100, "Illegal characters found in parameter 'orderRateLimitExceededMode'; legal range "
                                     "is 'DO_NOTHING, CANCEL_ONLY'.")  # fmt: skip
        cancel_id = integer(params, "cancelOrderId")
        if cancel_id is None and not params.get("cancelOrigClientOrderId"):
            raise bad_request(-1102, "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were "
                                     "empty/null!")  # fmt: skip
        placing = {k: v for k, v in params.items() if k not in CANCEL_REPLACE_PARAMS}
        self.request_from(placing)  # the new order's parameters are checked before anything is done
        cancel: dict[str, Any]
        try:
            order = self._order(params["symbol"], None if cancel_id is None else str(cancel_id),
                                params.get("cancelOrigClientOrderId"), -2011, "Unknown order sent.")  # fmt: skip
            if restriction and order.is_open and order.status is not CANCEL_RESTRICTIONS[restriction]:
                raise bad_request(-2011, "Order was not canceled due to cancel restrictions.")
            cancel = self.cancel_order(params["symbol"], order.id, None, params.get("cancelNewClientOrderId"))
        except BinanceError as e:
            cancel = e.body()
        new: dict[str, Any] | None = None
        if "code" not in cancel or mode == "ALLOW_FAILURE":
            try:
                if refused is not None:
                    raise refused
                new = self.create_order(placing)
            except BinanceError as e:
                new = e.body()
        results = {
            "cancelResult": "FAILURE" if "code" in cancel else "SUCCESS",
            "newOrderResult": "NOT_ATTEMPTED" if new is None else "FAILURE" if "code" in new else "SUCCESS",
            "cancelResponse": cancel,
            "newOrderResponse": new,
        }
        succeeded = [r for r in ("cancelResult", "newOrderResult") if results[r] == "SUCCESS"]
        if len(succeeded) == 2:
            return results
        status = 429 if refused is not None and mode == "STOP_ON_FAILURE" else 409 if succeeded else 400
        if succeeded:
            raise BinanceError(status, -2021, "Order cancel-replace partially failed.", data=results)
        raise BinanceError(status, -2022, "Order cancel-replace failed.", data=results)

    def amend(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``PUT order/amend/keepPriority``: reduce an open order's quantity in place (the matching
        core's :meth:`~workbench.matching.MatchingEngine.amend_order`); the answer carries the
        amended order and, for an order of a list, the list."""
        for name in ("symbol", "newQty"):
            if not params.get(name):
                raise bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if not _DECIMAL.fullmatch(params["newQty"]):
            raise bad_request(-1100, f"Illegal characters found in parameter 'newQty'; legal range is "
                                     f"'^{_DECIMAL.pattern}$'.")  # fmt: skip
        order_id, client_id = integer(params, "orderId"), params.get("origClientOrderId")
        order = self._order(params["symbol"], None if order_id is None else str(order_id), client_id, -2038,
                            "Unknown order sent.")  # fmt: skip
        new_id = checked_client_id(params.get("newClientOrderId") or new_client_id(), "newClientOrderId")
        now = self.clock()
        try:
            executions = self.engine.amend_order(
                order.symbol, id=order.id, new_amount=params["newQty"], new_client_order_id=new_id, now=now
            )
        except OrderNotFound:
            raise bad_request(-2038, "Unknown order sent.") from None
        except OrderRejected as e:
            raise bad_request(e.code or -2038, e.msg or str(e)) from None
        ids = self._publish(executions, now)
        replaced = [(e, i) for e, i in zip([e for e in executions if e.order_list is None], ids, strict=True)
                    if e.kind == "REPLACED"]  # fmt: skip
        for amendment, (_, execution_id) in zip(self.engine.amendments[-len(replaced) :], replaced, strict=True):
            self.amendment_executions[amendment.id] = execution_id
        self.save()
        amended = replaced[0][0].order
        body = self.order_json(amended, with_times=False)
        answer = {"transactTime": now, "executionId": replaced[0][1], "amendedOrder": {
            "symbol": body["symbol"], "orderId": body["orderId"], "orderListId": body["orderListId"],
            "origClientOrderId": order.client_order_id, "clientOrderId": amended.client_order_id,
            "price": body["price"], "qty": body["origQty"], "executedQty": body["executedQty"],
            "preventedQty": fmt(amended.prevented_quantity), "quoteOrderQty": body["origQuoteOrderQty"],
            "cumulativeQuoteQty": body["cummulativeQuoteQty"], "status": body["status"],
            "timeInForce": body["timeInForce"], "type": body["type"], "side": body["side"],
            **({"workingTime": self.created.get(amended.id, amended.timestamp)} if _has_worked(amended) else {}),  # type: ignore[arg-type]
            **{k: body[k] for k in ("stopPrice", "icebergQty", "trailingDelta", "trailingTime", "preventedMatchId")
               if k in body},
            "selfTradePreventionMode": body["selfTradePreventionMode"],
        }}  # fmt: skip
        if amended.order_list_id == -1:
            return answer
        listed = order_lists.OrderLists(self).list_json(self.engine.get_order_list(id=amended.order_list_id), now,
                                                        reports=False)  # fmt: skip
        return answer | {"listStatus": {k: listed[k] for k in ("orderListId", "contingencyType", "listOrderStatus",
                                                               "listClientOrderId", "symbol", "orders")}}  # fmt: skip

    def amendments(self, symbol_id: str, order_id: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET order/amendments``: an order's amendments, oldest first, from ``fromExecutionId``."""
        order = self._order(symbol_id, str(integer({"orderId": order_id}, "orderId")), None, -2013,
                            "Order does not exist.")  # fmt: skip
        start = integer(params, "fromExecutionId")
        rows = [
            {"symbol": self.rules_for(a.symbol).id, "orderId": int(a.order_id),
             "executionId": self.amendment_executions.get(a.id, -1), "origClientOrderId": a.orig_client_order_id,
             "newClientOrderId": a.new_client_order_id, "origQty": fmt(a.orig_amount), "newQty": fmt(a.new_amount),
             "time": a.timestamp}
            for a in self.engine.amendments_of(order.symbol, order.id)  # type: ignore[arg-type]
        ]  # fmt: skip
        return [r for r in rows if start is None or r["executionId"] >= start][: _limit(params, 500, 1000)]

    def cancel_all_orders(self, symbol_id: str) -> list[dict[str, Any]]:
        rules = self.rules_for(symbol_id)
        if not self.engine.open_orders(rules.symbol):
            raise bad_request(-2011, "Unknown order sent.")
        now = self.clock()
        cancel_id = new_client_id()  # one for the whole request, as rest-api.md's example shows
        answers = []
        legs: dict[int, list[Order]] = {}  # an order list's canceled orders, until its ALL_DONE
        for execution in self.engine.cancel_all_orders(rules.symbol, now):
            self._publish([execution], now, cancel_id=cancel_id)
            order = execution.order
            if execution.order_list is not None:  # an order list's: answered as its list, once
                list_id = execution.order_list.id
                lists = order_lists.OrderLists(self)
                answers.append(lists.canceled_json(list_id, legs.pop(list_id, []), cancel_id, now))
            elif order.order_list_id != -1:
                legs.setdefault(order.order_list_id, []).append(order)
            else:
                answers.append(self._cancel_json(order, cancel_id, now))
        return answers

    def open_orders(self, symbol_id: str | None) -> list[dict[str, Any]]:
        symbol = self.rules_for(symbol_id).symbol if symbol_id else None
        return [self.order_json(o) for o in self.engine.open_orders(symbol)]

    def all_orders(self, symbol_id: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.rules_for(symbol_id).symbol
        orders = sorted((o for o in self.engine.orders.values() if o.symbol == symbol), key=lambda o: int(o.id))  # type: ignore[arg-type]
        from_id = integer(params, "orderId")
        if from_id is not None:
            orders = [o for o in orders if int(o.id) >= from_id]  # type: ignore[arg-type]
        else:
            orders = _in_window(orders, params, lambda o: self.created.get(o.id, o.timestamp))  # type: ignore[arg-type]
        return [self.order_json(o) for o in _page(orders, params, from_id is not None)]

    def my_trades(self, symbol_id: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        rules = self.rules_for(symbol_id)
        trades = [t for t in self.trades if t.symbol == rules.symbol]
        order_id, from_id = integer(params, "orderId"), integer(params, "fromId")
        if order_id is not None:
            trades = [t for t in trades if int(t.order_id) == order_id]  # type: ignore[arg-type]
        if from_id is not None:
            trades = [t for t in trades if int(t.trade_id) >= from_id]
        elif order_id is None:
            trades = _in_window(trades, params, lambda t: t.timestamp)
        return [self.trade_json(t) for t in _page(trades, params, from_id is not None)]

    def account(self, omit_zero: bool = False) -> dict[str, Any]:
        fees = self.engine.fees
        balances = [
            {"asset": b.asset, "free": fmt(b.free), "locked": fmt(b.locked)}
            for b in self.engine.balances().values()
            if not omit_zero or b.total
        ]
        rate = {k: fmt(v) for k, v in {"maker": fees.maker, "taker": fees.taker, "buyer": ZERO, "seller": ZERO}.items()}
        return {
            "makerCommission": int(fees.maker * 10_000),
            "takerCommission": int(fees.taker * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": rate,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.clock(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def commission(self, symbol_id: str) -> dict[str, Any]:
        """``GET account/commission``: the account's rates on ``symbol_id`` (standard only here:
        no special or tax rates, no BNB discount)."""
        fees = self.engine.fees
        standard = {"maker": fees.maker, "taker": fees.taker, "buyer": ZERO, "seller": ZERO}
        nothing = dict.fromkeys(standard, ZERO)
        return {
            "symbol": self.rules_for(symbol_id).id,
            "standardCommission": {k: fmt(v) for k, v in standard.items()},
            "specialCommission": {k: fmt(v) for k, v in nothing.items()},
            "taxCommission": {k: fmt(v) for k, v in nothing.items()},
            "discount": self._discount(),
        }

    @staticmethod
    def _discount() -> dict[str, Any]:
        return {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB", "discount": fmt(ZERO)}

    def deposit(self, asset: str, amount: Decimal) -> None:
        """Credit (or, negative, debit) the account, as a deposit or withdrawal would."""
        now = self.clock()
        self.engine.free[asset] = self.engine.free.get(asset, ZERO) + amount
        self.engine.locked.setdefault(asset, ZERO)
        self._user({"e": "balanceUpdate", "E": now, "a": asset, "d": fmt(amount), "T": now})
        self._user(self._position([asset], now))
        self.save()

    # -- the market -------------------------------------------------------------------------

    def step(self, bars: int = 1) -> int:
        """Replay the next ``bars`` bars of every symbol; returns how many were replayed (fewer at
        the end of the data)."""
        done = 0
        for _ in range(bars):
            if self.market.cursor + 1 >= self.market.length:
                break
            self.market.cursor += 1
            self.market.restamp(self.clock())
            for symbol_id in self.market.klines:
                first = self.market.trade_ids.get(symbol_id, 0) + 1
                for price in self.market.path(symbol_id, self.market.cursor):
                    self.set_price(symbol_id, price, save=False)
                self.market.bar_trades[symbol_id] = (first, self.market.trade_ids[symbol_id])
                self._market(f"{symbol_id.lower()}@kline_1m", self.kline_event(symbol_id))
            done += 1
        if done:
            self.save()
        return done

    def set_price(self, symbol_id: str, price: Decimal | str, *, save: bool = True) -> None:
        """Trade the market at ``price``: fills and triggers what it reaches, prints a public trade
        and moves the book."""
        rules = self.rules_for(symbol_id)
        now = self.clock()
        price = rules.round_price(Decimal(str(price)))
        self._publish(self.engine.set_price(rules.symbol, price, now), now)
        market = self.market
        trade_id = market.trade_ids[rules.id] = market.trade_ids.get(rules.id, 0) + 1
        bar = market.bar(rules.id)
        qty = rules.round_amount(Decimal(repr(float(bar["volume"]))) / 4) or rules.step_size() or Decimal(1)
        trade = {"id": trade_id, "price": fmt(price), "qty": fmt(qty), "quoteQty": fmt(price * qty),
                 "time": now, "isBuyerMaker": bool(trade_id % 2), "isBestMatch": True}  # fmt: skip
        prints = market.prints.setdefault(rules.id, [])
        prints.append(trade)
        del prints[:-1000]
        tape = market.tape.setdefault(rules.id, [])
        tape.append((now, trade_id, price, qty))
        if len(tape) > 2 * TAPE_LENGTH:
            del tape[:-TAPE_LENGTH]
        stream = rules.id.lower()
        self._market(f"{stream}@trade", {"e": "trade", "E": now, "s": rules.id, "t": trade["id"], "p": trade["price"],
                                        "q": trade["qty"], "T": now, "m": trade["isBuyerMaker"],
                                        "M": True})  # fmt: skip
        self._market(f"{stream}@aggTrade", {"e": "aggTrade", "E": now, "s": rules.id, "a": trade["id"],
                                           "p": trade["price"], "q": trade["qty"], "f": trade["id"], "l": trade["id"],
                                           "T": now, "m": trade["isBuyerMaker"], "M": True})  # fmt: skip
        self._book_changed(rules.id, now)
        if save:
            self.save()

    def _book_changed(self, symbol_id: str, now: int) -> None:
        before = self.market.depth_seq.get(symbol_id, 0)
        self.market.depth_seq[symbol_id] = before + 1
        depth = self.depth(symbol_id, 1000)
        stream = symbol_id.lower()
        best_bid, best_ask = depth["bids"][0], depth["asks"][0]
        book_ticker = {"u": before + 1, "s": symbol_id, "b": best_bid[0], "B": best_bid[1], "a": best_ask[0],
                       "A": best_ask[1]}  # fmt: skip
        self._market(f"{stream}@bookTicker", book_ticker)
        # A diff that replaces the whole book: old levels go to zero, new ones are set.
        update = {"e": "depthUpdate", "E": now, "s": symbol_id, "U": before + 1, "u": before + 1,
                  "b": depth["bids"], "a": depth["asks"]}  # fmt: skip
        previous = self.market.last_depth.get(symbol_id)
        if previous:
            for side, key in (("bids", "b"), ("asks", "a")):
                now_levels = {p for p, _ in depth[side]}
                update[key] = [[p, fmt(ZERO)] for p, _ in previous[side] if p not in now_levels] + depth[side]
        self.market.last_depth[symbol_id] = depth
        for name in ("depth", "depth@100ms"):
            self._market(f"{stream}@{name}", update)
        for levels in (5, 10, 20):
            top = {"lastUpdateId": before + 1, "bids": depth["bids"][:levels], "asks": depth["asks"][:levels]}
            self._market(f"{stream}@depth{levels}", top)
            self._market(f"{stream}@depth{levels}@100ms", top)
        ticker = self.ticker_event(symbol_id, now)
        self._market(f"{stream}@ticker", ticker)
        self._market("!ticker@arr", [ticker])  # only the tickers that changed, as Binance sends them
        mini = {"e": "24hrMiniTicker", **{k: ticker[k] for k in ("E", "s", "c", "o", "h", "l", "v", "q")}}
        self._market(f"{stream}@miniTicker", mini)
        self._market("!miniTicker@arr", [mini])
        if self.events.wanted(f"{stream}@avgPrice"):
            average = self.avg_price(symbol_id)
            self._market(f"{stream}@avgPrice", {"e": "avgPrice", "E": now, "s": symbol_id, "i": "5m",
                                               "w": average["price"], "T": average["closeTime"]})  # fmt: skip
        for name, window in (("1h", 3_600_000), ("4h", 4 * 3_600_000), ("1d", DAY)):
            if self.events.wanted(f"{stream}@ticker_{name}") or self.events.wanted(f"!ticker_{name}@arr"):
                event = self.window_ticker_event(symbol_id, name, window, now)
                self._market(f"{stream}@ticker_{name}", event)
                self._market(f"!ticker_{name}@arr", [event])

    def window_ticker_event(self, symbol_id: str, name: str, window: int, now: int) -> dict[str, Any]:
        """The ``<symbol>@ticker_<name>`` event: the rolling ticker of the last ``window`` ms."""
        t = self.ticker(symbol_id, window, full=False)
        return {"e": f"{name}Ticker", "E": now, "s": symbol_id, "p": t["priceChange"], "P": t["priceChangePercent"],
                "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"], "c": t["lastPrice"],
                "w": t["weightedAvgPrice"], "v": t["volume"], "q": t["quoteVolume"], "O": t["openTime"],
                "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"], "n": t["count"]}  # fmt: skip

    def depth(self, symbol_id: str, limit: int = 100) -> dict[str, Any]:
        rules = self.rules_for(symbol_id)
        book = self.engine.book(rules.symbol)
        levels = max(1, min(limit, 5000))
        return {
            "lastUpdateId": self.market.depth_seq.get(rules.id, 0),
            "bids": [[fmt(lv.price), fmt(lv.amount)] for lv in book.bids[:levels]],
            "asks": [[fmt(lv.price), fmt(lv.amount)] for lv in book.asks[:levels]],
        }

    def recent_trades(self, symbol_id: str, limit: int = 500) -> list[dict[str, Any]]:
        prints = self.market.prints.get(self.rules_for(symbol_id).id, [])
        return prints[-max(1, min(limit, 1000)) :]

    def historical_trades(self, symbol_id: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET historicalTrades``: ``limit`` trades from ``fromId``, else the most recent (of the
        last 1000 the venue keeps)."""
        prints = self.market.prints.get(self.rules_for(symbol_id).id, [])
        from_id, limit = integer(params, "fromId"), _limit(params, 500, 1000)
        return prints[-limit:] if from_id is None else [t for t in prints if t["id"] >= from_id][:limit]

    def agg_trades(self, symbol_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Recent trades as aggregate trades (each print is its own aggregate)."""
        return [
            {"a": t["id"], "p": t["price"], "q": t["qty"], "f": t["id"], "l": t["id"], "T": t["time"],
             "m": t["isBuyerMaker"], "M": True}
            for t in self.recent_trades(symbol_id, limit)
        ]  # fmt: skip

    def klines(self, symbol_id: str, params: Mapping[str, str]) -> list[list[Any]]:
        """Closed bars up to the replay cursor, resampled to ``interval``."""
        rules = self.rules_for(symbol_id)
        minutes = INTERVALS.get(params.get("interval", ""))
        if minutes is None:
            raise bad_request(-1120, "Invalid interval.")
        frame = self.market.stamped(rules.id, self.market.cursor + 1)
        if minutes > 1:
            frame = _resample(frame, minutes)
        opened = frame.index.as_unit("ms").asi8
        start, end = integer(params, "startTime"), integer(params, "endTime")
        limit = _limit(params, 500, 1000)
        keep = np.ones(len(frame), dtype=bool)
        if start is not None:
            keep &= opened >= start
        if end is not None:
            keep &= opened <= end
        frame, opened = frame[keep], opened[keep]
        frame, opened = (
            (frame.head(limit), opened[:limit]) if start is not None else (frame.tail(limit), opened[-limit:])
        )
        return [_kline_row(int(t), row, minutes) for t, row in zip(opened, frame.itertuples(), strict=True)]

    def kline_event(self, symbol_id: str) -> dict[str, Any]:
        """The newest bar's kline event: its first and last trade ids are the public trades the
        venue printed while replaying it (``n = L - f + 1``)."""
        bar = self.market.bar(symbol_id)
        opened = int(bar.name.value // 1_000_000) + self.market.offset[symbol_id]
        row = _kline_row(opened, bar, 1)
        first, last = self.market.bar_trades.get(symbol_id, (-1, -1))
        return {
            "e": "kline", "E": self.clock(), "s": symbol_id,
            "k": {"t": row[0], "T": row[6], "s": symbol_id, "i": "1m", "f": first, "L": last, "o": row[1],
                  "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": last - first + 1 if first > 0 else 0,
                  "x": True, "q": row[7], "V": row[9], "Q": row[10], "B": "0"},
        }  # fmt: skip

    def ticker(self, symbol_id: str, window: int = DAY, *, full: bool = True) -> dict[str, Any]:
        """Price change statistics of the ``window`` ms up to now (``GET ticker/24hr`` with
        ``full``, else the rolling ``GET ticker``): prices and volumes from the bars that open in
        the window, ids, count and last quantity from the public trades printed in it."""
        rules, market = self.rules_for(symbol_id), self.market
        now = self.clock()
        opened_at = now - window
        stop = market.cursor + 1  # bars are a minute apart or more: the window's are among the last few
        frame = market.klines[rules.id].iloc[max(0, stop - window // MINUTE - 2) : stop]
        keep = market.opened(rules.id, frame) >= opened_at - opened_at % MINUTE
        opens, highs, lows, closes, volumes = (
            frame[k].to_numpy()[keep] for k in ("open", "high", "low", "close", "volume")
        )
        last = self.engine.last_price[rules.symbol]
        tape = market.tape.get(rules.id, [])
        since = bisect_left(tape, (opened_at,))  # the window's first trade
        traded = since < len(tape)
        first = _dec(opens[0]) if len(opens) else tape[since][2] if traded else last
        volume, quote = _dec(volumes.sum()), _dec((volumes * closes).sum())
        prices = [last, _dec(highs.max()), _dec(lows.min())] if len(opens) else [last]
        high, low = max(prices), min(prices)
        first_id, last_id = (tape[since][1], tape[-1][1]) if traded else (-1, -1)
        body = {
            "symbol": rules.id, "priceChange": fmt(last - first),
            "priceChangePercent": f"{(last - first) / first * 100:.3f}",
            "weightedAvgPrice": fmt(quote / volume if volume else last), "prevClosePrice": fmt(first),
            "lastPrice": fmt(last), "lastQty": fmt(tape[-1][3] if traded else ZERO), "openPrice": fmt(first),
            "highPrice": fmt(high), "lowPrice": fmt(low), "volume": fmt(volume), "quoteVolume": fmt(quote),
            "openTime": opened_at, "closeTime": now, "firstId": first_id, "lastId": last_id,
            "count": last_id - first_id + 1 if traded else 0,
        }  # fmt: skip
        if not full:
            return {k: v for k, v in body.items() if k not in ("prevClosePrice", "lastQty")}
        book = self.depth(rules.id, 1)
        return body | {"bidPrice": book["bids"][0][0], "bidQty": book["bids"][0][1], "askPrice": book["asks"][0][0],
                       "askQty": book["asks"][0][1]}  # fmt: skip

    def avg_price(self, symbol_id: str) -> dict[str, Any]:
        """``GET avgPrice``: the volume-weighted price of the last 5 minutes' bars."""
        t = self.ticker(symbol_id, 5 * MINUTE, full=False)
        return {"mins": 5, "price": t["weightedAvgPrice"], "closeTime": self.market.tape[t["symbol"]][-1][0]
                if t["count"] else t["closeTime"]}  # fmt: skip

    def ticker_event(self, symbol_id: str, now: int) -> dict[str, Any]:
        t = self.ticker(symbol_id)
        return {"e": "24hrTicker", "E": now, "s": symbol_id, "p": t["priceChange"], "P": t["priceChangePercent"],
                "w": t["weightedAvgPrice"], "x": t["prevClosePrice"], "c": t["lastPrice"], "Q": t["lastQty"],
                "b": t["bidPrice"], "B": t["bidQty"], "a": t["askPrice"], "A": t["askQty"], "o": t["openPrice"],
                "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"], "O": t["openTime"],
                "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"], "n": t["count"]}  # fmt: skip

    def exchange_info(self, symbols: list[str] | None = None) -> dict[str, Any]:
        listed = [self.rules_for(s) for s in symbols] if symbols else [self.rules[s] for s in self.market.klines]
        return {
            "timezone": "UTC",
            "serverTime": self.clock(),
            "rateLimits": [],  # filled in by the server, which enforces them
            "exchangeFilters": [],
            "symbols": [r.to_exchange_info() | FEATURES for r in listed],
        }

    # -- Binance JSON -----------------------------------------------------------------------

    def _working(self, order: Order) -> bool:
        return order.is_open and _has_worked(order)

    def order_json(self, order: Order, *, with_times: bool = True) -> dict[str, Any]:
        rules = self.rules_for(order.symbol)
        created = self.created.get(order.id, order.timestamp)  # type: ignore[arg-type]
        body = {
            "symbol": rules.id,
            "orderId": int(order.id),  # type: ignore[arg-type]
            "orderListId": order.order_list_id,
            "clientOrderId": order.client_order_id,
            "price": fmt(order.price),
            "origQty": fmt(order.amount),
            "executedQty": fmt(order.filled),
            "origQuoteOrderQty": fmt(order.quote_amount),
            "cummulativeQuoteQty": fmt(order.cost),
            "status": order.status.value,
            "timeInForce": (order.time_in_force or TimeInForce.GTC).value,
            "type": order.type.value,
            "side": order.side.value.upper(),
            "selfTradePreventionMode": order.self_trade_prevention.value,
        } | order_lists.order_extras_json(order)
        if order.iceberg_amount is not None:
            body["icebergQty"] = fmt(order.iceberg_amount)
        if order.type.is_stop or with_times:  # order queries always carry it, "0.00000000" when none
            body["stopPrice"] = fmt(order.stop_price)
        if with_times:
            working = _has_worked(order)
            body |= {
                "icebergQty": fmt(order.iceberg_amount),
                "time": created,
                "updateTime": order.last_update,
                "isWorking": working,
                "workingTime": created if working else -1,
            }
        return body

    def _cancel_json(self, order: Order, cancel_id: str, now: int) -> dict[str, Any]:
        body = self.order_json(order, with_times=False)
        first = {"symbol": body.pop("symbol"), "origClientOrderId": body.pop("clientOrderId")}
        return first | {"orderId": body.pop("orderId"), "orderListId": body.pop("orderListId"),
                        "clientOrderId": cancel_id, "transactTime": now, **body}  # fmt: skip

    def trade_json(self, fill: Fill) -> dict[str, Any]:
        return {
            "symbol": self.rules_for(fill.symbol).id,
            "id": int(fill.trade_id),
            "orderId": int(fill.order_id),  # type: ignore[arg-type]
            "orderListId": self.engine.orders[fill.order_id].order_list_id,  # type: ignore[index]
            "price": fmt(fill.price),
            "qty": fmt(fill.amount),
            "quoteQty": fmt(fill.cost),
            "commission": fmt(fill.fee),
            "commissionAsset": fill.fee_currency,
            "time": fill.timestamp,
            "isBuyer": fill.side is Side.BUY,
            "isMaker": fill.is_maker,
            "isBestMatch": True,
        }

    def execution_report(self, execution: Execution, now: int, cancel_id: str | None = None) -> dict[str, Any]:
        """The ``executionReport`` of ``execution`` (user-data-stream.md). ``C``, the original client
        order id, is the canceled order's own id on a cancel (``c`` is then ``cancel_id``), the id
        before the amendment on ``REPLACED``, ``""`` otherwise; ``n`` is ``"0"`` without a fill."""
        order, fill = execution.order, execution.fill
        original = order.client_order_id if cancel_id else ""
        if execution.kind == "REPLACED":
            original = self.engine.amendments_of(order.symbol, order.id)[-1].orig_client_order_id  # type: ignore[arg-type]
        self._execution_id += 1
        working = self._working(order)
        created = self.created.get(order.id, order.timestamp)  # type: ignore[arg-type]
        return {
            "e": "executionReport", "E": now, "s": self.rules_for(order.symbol).id,
            "c": cancel_id or order.client_order_id, "S": order.side.value.upper(), "o": order.type.value,
            "f": (order.time_in_force or TimeInForce.GTC).value, "q": fmt(order.amount), "p": fmt(order.price),
            "P": fmt(order.stop_price), "F": fmt(order.iceberg_amount), "g": order.order_list_id,
            "C": original,
            "x": execution.kind, "X": order.status.value, "r": "NONE", "i": int(order.id),  # type: ignore[arg-type]
            "l": fmt(fill.amount if fill else ZERO), "z": fmt(order.filled), "L": fmt(fill.price if fill else ZERO),
            "n": fmt(fill.fee) if fill else "0", "N": fill.fee_currency if fill else None, "T": now,
            "t": int(fill.trade_id) if fill else -1, "I": self._execution_id, "w": working,
            "m": fill.is_maker if fill else False, "M": False, "O": created, "Z": fmt(order.cost),
            "Y": fmt(fill.cost if fill else ZERO), "Q": fmt(order.quote_amount), "V": order.self_trade_prevention.value,
            **({"W": created} if working else {}), **order_lists.stream_extras(order),
        }  # fmt: skip

    def _position(self, assets: list[str], now: int) -> dict[str, Any]:
        balances = self.engine.balances()
        return {"e": "outboundAccountPosition", "E": now, "u": now,
                "B": [{"a": a, "f": fmt(balances[a].free), "l": fmt(balances[a].locked)}
                      for a in assets if a in balances]}  # fmt: skip

    # -- events and state -------------------------------------------------------------------

    def _publish(self, executions: list[Execution], now: int, cancel_id: str | None = None) -> list[int]:
        """Send ``executions`` on the user data stream; returns the executionIds (``I``) of their
        executionReports, in order (LIST_STATUS ones have none)."""
        assets: set[str] = set()
        ids = []
        for execution in executions:
            if execution.order_list is not None:
                self._user(order_lists.list_status_event(self, execution, now))
                continue
            if execution.fill is not None:
                self.trades.append(execution.fill)
            rules = self.rules_for(execution.order.symbol)
            assets |= {rules.base, rules.quote}
            self._user(self.execution_report(execution, now, cancel_id))
            ids.append(self._execution_id)
        if assets:
            self._user(self._position(sorted(assets), now))
            self.save()
        return ids

    def _user(self, event: dict[str, Any]) -> None:
        for listener in self.events.user:
            listener(event)

    def _market(self, stream: str, payload: Any) -> None:
        for listener in self.events.market:
            listener(stream, payload)

    def save(self) -> None:
        """Write the account and the replay position to the state file, atomically."""
        if self.state_path is None:
            return
        engine = self.engine
        state = {
            "version": 1,
            "cursor": self.market.cursor,
            "trade_ids": self.market.trade_ids,
            "offset": self.market.offset,
            "free": {a: str(v) for a, v in engine.free.items()},
            "locked": {a: str(v) for a, v in engine.locked.items()},
            "last_price": {s: str(v) for s, v in engine.last_price.items()},
            "order_seq": engine._order_seq,
            "fill_seq": engine._trade_seq,
            "orders": [_order_state(o) for o in engine.orders.values()],
            "created": self.created,
            "trades": [asdict(t) for t in self.trades],
            "amendments": [
                asdict(a) | {"execution_id": self.amendment_executions.get(a.id)} for a in engine.amendments
            ],  # fmt: skip
        } | order_lists.lists_state(engine)
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def _load(self, path: Path) -> None:
        state = json.loads(path.read_text())
        engine = self.engine
        self.market.cursor = min(int(state["cursor"]), self.market.length - 1)
        ids = state.get("trade_ids") or dict.fromkeys(self.market.klines, int(state.get("trade_seq", 0)))
        self.market.trade_ids = {s: int(v) for s, v in ids.items()}
        self.market.offset = {s: int(v) for s, v in state.get("offset", {}).items() if s in self.market.klines}
        engine.free = {a: Decimal(v) for a, v in state["free"].items()}
        engine.locked = {a: Decimal(v) for a, v in state["locked"].items()}
        engine.last_price = {s: Decimal(v) for s, v in state["last_price"].items()}
        engine._order_seq, engine._trade_seq = int(state["order_seq"]), int(state["fill_seq"])
        for raw in state["orders"]:
            order = _order_from_state(raw)
            engine.orders[order.id] = order  # type: ignore[index]
            engine._by_client[order.client_order_id] = order.id  # type: ignore[assignment]
            if order.is_open:
                engine._open[order.id] = order  # type: ignore[index]
        self.created = {k: int(v) for k, v in state["created"].items()}
        self.trades = [_fill_from_state(t) for t in state["trades"]]
        order_lists.load_lists_state(engine, state)
        for raw in state.get("amendments", []):
            execution_id = raw.pop("execution_id")
            amendment = Amendment(**{**raw, **{k: Decimal(raw[k]) for k in ("orig_amount", "new_amount")}})
            engine.amendments.append(amendment)
            if execution_id is not None:
                self.amendment_executions[amendment.id] = int(execution_id)


def _order_state(order: Order) -> dict[str, Any]:
    return {k: (None if v is None else str(v) if not isinstance(v, (bool, int, dict)) else v)
            for k, v in asdict(order).items()} | {"fees": {a: str(v) for a, v in order.fees.items()}}  # fmt: skip


def _order_from_state(raw: Mapping[str, Any]) -> Order:
    dec = {
        k: Decimal(raw[k]) if raw[k] is not None else None for k in ("amount", "price", "stop_price", "quote_amount")
    }
    return Order(
        symbol=raw["symbol"], side=Side(raw["side"]), type=OrderType(raw["type"]),
        time_in_force=TimeInForce(raw["time_in_force"]) if raw["time_in_force"] else None,
        client_order_id=raw["client_order_id"], id=raw["id"], status=OrderStatus(raw["status"]),
        filled=Decimal(raw["filled"]), cost=Decimal(raw["cost"]), timestamp=int(raw["timestamp"]),
        last_update=int(raw["last_update"]), triggered=bool(raw["triggered"]),
        fees={a: Decimal(v) for a, v in raw["fees"].items()}, **dec, **order_lists.order_extras_from_state(raw),  # type: ignore[arg-type]
    )  # fmt: skip


def _fill_from_state(raw: Mapping[str, Any]) -> Fill:
    return Fill(**{**raw, "side": Side(raw["side"]), "timestamp": int(raw["timestamp"]),
                   **{k: Decimal(raw[k]) for k in ("price", "amount", "cost", "fee")}})  # fmt: skip


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    return max(1, min(integer(params, "limit", default), maximum))  # type: ignore[type-var]


def _has_worked(order: Order) -> bool:
    """Binance's ``isWorking``: the order has been working on the book (every order but a stop
    that has not triggered or an order list's pending order), whether it is still open, filled,
    canceled or expired."""
    return order.status is not OrderStatus.PENDING_NEW and (not order.type.is_stop or order.triggered)


def _page(items: list[Any], params: Mapping[str, str], from_id: bool) -> list[Any]:
    """``limit`` records, oldest first: from ``fromId``/``orderId`` or ``startTime`` the first
    ones, else (as Binance does) the most recent."""
    limit = _limit(params, 500, 1000)
    return items[:limit] if from_id or params.get("startTime") else items[-limit:]


def _in_window(items: list[Any], params: Mapping[str, str], when: Callable[[Any], int]) -> list[Any]:
    start, end = integer(params, "startTime"), integer(params, "endTime")
    if start is not None and end is not None and end - start > 24 * 3600 * 1000:
        raise bad_request(-1127, "More than 24 hours between startTime and endTime.")
    return [i for i in items if (start is None or when(i) >= start) and (end is None or when(i) <= end)]


def _dec(value: Any) -> Decimal:
    return Decimal(repr(float(value)))


def _resample(frame: pd.DataFrame, minutes: int) -> pd.DataFrame:
    rule = f"{minutes}min"
    grouped = frame.resample(rule, origin="epoch", label="left", closed="left")
    out = grouped.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    for column in ("quote_volume", "taker_buy_base_volume", "taker_buy_quote_volume", "trades"):
        if column in frame:
            out[column] = grouped[column].sum()
    return out


def _kline_row(opened: int, row: Any, minutes: int) -> list[Any]:
    def get(name: str, default: float = 0.0) -> float:
        return float(getattr(row, name, default) if not isinstance(row, pd.Series) else row.get(name, default))

    volume = get("volume")
    return [
        opened, f"{get('open'):.8f}", f"{get('high'):.8f}", f"{get('low'):.8f}", f"{get('close'):.8f}",
        f"{volume:.8f}", opened + minutes * 60_000 - 1, f"{get('quote_volume', volume * get('close')):.8f}",
        int(get("trades")), f"{get('taker_buy_base_volume'):.8f}", f"{get('taker_buy_quote_volume'):.8f}", "0",
    ]  # fmt: skip
