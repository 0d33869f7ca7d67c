"""The Binance executor end to end: a testnet session trading through ccxt (REST and the WebSocket
user data stream) on the local exchange, with the store checked against the exchange's records."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from decimal import Decimal

import pytest

from tests.polling import until  # absolute: a child process imports this module by itself
from workbench.config import Credentials, RiskLimits, Secret, TradingMode
from workbench.data import load_rules
from workbench.errors import FilterError, InsufficientBalance, KillSwitchActive, OrderRejected
from workbench.exchange import LocalExchange
from workbench.executors.binance import BinanceExecutor
from workbench.session import TradingSession
from workbench.store import Store

SYMBOLS = ("BTC/USDT", "ETH/USDT")
RISK = RiskLimits(max_order_notional=Decimal(200_000), max_position_notional=None, max_orders_per_minute=None)


def executor_for(exchange: LocalExchange, **kwargs) -> BinanceExecutor:
    credentials = Credentials(Secret(exchange.api_key), Secret(exchange.secret))
    return BinanceExecutor(TradingMode.TESTNET, load_rules(SYMBOLS), credentials, venue_url=exchange.url, **kwargs)


def session_for(exchange: LocalExchange, store: Store, session_id: str = "e2e", **kwargs) -> TradingSession:
    return TradingSession(executor_for(exchange, **kwargs), store, rules=load_rules(SYMBOLS), risk=RISK,
                          session_id=session_id)  # fmt: skip


def store_fills(store: Store, session_id: str = "e2e") -> set[tuple]:
    store.flush()
    rows = store.sql(
        "SELECT symbol, trade_id, price, amount, fee, fee_currency FROM real_fills WHERE session_id = ?", [session_id]
    )
    return {
        (s, t, Decimal(p).normalize(), Decimal(a).normalize(), Decimal(f).normalize(), c) for s, t, p, a, f, c in rows
    }


def exchange_fills(exchange: LocalExchange) -> set[tuple]:
    return {
        (t.symbol, t.trade_id, t.price.normalize(), t.amount.normalize(), t.fee.normalize(), t.fee_currency)
        for t in exchange.venue.trades
    }


async def balances_agree(session: TradingSession, exchange: LocalExchange) -> bool:
    ours = await session.executor.fetch_balance()
    theirs = {b.asset: b for b in exchange.venue.engine.balances().values() if b.total}
    return {a: (b.free, b.locked) for a, b in ours.items()} == {a: (b.free, b.locked) for a, b in theirs.items()}


def cents(price: Decimal) -> Decimal:
    return price.quantize(Decimal("0.01"))


def price_of(exchange: LocalExchange, symbol: str = "BTC/USDT") -> Decimal:
    return exchange.venue.engine.last_price[symbol]


async def test_every_order_type_placed_filled_triggered_partially_filled_and_canceled(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    p = price_of(exchange)
    tick = Decimal("0.01")

    def at(f: str) -> Decimal:
        return (p * Decimal(f)).quantize(tick)

    market = await session.create_order("BTC/USDT", "market", "buy", "0.01")
    quote = await session.create_order("ETH/USDT", "market", "buy", quote_amount="250")
    resting = await session.create_order("BTC/USDT", "limit", "buy", "1.5", at("0.995"), time_in_force="GTC")
    ioc = await session.create_order("BTC/USDT", "limit", "sell", "0.01", at("1.03"), time_in_force="IOC")
    fok = await session.create_order("BTC/USDT", "limit", "buy", "0.01", at("1.01"), time_in_force="FOK")
    maker = await session.create_order("BTC/USDT", "limit_maker", "sell", "0.01", at("1.01"))
    stop = await session.create_order("BTC/USDT", "stop_loss_limit", "sell", "0.01", at("0.96"),
                                      stop_price=at("0.97"), time_in_force="GTC")  # fmt: skip
    take = await session.create_order("BTC/USDT", "take_profit_limit", "sell", "0.01", at("1.02"),
                                      stop_price=at("1.02"), time_in_force="GTC")  # fmt: skip
    canceled = await session.create_order("BTC/USDT", "limit", "buy", "0.01", at("0.96"), time_in_force="GTC")
    assert [o.status.value for o in (market, quote, ioc, fok)] == ["FILLED", "FILLED", "EXPIRED", "FILLED"]
    assert quote.amount is not None and quote.cost <= 250
    assert all(o.status.value == "NEW" for o in (resting, maker, stop, take, canceled))

    exchange.set_price("BTC/USDT", at("1.025"))  # the maker sell fills; the take-profit triggers and fills
    exchange.set_price("BTC/USDT", at("0.99"))  # the big buy fills one book level: partially
    await session.cancel_order(canceled.client_order_id, "BTC/USDT")
    # The stop triggers and sells into the account's own resting buy first: self-trade prevention
    # (EXPIRE_MAKER, Binance's default) expires that buy, and the stop fills against the market.
    exchange.set_price("BTC/USDT", at("0.965"))

    def status(order) -> str:
        return session.executor._orders[order.client_order_id].status.value

    await until(
        lambda: [status(o) for o in (maker, take, stop, canceled)] == ["FILLED"] * 3 + ["CANCELED"], what="fills"
    )
    await until(lambda: status(resting) == "EXPIRED_IN_MATCH", what="self-trade prevention")
    partly = session.executor._orders[resting.client_order_id]
    assert 0 < partly.filled < partly.amount  # it had partially filled before it met the stop
    assert exchange.venue.engine.get_order("BTC/USDT", client_order_id=resting.client_order_id).prevented_quantity > 0

    await until(lambda: store_fills(store) == exchange_fills(exchange), what="the store's fills equal the exchange's")
    assert len(exchange.venue.trades) >= 8
    await until(lambda: balances_agree(session, exchange), what="balances agree")
    store.flush()
    statuses = dict(store.sql("SELECT client_order_id, status FROM real_orders WHERE session_id = 'e2e'"))
    assert statuses[resting.client_order_id] == "EXPIRED_IN_MATCH" and statuses[take.client_order_id] == "FILLED"
    filled = Decimal(
        store.sql(f"SELECT filled FROM real_orders WHERE client_order_id = '{resting.client_order_id}'")[0][0]
    )
    assert 0 < filled < Decimal("1.5")
    await session.stop()
    await session.executor.close()


async def test_venue_rejections_and_the_kill_switch(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    with pytest.raises(InsufficientBalance) as caught:
        await session.create_order("BTC/USDT", "market", "sell", "4")  # the risk checks pass; the venue refuses
    assert caught.value.code == -2010
    with pytest.raises(FilterError):
        await session.create_order("BTC/USDT", "limit", "buy", "0.0001", "1000", time_in_force="GTC")
    store.flush()
    assert store.sql("SELECT status FROM real_orders") == [("REJECTED",)]
    report = await session.emergency_stop("test")
    assert report.canceled == [] or isinstance(report.canceled, list)
    with pytest.raises(KillSwitchActive):
        await session.create_order("BTC/USDT", "market", "buy", "0.01")
    assert len(exchange.venue.engine.orders) == 0
    await session.executor.close()


async def test_emergency_stop_cancels_every_open_order_of_the_account(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    p = price_of(exchange)
    mine = await session.create_order("BTC/USDT", "limit", "buy", "0.01", cents(p * Decimal("0.97")),
                                      time_in_force="GTC")  # fmt: skip
    exchange.venue.create_order({"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                 "quantity": "0.1", "price": "1000", "newClientOrderId": "manual-1"})  # fmt: skip
    report = await session.emergency_stop("drill")
    assert {o.client_order_id for o in report.canceled} == {mine.client_order_id, "manual-1"}
    assert exchange.venue.engine.open_orders() == []
    assert session.kill_switch.tripped
    await session.executor.close()


# -- faults: nothing doubled, nothing lost, balances equal -----------------------------------------


async def settled(session: TradingSession, exchange: LocalExchange, store: Store, timeout: float = 15.0) -> None:
    """Wait until the store's fills equal the exchange's and the balances agree; and check that no
    client order id was placed twice."""
    cids = [o.client_order_id for o in exchange.venue.engine.orders.values()]
    assert len(cids) == len(set(cids)), "an order was placed twice"
    await until(lambda: store_fills(store, session.session_id) == exchange_fills(exchange), timeout, "fills settle")
    await until(lambda: balances_agree(session, exchange), timeout, "balances agree")


async def test_lost_answers_and_5xx_are_resolved_by_client_order_id(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    exchange.set_faults(lost_answers=1)
    placed = await session.create_order("BTC/USDT", "market", "buy", "0.01")  # placed, answer lost, found
    assert placed.status.value == "FILLED" and len(exchange.venue.engine.orders) == 1
    exchange.set_faults(errors_5xx=1)
    resent = await session.create_order("BTC/USDT", "market", "buy", "0.01")  # never placed: sent once more
    assert resent.status.value == "FILLED" and len(exchange.venue.engine.orders) == 2
    await settled(session, exchange, store)
    await session.executor.close()


async def test_429_is_waited_out_and_418_stops_until_the_ban_ends(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    exchange.set_faults(too_many_requests=1, retry_after=1)
    started = time.monotonic()
    await session.create_order("BTC/USDT", "market", "buy", "0.01")
    assert time.monotonic() - started >= 1.0  # Retry-After honoured once
    exchange.set_faults(ban_seconds=1.5)
    with pytest.raises(OrderRejected, match="banned"):  # the 418 itself
        await session.create_order("BTC/USDT", "market", "buy", "0.01")
    with pytest.raises(OrderRejected, match="banned"):  # refused here: nothing is sent while banned
        await session.create_order("BTC/USDT", "market", "buy", "0.01")
    assert len(exchange.venue.engine.orders) == 1
    await until(lambda: time.time() > session.executor.limiter.banned_until, 5, "the ban ends")
    await session.create_order("BTC/USDT", "market", "sell", "0.01")
    store.flush()
    assert sorted(s for (s,) in store.sql("SELECT status FROM real_orders")) == [
        "FILLED",
        "FILLED",
        "REJECTED",
        "REJECTED",
    ]
    await settled(session, exchange, store)
    await session.executor.close()


async def test_stream_drops_during_fills_are_reconciled(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)
    await session.start()
    p = price_of(exchange)
    order = await session.create_order("BTC/USDT", "limit", "buy", "0.3", cents(p * Decimal("0.99")),
                                       time_in_force="GTC")  # fmt: skip
    exchange.set_faults(ws_drop_after=0)  # the next user data event drops the connection instead
    exchange.set_price("BTC/USDT", p * Decimal("0.985"))
    await settled(session, exchange, store)
    assert session.executor._orders[order.client_order_id].status.value == "FILLED"
    assert any("recovered from REST" in d or "FILLED on the venue" in d for d in session.executor.discrepancies)
    await session.executor.close()


async def test_duplicated_and_reordered_events_are_absorbed(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    exchange.set_faults(duplicate_events=0.7, reorder_events=0.5, seed=3)
    p = price_of(exchange)
    for i in range(6):
        await session.create_order("BTC/USDT", "limit", "buy", "0.2", cents(p * Decimal(1 - 0.002 * (i + 1))),
                                   time_in_force="GTC")  # fmt: skip
    for i in range(6):
        exchange.set_price("BTC/USDT", p * Decimal(1 - 0.002 * (i + 1) - 0.0005))
    await settled(session, exchange, store)
    store.flush()
    assert store.sql("SELECT count(*), count(DISTINCT trade_id) FROM real_fills")[0] == (6, 6)
    assert {s for (s,) in store.sql("SELECT status FROM real_orders")} == {"FILLED"}
    await session.executor.close()


async def test_clock_skew_is_corrected_by_syncing_with_the_server(exchange, store):
    session = session_for(exchange, store)
    await session.start()
    exchange.set_faults(clock_skew_ms=25_000)
    order = await session.create_order("BTC/USDT", "market", "buy", "0.01")
    assert order.status.value == "FILLED" and len(exchange.venue.engine.orders) == 1
    await settled(session, exchange, store)
    await session.executor.close()


CHILD = """
import asyncio, os, sys
from decimal import Decimal
sys.path.insert(0, os.environ["TESTS_DIR"])
from test_binance_e2e import SYMBOLS, RISK
from workbench.config import Credentials, Secret, TradingMode
from workbench.data import load_rules
from workbench.executors.binance import BinanceExecutor
from workbench.session import TradingSession
from workbench.store import Store

