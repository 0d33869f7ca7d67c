"""The Binance executor's less travelled paths, each against the local exchange over ccxt: restarts,
foreign orders on the account, paging through trades, lost answers that were never placed, malformed
stream events, failed reconciliations, bans and the limiter. With tests/test_binance_e2e.py they
cover every line and branch of the executor (enforced by ``make test``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pytest

from workbench.config import Credentials, Secret, TradingMode
from workbench.data import load_rules
from workbench.errors import ExchangeError, InsufficientBalance, OrderNotFound, OrderRejected
from workbench.exchange import LocalExchange
from workbench.executors.binance import BinanceExecutor, RateLimiter, make_client
from workbench.model import Order, OrderRequest, OrderStatus
from workbench.store import Store

from .polling import until
from .test_binance_e2e import SYMBOLS, cents, executor_for, price_of, session_for, settled

BTC = "BTC/USDT"


def credentials(exchange: LocalExchange) -> Credentials:
    return Credentials(Secret(exchange.api_key), Secret(exchange.secret))


def request(cid: str | None = "t-1", side: str = "buy", amount: str = "0.01") -> OrderRequest:
    return OrderRequest(BTC, side, "market", amount=amount, client_order_id=cid)  # type: ignore[arg-type]


async def streaming(exchange: LocalExchange) -> None:
    """Wait until the user data stream is subscribed (ccxt subscribes on its first watch)."""
    await until(lambda: exchange.user_data_subscriptions > 0, what="the user data stream subscribed")


@pytest.fixture
async def started(exchange):
    executor = executor_for(exchange, reconcile_every=3600)
    await executor.start()
    await streaming(exchange)
    yield executor
    await executor.close()


@pytest.fixture
async def other(exchange):
    """Another client on the same account (a second notebook, the Binance web UI...)."""
    client = make_client(TradingMode.TESTNET, credentials(exchange), exchange.url)
    await client.load_markets()
    yield client
    await client.close()


async def test_a_restarted_executor_knows_its_open_orders_and_starts_once(exchange, started):
    p = price_of(exchange)
    resting = await started.create_order(
        OrderRequest(BTC, "buy", "limit", amount="0.01", price=cents(p * Decimal("0.97")),  # type: ignore[arg-type]
                     time_in_force="GTC", client_order_id="t-rest")  # type: ignore[arg-type]
    )  # fmt: skip
    again = executor_for(exchange, reconcile_every=3600)
    await again.start({resting.client_order_id: resting})
    await again.start()  # a second start does nothing
    assert again._client_ids[resting.id] == "t-rest" and again._orders["t-rest"].status is OrderStatus.NEW
    assert await again.reconcile() == []  # still open on the venue: nothing to report
    await again.close()


async def test_an_order_without_a_client_order_id_is_refused_before_sending(exchange, started):
    with pytest.raises(OrderRejected, match="needs a client_order_id"):
        await started.create_order(request(cid=None))
    assert exchange.venue.engine.orders == {}


async def test_canceling_an_unknown_order_names_binance_s_code(started):
    with pytest.raises(OrderNotFound, match="Cannot cancel t-none on BTC/USDT: .*Binance code -2011"):
        await started.cancel_order("t-none", BTC)


async def test_trades_of_orders_placed_elsewhere_are_named_by_their_client_order_id(exchange, other):
    await other.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "web-1"})
    executor = executor_for(exchange)  # not started: it has heard of no order
    fills = await executor.fetch_my_trades(BTC)
    assert {f.client_order_id for f in fills} == {"web-1"} and len(fills) == len(exchange.venue.trades)
    await executor.close()


async def test_reconcile_pages_through_trades_by_id_and_merges_each_once(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)
    for side in ("buy", "sell") * 3:
        await session.create_order(BTC, "market", side, "0.01")
    await session.executor.close()
    trades = len(exchange.venue.trades)
    fresh = executor_for(exchange, reconcile_every=3600)
    fresh.trades_page = 2  # several pages, the last one short or empty
    await fresh.start({cid: o for cid, o in session.orders.items()})
    last = max(int(t.trade_id) for t in exchange.venue.trades)
    assert len(fresh._trades) == trades and fresh._trades_from[BTC] == last + 1
    assert f"{BTC}: {trades} fill(s) recovered from REST" in fresh.discrepancies
    await fresh.create_order(request("t-after", "sell"))
    assert await fresh.reconcile() == []  # from the last id on: the new trade came by the stream
    assert len(fresh._trades) == len(exchange.venue.trades)
    await fresh.close()


async def test_a_failed_periodic_reconcile_is_logged_and_retried(exchange, caplog):
    executor = executor_for(exchange, reconcile_every=0.05)
    await executor.start()
    caplog.set_level(logging.WARNING, "workbench.executors.binance")
    exchange.set_faults(errors_5xx=2)
    await until(lambda: "periodic reconcile failed" in caplog.text, what="a failed reconcile")
    await until(lambda: exchange.faults.errors_5xx == 0, what="the 5xx used up")
    assert await executor.fetch_balance()  # the executor carries on
    await executor.close()


async def test_an_order_the_venue_never_saw_is_sent_once_more_and_then_given_up(exchange, started):
    exchange.set_faults(refused_orders=2)  # the order and its single resend both fail before the engine
    with pytest.raises(ExchangeError, match="could not be found; reconcile\\(\\) will settle it") as caught:
        await started.create_order(request("t-lost"))
    assert caught.value.code == -1007 and exchange.venue.engine.orders == {}
    exchange.set_faults(errors_5xx=4)  # the order and all three look-ups fail: given up, nothing sent again
    with pytest.raises(ExchangeError, match="could not be found"):
        await started.create_order(request("t-dark"))
    assert exchange.venue.engine.orders == {}
    assert started._orders["t-dark"].status is OrderStatus.PENDING_NEW  # known, so reconcile settles it:
    assert "t-dark: never reached the venue; marked REJECTED" in await started.reconcile()
    assert started._orders["t-dark"].status is OrderStatus.REJECTED
    exchange.set_faults(errors_5xx=3)  # the order and two look-ups fail; the third look-up finds nothing: resend
    order = await started.create_order(request("t-late"))
    assert order.status is OrderStatus.FILLED and len(exchange.venue.engine.orders) == 1


async def test_a_malformed_stream_event_is_reported_and_settled_from_rest(exchange, store):
    session = session_for(exchange, store, reconcile_every=3600)
    await session.start()
    await streaming(exchange)
    exchange.set_faults(malformed_events=1)
    order = await session.create_order(BTC, "market", "buy", "0.01")
    await until(lambda: any("Could not read the venue's order" in d for d in session.executor.discrepancies))
    await settled(session, exchange, store)
    assert session.executor._orders[order.client_order_id].status is OrderStatus.FILLED
    await session.executor.close()


async def test_a_failed_reconcile_after_a_reconnect_is_logged(exchange, started, caplog):
    caplog.set_level(logging.WARNING, "workbench.executors.binance")
    exchange.set_faults(errors_5xx=4)
    await exchange.drop_connections()
    await until(lambda: "reconcile after reconnect failed" in caplog.text, what="a failed reconcile")
    exchange.set_faults(errors_5xx=0)
    order = await started.create_order(request("t-on"))
    assert order.status is OrderStatus.FILLED


async def test_the_stream_ignores_other_symbols_and_tells_of_fills_of_unknown_orders(exchange, other):
    executor = BinanceExecutor(TradingMode.TESTNET, load_rules((BTC,)), credentials(exchange), venue_url=exchange.url)
    events = []
    executor.subscribe(events.append)
    await executor.start()
    await streaming(exchange)
    await other.create_order("ETH/USDT", "market", "buy", 0.1, None, {"newClientOrderId": "web-eth"})
    await other.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "web-btc"})
    await until(lambda: any(e.fill is not None for e in events), what="the BTC fill")
    assert {e.order.client_order_id for e in events} == {"web-btc"}
    assert all(e.order.symbol == BTC for e in events)
    # a trade that reaches the trade stream before its order (or without a client order id) is still told
    executor._on_stream_trades(
        [
            {"id": "9001", "order": "77", "symbol": BTC, "side": "buy", "price": 50_000, "amount": 0.01,
             "cost": 500, "fee": {"cost": 0.00001, "currency": "BTC"}, "takerOrMaker": "taker",
             "timestamp": 1, "info": {"c": "elsewhere-1"}},
            {"id": "9002", "order": "78", "symbol": BTC, "info": {}},  # no client order id, unknown order: skipped
            {"id": "9003", "order": "79", "symbol": "ETH/USDT", "info": {"c": "web-eth"}},  # not ours: skipped
        ]
    )  # fmt: skip
    told = events[-1]
    assert told.kind == "TRADE" and told.order.client_order_id == "elsewhere-1" and told.fill.trade_id == "9001"
    await executor.close()


async def test_missing_fills_are_fetched_and_a_failed_fetch_left_to_reconcile(exchange, started, caplog):
    order = await started.create_order(request("t-gap"))
    started._filled["t-gap"] = Decimal(0)  # as if the trade stream had not delivered its trades yet
    await started._close_gap(order, grace=0)
    assert started.discrepancies[-1] == "t-gap: filled 0.01 but its trades lagged; 0 fill(s) fetched from REST"
    caplog.set_level(logging.WARNING, "workbench.executors.binance")
    exchange.set_faults(errors_5xx=1)
    await started._close_gap(order, grace=0)
    assert "fetching the missing fills of t-gap failed" in caplog.text and "t-gap" not in started._gaps


async def test_a_418_stops_every_request_until_the_ban_ends(exchange, started):
    exchange.set_faults(ban_seconds=30)
    with pytest.raises(ExchangeError, match=r"banned this IP for 30s \(HTTP 418\)"):
        await started.fetch_balance()
    with pytest.raises(ExchangeError, match="until .* UTC; the workbench waits until then"):
        await started.fetch_balance()  # refused without a request
    assert started.limiter.banned_until > 0


async def test_two_429s_in_a_row_give_up_and_the_limiter_s_wait_is_counted(exchange):
    class NearTheLimit(RateLimiter):
        """A limiter that asks for one short wait, as it would near the weight limit."""

        def delay(self, now: float) -> float:
            return 0.0 if self.waited else 0.01

    executor = executor_for(exchange, reconcile_every=3600, limiter=NearTheLimit())
    await executor.start()
    assert executor.limiter.waited == pytest.approx(0.01)
    exchange.set_faults(too_many_requests=2, retry_after=0.01)
    with pytest.raises(ExchangeError, match="Rate limited twice in a row"):
        await executor.fetch_balance()
    await executor.close()


@dataclass(frozen=True)
class EveryOtherMinute:
    """Long on even minutes, flat on odd ones: a target that changes with every bar, whatever the
    market does (an SMA cross may not cross in a few bars)."""

    warmup: int = 1

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        return pd.Series(0.001 * (bars.index.minute % 2 == 0), index=bars.index)


async def test_a_live_session_trades_the_venue_s_closed_bars(store):
    async with LocalExchange(SYMBOLS, speed=6000) as exchange:  # a 1m bar every 10 ms
        session = session_for(exchange, store, reconcile_every=3600)
        session.strategy = EveryOtherMinute()
        summary = await asyncio.wait_for(session.run_live(4), 60)
        await session.executor.close()
    store.flush()
    assert store.sql("SELECT status FROM sessions") == [("completed",)] and set(summary.index) == set(SYMBOLS)
    bars = store.sql("SELECT count(*) FROM audit_log WHERE kind = 'risk.passed'")[0][0]
    assert bars == store.sql("SELECT count(*) FROM real_orders")[0][0] > 0  # the crossings traded


async def test_an_order_recorded_but_never_sent_is_settled_as_rejected(exchange):
    """A session killed between recording an order and sending it restarts knowing a PENDING_NEW order
    the venue never saw: reconcile marks it REJECTED (nothing is sent in its name)."""
    ghost = Order.from_request(request("t-ghost"), "t-ghost", 0)
    ghost.status = OrderStatus.PENDING_NEW
    executor = executor_for(exchange, reconcile_every=3600)
    await executor.start({"t-ghost": ghost})
    assert executor.discrepancies == ["t-ghost: never reached the venue; marked REJECTED"]
    assert executor._orders["t-ghost"].status is OrderStatus.REJECTED and exchange.venue.engine.orders == {}
    with pytest.raises(OrderNotFound, match="The venue has no order t-ghost on BTC/USDT"):
        await executor.fetch_order("t-ghost", BTC)
    await executor.close()


async def test_a_resend_the_venue_refuses_is_a_clear_rejection(exchange, started):
    exchange.set_faults(errors_5xx=1)  # the order is lost before the venue; the resend is refused
    with pytest.raises(InsufficientBalance, match="insufficient balance") as caught:
        await started.create_order(request("t-broke", "sell", "50"))
    assert caught.value.code == -2010 and exchange.venue.engine.orders == {}


async def test_a_restarted_session_recovers_a_fill_its_crash_kept_from_the_store(exchange, tmp_path):
    """A process killed after an order's FILLED row was committed but before its fill's row was:
    the restarted session fetches the missing fill and knows its position as before."""
    path = tmp_path / "crashed.duckdb"
    with Store(path) as store:
        session = session_for(exchange, store, session_id="crashed", reconcile_every=3600)
        for side in ("buy", "buy", "sell"):
            await session.create_order(BTC, "market", side, "0.01")
        position = session.state.positions[BTC]
        await session.executor.close()
        store.flush()
        lost = store.sql("SELECT trade_id FROM real_fills ORDER BY timestamp LIMIT 1")[0][0]
        store._put("DELETE FROM real_fills WHERE trade_id = ?", (lost,))  # the row the crash kept from disk
        store.flush()
    with Store(path) as store:
        again = session_for(exchange, store, session_id="crashed", reconcile_every=3600)
        await again.start()
        assert again.state.positions[BTC] == position
        await again.executor.close()
        store.flush()
        assert len(store.session_fills("crashed", TradingMode.TESTNET)) == len(exchange.venue.trades) == 3
