"""Order lists at the local exchange: Binance's OCO, OTO and OTOCO endpoints over the matching
core's order lists, their answers and ``listStatus`` events, prevented matches, and the state
file's share of them. See docs/binance-spot-api.md, "Order lists, trailing stops, icebergs, STP".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from workbench.errors import OrderNotFound, OrderRejected
from workbench.exchange import venue as base  # a module: venue imports this one too
from workbench.matching import Execution, MatchingEngine
from workbench.model import (
    ContingencyType,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderListRequest,
    OrderStatus,
    PreventedMatch,
    SelfTradePrevention,
)

Weight = Callable[[Mapping[str, str]], int]
# A leg's parameter suffix -> the single-order parameter it stands for.
_LEG = {"Type": "type", "Side": "side", "Quantity": "quantity", "ClientOrderId": "newClientOrderId",
        "Price": "price", "StopPrice": "stopPrice", "TrailingDelta": "trailingDelta", "IcebergQty": "icebergQty",
        "TimeInForce": "timeInForce", "StrategyId": "strategyId", "StrategyType": "strategyType"}  # fmt: skip
_LIST = ("symbol", "listClientOrderId", "newOrderRespType", "selfTradePreventionMode", "recvWindow", "timestamp",
         "signature")  # fmt: skip
# The legacy order/oco: its parameter -> (leg, single-order parameter); the limit leg is LIMIT_MAKER.
_LEGACY = {"price": ("limit", "price"), "limitClientOrderId": ("limit", "newClientOrderId"),
           "limitIcebergQty": ("limit", "icebergQty"), "limitStrategyId": ("limit", "strategyId"),
           "limitStrategyType": ("limit", "strategyType"), "stopPrice": ("stop", "stopPrice"),
           "stopLimitPrice": ("stop", "price"), "stopClientOrderId": ("stop", "newClientOrderId"),
           "stopIcebergQty": ("stop", "icebergQty"), "stopLimitTimeInForce": ("stop", "timeInForce"),
           "trailingDelta": ("stop", "trailingDelta"), "stopStrategyId": ("stop", "strategyId"),
           "stopStrategyType": ("stop", "strategyType")}  # fmt: skip
# The WebSocket API's order-list methods -> the REST routes that answer them.
WS_METHODS = {"orderList.place": ("POST", "order/oco"), "orderList.place.oco": ("POST", "orderList/oco"),
              "orderList.place.oto": ("POST", "orderList/oto"), "orderList.place.otoco": ("POST", "orderList/otoco"),
              "orderList.cancel": ("DELETE", "orderList"), "orderList.status": ("GET", "orderList"),
              "openOrderLists.status": ("GET", "openOrderList"), "allOrderLists": ("GET", "allOrderList"),
              "myPreventedMatches": ("GET", "myPreventedMatches")}  # fmt: skip
# The placing routes -> how many orders each adds to the unfilled order count (rest-api.md: OCO and
# OTO 2, OTOCO 3), as it adds them to MAX_NUM_ORDERS.
PLACING_LISTS = {("POST", "order/oco"): 2, ("POST", "orderList/oco"): 2, ("POST", "orderList/oto"): 2,
                 ("POST", "orderList/otoco"): 3}  # fmt: skip


def _fixed(n: int) -> Weight:
    return lambda params: n


class OrderLists:
    """Binance's order-list endpoints over one :class:`Venue`."""

    def __init__(self, venue: base.Venue) -> None:
        self.venue = venue

    @property
    def engine(self) -> MatchingEngine:
        return self.venue.engine

    def routes(self) -> dict[tuple[str, str], tuple[Callable[[Mapping[str, str]], Any], Weight]]:
        """The signed REST endpoints: (method, path under /api/v3) -> (handler, weight)."""
        return {
            ("POST", "orderList/oco"): (lambda p: self.place(p, "oco"), _fixed(1)),
            ("POST", "order/oco"): (lambda p: self.place(p, "legacy"), _fixed(1)),
            ("POST", "orderList/oto"): (lambda p: self.place(p, "oto"), _fixed(1)),
            ("POST", "orderList/otoco"): (lambda p: self.place(p, "otoco"), _fixed(1)),
            ("DELETE", "orderList"): (self.cancel, _fixed(1)),
            ("GET", "orderList"): (self.status, _fixed(4)),
            ("GET", "allOrderList"): (self.all_lists, _fixed(20)),
            ("GET", "openOrderList"): (self.open_lists, _fixed(6)),
            ("GET", "myPreventedMatches"): (self.prevented, lambda p: 2 if p.get("preventedMatchId") else 20),
        }

    # -- placing ----------------------------------------------------------------------------

    def legs(self, params: Mapping[str, str], kind: str) -> tuple[ContingencyType, list[dict[str, str]]]:
        """The single-order parameters of each leg of a list placement, in the core's order."""
        shared = {k: params[k] for k in ("symbol", "selfTradePreventionMode") if params.get(k)}
        if kind == "legacy":
            legs: dict[str, dict[str, str]] = {"limit": {"type": "LIMIT_MAKER"}, "stop": {}}
            for name, (leg, key) in _LEGACY.items():
                if params.get(name):
                    legs[leg][key] = params[name]
            legs["stop"]["type"] = "STOP_LOSS_LIMIT" if params.get("stopLimitPrice") else "STOP_LOSS"
            known = {*_LIST, "side", "quantity", *_LEGACY}
            common = shared | {k: params[k] for k in ("side", "quantity") if params.get(k)}
            order = ("limit", "stop") if params.get("side") == "SELL" else ("stop", "limit")
            found = [common | legs[leg] for leg in order]
            self._check_read(params, known)
            return ContingencyType.OCO, found
        prefixes = {"oco": ("above", "below"), "oto": ("working", "pending"),
                    "otoco": ("working", "pendingAbove", "pendingBelow")}[kind]  # fmt: skip
        known = set(_LIST)
        found = []
        for prefix in prefixes:
            # where a leg's side and quantity come from: the list (OCO), the pending pair (OTOCO) or the leg
            owner = "" if kind == "oco" else "pending" if kind == "otoco" and prefix != "working" else prefix
            names = {s: (owner + s if owner else s.lower()) if s in ("Side", "Quantity") else prefix + s for s in _LEG}
            known |= set(names.values())
            leg = shared | {key: params[names[s]] for s, key in _LEG.items() if params.get(names[s])}
            for s in ("Side", "Quantity", "Type"):
                if not params.get(names[s]):
                    raise base.bad_request(-1102, f"Mandatory parameter '{names[s]}' was not sent, was empty/null, or "
                                             "malformed.")  # fmt: skip
            found.append(leg)
        self._check_read(params, known)
        return ContingencyType(kind.upper()), found

    @staticmethod
    def _check_read(params: Mapping[str, str], known: set[str]) -> None:
        unknown = set(params) - known
        if unknown:
            raise base.bad_request(-1104, f"Not all sent parameters were read; read '{len(params) - len(unknown)}' "
                                     f"parameter(s) but was sent '{len(params)}'.")  # fmt: skip

    def place(self, params: Mapping[str, str], kind: str) -> dict[str, Any]:
        """``POST orderList/oco|oto|otoco`` and the legacy ``order/oco``: the list answer."""
        if not params.get("symbol"):
            raise base.bad_request(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        contingency, legs = self.legs(params, kind)
        requests = [self.venue.request_from(leg) for leg in legs]
        list_id = base.checked_client_id(params.get("listClientOrderId") or base.new_client_id(), "listClientOrderId")
        now = self.venue.clock()
        try:
            request = OrderListRequest(contingency, tuple(r for r, _ in requests), list_id)
            executions = self.engine.create_order_list(request, list_id, now)
        except OrderRejected as e:
            raise base.bad_request(e.code or -1013, e.msg or str(e)) from None
        order_list = next(e.order_list for e in executions if e.order_list is not None)
        for order_id in order_list.orders:
            self.venue.created[order_id] = now
        self.venue._publish(executions, now)
        kind_ = params.get("newOrderRespType", "FULL").upper()
        return self.list_json(self.engine.get_order_list(id=order_list.id), now, reports=kind_ != "ACK",
                              fills=executions if kind_ == "FULL" else None)  # fmt: skip

    # -- cancel and queries -----------------------------------------------------------------

    def _find(self, params: Mapping[str, str], code: int, *, symbol: bool = True) -> OrderList:
        list_id, client_id = (
            base.integer(params, "orderListId"),
            params.get("listClientOrderId") or params.get("origClientOrderId"),
        )
        if symbol and not params.get("symbol"):
            raise base.bad_request(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if list_id is None and not client_id:
            raise base.bad_request(-1102, "Param 'listClientOrderId' or 'orderListId' must be sent, but both were "
                                     "empty/null!")  # fmt: skip
        ccxt_symbol = self.venue.rules_for(params["symbol"]).symbol if params.get("symbol") else None
        try:
            return self.engine.get_order_list(ccxt_symbol, id=list_id, list_client_order_id=client_id)
        except OrderNotFound:
            raise base.bad_request(code, "Order list does not exist.") from None

    def cancel(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE orderList``: cancel every open order of the list."""
        order_list = self._find(params, -2011)
        if not order_list.is_open:
            raise base.bad_request(-2011, "Order list does not exist.")
        cancel_id = base.checked_client_id(params.get("newClientOrderId") or base.new_client_id(), "newClientOrderId")
        now = self.venue.clock()
        executions = self.engine.cancel_order_list(order_list.symbol, id=order_list.id, now=now)
        self.venue._publish(executions, now, cancel_id=cancel_id)
        return self.canceled_json(order_list.id, [e.order for e in executions if e.kind == "CANCELED"], cancel_id, now)

    def canceled_json(self, list_id: int, canceled: list[Order], cancel_id: str, now: int) -> dict[str, Any]:
        """A list's cancel as Binance answers it: the list, and each canceled order's cancel in
        ``orderReports``, all under the request's one ``cancel_id``."""
        body = self.list_json(self.engine.get_order_list(id=list_id), now, reports=False)
        return body | {"orderReports": [self.venue._cancel_json(o, cancel_id, now) for o in canceled]}

    def status(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET orderList`` (by ``orderListId`` or ``origClientOrderId``; no symbol needed)."""
        return self.list_json(self._find(params, -2013, symbol=False), None, reports=False)

    def all_lists(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET allOrderList``: from ``fromId`` or in the time window, else the most recent."""
        lists = self.engine.order_lists_of()
        from_id = base.integer(params, "fromId")
        if from_id is not None:
            lists = [lst for lst in lists if lst.id >= from_id]
        else:
            lists = base._in_window(lists, params, lambda lst: lst.timestamp)
        return [self.list_json(lst, None, reports=False) for lst in base._page(lists, params, from_id is not None)]

    def open_lists(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET openOrderList``."""
        return [self.list_json(lst, None, reports=False) for lst in self.engine.order_lists_of(open_only=True)]

    def prevented(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET myPreventedMatches`` (by ``orderId`` or ``preventedMatchId``, from ``fromPreventedMatchId``)."""
        if not params.get("symbol"):
            raise base.bad_request(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        rules = self.venue.rules_for(params["symbol"])
        order_id, match_id = base.integer(params, "orderId"), base.integer(params, "preventedMatchId")
        if order_id is None and match_id is None:
            raise base.bad_request(
                -1102, "Param 'orderId' or 'preventedMatchId' must be sent, but both were empty/null!"
            )
        matches = self.engine.prevented_matches(rules.symbol, order_id=None if order_id is None else str(order_id))
        start = base.integer(params, "fromPreventedMatchId")
        matches = [m for m in matches if (match_id is None or m.id == match_id) and (start is None or m.id >= start)]
        return [prevented_json(m, rules.id) for m in matches[: max(1, min(base.integer(params, "limit", 500), 1000))]]  # type: ignore[type-var]

    # -- Binance JSON -----------------------------------------------------------------------

    def list_json(
        self, order_list: OrderList, now: int | None, *, reports: bool, fills: list[Execution] | None = None
    ) -> dict[str, Any]:
        """An order list as Binance answers it; ``orderReports`` (with ``fills`` on FULL) after a placement."""
        symbol_id = self.venue.rules_for(order_list.symbol).id
        orders = [self.engine.orders[i] for i in order_list.orders]
        body: dict[str, Any] = {
            "orderListId": order_list.id,
            "contingencyType": order_list.contingency_type.value,
            "listStatusType": order_list.list_status_type.value,
            "listOrderStatus": order_list.list_order_status.value,
            "listClientOrderId": order_list.list_client_order_id,
            "transactionTime": order_list.last_update if now is None else now,
            "symbol": symbol_id,
            "orders": [
                {"symbol": symbol_id, "orderId": int(o.id), "clientOrderId": o.client_order_id}  # type: ignore[arg-type]
                for o in orders
            ],  # fmt: skip
        }
        if not reports:
            return body
        answers = []
        for order in orders:
            report = self.venue.order_json(order, with_times=False)
            report |= {
                "transactTime": now,
                "workingTime": now if base._has_worked(order) and order.status is not OrderStatus.PENDING_NEW else -1,
            }
            if fills is not None:
                report["fills"] = [{"price": base.fmt(e.fill.price), "qty": base.fmt(e.fill.amount),
                                    "commission": base.fmt(e.fill.fee), "commissionAsset": e.fill.fee_currency,
                                    "tradeId": int(e.fill.trade_id)}
                                   for e in fills if e.fill is not None and e.order.id == order.id]  # fmt: skip
            answers.append(report)
        return body | {"orderReports": answers}


def list_status_event(venue: base.Venue, execution: Execution, now: int) -> dict[str, Any]:
    """The user data stream's ``listStatus`` event of a LIST_STATUS execution."""
    order_list = execution.order_list
    assert order_list is not None
    symbol_id = venue.rules_for(order_list.symbol).id
    return {
        "e": "listStatus", "E": now, "s": symbol_id, "g": order_list.id, "c": order_list.contingency_type.value,
        "l": order_list.list_status_type.value, "L": order_list.list_order_status.value, "r": "NONE",
        "C": order_list.list_client_order_id, "T": now,
        "O": [{"s": symbol_id, "i": int(i), "c": venue.engine.orders[i].client_order_id} for i in order_list.orders],
    }  # fmt: skip


def prevented_json(match: PreventedMatch, symbol_id: str) -> dict[str, Any]:
    return {
        "symbol": symbol_id, "preventedMatchId": match.id, "takerOrderId": int(match.taker_order_id),
        "makerSymbol": symbol_id, "makerOrderId": int(match.maker_order_id), "tradeGroupId": match.id,
        "selfTradePreventionMode": match.mode.value, "price": base.fmt(match.price),
        "takerPreventedQuantity": base.fmt(match.taker_prevented_quantity),
        "makerPreventedQuantity": base.fmt(match.maker_prevented_quantity), "transactTime": match.timestamp,
    }  # fmt: skip


def order_extras_json(order: Order) -> dict[str, Any]:
    """The conditional fields of an order answer: trailing, iceberg and STP ones, when they apply."""
    extras: dict[str, Any] = {}
    if order.trailing_delta is not None:
        extras |= {"trailingDelta": order.trailing_delta, "trailingTime": order.trailing_time or -1}
    if order.prevented_match_id is not None:
        extras |= {
            "preventedMatchId": order.prevented_match_id,
            "preventedQuantity": base.fmt(order.prevented_quantity),
        }
    return extras


def stream_extras(order: Order) -> dict[str, Any]:
    """The same conditional fields in an executionReport: d, D (trailing), v, A (STP)."""
    extras = order_extras_json(order)
    names = {"trailingDelta": "d", "trailingTime": "D", "preventedMatchId": "v", "preventedQuantity": "A"}
    return {names[k]: v for k, v in extras.items()}


# -- the state file -------------------------------------------------------------------------


def lists_state(engine: MatchingEngine) -> dict[str, Any]:
    """The engine's order lists and prevented matches, for the state file."""
    return {
        "list_seq": engine._list_seq,
        "order_lists": [asdict(lst) for lst in engine.order_lists.values()],
        "prevented": [asdict(m) for m in engine.prevented],
    }


def load_lists_state(engine: MatchingEngine, state: Mapping[str, Any]) -> None:
    """Restore what :func:`lists_state` wrote (a state file without lists has none)."""
    engine._list_seq = int(state.get("list_seq", 0))
    for raw in state.get("order_lists", []):
        order_list = OrderList(
            int(raw["id"]), raw["list_client_order_id"], raw["symbol"], ContingencyType(raw["kind"]),
            tuple(raw["orders"]), ListStatusType(raw["list_status_type"]), ListOrderStatus(raw["list_order_status"]),
            int(raw["timestamp"]), int(raw["last_update"]),
        )  # fmt: skip
        engine.order_lists[order_list.id] = order_list
        if order_list.is_open:
            engine._open_lists[order_list.id] = order_list
        engine._lists_by_client[order_list.list_client_order_id] = order_list.id
    engine.prevented = [
        PreventedMatch(**{**raw, "mode": SelfTradePrevention(raw["mode"]), "price": Decimal(raw["price"]),
                          **{k: None if raw[k] is None else Decimal(raw[k])
                             for k in ("taker_prevented_quantity", "maker_prevented_quantity")}})
        for raw in state.get("prevented", [])
    ]  # fmt: skip


def order_extras_from_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The Order fields of lists, trailing stops, icebergs and STP from a state-file order."""

    def dec(name: str) -> Decimal | None:
        return None if raw.get(name) is None else Decimal(raw[name])

    def num(name: str) -> int | None:
        return None if raw.get(name) is None else int(raw[name])

    return {
        "order_list_id": int(raw.get("order_list_id", -1)), "trailing_delta": num("trailing_delta"),
        "trailing_time": num("trailing_time"), "iceberg_amount": dec("iceberg_amount"),
        "self_trade_prevention": SelfTradePrevention(raw.get("self_trade_prevention", "EXPIRE_MAKER")),
        "prevented_quantity": dec("prevented_quantity") or Decimal(0), "prevented_match_id": num("prevented_match_id"),
        "trail_extreme": dec("trail_extreme"), "holds_funds": bool(raw.get("holds_funds", True)),
    }  # fmt: skip
