"""Hypothesis fuzzing of the local exchange's REST and WebSocket parameters over real HTTP and
WebSocket: whatever arrives, the answer is never a 500 nor a dropped connection, and every
refusal carries a Binance error code. The exchange runs on its own event loop in a thread; the
examples send bytes to it from the test thread."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.exchange import Limits, LocalExchange

EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


class Running:
    """A LocalExchange serving on a loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        limits = Limits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9)
        self.exchange: LocalExchange = self.run(LocalExchange(("BTC/USDT", "ETH/USDT"), limits=limits).start())
        self.http: aiohttp.ClientSession = self.run(self._session())
        self.ws: dict[str, aiohttp.ClientWebSocketResponse] = {}

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def socket(self, path: str) -> aiohttp.ClientWebSocketResponse:
        """One WebSocket connection per path, kept across examples: a drop fails every later one."""
        if path not in self.ws:
            self.ws[path] = self.run(self.http.ws_connect(f"{self.exchange.url}{path}"))
        return self.ws[path]

    def close(self) -> None:
        for ws in self.ws.values():
            self.run(ws.close())
        self.run(self.http.close())
        self.run(self.exchange.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.close()


async def http_request(port: int, head: bytes, body: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer, "the exchange dropped the connection without an answer"
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


NAMES = ["symbol", "symbols", "interval", "limit", "startTime", "endTime", "orderId", "fromId", "origClientOrderId",
         "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "stopPrice", "newClientOrderId",
         "newOrderRespType", "omitZeroBalances", "recvWindow", "timestamp", "computeCommissionRates", "newQty",
         "fromExecutionId", "trailingDelta"]  # fmt: skip
TRICKY = ["", "²", "١٢", "inf", "-inf", "NaN", "1e3", "-1", "0", "1.5", "99999999999999999999", "9" * 30, "0x10",
          " 1", "null", "[", "[]", '["BTCUSDT"]', '["BTCUSDT",1]', "{}", "BTCUSDT", "ETHUSDT", "BUY", "SELL",
          "LIMIT", "MARKET", "STOP_LOSS", "TAKE_PROFIT", "GTC", "1m", "1h", "0.001", "30000", "true", "\x00", "é",
          "%", "&", "="]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(TRICKY),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)
ENDPOINTS = [("GET", "ping"), ("GET", "time"), ("GET", "exchangeInfo"), ("GET", "depth"), ("GET", "trades"),
             ("GET", "aggTrades"), ("GET", "klines"), ("GET", "ticker/price"), ("GET", "ticker/bookTicker"),
             ("GET", "ticker/24hr"), ("GET", "avgPrice"), ("POST", "order"), ("POST", "order/test"),
             ("GET", "order"), ("DELETE", "order"), ("GET", "openOrders"), ("DELETE", "openOrders"),
             ("GET", "allOrders"), ("GET", "myTrades"), ("GET", "account"), ("GET", "rateLimit/order"),
             ("PUT", "order/amend/keepPriority"), ("GET", "order/amendments"), ("PUT", "order"),
             ("GET", "nothing")]  # fmt: skip


def header_bytes(raw: bytes) -> bytes:
    """``raw`` without the bytes HTTP forbids in a header value (aiohttp refuses those itself)."""
    return bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip()


def check(status: int, body: bytes) -> None:
    assert status < 500, status
    if status >= 400:
        answer = json.loads(body)
        assert isinstance(answer["code"], int) and answer["code"] < 0 and isinstance(answer["msg"], str), answer


@EXAMPLES
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    params=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6),
    in_body=st.booleans(),
    sign=st.sampled_from(["valid", "none", "garbage"]),
    fresh=st.booleans(),
    api_key=st.one_of(st.none(), st.just("valid"), st.binary(max_size=16).map(header_bytes)),
    raw_body=st.one_of(st.none(), st.binary(max_size=24)),
)
def test_rest_parameters_never_get_a_500(running, endpoint, params, in_body, sign, fresh, api_key, raw_body):
    ex = running.exchange
    if fresh:
        params = {**params, "timestamp": str(ex.now())}
    encoded = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
    if sign == "valid":
        encoded += "&signature=" + hmac.new(ex.secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()
    elif sign == "garbage":
        encoded += "&signature=" + quote("zz é", safe="")
    method, path = endpoint
    query, body = ("", encoded.encode()) if in_body else (encoded, b"")
    if raw_body is not None:
        body = raw_body
    head = f"{method} /api/v3/{path}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{ex.port}\r\n".encode()
    if body:
        head += b"Content-Type: application/x-www-form-urlencoded\r\n"
    if api_key is not None:
        head += b"X-MBX-APIKEY: " + (ex.api_key.encode() if api_key == "valid" else api_key) + b"\r\n"
    check(*running.run(http_request(ex.port, head, body)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
WS_METHODS = ["ping", "time", "v3/ping", "userDataStream.subscribe.signature", "userDataStream.unsubscribe",
              "order.place", "order.test", "order.status", "order.cancel", "openOrders.status",
              "openOrders.cancelAll", "allOrders", "myTrades", "account.status", "order.amend.keepPriority",
              "order.amendments", "nope"]  # fmt: skip


def signed_ws_params(ex: LocalExchange, params: dict[str, Any]) -> dict[str, Any]:
    params = {**params, "apiKey": ex.api_key, "timestamp": ex.now()}
    text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    payload = "&".join(f"{k}={text[k]}" for k in sorted(text))
    return params | {"signature": hmac.new(ex.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()}


async def exchange_message(ws: aiohttp.ClientWebSocketResponse, text: str, answered: Any) -> dict[str, Any]:
    """Send ``text`` and return the first answer that ``answered`` accepts (events are skipped)."""
    await ws.send_str(text)
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type is aiohttp.WSMsgType.TEXT, f"connection dropped: {message}"
        answer = json.loads(message.data)
        if answered(answer):
            return answer


@EXAMPLES
@given(
    id_=JSON_VALUES,
    method=st.one_of(st.sampled_from(WS_METHODS), JSON_VALUES),
    params=st.one_of(st.dictionaries(st.sampled_from(NAMES), JSON_VALUES, max_size=5), JSON_VALUES),
    sign=st.booleans(),
    as_text=st.one_of(st.none(), st.text(max_size=30)),
)
def test_ws_api_requests_always_get_an_answer(running, id_, method, params, sign, as_text):
    ex = running.exchange
    if sign and isinstance(params, dict):
        params = signed_ws_params(ex, params)
    text = as_text if as_text is not None else json.dumps({"id": id_, "method": method, "params": params})
    answer = running.run(exchange_message(running.socket("/ws-api/v3"), text, lambda a: "status" in a))
    assert answer["status"] < 500, answer
    if answer["status"] != 200:
        assert isinstance(answer["error"]["code"], int) and answer["error"]["code"] < 0, answer


@EXAMPLES
@given(
    message=st.one_of(
        st.fixed_dictionaries(
            {"method": st.one_of(st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY",
                                                  "GET_PROPERTY"]), JSON_VALUES),
             "params": JSON_VALUES, "id": JSON_VALUES}
        ).map(json.dumps),
        st.text(max_size=30),
    )
)  # fmt: skip
def test_stream_control_messages_always_get_an_answer(running, message):
    answer = running.run(exchange_message(running.socket("/ws"), message, lambda a: "result" in a or "code" in a))
    assert "result" in answer or answer["code"] in (2, 3), answer
