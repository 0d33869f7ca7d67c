import time
from decimal import Decimal

import pytest

from workbench.config import TradingMode
from workbench.errors import InvalidOrder, OrderNotFound
from workbench.executors import Executor, PaperExecutor
from workbench.model import OrderRequest, OrderStatus

from .conftest import T0


@pytest.fixture
def paper(rules):
    executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 1})
    executor.update_price("BTC/USDT", 50_000, T0)
    return executor


def limit(cid, price="49000", side="buy"):
    return OrderRequest("BTC/USDT", side, "LIMIT", amount="0.1", price=price, time_in_force="GTC", client_order_id=cid)


async def test_implements_the_executor_protocol_and_reports_every_event(paper):
    assert isinstance(paper, Executor) and paper.mode is TradingMode.PAPER and paper.venue == "paper"
    assert await paper.fetch_price("BTC/USDT") == 50_000 and await paper.fetch_price("ETH/USDT") is None
    events = []
    paper.subscribe(events.append)
    order = await paper.create_order(limit("a"))
    assert order.status is OrderStatus.NEW and order.client_order_id == "a"
    assert (await paper.fetch_order("a", "BTC/USDT")).status is OrderStatus.NEW
    assert [o.client_order_id for o in await paper.fetch_open_orders()] == ["a"]
    assert [o.client_order_id for o in await paper.fetch_open_orders("ETH/USDT")] == []
    canceled = await paper.cancel_order("a", "BTC/USDT")
    assert canceled.status is OrderStatus.CANCELED
    await paper.create_order(limit("b"))
    await paper.create_order(limit("c"))
    assert [o.status for o in await paper.cancel_all_orders("BTC/USDT")] == [OrderStatus.CANCELED] * 2
    assert [e.kind for e in events] == ["NEW", "CANCELED", "NEW", "NEW", "CANCELED", "CANCELED"]
    with pytest.raises(OrderNotFound):
        await paper.fetch_order("zzz", "BTC/USDT")
    await paper.close()


async def test_fills_come_on_the_market_clock_and_are_listed_by_my_trades(paper):
    await paper.create_order(limit("f", price="49500"))
    paper.update_price("BTC/USDT", 49_400, T0 + 60_000)
    market = await paper.create_order(OrderRequest("BTC/USDT", "sell", "MARKET", amount="0.2", client_order_id="m"))
    assert market.status is OrderStatus.FILLED
    trades = await paper.fetch_my_trades("BTC/USDT")
    assert [t.client_order_id for t in trades] == ["f", "m"]
    assert [t.timestamp for t in trades] == [T0 + 60_000] * 2
    assert await paper.fetch_my_trades("BTC/USDT", since=T0 + 60_001) == []
    assert await paper.fetch_my_trades("ETH/USDT") == []
    balances = await paper.fetch_balance()
    assert balances["BTC"].free == Decimal("0.8999") and balances["BTC"].locked == 0  # 1 + 0.1 - 0.0001 fee - 0.2
    assert balances["USDT"].free == 100_000 - Decimal("4950") + trades[1].cost - trades[1].fee


async def test_requests_without_a_client_order_id_are_refused(paper):
    with pytest.raises(InvalidOrder, match="client_order_id") as e:
        await paper.create_order(OrderRequest("BTC/USDT", "buy", "MARKET", amount="0.1"))
    assert e.value.code == -1102


def test_the_wall_clock_is_used_before_any_market_price(rules):
    executor = PaperExecutor(rules, {})
    before = int(time.time() * 1000)
    assert before <= executor.now() <= int(time.time() * 1000)
