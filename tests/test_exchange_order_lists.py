"""Order lists (OCO, OTO, OTOCO), trailing stops, icebergs and self-trade prevention at the local
exchange: ccxt's implicit methods and plain signed requests over HTTP, the WebSocket API and its
user data stream, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests import test_exchange
from tests.polling import until
from tests.test_exchange import client_for, last
from workbench.exchange import LocalExchange


@pytest.fixture
async def exchange():
    async with LocalExchange(("BTC/USDT",)) as ex:
        ex.set_price("BTC/USDT", "40000")
        yield ex


client = test_exchange.client  # the ccxt client fixture, on this module's exchange


async def rest(exchange: LocalExchange, method: str, path: str, **params: Any) -> tuple[int, Any]:
    """One signed request: (HTTP status, JSON answer)."""
    query = urlencode({k: str(v) for k, v in params.items()} | {"timestamp": exchange.now()})
    signature = hmac.new(exchange.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{exchange.url}/api/v3/{path}?{query}&signature={signature}",
            headers={"X-MBX-APIKEY": exchange.api_key},
        ) as answer,
    ):
        return answer.status, await answer.json()


class WsApi:
    """A WebSocket API connection subscribed to the user data stream: answers by id, events in order."""

    def __init__(self, exchange: LocalExchange, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.exchange, self.ws = exchange, ws
        self.events: list[dict[str, Any]] = []
        self.answers: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            body = message.json()
            if "event" in body:
                self.events.append(body["event"])
            else:
                self.answers[body["id"]] = body

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        params = {k: str(v) for k, v in params.items()} | {"apiKey": self.exchange.api_key,
                                                           "timestamp": self.exchange.now()}  # fmt: skip
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(self.exchange.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        id_ = next(self._ids)
        await self.ws.send_json({"id": id_, "method": method, "params": params})
        await until(lambda: id_ in self.answers, 5, f"the answer to {method}")
        return self.answers.pop(id_)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["e"] == kind]


@pytest.fixture
async def ws_api(exchange):
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        api = WsApi(exchange, ws)
        assert (await api.call("userDataStream.subscribe.signature"))["status"] == 200
        yield api
        api._reader.cancel()


def sell_oco(price: float = 40000, **extra: Any) -> dict[str, Any]:
    """A sell OCO around ``price``: take profit by LIMIT_MAKER 2% above, stop 2% below (limit 2.5%)."""
    return {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "aboveType": "LIMIT_MAKER",
            "abovePrice": f"{price * 1.02:.2f}", "belowType": "STOP_LOSS_LIMIT",
            "belowStopPrice": f"{price * 0.98:.2f}", "belowPrice": f"{price * 0.975:.2f}",
            "belowTimeInForce": "GTC"} | extra  # fmt: skip


# -- OCO ----------------------------------------------------------------------------------------


async def test_oco_one_leg_fills_the_other_expires_and_list_status_streams(exchange, client, ws_api):
    placed = await client.privatePostOrderListOco(sell_oco(listClientOrderId="tp-sl"))
    assert (placed["contingencyType"], placed["listStatusType"], placed["listOrderStatus"]) == (
        "OCO", "EXEC_STARTED", "EXECUTING")  # fmt: skip
    assert placed["listClientOrderId"] == "tp-sl" and placed["symbol"] == "BTCUSDT" and placed["transactionTime"] > 0
    above, below = placed["orderReports"]
    assert (above["type"], below["type"]) == ("LIMIT_MAKER", "STOP_LOSS_LIMIT")
    assert {r["orderListId"] for r in placed["orderReports"]} == {placed["orderListId"]}
    assert [o["orderId"] for o in placed["orders"]] == [above["orderId"], below["orderId"]]
    assert above["workingTime"] == placed["transactionTime"] and below["workingTime"] == -1
    # the legs share one lock: 0.01 BTC, not 0.02
    assert (await client.fetch_balance())["BTC"]["used"] == pytest.approx(0.01)
    fetched = await client.fetch_order(str(above["orderId"]), "BTC/USDT")
    assert fetched["info"]["orderListId"] == placed["orderListId"]

    exchange.set_price("BTC/USDT", "40900")  # the take profit fills; the stop expires
    await until(lambda: len(ws_api.of("listStatus")) == 2, 5, "listStatus ALL_DONE")
    started, done = ws_api.of("listStatus")
    assert (started["l"], started["L"], done["l"], done["L"]) == ("EXEC_STARTED", "EXECUTING", "ALL_DONE", "ALL_DONE")
    assert done["g"] == placed["orderListId"] and done["c"] == "OCO" and done["C"] == "tp-sl"
    assert [o["i"] for o in done["O"]] == [above["orderId"], below["orderId"]]
    reports = {(e["i"], e["X"]) for e in ws_api.of("executionReport")}
    assert {(above["orderId"], "FILLED"), (below["orderId"], "EXPIRED")} <= reports
    assert {e["g"] for e in ws_api.of("executionReport")} == {placed["orderListId"]}

    status = await client.privateGetOrderList({"orderListId": placed["orderListId"]})
    assert (status["listStatusType"], status["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
    assert "orderReports" not in status
    assert (await client.fetch_order(str(below["orderId"]), "BTC/USDT"))["status"] == "expired"
    assert (await client.fetch_my_trades("BTC/USDT"))[0]["info"]["orderListId"] == placed["orderListId"]
    assert await client.privateGetOpenOrderList() == []
    assert [lst["orderListId"] for lst in await client.privateGetAllOrderList()] == [placed["orderListId"]]


async def test_legacy_order_oco_and_single_orders_read_order_list_id_minus_one(exchange, client):
    single = await client.create_order("BTC/USDT", "limit", "buy", 0.01, 39000)
    assert single["info"]["orderListId"] == -1
    legacy = await client.privatePostOrderOco({
        "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "price": "39500", "stopPrice": "40500",
        "stopLimitPrice": "40600", "stopLimitTimeInForce": "GTC", "limitClientOrderId": "lim",
        "stopClientOrderId": "stp"})  # fmt: skip
    kinds = {r["clientOrderId"]: r["type"] for r in legacy["orderReports"]}
    assert kinds == {"lim": "LIMIT_MAKER", "stp": "STOP_LOSS_LIMIT"} and legacy["contingencyType"] == "OCO"
    status, error = await rest(exchange, "POST", "order/oco", symbol="BTCUSDT", side="BUY", quantity="0.01",
                               price="39500", stopPrice="40500", stopLimitPrice="40600",
                               stopLimitTimeInForce="GTC", bogus="1")  # fmt: skip
    assert status == 400 and error["code"] == -1104
    status, error = await rest(exchange, "POST", "orderList/oco", **sell_oco(belowType=""))
    assert status == 400 and error == {"code": -1102, "msg": "Mandatory parameter 'belowType' was not sent, was "
                                                              "empty/null, or malformed."}  # fmt: skip
    swapped = sell_oco(aboveType="STOP_LOSS_LIMIT", aboveStopPrice="40800", aboveTimeInForce="GTC",
                       belowType="LIMIT_MAKER", belowPrice="39200", belowTimeInForce="", belowStopPrice="")  # fmt: skip
    status, error = await rest(exchange, "POST", "orderList/oco", **swapped)
    assert status == 400 and error["code"] == -1166


# -- OTO, OTOCO ---------------------------------------------------------------------------------


async def test_oto_pending_order_is_placed_when_the_working_order_fills(exchange, client, ws_api):
    placed = await client.privatePostOrderListOto({
        "symbol": "BTCUSDT", "workingType": "LIMIT", "workingSide": "BUY", "workingPrice": "39600",
        "workingQuantity": "0.01", "workingTimeInForce": "GTC", "pendingType": "LIMIT_MAKER",
        "pendingSide": "SELL", "pendingPrice": "41000", "pendingQuantity": "0.01"})  # fmt: skip
    working, pending = placed["orderReports"]
    assert placed["contingencyType"] == "OTO" and pending["status"] == "PENDING_NEW" and pending["workingTime"] == -1
    waiting = (await client.fetch_order(str(pending["orderId"]), "BTC/USDT"))["info"]
    assert (waiting["status"], waiting["isWorking"], waiting["workingTime"]) == ("PENDING_NEW", False, -1)
    exchange.set_price("BTC/USDT", "39500")
    assert (await client.fetch_order(str(working["orderId"]), "BTC/USDT"))["status"] == "closed"
    assert (await client.fetch_order(str(pending["orderId"]), "BTC/USDT"))["status"] == "open"
    await until(lambda: any(e["i"] == pending["orderId"] and e["X"] == "NEW" for e in ws_api.of("executionReport")),
                5, "the pending order's NEW")  # fmt: skip
    await until(lambda: ws_api.of("listStatus")[-1]["L"] == "ALL_DONE", 5, "the OTO's ALL_DONE")

    otoco = await ws_api.call("orderList.place.otoco", symbol="BTCUSDT", workingType="LIMIT", workingSide="BUY",
                              workingPrice="39400", workingQuantity="0.01", workingTimeInForce="GTC",
                              pendingSide="SELL", pendingQuantity="0.01", pendingAboveType="LIMIT_MAKER",
                              pendingAbovePrice="41000", pendingBelowType="STOP_LOSS_LIMIT",
                              pendingBelowStopPrice="38000", pendingBelowPrice="37900",
                              pendingBelowTimeInForce="GTC", returnRateLimits=False)  # fmt: skip
    assert otoco["status"] == 200 and "rateLimits" not in otoco
    result = otoco["result"]
    assert result["contingencyType"] == "OTO" and [r["status"] for r in result["orderReports"]] == [
        "NEW", "PENDING_NEW", "PENDING_NEW"]  # fmt: skip
    exchange.set_price("BTC/USDT", "39300")  # the working buy fills: both pending legs go on the book
    opened = (await ws_api.call("openOrderLists.status"))["result"]
    assert [lst["orderListId"] for lst in opened] == [result["orderListId"]]
    statuses = [(await client.fetch_order(str(o["orderId"]), "BTC/USDT"))["status"] for o in result["orders"]]
    assert statuses == ["closed", "open", "open"]


# -- cancel -------------------------------------------------------------------------------------


async def test_cancel_a_list_by_rest_and_ws_and_one_leg_cancels_the_list(exchange, client, ws_api):
    first = await client.privatePostOrderListOco(sell_oco(listClientOrderId="one"))
    canceled = await client.privateDeleteOrderList({"symbol": "BTCUSDT", "listClientOrderId": "one"})
    assert (canceled["listStatusType"], canceled["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
    assert [r["status"] for r in canceled["orderReports"]] == ["CANCELED", "CANCELED"]
    assert {r["origClientOrderId"] for r in canceled["orderReports"]} == {o["clientOrderId"] for o in first["orders"]}
    (cancel_id,) = {r["clientOrderId"] for r in canceled["orderReports"]}  # one id for the cancel (rest-api.md)
    await until(lambda: len([e for e in ws_api.of("executionReport") if e["x"] == "CANCELED"]) == 2, 5, "the cancels")
    reports = [e for e in ws_api.of("executionReport") if e["x"] == "CANCELED"]
    # user-data-stream.md: c is the cancel's id, C the canceled order's
    assert [(e["c"], e["C"]) for e in reports] == [(cancel_id, r["origClientOrderId"])
                                                   for r in canceled["orderReports"]]  # fmt: skip
    assert (await client.fetch_balance())["BTC"]["used"] == 0
    status, error = await rest(exchange, "DELETE", "orderList", symbol="BTCUSDT", orderListId=first["orderListId"])
    assert status == 400 and error == {"code": -2011, "msg": "Order list does not exist."}
    status, error = await rest(exchange, "GET", "orderList", orderListId=99)
    assert status == 400 and error == {"code": -2013, "msg": "Order list does not exist."}

    second = (await ws_api.call("orderList.place.oco", **sell_oco()))["result"]
    await client.cancel_order(str(second["orders"][1]["orderId"]), "BTC/USDT")  # one leg: the list goes
    listed = (await ws_api.call("orderList.status", orderListId=second["orderListId"]))["result"]
    assert listed["listOrderStatus"] == "ALL_DONE"
    assert (await client.fetch_order(str(second["orders"][0]["orderId"]), "BTC/USDT"))["status"] == "canceled"
    await until(lambda: len(ws_api.of("listStatus")) == 4, 5, "both lists' ALL_DONE")

    third = (await ws_api.call("orderList.place.oco", **sell_oco()))["result"]
    bad = await ws_api.call("orderList.cancel", symbol="BTCUSDT", orderListId=third["orderListId"],
                            newClientOrderId="bad id!")  # fmt: skip
    assert bad["error"]["code"] == -1100 and "newClientOrderId" in bad["error"]["msg"]  # and nothing canceled
    answer = await ws_api.call("orderList.cancel", symbol="BTCUSDT", orderListId=third["orderListId"],
                               newClientOrderId="stop-all")  # fmt: skip
    assert answer["result"]["listOrderStatus"] == "ALL_DONE"
    assert {r["clientOrderId"] for r in answer["result"]["orderReports"]} == {"stop-all"}
    await until(lambda: [e["c"] for e in ws_api.events if e["e"] == "executionReport"][-2:] == ["stop-all"] * 2, 5,
                "the list's cancels under the request's id")  # fmt: skip
    everything = (await ws_api.call("allOrderLists"))["result"]
    assert [lst["orderListId"] for lst in everything] == [first["orderListId"], second["orderListId"],
                                                          third["orderListId"]]  # fmt: skip

    await client.privatePostOrderListOco(sell_oco())
    await client.create_order("BTC/USDT", "limit", "buy", 0.01, 39000)
    swept = await client.privateDeleteOpenOrders({"symbol": "BTCUSDT"})
    assert sorted("orderListId" in a and "contingencyType" in a for a in swept) == [False, True]
    (listed,) = [a for a in swept if "contingencyType" in a]
    (single,) = [a for a in swept if "contingencyType" not in a]
    assert [r["status"] for r in listed["orderReports"]] == ["CANCELED", "CANCELED"]
    # one cancel id for the whole request, list legs included (rest-api.md's example of DELETE openOrders)
    assert {r["clientOrderId"] for r in listed["orderReports"]} == {single["clientOrderId"]}
    assert {r["origClientOrderId"] for r in listed["orderReports"]} == {o["clientOrderId"] for o in listed["orders"]}


# -- the order count filters --------------------------------------------------------------------


async def test_the_sixth_open_stop_is_refused_by_max_num_algo_orders(exchange, client):
    info = (await client.publicGetExchangeInfo())["symbols"][0]
    algo = next(f for f in info["filters"] if f["filterType"] == "MAX_NUM_ALGO_ORDERS")
    assert algo["maxNumAlgoOrders"] == 5
    stop = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS_LIMIT", "quantity": "0.001",
            "timeInForce": "GTC", "price": "38000"}  # fmt: skip
    for i in range(4):
        await client.privatePostOrder(stop | {"stopPrice": str(39000 + i)})
    await client.privatePostOrderListOco(sell_oco())  # its stop leg is the fifth
    status, error = await rest(exchange, "POST", "order", **stop, stopPrice="39100")
    assert status == 400 and error == {"code": -1013, "msg": "Filter failure: MAX_NUM_ALGO_ORDERS"}
    status, error = await rest(exchange, "POST", "orderList/oco", **sell_oco())
    assert status == 400 and error == {"code": -1013, "msg": "Filter failure: MAX_NUM_ALGO_ORDERS"}
    assert len(await client.fetch_open_orders("BTC/USDT")) == 6


async def test_max_num_order_lists_refuses_the_list_past_the_limit(exchange, client):
    rules = exchange.venue.rules["BTCUSDT"]
    limited = replace(rules, filters=(*rules.filters, {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 2}))
    exchange.venue.rules["BTCUSDT"] = exchange.venue.engine.rules["BTC/USDT"] = limited  # as if listed so
    first = await client.privatePostOrderListOco(sell_oco())
    await client.privatePostOrderListOco(sell_oco())
    status, error = await rest(exchange, "POST", "orderList/oco", **sell_oco())
    assert status == 400 and error == {"code": -1013, "msg": "Filter failure: MAX_NUM_ORDER_LISTS"}
    await client.privateDeleteOrderList({"symbol": "BTCUSDT", "orderListId": first["orderListId"]})
    assert (await client.privatePostOrderListOco(sell_oco()))["listOrderStatus"] == "EXECUTING"


# -- trailing stops, icebergs, STP --------------------------------------------------------------


async def test_a_trailing_stop_tracks_and_triggers(exchange, client):
    info = (await client.publicGetExchangeInfo())["symbols"][0]
    assert info["allowTrailingStop"] is True and info["icebergAllowed"] is True and info["ocoAllowed"] is True
    assert info["otoAllowed"] is True
    assert any(f["filterType"] == "TRAILING_DELTA" for f in info["filters"])
    trailing = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS_LIMIT", "quantity": "0.01",
                "timeInForce": "GTC", "price": "39000", "trailingDelta": "100"}  # fmt: skip
    status, error = await rest(exchange, "POST", "order", **trailing | {"trailingDelta": "5"})
    assert status == 400 and error == {"code": -1013, "msg": "Filter failure: TRAILING_DELTA"}
    placed = await client.privatePostOrder(trailing | {"newOrderRespType": "RESULT"})
    assert placed["trailingDelta"] == 100 and placed["status"] == "NEW"
    exchange.set_price("BTC/USDT", "41000")  # the high it trails
    exchange.set_price("BTC/USDT", "40700")  # -0.73%: not yet
    order = await client.fetch_order(str(placed["orderId"]), "BTC/USDT")
    assert order["status"] == "open" and order["info"]["trailingTime"] > 0 and order["info"]["isWorking"] is False
    exchange.set_price("BTC/USDT", "40550")  # -1.1% from 41000: it triggers and sells at its limit or better
    order = await client.fetch_order(str(placed["orderId"]), "BTC/USDT")
    assert order["status"] == "closed" and order["info"]["trailingDelta"] == 100


async def test_icebergs_and_self_trade_prevention(exchange, client):
    iceberg = await client.create_order("BTC/USDT", "limit", "buy", 0.1, 39000, {"icebergQty": 0.02})
    assert iceberg["info"]["icebergQty"] == "0.02000000"
    assert (await client.fetch_order(iceberg["id"], "BTC/USDT"))["info"]["icebergQty"] == "0.02000000"
    status, error = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                               timeInForce="GTC", quantity="0.1", price="39000", icebergQty="0.001")  # fmt: skip
    assert status == 400 and error == {"code": -1013, "msg": "Filter failure: ICEBERG_PARTS"}

    maker = await client.create_order("BTC/USDT", "limit", "sell", 0.01, 40000.01)  # ahead of the book's asks
    assert maker["info"]["selfTradePreventionMode"] == "EXPIRE_MAKER"
    status, error = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                               timeInForce="GTC", quantity="0.01", price="40100",
                               selfTradePreventionMode="BOGUS")  # fmt: skip
    assert status == 400 and error["code"] == -1100
    taker = await client.create_order("BTC/USDT", "limit", "buy", 0.01, 40100,
                                      {"selfTradePreventionMode": "EXPIRE_TAKER"})  # fmt: skip
    assert taker["info"]["status"] == "EXPIRED_IN_MATCH" and taker["info"]["selfTradePreventionMode"] == "EXPIRE_TAKER"
    fetched = (await client.fetch_order(taker["id"], "BTC/USDT"))["info"]
    assert fetched["preventedQuantity"] == "0.01000000" and fetched["preventedMatchId"] == 1
    matches = await client.privateGetMyPreventedMatches({"symbol": "BTCUSDT", "orderId": taker["id"]})
    assert [(m["takerOrderId"], m["makerOrderId"], m["selfTradePreventionMode"]) for m in matches] == [
        (int(taker["id"]), int(maker["id"]), "EXPIRE_TAKER")]  # fmt: skip
    assert (await client.fetch_order(maker["id"], "BTC/USDT"))["status"] == "open"


# -- restart ------------------------------------------------------------------------------------


async def test_the_state_file_keeps_an_open_list_across_a_restart(tmp_path):
    state = tmp_path / "venue.json"
    async with LocalExchange(("BTC/USDT",), state_file=state, api_key="k", secret="s") as ex:
        price = float(last(ex))  # a restart trades at the replayed bar's close again: stay near it
        status, placed = await rest(ex, "POST", "orderList/oco", **sell_oco(price, listClientOrderId="kept"))
        assert status == 200
        trailing = {"side": "SELL", "type": "STOP_LOSS_LIMIT", "quantity": "0.01", "timeInForce": "GTC"}
        status, _ = await rest(ex, "POST", "order", symbol="BTCUSDT", price=f"{price * 0.9:.2f}", trailingDelta=200,
                               **trailing)  # fmt: skip
        assert status == 200
    async with LocalExchange(("BTC/USDT",), state_file=state, api_key="k", secret="s") as ex:
        client = client_for(ex)
        try:
            opened = await client.privateGetOpenOrderList()
            assert [(lst["orderListId"], lst["listClientOrderId"]) for lst in opened] == [
                (placed["orderListId"], "kept")]  # fmt: skip
            trailing = (await client.fetch_open_orders("BTC/USDT"))[-1]["info"]
            assert trailing["trailingDelta"] == 200 and trailing["orderListId"] == -1
            ex.set_price("BTC/USDT", price * 1.03)  # the take profit fills, the stop leg expires, as before the restart
            done = await client.privateGetOrderList({"origClientOrderId": "kept"})
            assert done["listOrderStatus"] == "ALL_DONE"
            again = await client.privatePostOrderListOco(sell_oco(float(last(ex))))
            assert again["orderListId"] == placed["orderListId"] + 1
        finally:
            await client.close()


async def test_ccxt_pro_places_a_trailing_stop_over_the_ws_api_and_watches_it(exchange, client):
    watched = asyncio.create_task(client.watch_orders("BTC/USDT"))
    await until(lambda: exchange.user_data_subscriptions > 0, 5, "ccxt's user data subscription")
    placed = await client.create_order_ws("BTC/USDT", "STOP_LOSS_LIMIT", "sell", 0.01, 39000,
                                          {"trailingDelta": 150, "timeInForce": "GTC"})  # fmt: skip
    assert placed["info"]["trailingDelta"] == 150 and placed["info"]["orderListId"] == -1
    streamed = await asyncio.wait_for(watched, 5)
    assert streamed[-1]["id"] == placed["id"] and streamed[-1]["info"]["d"] == 150 and streamed[-1]["info"]["g"] == -1


# -- the unfilled order count of a list -----------------------------------------------------------


async def test_an_order_list_adds_each_of_its_orders_to_the_unfilled_order_count():
    from workbench.exchange.server import Limits

    limits = Limits(orders_per_10s=1000, orders_per_day=8)  # the daily window: a 10 s one can roll over here
    async with LocalExchange(("BTC/USDT",), limits=limits) as ex:
        ex.set_price("BTC/USDT", "40000")
        async with aiohttp.ClientSession() as http:

            async def post(path: str, params: dict[str, Any]) -> tuple[int, Any, str | None]:
                query = urlencode(params | {"timestamp": ex.now()})
                signature = hmac.new(ex.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
                async with http.post(f"{ex.url}/api/v3/{path}?{query}&signature={signature}",
                                     headers={"X-MBX-APIKEY": ex.api_key}) as answer:  # fmt: skip
                    return answer.status, await answer.json(), answer.headers.get("X-MBX-ORDER-COUNT-1D")

            otoco = {"symbol": "BTCUSDT", "workingType": "LIMIT", "workingSide": "BUY", "workingPrice": "39000",
                     "workingQuantity": "0.01", "workingTimeInForce": "GTC", "pendingSide": "SELL",
                     "pendingQuantity": "0.01", "pendingAboveType": "LIMIT_MAKER", "pendingAbovePrice": "41000",
                     "pendingBelowType": "STOP_LOSS_LIMIT", "pendingBelowStopPrice": "38000",
                     "pendingBelowPrice": "37900", "pendingBelowTimeInForce": "GTC"}  # fmt: skip
            assert (await post("orderList/oco", sell_oco()))[::2] == (200, "2")  # OCO: 2 orders
            assert (await post("orderList/otoco", otoco))[::2] == (200, "5")  # OTOCO: 3 more
            async with http.ws_connect(f"{ex.url}/ws-api/v3") as ws:  # the WebSocket API counts alike
                oto = await WsApi(ex, ws).call("orderList.place.oto", symbol="BTCUSDT", workingType="LIMIT",
                                               workingSide="BUY", workingPrice="39000", workingQuantity="0.01",
                                               workingTimeInForce="GTC", pendingType="LIMIT_MAKER",
                                               pendingSide="SELL", pendingPrice="41000",
                                               pendingQuantity="0.01")  # fmt: skip
                assert oto["status"] == 200 and ex._counters.orders_day.used == 7
            status, error, _ = await post("orderList/oco", sell_oco())  # 7 + 2 > 8
            assert (status, error["code"]) == (429, -1015) and error["msg"].endswith("8 orders per 1 DAY.")
            single = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
                      "price": "39000"}  # fmt: skip
            assert (await post("order", single))[::2] == (200, "8")  # one order still fits
        status, counts = await rest(ex, "GET", "rateLimit/order")
        assert [c["count"] for c in counts] == [8, 8]
        assert len(ex.venue.engine.open_orders()) == 8  # 2 + 3 + 2 + 1: the refused OCO placed nothing


# -- market-type stops: STOP_LOSS and TAKE_PROFIT -------------------------------------------------


@pytest.fixture
async def every_type():
    """An exchange whose BTCUSDT lists every order type (Binance's BTCUSDT lists no STOP_LOSS/TAKE_PROFIT)."""
    from workbench.model import OrderType

    async with LocalExchange(("BTC/USDT",), order_types=list(OrderType)) as ex:
        ex.set_price("BTC/USDT", "40000")
        yield ex


async def test_market_stops_through_ccxt_trigger_and_fill_as_market_orders(every_type):
    exchange = every_type
    client = client_for(exchange)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        ws_api = WsApi(exchange, ws)
        assert (await ws_api.call("userDataStream.subscribe.signature"))["status"] == 200
        info = (await client.publicGetExchangeInfo())["symbols"][0]
        assert {"STOP_LOSS", "TAKE_PROFIT"} <= set(info["orderTypes"])
        stop = await client.create_order("BTC/USDT", "market", "sell", 0.01, None, {"stopLossPrice": 39000})
        take = await client.create_order("BTC/USDT", "market", "sell", 0.01, None, {"takeProfitPrice": 41000})
        assert (stop["info"]["type"], take["info"]["type"]) == ("STOP_LOSS", "TAKE_PROFIT")
        fetched = (await client.fetch_order(stop["id"], "BTC/USDT"))["info"]
        assert (fetched["price"], fetched["stopPrice"], fetched["timeInForce"]) == (
            "0.00000000",
            "39000.00000000",
            "GTC",
        )
        assert fetched["isWorking"] is False and fetched["workingTime"] == -1
        assert (await client.fetch_balance())["BTC"]["used"] == pytest.approx(0.02)  # sells lock their amount
        exchange.set_price("BTC/USDT", "41000")
        done = await client.fetch_order(take["id"], "BTC/USDT")
        assert done["status"] == "closed" and done["filled"] == 0.01
        (trade,) = [t for t in await client.fetch_my_trades("BTC/USDT") if t["order"] == take["id"]]
        assert trade["takerOrMaker"] == "taker" and trade["price"] < 41000  # it took the bid
        await until(lambda: any(e["o"] == "TAKE_PROFIT" and e["x"] == "TRADE" for e in ws_api.of("executionReport")),
                    5, "the take profit's trade")  # fmt: skip
        status, error = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="SELL", type="STOP_LOSS",
                                   quantity="0.01", stopPrice="39000", price="38000")  # fmt: skip
        assert (status, error) == (400, {"code": -1106, "msg": "Parameter 'price' sent when not required."})
        status, error = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT",
                                   quantity="0.01")  # fmt: skip
        assert (status, error["code"]) == (400, -1102)
        ws_api._reader.cancel()
        await client.close()


