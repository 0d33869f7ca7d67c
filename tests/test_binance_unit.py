"""The Binance executor's pure parts: URLs chosen by mode, the mainnet lock, parsing, rate limits."""

import json
import logging
from dataclasses import replace
from decimal import Decimal

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.config import (
    MAINNET_CONSENT,
    MAINNET_ENV,
    Config,
    Credentials,
    MainnetGuard,
    Secret,
    TradingMode,
    load_config,
)
from workbench.errors import (
    ConfigError,
    ExchangeError,
    FilterError,
    InsufficientBalance,
    MainnetGuardError,
    MalformedMessage,
    UnknownSymbol,
)
from workbench.executors import binance, build_executor
from workbench.executors.binance import (
    PRODUCTION_DOMAINS,
    BinanceClient,
    BinanceExecutor,
    RateLimiter,
    binance_error,
    check_hosts,
    check_url,
    closed_bars,
    fill_from_ccxt,
    host_of,
    make_client,
    order_from_ccxt,
    rejection,
)
from workbench.model import OrderStatus, OrderType, Side, TimeInForce

CREDS = Credentials(Secret("K" * 64), Secret("S" * 64))


MAINNET = Config(mode=TradingMode.MAINNET, mainnet=True)
CONSENT = {MAINNET_ENV: MAINNET_CONSENT}
# Binance's production hosts as a testnet venue_url or request URL could name them; none may be looked up.
PRODUCTION_URLS = [
    "https://API.BINANCE.COM",
    *(f"https://api{n}.binance.com" for n in range(1, 5)),
    "https://api-gcp.binance.com/api/v3",
    "https://binance.com",
    "https://www.binance.com",
    "https://binance.us",
    "https://api.binance.us",
    "https://data.sub.binance.com:443/x",
    "wss://stream.binance.com:9443/ws",
    "https://api.binance.com./",  # a trailing dot
    "https://api%2Ebinance%2Ecom/",  # percent-encoded dots
    "https://\uff21\uff30\uff29\uff0e\uff42\uff49\uff4e\uff41\uff4e\uff43\uff45\uff0e\uff43\uff4f\uff4d/",  # full width
    "https://127.0.0.1@api.binance.com/",  # loopback as a user name
]


def all_urls(client):
    return json.dumps(client.urls["api"])


def test_testnet_urls_by_default_the_local_venue_by_config_and_mainnet_only_with_the_guard():
    testnet = make_client(TradingMode.TESTNET, CREDS)
    assert "testnet.binance.vision" in all_urls(testnet) and "binance.com" not in all_urls(testnet)
    local = make_client(TradingMode.TESTNET, CREDS, "http://127.0.0.1:8765")
    assert local.urls["api"]["public"] == "http://127.0.0.1:8765/api/v3"
    assert local.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8765/ws-api/v3"
    assert local.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:8765/ws"
    for loopback in ("http://localhost:1", "http://127.0.0.2:1", "http://[::1]:1"):
        assert make_client(TradingMode.TESTNET, None, loopback).mode is TradingMode.TESTNET
    mainnet = make_client(TradingMode.MAINNET, CREDS, guard=MainnetGuard(MAINNET, CONSENT))
    assert "https://api.binance.com/api/v3" in all_urls(mainnet) and mainnet.mode is TradingMode.MAINNET
    with pytest.raises(ConfigError, match="Paper mode has no venue"):
        make_client(TradingMode.PAPER, CREDS)


def test_a_mainnet_executor_or_client_built_directly_without_the_guard_is_refused():
    """The executor itself demands the MainnetGuard, which exists only past resolve_mode."""
    attempts = [
        lambda: BinanceExecutor(TradingMode.MAINNET, {}, CREDS),
        lambda: make_client(TradingMode.MAINNET, CREDS),
        lambda: make_client(TradingMode.MAINNET, CREDS, guard=object()),  # not a guard
        lambda: BinanceClient({}, TradingMode.MAINNET),
    ]
    for attempt in attempts:
        with pytest.raises(MainnetGuardError) as e:
            attempt()
        assert "`mainnet = true`" in str(e.value) and f"{MAINNET_ENV}={MAINNET_CONSENT}" in str(e.value)
        assert "\n" not in str(e.value)


def test_build_executor_builds_mainnet_only_past_both_guards_and_no_client_before(monkeypatch):
    built = []
    monkeypatch.setattr(binance, "make_client", lambda *a, **k: built.append(1))
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 64)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 64)
    monkeypatch.delenv(MAINNET_ENV, raising=False)
    for config in (Config(mode=TradingMode.MAINNET), MAINNET):
        with pytest.raises(MainnetGuardError):
            build_executor(config, {})
    monkeypatch.setenv(MAINNET_ENV, MAINNET_CONSENT)
    with pytest.raises(MainnetGuardError):
        build_executor(Config(mode=TradingMode.MAINNET), {})
    assert built == []  # no network object was ever built
    monkeypatch.setattr(binance, "make_client", make_client)
    executor = build_executor(replace(MAINNET, venue_url="http://127.0.0.1:1"), {})
    assert executor.mode is executor.client.mode is TradingMode.MAINNET and executor.account == "mainnet account"


