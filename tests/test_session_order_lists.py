"""Order lists (OCO, OTO, OTOCO) through TradingSession: session client ids, a risk check of every
leg, the kill switch, the journal before sending, and the store recording the list and its legs."""

import json
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from workbench.config import RiskLimits, TradingMode
from workbench.errors import KillSwitchActive, OrderRejected, RiskRejected, WorkbenchError
from workbench.executors import PaperExecutor
from workbench.model import ContingencyType, ListOrderStatus, ListStatusType, OrderList, OrderListRequest, OrderRequest
from workbench.session import TradingSession
from workbench.store import Store

from .conftest import T0

D = Decimal


def paper_session(rules, store, risk=RiskLimits(), **kw):
    executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 2})
    executor.update_price("BTC/USDT", D(50_000), T0)
    return TradingSession(executor, store, rules=rules, risk=risk, **kw)


def leg(type_, side="sell", amount="0.1", **kw):
    if type_ in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        kw.setdefault("time_in_force", "GTC")
    return OrderRequest("BTC/USDT", side, type_, amount=amount, **kw)


def oco_sell(tp="51000", stop="49000", amount="0.1"):
    return OrderListRequest(
        "OCO",
        (
            leg("LIMIT_MAKER", amount=amount, price=tp),
            leg("STOP_LOSS_LIMIT", amount=amount, price=str(D(stop) - 100), stop_price=stop),
        ),
    )


def otoco_buy():
    return OrderListRequest(
        "OTOCO",
        (
            leg("LIMIT", side="buy", amount="0.1", price="49500"),
            leg("LIMIT_MAKER", amount="0.1", price="52000"),
            leg("STOP_LOSS_LIMIT", amount="0.1", price="47900", stop_price="48000"),
        ),
    )


def stored_list(store, list_id):
    store.flush()
    return store.query("SELECT * FROM order_lists WHERE list_client_order_id = ?", [list_id]).iloc[0]


def stored_statuses(store, cids):
    store.flush()
    rows = dict(store.sql("SELECT client_order_id, status FROM orders"))
    return [rows.get(cid) for cid in cids]


async def test_an_oco_gets_session_ids_and_its_list_and_legs_are_recorded_as_they_change(rules, store):
    session = paper_session(rules, store, session_id="lists-oco")
    placed = await session.create_order_list(oco_sell(), signal_price=D(50_000), signal_time=T0)

    prefix = session.session_id[:24] + "-"
    legs = session._list_legs[placed.list_client_order_id]
    assert placed.list_client_order_id.startswith(prefix) and all(cid.startswith(prefix) for cid in legs)
    assert len({placed.list_client_order_id, *legs}) == 3
    row = stored_list(store, placed.list_client_order_id)
    assert (row["contingency_type"], row["list_order_status"], row["order_list_id"]) == ("OCO", "EXECUTING", placed.id)
    assert list(row["legs"]) == list(legs) and row["signal_price"] == pytest.approx(50_000) and row["mode"] == "paper"
    assert stored_statuses(store, legs) == ["NEW", "NEW"]

    await session._step("BTC/USDT", D(51_000), T0 + 60_000, None)  # the limit leg fills, the stop expires
    assert stored_statuses(store, legs) == ["FILLED", "EXPIRED"]
    row = stored_list(store, placed.list_client_order_id)
    assert (row["list_status_type"], row["list_order_status"], row["status_rank"]) == ("ALL_DONE", "ALL_DONE", 2)
    assert session.order_lists[placed.list_client_order_id].list_order_status is ListOrderStatus.ALL_DONE
    assert row["signal_price"] == pytest.approx(50_000)  # the first-known fields stay
    kinds = [k for (k,) in store.sql("SELECT kind FROM audit_log WHERE kind LIKE 'order_list.%' ORDER BY seq")]
    assert kinds[0] == "order_list.request" and {"order_list.response", "order_list.event"} <= set(kinds)
    summary = await session.stop()
    assert summary.loc["BTC/USDT", "fills"] == 1


async def test_an_otoco_places_its_pending_legs_when_the_working_order_fills(rules, store):
    session = paper_session(rules, store)
    placed = await session.create_order_list(otoco_buy())
    working, above, below = session._list_legs[placed.list_client_order_id]
    assert placed.kind is ContingencyType.OTOCO
    assert stored_statuses(store, [working, above, below]) == ["NEW", "PENDING_NEW", "PENDING_NEW"]
    await session._step("BTC/USDT", D(49_500), T0 + 60_000, None)
    assert stored_statuses(store, [working, above, below]) == ["FILLED", "NEW", "NEW"]
    assert stored_list(store, placed.list_client_order_id)["list_order_status"] == "EXECUTING"
    await session._step("BTC/USDT", D(47_950), T0 + 120_000, None)  # the stop triggers: the take-profit expires
    assert stored_statuses(store, [above]) == ["EXPIRED"]
    assert stored_list(store, placed.list_client_order_id)["list_order_status"] == "ALL_DONE"


async def test_cancel_order_list_cancels_every_leg_and_ends_the_list(rules, store):
    session = paper_session(rules, store)
    placed = await session.create_order_list(oco_sell())
    canceled = await session.cancel_order_list(placed.list_client_order_id, "BTC/USDT")
    assert canceled.list_order_status is ListOrderStatus.ALL_DONE
    assert stored_statuses(store, session._list_legs[placed.list_client_order_id]) == ["CANCELED", "CANCELED"]
    assert stored_list(store, placed.list_client_order_id)["list_order_status"] == "ALL_DONE"
    assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'order_list.cancel'") == [(1,)]
    assert not await session.executor.fetch_open_orders("BTC/USDT")


