"""The local exchange refuses what it should: unsigned or cross-site admin calls, foreign Host
headers (DNS rebinding), bad faults, malformed parameters and WebSocket messages (each with
Binance's code, never a 500 or a dropped connection); and ``workbench exchange`` keeps its
secrets out of argv and out of files anyone else can read. All over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from workbench.config import Credentials, Secret, TradingMode
from workbench.exchange import BinanceError, LocalExchange
from workbench.executors.binance import make_client


@pytest.fixture
async def exchange():
    async with LocalExchange(("BTC/USDT",)) as ex:
        yield ex


async def raw(exchange: LocalExchange, head: str, body: bytes = b"", extra: bytes = b"") -> tuple[int, dict]:
    """Send one HTTP/1.1 request as bytes (so that headers and bodies can be anything); returns
    the status and the JSON body (``{}`` when it is not JSON)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", exchange.port)
    request = head.encode() + extra + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    text = rest.partition(b"\r\n\r\n")[2]
    try:
        return int(status_line.split()[1]), json.loads(text)
    except ValueError:
        return int(status_line.split()[1]), {}


def signed_query(exchange: LocalExchange, query: str) -> str:
    signature = hmac.new(exchange.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


def signed_headers(exchange: LocalExchange) -> str:
    return f"Host: 127.0.0.1:{exchange.port}\r\nX-MBX-APIKEY: {exchange.api_key}\r\n"


# -- admin --------------------------------------------------------------------------------------


async def test_admin_refuses_unsigned_and_cross_site_calls(exchange):
    before = exchange.venue.engine.last_price["BTC/USDT"]
    host = f"Host: 127.0.0.1:{exchange.port}\r\n"
    body = json.dumps({"symbol": "BTCUSDT", "price": "1"}).encode()
    # What a web page can send without a preflight: a text/plain POST.
    cross_site = await raw(exchange, f"POST /admin/price HTTP/1.1\r\n{host}Content-Type: text/plain\r\n", body)
    assert cross_site[0] == 415
    unsigned = await raw(exchange, f"POST /admin/price HTTP/1.1\r\n{host}Content-Type: application/json\r\n", body)
    assert unsigned == (401, {"code": -2014, "msg": "API-key format invalid."})
    forged = (
        f"POST /admin/price?{signed_query(exchange, 'timestamp=1').replace('timestamp=1', 'timestamp=2')} HTTP/1.1\r\n"
        f"{host}Content-Type: application/json\r\nX-MBX-APIKEY: {exchange.api_key}\r\n"
    )
    assert (await raw(exchange, forged, body))[1]["code"] == -1022
    state = f"GET /admin/state HTTP/1.1\r\n{host}"
    assert (await raw(exchange, state))[0] == 401
    assert exchange.venue.engine.last_price["BTC/USDT"] == before
    # Signed with the exchange's own key and secret, the same calls work.
    await exchange.admin("price", {"symbol": "BTCUSDT", "price": "30000"})
    assert exchange.venue.engine.last_price["BTC/USDT"] == Decimal("30000")
    assert (await exchange.admin("state"))["cursor"] == exchange.venue.market.cursor
    with pytest.raises(BinanceError, match="-1022|Signature"):
        async with aiohttp.ClientSession() as http:
            from workbench.exchange import admin_call

            await admin_call(http, exchange.url, exchange.api_key, "0" * 64, "state")


@pytest.mark.parametrize("path", ["/api/v3/time", "/admin/state", "/ws", "/ws-api/v3", "/nothing"])
async def test_foreign_host_headers_are_refused_on_every_path(exchange, path):
    port = exchange.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", f"127.0.0.1.evil.example:{port}"):
        status, body = await raw(exchange, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n")
        assert status == 421 and body["code"] == -1000, host
    assert (await raw(exchange, f"GET {path} HTTP/1.1\r\n"))[0] == 400  # no Host at all (aiohttp's answer)
    if path == "/api/v3/time":
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
            status, body = await raw(exchange, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n")
            assert status == 200 and "serverTime" in body, host


@pytest.mark.parametrize(
    "body",
    [
        {"latency_ms": "x"},
        {"latency_ms": -1},
        {"latency_ms": float("1e300")},
        {"errors_5xx": 1.5},
        {"errors_5xx": True},
        {"duplicate_events": 2},
        {"ws_drop_after": "3"},
        {"bogus": 1},
        {"errors_5xx": 1, "lost_answers": "x"},  # a bad second field: the first is not applied either
    ],
)
async def test_bad_faults_change_nothing_and_rest_keeps_answering(exchange, body):
    before = exchange.faults.__dict__.copy()
    with pytest.raises(BinanceError) as refused:
        await exchange.admin("faults", body)
    assert refused.value.status == 400 and refused.value.code == -1130
    with pytest.raises(ValueError):
        exchange.set_faults(**body)
    assert exchange.faults.__dict__ == before
    client = make_client(TradingMode.TESTNET, None, exchange.url)
    try:
        assert abs(await client.fetch_time() - time.time() * 1000) < 60_000
    finally:
        await client.close()


async def test_admin_bodies_are_checked(exchange):
    for action, body in (("price", {"symbol": "BTCUSDT", "price": "abc"}), ("price", {"symbol": "BTCUSDT"}),
                         ("price", {"symbol": "BTCUSDT", "price": -5}), ("step", {"bars": "2"}),
                         ("step", {"bars": 0}), ("faults", [1])):  # fmt: skip
        with pytest.raises(BinanceError) as refused:
            await exchange.admin(action, body)  # type: ignore[arg-type]
        assert refused.value.status == 400, (action, body)
    with pytest.raises(BinanceError, match="Invalid symbol"):
        await exchange.admin("price", {"symbol": "NOPE", "price": "1"})
    assert (await exchange.admin("step", {"bars": 2}))["bars"] == 2


# -- malformed REST parameters ------------------------------------------------------------------


BAD_PUBLIC = [
    ("klines?symbol=BTCUSDT&interval=1m&startTime=abc", -1100),
    ("klines?symbol=BTCUSDT&interval=1m&endTime=1.5", -1100),
    ("klines?symbol=BTCUSDT&interval=1m&startTime=99999999999999999999", -1100),
    ("klines?symbol=BTCUSDT&interval=1m&limit=%C2%B2", -1100),
    ("depth?symbol=BTCUSDT&limit=%C2%B2", -1100),
    ("trades?symbol=BTCUSDT&limit=-1", -1100),
    ("ticker/24hr?symbols=notjson", -1100),
    ("ticker/price?symbols=%5B%5B%5B%5B", -1100),
    ("exchangeInfo?symbols=%7B%7D", -1100),
    ("klines?symbol=BTCUSDT&interval=1m&startTime=1&startTime=2", -1101),
]


@pytest.mark.parametrize(("query", "code"), BAD_PUBLIC)
async def test_malformed_public_parameters_get_binance_codes(exchange, query, code):
    status, body = await raw(exchange, f"GET /api/v3/{query} HTTP/1.1\r\nHost: 127.0.0.1:{exchange.port}\r\n")
    assert (status, body["code"]) == (400, code)


BAD_SIGNED = [
    ("allOrders", "symbol=BTCUSDT&orderId=x&timestamp={now}", -1100),
    ("allOrders", "symbol=BTCUSDT&startTime=1e3&timestamp={now}", -1100),
    ("myTrades", "symbol=BTCUSDT&fromId=-1&timestamp={now}", -1100),
    ("myTrades", "symbol=BTCUSDT&orderId=%C2%B2&timestamp={now}", -1100),
    ("order", "symbol=BTCUSDT&orderId=1.0&timestamp={now}", -1100),
    ("account", "timestamp=inf", -1100),
    ("account", "timestamp={now}.5", -1100),
    ("account", "timestamp=-{now}", -1100),
    ("account", "timestamp={now}&recvWindow=NaN", -1100),
    ("account", "timestamp={now}&recvWindow=inf", -1100),
    ("account", "timestamp={now}&recvWindow=1e4", -1100),
    ("account", "timestamp={now}&recvWindow=0", -1131),
    ("account", "timestamp={now}&recvWindow=60001", -1131),
    ("account", "timestamp={hour_ago}&recvWindow=NaN", -1100),
    ("account", "timestamp={hour_ago}&recvWindow=60000", -1021),
]


@pytest.mark.parametrize(("endpoint", "query", "code"), BAD_SIGNED)
async def test_malformed_signed_parameters_get_binance_codes(exchange, endpoint, query, code):
    now = exchange.now()
    query = signed_query(exchange, query.format(now=now, hour_ago=now - 3_600_000))
    status, body = await raw(exchange, f"GET /api/v3/{endpoint}?{query} HTTP/1.1\r\n{signed_headers(exchange)}")
    assert (status, body["code"]) == (400, code)


async def test_an_order_signed_an_hour_ago_never_executes(exchange):
    """recvWindow=NaN used to switch the timestamp check off: the order is refused, every time."""
    query = signed_query(
        exchange,
        f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&recvWindow=NaN&timestamp={exchange.now() - 3_600_000}",
    )
    head = f"POST /api/v3/order?{query} HTTP/1.1\r\n{signed_headers(exchange)}"
    for _ in range(3):
        assert (await raw(exchange, head))[0] == 400
    assert not exchange.venue.engine.orders


async def test_bad_bytes_before_authentication(exchange):
    host = f"Host: 127.0.0.1:{exchange.port}\r\n"
    status, body = await raw(exchange, f"GET /api/v3/account?timestamp=1&signature=0 HTTP/1.1\r\n{host}",
                             extra="X-MBX-APIKEY: clé-é\r\n".encode())  # fmt: skip
    assert (status, body["code"]) == (401, -2014)
    status, body = await raw(exchange, f"GET /api/v3/account?timestamp=1&signature=0 HTTP/1.1\r\n{host}",
                             extra=b"X-MBX-APIKEY: \xff\xfe\r\n")  # fmt: skip
    assert (status, body["code"]) == (401, -2014)
    head = f"POST /api/v3/order HTTP/1.1\r\n{host}Content-Type: application/x-www-form-urlencoded\r\n"
    status, body = await raw(exchange, head, b"symbol=BTCUSDT&side=\xff\xfe")
    assert (status, body["code"]) == (400, -1100)
    status, body = await raw(exchange, head + f"X-MBX-APIKEY: {exchange.api_key}\r\n", b"\xc3\x28=1")
    assert (status, body["code"]) == (400, -1100)
    signature = "%C3%A9" * 32  # a non-ASCII signature is just a wrong one
    status, body = await raw(
        exchange, f"GET /api/v3/account?timestamp={exchange.now()}&signature={signature} HTTP/1.1\r\n{host}"
        f"X-MBX-APIKEY: {exchange.api_key}\r\n",
    )  # fmt: skip
    assert (status, body["code"]) == (400, -1022)


# -- malformed WebSocket messages ---------------------------------------------------------------

MALFORMED = ["not json", "[1, 2]", "5", '{"method": 5}', '{"id": 1, "method": "ping", "params": [1]}',
             '{"id": {"x": 1}, "method": "ping"}', "[" * 5000 + "]" * 5000,
             '{"method": "order.place", "params": 7}']  # fmt: skip


async def test_malformed_ws_api_requests_get_an_error_answer(exchange):
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws-api/v3") as ws:
        for text in MALFORMED:
            await ws.send_str(text)
            answer = await asyncio.wait_for(ws.receive_json(), 5)
            assert answer["status"] == 400 and answer["error"]["code"] == -1000, text
        await ws.send_json({"id": "x", "method": "order.place", "params": {"apiKey": "clé", "symbol": [1]}})
        assert (await ws.receive_json())["error"]["code"] == -2014
        await ws.send_json({"id": "y", "method": "no.such.method"})
        assert (await ws.receive_json())["error"]["code"] == -1020
        await ws.send_json({"id": "p", "method": "ping"})
        answer = await ws.receive_json()
        assert (answer["id"], answer["status"], answer["result"]) == ("p", 200, {})


async def test_malformed_stream_control_messages_get_an_error_answer(exchange):
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{exchange.url}/ws") as ws:
        for text in [*MALFORMED, '{"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 1}',
                     '{"method": "SET_PROPERTY", "params": ["combined"], "id": 2}',
                     '{"method": "SUBSCRIBE", "params": [{"a": 1}], "id": 3}']:  # fmt: skip
            await ws.send_str(text)
            answer = await asyncio.wait_for(ws.receive_json(), 5)
            assert answer.get("code") in (2, 3), text
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade", True], "id": 4})
        assert (await ws.receive_json()) == {"result": None, "id": 4}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 5})
        assert (await ws.receive_json()) == {"result": ["btcusdt@trade"], "id": 5}


# -- workbench exchange -------------------------------------------------------------------------


def workbench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("workbench")), "exchange", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "99999"],
        ["--port", "-1"],
        ["--faults", '{"bogus": 1}'],
        ["--faults", '{"latency_ms": "x"}'],
        ["--faults", "not json"],
        ["--faults", "[1]"],
        ["--speed", "nan"],
        ["--secret-file", "/nonexistent/secret"],
        ["--start", "notadate"],
        ["--order-types", "LIMIT", "BOGUS"],
    ],
)
def test_cli_bad_arguments_answer_one_line(args, tmp_path):
    ready = tmp_path / "ready.json"
    process = workbench(*args, "--port" if "--port" not in args else "--speed", "0", "--ready-file", str(ready))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("workbench: ") and "Traceback" not in err and not ready.exists()