@pytest.mark.parametrize("url", PRODUCTION_URLS)
async def test_a_testnet_client_refuses_every_binance_production_host_before_looking_it_up(url, lookups, monkeypatch):
    """At construction (venue_url, from code or a config) and at every request and WebSocket
    connection (a URL changed afterwards): refused on the parsed host, and never looked up."""
    with pytest.raises(MainnetGuardError, match="is a Binance production host"):
        make_client(TradingMode.TESTNET, CREDS, url)
    monkeypatch.setenv("BINANCE_TESTNET_API_KEY", "k" * 64)
    monkeypatch.setenv("BINANCE_TESTNET_API_SECRET", "s" * 64)
    with pytest.raises(MainnetGuardError, match="is a Binance production host"):
        build_executor(load_config(venue_url=url), {})
    client = make_client(TradingMode.TESTNET, CREDS)
    client.urls["api"]["public"] = url.rstrip("/") + "/api/v3"
    with pytest.raises(MainnetGuardError, match=r"Refused \S+/api/v3/time: api.binance.\w+|production host"):
        await client.fetch_time()
    with pytest.raises(MainnetGuardError, match="is a Binance production host"):
        client.client(url)
    await client.close()
    assert lookups() == []


async def test_a_testnet_client_switched_back_to_mainnet_urls_is_refused_at_the_request(lookups):
    client = make_client(TradingMode.TESTNET, CREDS)
    client.set_sandbox_mode(False)  # ccxt restores Binance's production URLs
    with pytest.raises(MainnetGuardError, match=r"Refused https://api.binance.com/api/v3/exchangeInfo: .* `mainnet"):
        await client.load_markets()
    with pytest.raises(MainnetGuardError, match="stream.binance.com is a Binance production host"):
        client.client(client.urls["api"]["ws"]["spot"])
    await client.close()
    assert lookups() == []


@pytest.mark.parametrize(
    "url",
    ["https://example.com", "http://10.0.0.1:8765", "https://data-api.binance.vision", "http://[::1", "http://a..b"],
)
def test_a_testnet_client_reaches_only_the_testnets_and_loopback(url, lookups):
    with pytest.raises(ConfigError, match="reaches only testnet.binance.vision and binancefuture.com or a local"):
        make_client(TradingMode.TESTNET, CREDS, url)
    assert lookups() == []


def test_a_mainnet_guard_lets_a_mainnet_client_reach_any_host():
    check_url("https://api.binance.com/api/v3/order?signature=x", TradingMode.MAINNET)
    check_url("http://127.0.0.1:8765/api/v3", TradingMode.MAINNET)  # a local exchange in mainnet mode


def test_an_executor_takes_only_a_guarded_client_of_its_own_mode():
    for client in (ccxtpro.binance(), make_client(TradingMode.TESTNET, None)):
        mode = TradingMode.MAINNET if isinstance(client, BinanceClient) else TradingMode.TESTNET
        with pytest.raises(ConfigError, match=f"A {mode} executor needs a {mode} client from make_client"):
            BinanceExecutor(mode, {}, None, client=client, guard=MainnetGuard(MAINNET, CONSENT))
    client = make_client(TradingMode.TESTNET, None, "http://127.0.0.1:1")
    assert BinanceExecutor(TradingMode.TESTNET, {}, None, client=client).client is client


@pytest.mark.parametrize(
    "url, host",
    [
        ("https://API.BINANCE.COM", "api.binance.com"),
        ("https://api.binance.com../x", "api.binance.com"),
        ("https://api%2Ebinance%2Ecom/", "api.binance.com"),
        ("https://b\u00fccher.Binance.com", "xn--bcher-kva.binance.com"),
        ("http://[::1]:80/", "::1"),
        ("not a url", ""),
        ("http://" + "a" * 64 + ".com", ""),  # a label too long for DNS
    ],
)
def test_the_host_is_what_a_resolver_would_look_up(url, host):
    assert host_of(url) == host


def test_building_a_real_executor_needs_keys_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BINANCE_TESTNET_API_KEY", "k" * 64)
    monkeypatch.setenv("BINANCE_TESTNET_API_SECRET", "s" * 64)
    executor = build_executor(load_config(venue_url="http://127.0.0.1:1"), {})
    assert isinstance(executor, BinanceExecutor) and executor.mode is TradingMode.TESTNET
    assert executor.venue == "http://127.0.0.1:1" and "k" * 64 not in repr(vars(executor))