async def main():
    url, key, secret, path = sys.argv[1:5]
    credentials = Credentials(Secret(key), Secret(secret))
    executor = BinanceExecutor(TradingMode.TESTNET, load_rules(SYMBOLS), credentials, venue_url=url)
    session = TradingSession(executor, Store(path), rules=load_rules(SYMBOLS), risk=RISK, session_id="killed")
    side = "buy"
    for i in range(10_000):
        await session.create_order("BTC/USDT", "market", side, "0.001")
        side = "sell" if side == "buy" else "buy"
        print(i, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_after", [3, 11])
async def test_a_session_killed_midway_restarts_without_doubling_anything(exchange, tmp_path, kill_after):
    path = tmp_path / "killed.duckdb"
    env = {**os.environ, "TESTS_DIR": os.path.dirname(__file__)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, exchange.url, exchange.api_key, exchange.secret, str(path),
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    for _ in range(kill_after):
        assert await asyncio.wait_for(child.stdout.readline(), 30), "the child session stopped early"
    child.send_signal(signal.SIGKILL)
    await child.wait()
    with Store(path) as store:
        session = session_for(exchange, store, session_id="killed")
        await session.start()  # resumes: reconciles what the store knew with the venue
        await session.create_order("BTC/USDT", "market", "buy", "0.001")
        store.flush()
        rows = dict(store.sql("SELECT client_order_id, status FROM real_orders WHERE session_id = 'killed'"))
        assert "PENDING_NEW" not in rows.values()
        # an order journaled but killed before it was sent is settled as REJECTED; the rest are the venue's
        placed = {o.client_order_id for o in exchange.venue.engine.orders.values()}
        assert {cid for cid, status in rows.items() if status != "REJECTED"} == placed
        assert sum(status == "REJECTED" for status in rows.values()) <= 1
        ids = [int(c.rsplit("-", 1)[1]) for (c,) in store.sql("SELECT client_order_id FROM real_orders")]
        assert sorted(ids) == list(range(1, len(ids) + 1))
        await settled(session, exchange, store)
        await session.executor.close()