async def test_market_stops_as_order_list_legs(every_type):
    exchange = every_type
    oco = sell_oco(aboveType="TAKE_PROFIT", abovePrice="", aboveStopPrice="40800", belowType="STOP_LOSS",
                   belowPrice="", belowTimeInForce="")  # fmt: skip
    status, placed = await rest(exchange, "POST", "orderList/oco", **{k: v for k, v in oco.items() if v})
    assert status == 200, placed
    assert [r["type"] for r in placed["orderReports"]] == ["TAKE_PROFIT", "STOP_LOSS"]
    legacy = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "price": "41000", "stopPrice": "39000"}
    status, placed = await rest(exchange, "POST", "order/oco", **legacy)  # no stopLimitPrice: a STOP_LOSS leg
    assert status == 200 and [r["type"] for r in placed["orderReports"]] == ["LIMIT_MAKER", "STOP_LOSS"]
    exchange.set_price("BTC/USDT", "38500")  # the stop losses trigger: their siblings expire
    status, orders = await rest(exchange, "GET", "allOrders", symbol="BTCUSDT")
    by_type = {(o["type"], o["status"]) for o in orders}
    assert {("STOP_LOSS", "FILLED"), ("TAKE_PROFIT", "EXPIRED"), ("LIMIT_MAKER", "EXPIRED")} <= by_type
    status, oto = await rest(exchange, "POST", "orderList/oto", symbol="BTCUSDT", workingType="LIMIT",
                             workingSide="BUY", workingPrice="38400", workingQuantity="0.01", workingTimeInForce="GTC",
                             pendingType="STOP_LOSS", pendingSide="SELL", pendingStopPrice="38000",
                             pendingQuantity="0.01")  # fmt: skip
    assert status == 200 and oto["orderReports"][1]["type"] == "STOP_LOSS"
    exchange.set_price("BTC/USDT", "38400")  # the working order fills: the pending stop loss goes on
    status, pending = await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=oto["orders"][1]["orderId"])
    assert (pending["status"], pending["isWorking"]) == ("NEW", False)  # on the book, waiting for 38,000