def test_orders_from_rest_and_from_the_stream():
    rest = {
        "id": "12",
        "clientOrderId": "wb-1",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "amount": 0.5,
        "price": 50000.0,
        "filled": 0.2,
        "cost": 10000.0,
        "status": "open",
        "timeInForce": "GTC",
        "timestamp": 1000,
        "lastUpdateTimestamp": 2000,
        "info": {
            "status": "PARTIALLY_FILLED",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "origQuoteOrderQty": "0.00000000",
        },
    }
    order = order_from_ccxt(rest)
    assert (order.id, order.client_order_id, order.status, order.type) == (
        "12",
        "wb-1",
        OrderStatus.PARTIALLY_FILLED,
        OrderType.LIMIT,
    )
    assert (order.amount, order.filled, order.time_in_force, order.quote_amount) == (
        Decimal("0.5"),
        Decimal("0.2"),
        TimeInForce.GTC,
        None,
    )
    stream = {
        "id": 13,
        "symbol": "BTC/USDT",
        "side": "sell",
        "amount": 0,
        "filled": 0.01,
        "cost": 500.0,
        "status": "closed",
        "timestamp": 5,
        "info": {"X": "FILLED", "o": "MARKET", "c": "wb-2", "Q": "500.00000000", "f": "GTC"},
    }
    market = order_from_ccxt(stream)
    assert (market.client_order_id, market.status, market.amount, market.quote_amount) == (
        "wb-2",
        OrderStatus.FILLED,
        Decimal("0.01"),
        Decimal(500),
    )
    assert market.time_in_force is None and market.price is None and market.side is Side.SELL
    stop = order_from_ccxt(
        {
            **rest,
            "type": "stop_loss_limit",
            "triggerPrice": 49000.0,
            "info": {"status": "NEW", "type": "STOP_LOSS_LIMIT"},
        }
    )
    assert stop.stop_price == 49000 and stop.type is OrderType.STOP_LOSS_LIMIT


def test_fills_from_ccxt_trades():
    trade = {
        "id": 7,
        "order": 12,
        "symbol": "BTC/USDT",
        "side": "buy",
        "price": 50000.0,
        "amount": 0.01,
        "cost": 500.0,
        "fee": {"cost": 0.00001, "currency": "BTC"},
        "takerOrMaker": "maker",
        "timestamp": 9,
    }
    fill = fill_from_ccxt(trade, "wb-1")
    assert (fill.trade_id, fill.order_id, fill.client_order_id, fill.fee_currency, fill.is_maker) == (
        "7",
        "12",
        "wb-1",
        "BTC",
        True,
    )
    assert fill_from_ccxt({**trade, "fee": None}, "wb-1").fee == 0


