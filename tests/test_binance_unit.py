"""The Binance executor's pure parts: URLs chosen by mode, the mainnet lock, parsing, rate limits."""

import json
import logging
import socket
from decimal import Decimal

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest

from workbench.config import MAINNET_CONSENT, MAINNET_ENV, Config, Credentials, Secret, TradingMode, load_config
from workbench.errors import (
    ConfigError,
    ExchangeError,
    FilterError,
    InsufficientBalance,
    MainnetGuardError,
    MalformedMessage,
    UnknownSymbol,
)
from workbench.executors import build_executor
from workbench.executors.binance import (
    MAINNET_HOSTS,
    BinanceExecutor,
    RateLimiter,
    binance_error,
    check_hosts,
    closed_bars,
    fill_from_ccxt,
    make_client,
    order_from_ccxt,
    rejection,
)
from workbench.model import OrderStatus, OrderType, Side, TimeInForce

CREDS = Credentials(Secret("K" * 64), Secret("S" * 64))


def all_urls(client):
    return json.dumps(client.urls["api"])


def test_testnet_urls_by_default_and_the_local_venue_by_config():
    testnet = make_client(TradingMode.TESTNET, CREDS)
    assert "testnet.binance.vision" in all_urls(testnet) and not any(h in all_urls(testnet) for h in MAINNET_HOSTS)
    local = make_client(TradingMode.TESTNET, CREDS, "http://127.0.0.1:8765")
    assert local.urls["api"]["public"] == "http://127.0.0.1:8765/api/v3"
    assert local.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8765/ws-api/v3"
    assert local.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:8765/ws"
    mainnet = make_client(TradingMode.MAINNET, CREDS)
    assert "api.binance.com" in all_urls(mainnet)
    with pytest.raises(ConfigError, match="Paper mode has no venue"):
        make_client(TradingMode.PAPER, CREDS)


async def test_no_request_reaches_a_mainnet_host_unless_the_guard_passed(monkeypatch):
    """Three locks: resolve_mode refuses mainnet without both guards before any client exists; a
    testnet client's URLs name no mainnet host; and its requests refuse one at the moment of sending."""
    built = []
    monkeypatch.setattr(ccxtpro, "binance", lambda *a, **k: built.append(1))
    monkeypatch.delenv(MAINNET_ENV, raising=False)
    for config in (Config(mode=TradingMode.MAINNET), Config(mode=TradingMode.MAINNET, mainnet=True)):
        with pytest.raises(MainnetGuardError):
            build_executor(config, {})
    monkeypatch.setenv(MAINNET_ENV, MAINNET_CONSENT)
    with pytest.raises(MainnetGuardError):
        build_executor(Config(mode=TradingMode.MAINNET), {})
    assert built == []  # no network object was ever built
    monkeypatch.undo()

    client = make_client(TradingMode.TESTNET, CREDS)
    client.urls["api"]["public"] = "https://api.binance.com/api/v3"  # a misconfiguration
    with pytest.raises(ConfigError, match="tried to reach the mainnet URL https://api.binance.com/api/v3/time"):
        await client.fetch_time()
    with pytest.raises(ConfigError, match="mainnet URL"):
        client.client("wss://stream.binance.com:9443/ws")
    await client.close()


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
    with pytest.raises(ConfigError, match=r"must not reach mainnet hosts, but its URLs name \['api.binance.com'\]"):
        check_hosts(client, TradingMode.TESTNET)
    check_hosts(client, TradingMode.MAINNET)  # mainnet (past the guard) may


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


def test_the_suite_refuses_and_records_every_lookup_of_a_mainnet_host():
    from . import conftest

    with pytest.raises(OSError, match="must not reach the mainnet host api.binance.com"):
        socket.getaddrinfo("api.binance.com", 443)
    assert conftest.MAINNET_LOOKUPS.pop() == "api.binance.com"  # this one was on purpose
    assert socket.getaddrinfo("127.0.0.1", 80)


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