async def test_one_leg_a_risk_check_refuses_refuses_the_whole_list(rules, store):
    session = paper_session(rules, store, risk=RiskLimits(max_open_orders=1))
    with pytest.raises(RiskRejected, match="1 orders are open, the limit is 1"):
        await session.create_order_list(oco_sell())  # the second leg would be the second open order
    store.flush()
    assert store.sql("SELECT count(*) FROM orders") == [(0,)] and store.sql("SELECT count(*) FROM order_lists") == [
        (0,)
    ]
    assert session.executor.engine.order_lists_of() == [] and len(session.rejections) == 1
    (detail,) = store.sql("SELECT detail FROM audit_log WHERE kind = 'risk.rejected'")
    assert json.loads(detail[0])["rule"] == "max_open_orders" and len(json.loads(detail[0])["orders"]) == 2


async def test_the_kill_switch_refuses_a_list(rules, store):
    session = paper_session(rules, store)
    session.kill_switch.trip("test halt", "test")
    with pytest.raises(KillSwitchActive, match="test halt"):
        await session.create_order_list(oco_sell())
    assert session.executor.engine.order_lists_of() == []


async def test_a_list_the_venue_rejects_is_recorded_reject_with_its_legs_rejected(rules, store):
    session = paper_session(rules, store)
    with pytest.raises(OrderRejected):  # the take-profit leg below the market would take: LIMIT_MAKER refused
        await session.create_order_list(oco_sell(tp="50500", stop="50200"))
    (list_id,) = session.order_lists
    row = stored_list(store, list_id)
    assert (row["list_order_status"], row["status_rank"]) == ("REJECT", 2) and pd_isna(row["order_list_id"])
    assert stored_statuses(store, session._list_legs[list_id]) == ["REJECTED", "REJECTED"]
    assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'order_list.rejected'") == [(1,)]


def pd_isna(value):
    import pandas as pd

    return pd.isna(value)


async def test_a_restarted_session_numbers_on_past_its_lists(rules, tmp_path):
    path = tmp_path / "restart.duckdb"
    with Store(path) as store:
        first = paper_session(rules, store, session_id="lists-restart")
        placed = await first.create_order_list(oco_sell())
        await first.stop()
    with Store(path) as store:
        again = paper_session(rules, store, session_id="lists-restart")
        await again.start()
        assert again.order_lists[placed.list_client_order_id].kind is ContingencyType.OCO
        assert again._list_legs == first._list_legs
        order = await again.create_order("BTC/USDT", "limit", "buy", "0.01", "49000", time_in_force="GTC")
        assert order.client_order_id not in {
            placed.list_client_order_id,
            *first._list_legs[placed.list_client_order_id],
        }


async def test_an_executor_without_order_lists_is_refused_with_a_message(rules, store):
    class Plain:  # a stand-in executor with the single-order protocol only
        mode, venue = TradingMode.PAPER, "plain"

        def subscribe(self, listener):
            pass

    session = TradingSession(Plain(), store, rules=rules)
    with pytest.raises(WorkbenchError, match="does not trade order lists"):
        await session.create_order_list(oco_sell())


def test_another_clients_list_event_is_ignored(rules, store):
    session = paper_session(rules, store)
    from workbench.matching import Execution
    from workbench.model import Order, OrderType, Side

    other = Order("BTC/USDT", Side.SELL, OrderType.LIMIT_MAKER, D(1), D(51_000), None, None, "web_x")
    session._on_execution(
        Execution("LIST_STATUS", other, order_list=OrderList(7, "web_list", "BTC/USDT", ContingencyType.OCO, ()))
    )
    assert session.order_lists == {}


JOURNALED = textwrap.dedent(
    """
    import os, signal, sys, threading
    from workbench.config import TradingMode
    from workbench.model import ContingencyType, OrderList
    from workbench.store import Store

    store = Store(sys.argv[1])
    store._commit = lambda cursor, batch: threading.Event().wait()  # a disk that never finishes a commit
    unsent = OrderList(-1, "s-1", "BTC/USDT", ContingencyType.OCO, (), timestamp=1_700_000_000_000)
    store.record_order_list("s", TradingMode.TESTNET, unsent, ("s-2", "s-3"), durable=True)
    print("journaled", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_journaled_list_survives_a_kill_before_its_commit_and_never_moves_back(tmp_path):
    path = tmp_path / "journal.duckdb"
    result = subprocess.run([sys.executable, "-c", JOURNALED, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL and result.stdout == "journaled\n", result.stderr
    with Store(path) as store:
        assert Path(f"{path}.journal").stat().st_size == 0
        ((order_list, legs),) = store.session_order_lists("s", TradingMode.TESTNET)
        assert (order_list.id, order_list.is_open, legs) == (-1, True, ("s-2", "s-3"))
        done = OrderList(
            9, "s-1", "BTC/USDT", ContingencyType.OCO, (), ListStatusType.ALL_DONE, ListOrderStatus.ALL_DONE
        )
        store.record_order_list("s", TradingMode.TESTNET, done, legs)
        store.record_order_list("s", TradingMode.TESTNET, order_list, legs)  # a late, older update
        store.flush()
        ((latest, _),) = store.session_order_lists("s", TradingMode.TESTNET)
        assert (latest.id, latest.list_order_status, latest.timestamp) == (
            9,
            ListOrderStatus.ALL_DONE,
            1_700_000_000_000,
        )