async def test_market_stops_are_refused_where_the_symbol_does_not_list_them(exchange, client):
    status, error = await rest(exchange, "POST", "orderList/oco", symbol="BTCUSDT", side="SELL", quantity="0.01",
                               aboveType="LIMIT_MAKER", abovePrice="41000", belowType="STOP_LOSS",
                               belowStopPrice="39000")  # fmt: skip
    assert (status, error) == (400, {"code": -2010, "msg": "Stop loss orders are not supported for this symbol."})
    import ccxt.async_support as ccxt_async

    with pytest.raises(ccxt_async.InvalidOrder, match="triggerPrice parameter is not allowed"):  # ccxt reads orderTypes
        await client.create_order("BTC/USDT", "market", "sell", 0.01, None, {"stopLossPrice": 39000})
    assert exchange.venue.engine.orders == {}


def test_workbench_exchange_lists_market_stops_with_order_types(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.test_exchange import started
    from workbench.config import Credentials, Secret, TradingMode
    from workbench.executors.binance import make_client

    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "exchange", "--port", "0", "--speed", "0", "--symbols", "BTC/USDT",
         "--ready-file", str(ready), "--order-types", "LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "TAKE_PROFIT"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        info = started(process, ready)

        async def stop_loss() -> tuple[list[str], dict[str, Any]]:
            client = make_client(TradingMode.TESTNET, Credentials(Secret(info["api_key"]), Secret(info["secret"])),
                                 info["url"])  # fmt: skip
            try:
                listed = (await client.publicGetExchangeInfo())["symbols"][0]["orderTypes"]
                price = float((await client.fetch_ticker("BTC/USDT"))["last"])
                order = await client.create_order("BTC/USDT", "market", "sell", 0.01, None,
                                                  {"stopLossPrice": round(price * 0.9, 2)})  # fmt: skip
                return listed, order
            finally:
                await client.close()

        listed, order = asyncio.run(stop_loss())
        assert listed == ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "TAKE_PROFIT"]
        assert order["info"]["type"] == "STOP_LOSS" and order["status"] == "open"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