def test_secret_files_are_written_fresh_at_0600(tmp_path):
    from workbench.exchange.cli import write_secret_file

    existing = tmp_path / "ready.json"
    existing.write_text("old")
    existing.chmod(0o644)
    write_secret_file(existing, "secret")
    assert existing.read_text() == "secret" and oct(existing.stat().st_mode & 0o777) == "0o600"
    victim, link = tmp_path / "victim", tmp_path / "link.json"
    victim.write_text("precious")
    link.symlink_to(victim)
    write_secret_file(link, "secret")
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "ready.json", "victim"]  # no temporary left


def test_cli_takes_no_secret_in_argv():
    process = workbench("--secret", "s3cr3t", "--port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "unrecognized arguments: --secret" in err


def test_cli_ready_file_is_created_fresh_0600_and_the_secret_stays_out_of_argv(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret\n")
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    victim.chmod(0o644)
    ready = tmp_path / "ready.json"
    ready.symlink_to(victim)
    env = {**os.environ, "WORKBENCH_EXCHANGE_API_KEY": "cli-key"}
    process = workbench("--port", "0", "--speed", "0", "--symbols", "BTC/USDT", "--secret-file", str(secret_file),
                        "--ready-file", str(ready), env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while ready.is_symlink() or not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["secret"] == "file-secret" and info["api_key"] == "cli-key"
        assert oct(ready.lstat().st_mode & 0o777) == "0o600" and not ready.is_symlink()
        assert victim.read_text() == "precious" and oct(victim.stat().st_mode & 0o777) == "0o644"
        assert b"file-secret" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()

        async def balance():
            client = make_client(
                TradingMode.TESTNET, Credentials(Secret("cli-key"), Secret("file-secret")), info["url"]
            )
            try:
                return (await client.fetch_balance())["USDT"]["free"]
            finally:
                await client.close()

        assert asyncio.run(balance()) == 100_000
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
    assert not list(tmp_path.glob(".ready.json.*"))  # no temporary file left behind


def test_cli_busy_port_answers_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = workbench("--port", str(taken.getsockname()[1]), "--speed", "0", "--symbols", "BTC/USDT")
        _, err = process.communicate(timeout=60)
    # (the data loader may warn first that it uses a synthetic sample; the error is one line, the last)
    errors = [line for line in err.splitlines() if line.startswith("workbench: ")]
    assert process.returncode == 2 and errors == err.strip().splitlines()[-1:] and "Traceback" not in err, err
    assert "(Address already in use): pick another --port" in errors[0]


async def test_ccxt_errors_map_for_refused_parameters(exchange):
    """The codes above reach ccxt as its BadRequest family, as on Binance."""
    client = make_client(TradingMode.TESTNET, None, exchange.url)
    try:
        with pytest.raises(ccxt_async.BadRequest, match="-1100"):
            await client.public_get_klines({"symbol": "BTCUSDT", "interval": "1m", "startTime": "²"})
    finally:
        await client.close()