def test_venue_rejections_become_workbench_errors_with_binance_codes():
    filt = rejection(ccxt_async.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}'))
    assert isinstance(filt, FilterError) and (filt.code, filt.rule) == (-1013, "LOT_SIZE")
    symbol = rejection(ccxt_async.BadSymbol('binance {"code":-1121,"msg":"Invalid symbol."}'))
    assert isinstance(symbol, UnknownSymbol)
    poor = rejection(
        ccxt_async.InsufficientFunds(
            'binance {"code":-2010,"msg":"Account has insufficient balance for requested action."}'
        )
    )
    assert isinstance(poor, InsufficientBalance) and poor.code == -2010
    other = rejection(ccxt_async.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'))
    assert (other.code, other.msg, type(other).__name__) == (-2010, "Duplicate order sent.", "OrderRejected")
    assert binance_error(ccxt_async.ExchangeError("binance no json here")) == (None, "binance no json here")
    assert binance_error(ccxt_async.ExchangeError("binance {broken")) == (None, "binance {broken")


def test_rate_limiter_slows_down_before_the_limit_and_stops_while_banned():
    limiter = RateLimiter(weight_limit=100, slow_down_at=0.9)
    limiter.observe({"X-MBX-USED-WEIGHT-1M": "50", "Content-Type": "json"})
    assert limiter.used_weight == 50 and limiter.delay(120.0) == 0
    limiter.observe({"x-mbx-used-weight-1m": "95"})
    assert limiter.delay(130.0) == pytest.approx(50.0)  # until the next minute
    assert limiter.retry_after({"Retry-After": "7"}) == 7 and limiter.retry_after(None, 3) == 3
    limiter.banned_until = 200.0
    with pytest.raises(ExchangeError, match="HTTP 418"):
        limiter.delay(150.0)
    limiter.observe(None)
    assert limiter.used_weight == 95


def test_a_testnet_client_naming_a_mainnet_host_is_refused_and_keys_are_optional():
    client = make_client(TradingMode.TESTNET, None)
    assert not client.apiKey and not client.secret  # market data needs no keys
    client.urls["api"]["private"] = "https://api.binance.com/api/v3"
    with pytest.raises(MainnetGuardError, match=r"Refused https://api.binance.com/api/v3: api.binance.com is a"):
        check_hosts(client)


def test_unreadable_venue_messages_become_malformed_message_errors():
    with pytest.raises(MalformedMessage, match="Could not read the venue's order: ValueError"):
        order_from_ccxt({"info": {}})


def test_binance_error_ignores_a_last_body_about_another_error():
    error = ccxt_async.InsufficientFunds('binance {"code":-2010,"msg":"Account has insufficient balance."}')
    assert binance_error(error, '{"code": -1013, "msg": "Filter failure: LOT_SIZE"}') == (
        -2010,
        "Account has insufficient balance.",
    )
    bare = ccxt_async.InvalidOrder("binance Order would trigger immediately.")
    assert binance_error(bare, '{"code": -1013, "msg": "Filter failure: LOT_SIZE"}') == (None, str(bare))
    assert binance_error(bare, '{"code": -2010, "msg": "Order would trigger immediately."}') == (
        -2010,
        "Order would trigger immediately.",
    )


def test_closed_bars_close_each_candle_once_and_skip_stale_ones():
    c = [[60_000 * i, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(4)]
    bars, last = closed_bars(None, [c[0]])
    assert bars == [] and last == c[0]
    bars, last = closed_bars(last, [c[0], c[1], c[2]])  # the update of c[0] again, then two newer
    assert [b.name.value // 10**6 for b in bars] == [0, 60_000] and last == c[2]
    assert bars[0]["close_time"].value // 10**6 == 59_999
    bars, last = closed_bars(last, [c[1]])  # stale after a reconnect: nothing closes, nothing goes back
    assert bars == [] and last == c[2]


def test_ccxt_s_request_log_never_shows_the_keys(caplog):
    client = make_client(TradingMode.TESTNET, CREDS, "http://127.0.0.1:9")
    caplog.set_level(logging.DEBUG, "ccxt.base.exchange")
    client.logger.debug("%s %s, Request: %s %s", "GET", "/api/v3/account", {"X-MBX-APIKEY": "K" * 64}, None)
    client.logger.info("secret %s", "S" * 64)
    assert "K" * 64 not in caplog.text and "S" * 64 not in caplog.text
    assert "Request: {'X-MBX-APIKEY': '***'} None" in caplog.text and "secret ***" in caplog.text
    caplog.clear()
    caplog.set_level(logging.WARNING, "ccxt.base.exchange")
    client.logger.debug("not shown %s", "K" * 64)
    assert caplog.text == ""


async def test_verbose_ccxt_output_never_shows_the_keys(exchange, capsys):
    """``verbose = True`` makes ccxt print every request's headers (the API key among them) and
    every WebSocket message: the client blanks the key and secret out of all of it."""
    key, secret = exchange.api_key, exchange.secret
    client = make_client(TradingMode.TESTNET, Credentials(Secret(key), Secret(secret)), exchange.url)
    client.verbose = True
    try:
        assert await client.fetch_balance()
        ws = client.client(client.urls["api"]["ws"]["spot"])
        assert ws.log == client.log  # the WebSocket clients print through the same redaction
        ws.log("sending", {"apiKey": key, "secret": secret})
        make_client(TradingMode.TESTNET, None).log("keyless", "client")
    finally:
        await client.close()
    out = capsys.readouterr().out
    assert "fetch Request:" in out and "'X-MBX-APIKEY': '***'" in out and "{'apiKey': '***', 'secret': '***'}" in out
    assert key not in out and secret not in out and "keyless client" in out


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), max_size=3),
    domain=st.sampled_from(PRODUCTION_DOMAINS),
    case=st.sampled_from([str.lower, str.upper, str.title, str.swapcase]),
    dot=st.sampled_from([".", "%2E", "\u3002", "\uff0e"]),  # ASCII, percent-encoded, ideographic, full width
    trailing=st.sampled_from(["", ".", ".."]),
    prefix=st.sampled_from(["http://", "https://", "ws://", "wss://", "https://127.0.0.1@", "https://localhost:1@"]),
    port=st.sampled_from(["", ":443", ":9443"]),
)
def test_every_spelling_of_a_production_host_is_refused_in_testnet(labels, domain, case, dot, trailing, prefix, port):
    host = case(dot.join([*labels, *domain.split(".")]) + trailing)
    with pytest.raises(MainnetGuardError, match="is a Binance production host"):
        check_url(f"{prefix}{host}{port}/api/v3/time?timestamp=1", TradingMode.TESTNET)
