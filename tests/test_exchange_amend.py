"""Issue 16, item 3: amend keep priority at the local exchange (rest-api.md "Order Amend Keep
Priority", "Query Order Amendments"; web-socket-api.md; faqs/order_amend_keep_priority.md), by plain
signed HTTP, the WebSocket API (and its user data stream) and ccxt's generic signed request (ccxt has
no implicit method for it), all on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests import test_exchange
from tests.polling import until
from tests.test_exchange_order_lists import rest, ws_api  # noqa: F401 - ws_api is a fixture
from workbench.exchange import LocalExchange
from workbench.matching import BookConfig

D = Decimal
AMENDED_ORDER = ["symbol", "orderId", "orderListId", "origClientOrderId", "clientOrderId", "price", "qty",
                 "executedQty", "preventedQty", "quoteOrderQty", "cumulativeQuoteQty", "status", "timeInForce",
                 "type", "side", "workingTime", "selfTradePreventionMode"]  # fmt: skip
# user-data-stream.md: an executionReport's fields, less the conditional ones (W when on the book, d/D, v/A...)
REPORT = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x", "X", "r", "i", "l", "z", "L", "n",
          "N", "T", "t", "I", "w", "m", "M", "O", "Z", "Y", "Q", "V"}  # fmt: skip


@pytest.fixture
async def exchange():
    """BTC/USDT at 40,000 on a thin book: 5,000 USDT a level, 0.125 BTC."""
    async with LocalExchange(("BTC/USDT",), book=BookConfig(level_notional=D(5_000))) as ex:
        ex.set_price("BTC/USDT", "40000")
        yield ex


client = test_exchange.client  # the ccxt client fixture, on this module's exchange


async def put(exchange: LocalExchange, path: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    """One signed PUT (the parameters in the body, as ccxt sends them): status, headers, JSON answer."""
    body = urlencode({k: str(v) for k, v in params.items()} | {"timestamp": exchange.now()})
    signature = hmac.new(exchange.secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{exchange.url}/api/v3/{path}", data=f"{body}&signature={signature}",
                 headers={"X-MBX-APIKEY": exchange.api_key,
                          "Content-Type": "application/x-www-form-urlencoded"}) as answer,
    ):  # fmt: skip
        return answer.status, dict(answer.headers), await answer.json()


async def limit_buy(exchange: LocalExchange, cid: str, quantity: str = "0.02", price: str = "39000") -> dict[str, Any]:
    status, placed = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                timeInForce="GTC", quantity=quantity, price=price, newClientOrderId=cid)  # fmt: skip
    assert status == 200, placed
    return placed


def used_weight(exchange: LocalExchange) -> int:
    return exchange._counters.weight.used


async def test_amend_over_rest_reduces_in_place_keeps_priority_and_streams_replaced(exchange, ws_api):  # noqa: F811
    (symbol,) = exchange.venue.exchange_info(["BTCUSDT"])["symbols"]
    assert symbol["amendAllowed"] is True
    first, second = await limit_buy(exchange, "a"), await limit_buy(exchange, "b")
    orders = exchange._counters.orders_day.used
    weight = used_weight(exchange)
    status, headers, answer = await put(exchange, "order/amend/keepPriority", symbol="BTCUSDT",
                                        orderId=first["orderId"], newQty="0.01", newClientOrderId="a-2")  # fmt: skip
    assert status == 200, answer
    assert (used_weight(exchange) - weight, exchange._counters.orders_day.used - orders) == (4, 0)
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == used_weight(exchange) and "X-MBX-ORDER-COUNT-1D" not in headers
    assert list(answer) == ["transactTime", "executionId", "amendedOrder"]  # no listStatus: not a list's order
    amended = answer["amendedOrder"]
    assert list(amended) == AMENDED_ORDER
    assert (amended["orderId"], amended["origClientOrderId"], amended["clientOrderId"]) == (
        first["orderId"],
        "a",
        "a-2",
    )
    assert (amended["qty"], amended["status"], amended["executedQty"], amended["orderListId"]) == (
        "0.01000000", "NEW", "0.00000000", -1)  # fmt: skip
    assert amended["price"] == "39000.00000000" and amended["workingTime"] == first["transactTime"]

    await until(lambda: any(e["x"] == "REPLACED" for e in ws_api.of("executionReport")), 5, "the REPLACED report")
    (report,) = [e for e in ws_api.of("executionReport") if e["x"] == "REPLACED"]
    assert (report["X"], report["c"], report["q"], report["i"]) == ("NEW", "a-2", "0.01000000", first["orderId"])
    assert report["C"] == "a"  # the original client order id: the one before the amendment
    assert report["I"] == answer["executionId"] and report["T"] == answer["transactTime"]
    assert set(report) == REPORT | {"W"} and report["w"] is True and report["W"] == report["O"] == first["transactTime"]
    assert (report["l"], report["L"], report["n"], report["N"], report["t"], report["r"], report["m"]) == (
        "0.00000000", "0.00000000", "0", None, -1, "NONE", False)  # no fill  # fmt: skip
    assert (report["z"], report["Z"], report["g"], report["V"]) == ("0.00000000", "0.00000000", -1, "EXPIRE_MAKER")
    await until(lambda: len(ws_api.of("outboundAccountPosition")) >= 3, 5, "the position after the amendment")
    usdt = next(b for b in ws_api.of("outboundAccountPosition")[-1]["B"] if b["a"] == "USDT")
    assert D(usdt["l"]) == D("0.03") * 39000  # 0.01 + 0.02 BTC at 39,000 still locked

    status, fetched = await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=first["orderId"])
    assert (fetched["origQty"], fetched["clientOrderId"], fetched["time"]) == (
        "0.01000000",
        "a-2",
        first["transactTime"],
    )
    status, gone = await rest(exchange, "GET", "order", symbol="BTCUSDT", origClientOrderId="a")
    assert (status, gone["code"]) == (400, -2013)

    # cancel-replace loses the place in the queue that the amendment kept
    third = await limit_buy(exchange, "c")
    new = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
           "price": "39000"}  # fmt: skip
    status, replaced = await rest(exchange, "POST", "order/cancelReplace", **new, cancelReplaceMode="STOP_ON_FAILURE",
                                  cancelOrderId=second["orderId"])  # fmt: skip
    assert status == 200, replaced
    await until(lambda: any(e["x"] == "CANCELED" for e in ws_api.of("executionReport")), 5, "the CANCELED report")
    (canceled,) = [e for e in ws_api.of("executionReport") if e["x"] == "CANCELED"]
    # c: the cancel's client order id; C: the canceled order's
    assert (canceled["c"], canceled["C"]) == (replaced["cancelResponse"]["clientOrderId"], "b")
    assert set(canceled) == REPORT and canceled["w"] is False and (canceled["X"], canceled["n"]) == ("CANCELED", "0")
    exchange.set_price("BTC/USDT", "39000")
    status, trades = await rest(exchange, "GET", "myTrades", symbol="BTCUSDT")
    by_time = [t["orderId"] for t in sorted(trades, key=lambda t: t["id"])]
    assert by_time == [first["orderId"], third["orderId"], replaced["newOrderResponse"]["orderId"]]


async def test_ws_api_and_ccxt_amend_and_the_amendments_query(exchange, client, ws_api):  # noqa: F811
    placed = await client.create_order("BTC/USDT", "limit", "sell", 0.03, 41000)
    first = await ws_api.call("order.amend.keepPriority", symbol="BTCUSDT", origClientOrderId=placed["clientOrderId"],
                              newQty="0.02")  # fmt: skip
    assert first["status"] == 200, first
    new_id = first["result"]["amendedOrder"]["clientOrderId"]
    assert len(new_id) == 22 and new_id != placed["clientOrderId"]  # a random one, as Binance gives
    assert first["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    second = await client.request("order/amend/keepPriority", ["private"], "PUT",
                                  {"symbol": "BTCUSDT", "orderId": placed["id"], "newQty": "0.015",
                                   "newClientOrderId": new_id})  # fmt: skip
    assert second["amendedOrder"]["clientOrderId"] == new_id and second["amendedOrder"]["qty"] == "0.01500000"
    assert (await client.fetch_order(placed["id"], "BTC/USDT"))["amount"] == 0.015

    status, rows = await rest(exchange, "GET", "order/amendments", symbol="BTCUSDT", orderId=placed["id"])
    assert status == 200 and [r["executionId"] for r in rows] == [first["result"]["executionId"], second["executionId"]]
    assert [(r["origClientOrderId"], r["newClientOrderId"], r["origQty"], r["newQty"]) for r in rows] == [
        (placed["clientOrderId"], new_id, "0.03000000", "0.02000000"),
        (new_id, new_id, "0.02000000", "0.01500000"),
    ]
    assert rows[0] == {"symbol": "BTCUSDT", "orderId": int(placed["id"]), "executionId": rows[0]["executionId"],
                       "origClientOrderId": placed["clientOrderId"], "newClientOrderId": new_id,
                       "origQty": "0.03000000", "newQty": "0.02000000",
                       "time": first["result"]["transactTime"]}  # fmt: skip
    later = await rest(exchange, "GET", "order/amendments", symbol="BTCUSDT", orderId=placed["id"],
                       fromExecutionId=second["executionId"])  # fmt: skip
    assert later == (200, rows[1:])
    assert await rest(exchange, "GET", "order/amendments", symbol="BTCUSDT", orderId=placed["id"], limit=1) == (
        200, rows[:1])  # fmt: skip
    over_ws = await ws_api.call("order.amendments", symbol="BTCUSDT", orderId=placed["id"])
    assert over_ws["result"] == rows
    status, body = await rest(exchange, "GET", "order/amendments", symbol="BTCUSDT", orderId=777)
    assert (status, body) == (400, {"code": -2013, "msg": "Order does not exist."})


async def test_amend_refusals_answer_as_binance_and_change_nothing(exchange):
    placed = await limit_buy(exchange, "a")
    await limit_buy(exchange, "b", price="38000")
    amend = {"symbol": "BTCUSDT", "orderId": placed["orderId"], "newQty": "0.01"}
    cases = [
        ({"newQty": "0.02"}, -2038, "The requested action would change no state; rejecting"),
        ({"newQty": "0.03"}, -2038, "Order amend (quantity increase) is not supported."),
        ({"newQty": "0.000015"}, -1013, "Filter failure: LOT_SIZE"),
        ({"newQty": "0.0001"}, -1013, "Filter failure: NOTIONAL"),
        ({"newQty": "1e-3"}, -1100, "Illegal characters found in parameter 'newQty'; legal range is "
                                    "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
        ({"newQty": ""}, -1102, "Mandatory parameter 'newQty' was not sent, was empty/null, or malformed."),
        ({"orderId": ""}, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"),
        ({"orderId": 777}, -2038, "Unknown order sent."),
        ({"newClientOrderId": "b"}, -2038, "Duplicate order sent."),
        ({"newClientOrderId": "bad id!"}, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal "
                                                 "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
        ({"symbol": "DOGEEUR"}, -1121, "Invalid symbol."),
    ]  # fmt: skip
    for change, code, msg in cases:
        status, _, body = await put(exchange, "order/amend/keepPriority", **{**amend, **change})
        assert (status, body) == (400, {"code": code, "msg": msg}), change
    status, fetched = await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=placed["orderId"])
    assert (fetched["origQty"], fetched["clientOrderId"]) == ("0.02000000", "a")
    assert exchange.venue.engine.amendments == []
    await rest(exchange, "DELETE", "order", symbol="BTCUSDT", orderId=placed["orderId"])
    status, _, body = await put(exchange, "order/amend/keepPriority", **amend)
    assert (status, body) == (400, {"code": -2038, "msg": "Unknown order sent."})  # closed: nothing to amend


async def test_amending_an_oco_leg_amends_the_pair_and_updates_the_list(exchange, ws_api):  # noqa: F811
    status, placed = await rest(exchange, "POST", "orderList/oco", symbol="BTCUSDT", side="SELL", quantity="0.02",
                                aboveType="LIMIT_MAKER", abovePrice="41000", aboveClientOrderId="tp",
                                belowType="STOP_LOSS_LIMIT", belowStopPrice="39000", belowPrice="38900",
                                belowTimeInForce="GTC", belowClientOrderId="sl", listClientOrderId="pair")  # fmt: skip
    assert status == 200, placed
    above, below = (o["orderId"] for o in placed["orders"])
    status, _, answer = await put(exchange, "order/amend/keepPriority", symbol="BTCUSDT", orderId=below,
                                  newQty="0.01", newClientOrderId="sl-2")  # fmt: skip
    assert status == 200, answer
    assert answer["listStatus"] == {
        "orderListId": placed["orderListId"], "contingencyType": "OCO", "listOrderStatus": "EXECUTING",
        "listClientOrderId": "pair", "symbol": "BTCUSDT",
        "orders": [{"symbol": "BTCUSDT", "orderId": above, "clientOrderId": "tp"},
                   {"symbol": "BTCUSDT", "orderId": below, "clientOrderId": "sl-2"}]}  # fmt: skip
    assert answer["amendedOrder"]["stopPrice"] == "39000.00000000" and "workingTime" not in answer["amendedOrder"]
    for order_id in (above, below):  # an OCO's legs share their quantity
        assert (await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=order_id))[1]["origQty"] == "0.01000000"
    await until(lambda: any(e["l"] == "UPDATED" for e in ws_api.of("listStatus")), 5, "the list's UPDATED status")
    updated = next(e for e in ws_api.of("listStatus") if e["l"] == "UPDATED")
    assert updated["L"] == "EXECUTING" and [o["c"] for o in updated["O"]] == ["tp", "sl-2"]
    replaced = [e for e in ws_api.of("executionReport") if e["x"] == "REPLACED"]
    assert [(e["i"], e["q"]) for e in replaced] == [(below, "0.01000000"), (above, "0.01000000")]
    assert [(e["c"], e["C"]) for e in replaced] == [("sl-2", "sl"), ("tp", "tp")]  # the pair's leg keeps its id
    status, listed = await rest(exchange, "GET", "orderList", orderListId=placed["orderListId"])
    assert listed["listStatusType"] == "EXEC_STARTED"

    status, oto = await rest(exchange, "POST", "orderList/oto", symbol="BTCUSDT", workingType="LIMIT",
                             workingSide="BUY", workingPrice="39500", workingQuantity="0.02", workingTimeInForce="GTC",
                             pendingType="LIMIT_MAKER", pendingSide="SELL", pendingPrice="41500",
                             pendingQuantity="0.02")  # fmt: skip
    assert status == 200, oto
    working, pending = (o["orderId"] for o in oto["orders"])
    status, _, answer = await put(exchange, "order/amend/keepPriority", symbol="BTCUSDT", orderId=pending,
                                  newQty="0.01")  # fmt: skip
    assert answer["amendedOrder"]["status"] == "PENDING_NEW" and "workingTime" not in answer["amendedOrder"]
    assert answer["listStatus"]["contingencyType"] == "OTO"
    assert (await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=working))[1]["origQty"] == "0.02000000"


async def test_an_amendment_that_expires_the_order_weighs_nothing(exchange, ws_api):  # noqa: F811
    placed = await limit_buy(exchange, "big", quantity="0.3", price="39990")
    exchange.set_price("BTC/USDT", "39990")  # one level of the thin book fills: 0.125 BTC
    status, fetched = await rest(exchange, "GET", "order", symbol="BTCUSDT", orderId=placed["orderId"])
    assert fetched["status"] == "PARTIALLY_FILLED"
    weight = used_weight(exchange)
    status, _, answer = await put(exchange, "order/amend/keepPriority", symbol="BTCUSDT", orderId=placed["orderId"],
                                  newQty=fetched["executedQty"])  # fmt: skip
    assert status == 200 and answer["amendedOrder"]["status"] == "EXPIRED"
    assert answer["amendedOrder"]["qty"] == fetched["executedQty"] and used_weight(exchange) == weight
    await until(lambda: any(e["x"] == "REPLACED" for e in ws_api.of("executionReport")), 5, "the REPLACED report")
    (report,) = [e for e in ws_api.of("executionReport") if e["x"] == "REPLACED"]
    assert (report["X"], report["C"], report["c"]) == ("EXPIRED", "big", answer["amendedOrder"]["clientOrderId"])
    assert set(report) == REPORT and report["w"] is False  # off the book: no W
    assert (report["z"], report["q"], report["l"]) == (fetched["executedQty"], fetched["executedQty"], "0.00000000")
    account = exchange.venue.account()
    assert next(b for b in account["balances"] if b["asset"] == "USDT")["locked"] == "0.00000000"


async def test_amendments_survive_a_restart(tmp_path):
    state = tmp_path / "state.json"
    async with LocalExchange(("BTC/USDT",), state_file=state) as ex:
        placed = await limit_buy(ex, "a", price=f"{ex.venue.engine.last_price['BTC/USDT'] * D('0.9'):.2f}")
        status, _, answer = await put(ex, "order/amend/keepPriority", symbol="BTCUSDT", orderId=placed["orderId"],
                                      newQty="0.01")  # fmt: skip
        assert status == 200
        before = await rest(ex, "GET", "order/amendments", symbol="BTCUSDT", orderId=placed["orderId"])
    async with LocalExchange(("BTC/USDT",), state_file=state) as ex:
        after = await rest(ex, "GET", "order/amendments", symbol="BTCUSDT", orderId=placed["orderId"])
        assert after == before and after[1][0]["executionId"] == answer["executionId"]
        assert (await rest(ex, "GET", "order", symbol="BTCUSDT", orderId=placed["orderId"]))[1][
            "origQty"
        ] == "0.01000000"


async def test_every_venue_feature_flag_says_what_the_venue_does(exchange):
    from workbench.exchange.venue import FEATURES

    (symbol,) = exchange.venue.exchange_info(["BTCUSDT"])["symbols"]
    flags = {"opoAllowed": False, "amendAllowed": True, "pegInstructionsAllowed": False, "cancelReplaceAllowed": True}
    assert {k: symbol[k] for k in FEATURES} == FEATURES == flags
    placed = await limit_buy(exchange, "a")
    status, _, _ = await put(exchange, "order/amend/keepPriority", symbol="BTCUSDT", orderId=placed["orderId"],
                                   newQty="0.01")  # fmt: skip
    assert status == 200  # amendAllowed
    status, replaced = await rest(exchange, "POST", "order/cancelReplace", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                  timeInForce="GTC", quantity="0.01", price="39000",
                                  cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=placed["orderId"])  # fmt: skip
    assert status == 200 and replaced["cancelResult"] == "SUCCESS"  # cancelReplaceAllowed
    status, opo = await rest(exchange, "POST", "orderList/opo", symbol="BTCUSDT")
    assert (status, opo["code"]) == (404, -1000)  # no OPO here
    status, pegged = await rest(exchange, "POST", "order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                timeInForce="GTC", quantity="0.01", pegPriceType="PRIMARY_PEG")  # fmt: skip
    assert (status, pegged["code"]) == (400, -1104)  # no pegged orders either
