import asyncio
import json
from decimal import Decimal

import pytest

from workbench.config import RiskLimits, TradingMode, load_config
from workbench.errors import (
    ConfigError,
    FilterError,
    InvalidOrder,
    KillSwitchActive,
    OrderRejected,
    RiskRejected,
    UnknownSymbol,
    WorkbenchError,
)
from workbench.executors import PaperExecutor, build_executor
from workbench.killswitch import KillSwitch, trip_flag
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross, make_strategy

from .conftest import make_bars

D = Decimal


def paper_session(rules, store, strategy=None, risk=RiskLimits(), **kw):
    executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 0})
    return TradingSession(executor, store, rules=rules, risk=risk, strategy=strategy, **kw)


async def test_a_paper_session_runs_end_to_end_and_records_every_fill(rules, store):
    session = paper_session(rules, store, SmaCross(5, 20, 0.01), session_id="paper-e2e")
    bars = make_bars(600)
    summary = await session.run({"BTC/USDT": bars}, progress=False)

    trades = await session.executor.fetch_my_trades("BTC/USDT")
    stored = store.sql(
        "SELECT trade_id, price, amount, fee FROM fills WHERE session_id = 'paper-e2e' ORDER BY trade_id::INT"
    )
    assert len(trades) > 10
    assert [(t.trade_id, t.price, t.amount, t.fee) for t in trades] == stored
    expected_flips = int((SmaCross(5, 20, 0.01)(bars).diff().fillna(0) != 0).sum())
    orders = store.query("SELECT * FROM orders WHERE session_id = 'paper-e2e'")
    assert len(orders) == expected_flips + 1 - (SmaCross(5, 20, 0.01)(bars).iloc[20] == 0)
    assert set(orders["status"]) == {"FILLED"} and orders["signal_price"].notna().all()
    assert summary.loc["BTC/USDT", "fills"] == len(trades)
    position = sum(t.amount - t.fee if t.side == "buy" else -t.amount for t in trades)
    assert summary.loc["BTC/USDT", "position"] == pytest.approx(float(position))
    session_row = store.sql("SELECT status, mode, strategy FROM sessions WHERE session_id = 'paper-e2e'")
    assert session_row == [("completed", "paper", "SmaCross")]
    kinds = {k for (k,) in store.sql("SELECT DISTINCT kind FROM audit_log")}
    assert {"session.start", "order.request", "risk.passed", "order.response", "order.event", "session.stop"} <= kinds
    balances = store.sql("SELECT asset, free FROM paper_balances WHERE session_id = 'paper-e2e' ORDER BY asset")
    engine = session.executor.engine.balances()
    assert balances == [(a, engine[a].free) for a in sorted(engine)]


async def test_bar_by_bar_signals_equal_the_vectorised_run(rules, tmp_path):
    bars = make_bars(300, seed=3)
    strategy = SmaCross(5, 20, 0.01)
    with Store(tmp_path / "a.duckdb") as a, Store(tmp_path / "b.duckdb") as b:
        batch = paper_session(rules, a, strategy)
        await batch.run({"BTC/USDT": bars}, progress=False)
        live = paper_session(rules, b, strategy)
        for _, bar in bars.iterrows():
            await live.on_bar("BTC/USDT", bar)
        await live.stop()
        columns = "side, amount, signal_time, signal_price"
        assert a.query(f"SELECT {columns} FROM orders ORDER BY signal_time").equals(
            b.query(f"SELECT {columns} FROM orders ORDER BY signal_time")
        )


@pytest.mark.parametrize(
    "args, kwargs, error, field, rule",
    [
        (("DOGE/EUR", "market", "buy", 1), {}, UnknownSymbol, "symbol", "listed"),
        (("BTC/USDT", "market", "buy", float("nan")), {}, InvalidOrder, "amount", "number"),
        (("BTC/USDT", "market", "buy", -1), {}, InvalidOrder, "amount", "number"),
        (("BTC/USDT", "market", "buy", 0), {}, InvalidOrder, "amount", "positive"),
        (("BTC/USDT", "limit", "buy", 0.01, 50000.005), {"time_in_force": "GTC"}, FilterError, "price", "PRICE_FILTER"),
        (("BTC/USDT", "limit", "buy", 0.000015, 50000), {"time_in_force": "GTC"}, FilterError, "amount", "LOT_SIZE"),
        (("BTC/USDT", "limit", "buy", 0.00001, 50000), {"time_in_force": "GTC"}, FilterError, "amount", "NOTIONAL"),
        (("BTC/USDT", "market", "buy", 0.01, 50000), {}, InvalidOrder, "price", "not_allowed"),
        (
            ("BTC/USDT", "stop_loss_limit", "sell", 0.01, 49000),
            {"time_in_force": "GTC"},
            InvalidOrder,
            "stop_price",
            "required",
        ),
        (
            ("BTC/USDT", "limit", "buy", 1, 50000),
            {"time_in_force": "GTC"},
            RiskRejected,
            "amount",
            "max_order_notional",
        ),
    ],
)
async def test_bad_input_is_a_clear_error_and_writes_only_an_audit_row(rules, store, args, kwargs, error, field, rule):
    session = paper_session(rules, store)
    await session.on_bar(
        "BTC/USDT",
        make_bars(1).iloc[0].rename(make_bars(1).index[0]).replace({make_bars(1).iloc[0]["close"]: 50_000.0}),
    )
    with pytest.raises(error) as e:
        await session.create_order(*args, **kwargs)
    assert isinstance(e.value, WorkbenchError) and (e.value.field, e.value.rule) == (field, rule)
    assert field in str(e.value)
    store.flush()
    assert store.sql("SELECT count(*) FROM orders")[0][0] == 0 and store.sql("SELECT count(*) FROM fills")[0][0] == 0
    rejected = store.sql("SELECT detail FROM audit_log WHERE kind IN ('order.invalid', 'risk.rejected')")
    assert len(rejected) == 1 and json.loads(rejected[0][0])["rule"] == rule


async def test_orders_need_a_price_first_and_venue_rejections_are_audited(rules, store):
    session = paper_session(rules, store)
    with pytest.raises(OrderRejected, match="No price for BTC/USDT yet"):
        await session.create_order("BTC/USDT", "market", "buy", 0.01)
    bar = make_bars(1).iloc[0]
    await session.on_bar("BTC/USDT", bar)
    with pytest.raises(OrderRejected, match="would trigger at once") as e:
        await session.create_order(
            "BTC/USDT",
            "stop_loss_limit",
            "sell",
            0.01,
            bar["close"] // 1,
            stop_price=bar["close"] * 2 // 1,
            time_in_force="GTC",
        )
    assert e.value.code == -2010
    store.flush()
    assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'order.rejected'")[0][0] == 1
    assert store.sql("SELECT status FROM orders") == [("REJECTED",)]  # recorded before sending, then settled


async def test_kill_switch_cancels_blocks_and_survives_a_restart(rules, tmp_path):
    path = tmp_path / "halt.duckdb"
    bar = make_bars(1).iloc[0]
    with Store(path) as store:
        session = paper_session(rules, store)
        await session.on_bar("BTC/USDT", bar)
        resting = await session.create_order(
            "BTC/USDT", "limit", "buy", 0.01, round(bar["close"] * 0.99, 2), time_in_force="GTC"
        )
        report = await session.emergency_stop("test halt")
        assert [o.client_order_id for o in report.canceled] == [resting.client_order_id] and report.failed == []
        assert (await session.executor.fetch_open_orders()) == []
        with pytest.raises(KillSwitchActive, match="test halt"):
            await session.create_order("BTC/USDT", "market", "buy", 0.01)
    with Store(path) as store:  # a restarted session is still halted
        session = paper_session(rules, store)
        await session.on_bar("BTC/USDT", bar)
        with pytest.raises(KillSwitchActive):
            await session.create_order("BTC/USDT", "market", "buy", 0.01)
        session.kill_switch.clear("test")
        assert (await session.create_order("BTC/USDT", "market", "buy", 0.01)).status.value == "FILLED"
        store.flush()
        kinds = [k for (k,) in store.sql("SELECT kind FROM audit_log WHERE kind LIKE 'kill_switch%' ORDER BY seq")]
        assert kinds == ["kill_switch.trip", "kill_switch.clear"]


async def test_a_flag_file_from_another_process_halts_the_session_and_cancels_its_orders(rules, store):
    session = paper_session(rules, store)
    bar = make_bars(1).iloc[0]
    await session.on_bar("BTC/USDT", bar)
    await session.create_order("BTC/USDT", "limit", "buy", 0.01, round(bar["close"] * 0.99, 2), time_in_force="GTC")
    trip_flag(store.path, "from the CLI", "cli")
    with pytest.raises(KillSwitchActive, match="from the CLI"):
        await session.create_order("BTC/USDT", "market", "buy", 0.01)
    await asyncio.gather(*session._tasks)
    assert await session.executor.fetch_open_orders() == []
    assert KillSwitch(store).tripped


def test_a_trip_without_an_event_loop_only_halts(rules, store):
    session = paper_session(rules, store)
    session.kill_switch.trip("no loop")
    assert session.kill_switch.tripped and not session._tasks


async def test_run_needs_a_strategy(rules, store):
    with pytest.raises(WorkbenchError, match="no strategy"):
        await paper_session(rules, store).run({"BTC/USDT": make_bars(5)})


def test_from_config_builds_a_paper_session_and_real_modes_need_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("BINANCE_TESTNET_API_KEY", raising=False)
    config = load_config(mode="paper", store_path=tmp_path / "cfg.duckdb", quote_balance=1234)
    session = TradingSession.from_config(config, strategy=make_strategy("sma_cross"))
    assert session.mode is TradingMode.PAPER and session.executor.engine.free == {"USDT": D(1234)}
    session.store.close()
    with pytest.raises(ConfigError, match="BINANCE_TESTNET_API_KEY and BINANCE_TESTNET_API_SECRET"):
        build_executor(load_config(), {})


def test_strategy_registry_errors():
    with pytest.raises(ConfigError, match="Unknown strategy"):
        make_strategy("moon")
    with pytest.raises(ConfigError, match="Bad parameters"):
        make_strategy("sma_cross", colour=1)
    with pytest.raises(ConfigError, match="fast < slow"):
        SmaCross(50, 10)
    with pytest.raises(ConfigError, match="size > 0"):
        SmaCross(size=0)


async def test_emergency_stop_can_flatten_after_a_second_confirmation(rules, store):
    session = paper_session(rules, store)
    bar = make_bars(1).iloc[0]
    await session.on_bar("BTC/USDT", bar)
    await session.create_order("BTC/USDT", "market", "buy", 0.05)
    with pytest.raises(WorkbenchError, match="confirm_flatten=True"):
        await session.emergency_stop(flatten=True)
    report = await session.emergency_stop("flatten test", flatten=True, confirm_flatten=True)
    assert len(report.flattened) == 1 and report.flattened[0].side.value == "sell"
    assert report.flattened[0].amount == D("0.04995")  # 0.05 less the 0.1% base fee, on the step grid
    with pytest.raises(KillSwitchActive):  # flattening did not open the gate
        await session.create_order("BTC/USDT", "market", "buy", 0.01)
    assert session.state.positions["BTC/USDT"] == 0


async def test_emergency_stop_reports_what_could_not_be_canceled(rules, store):
    class Unreachable(PaperExecutor):
        async def cancel_all_orders(self, symbol):
            raise OrderRejected(f"{symbol}: venue unreachable")

    session = TradingSession(Unreachable(rules, {"USDT": 1000}), store, rules={"BTC/USDT": rules["BTC/USDT"]})
    report = await session.emergency_stop()
    assert report.failed == [("BTC/USDT", "BTC/USDT: venue unreachable")] and session.kill_switch.tripped


async def test_flatten_skips_dust_and_reports_refusals(rules, store):
    session = paper_session(rules, store)
    bar = make_bars(1).iloc[0]
    await session.on_bar("BTC/USDT", bar)
    session.state.positions["BTC/USDT"] = D("0.00002")  # dust: below the minimum notional
    session.state.positions["ETH/USDT"] = D("1")  # no ETH held on the venue, and no ETH price
    session.last_price["ETH/USDT"] = D(3000)
    session.executor.update_price("ETH/USDT", D(3000), 0)
    report = await session.emergency_stop(flatten=True, confirm_flatten=True)
    assert report.flattened == [] and report.failed[0][0] == "ETH/USDT" and "flatten:" in report.failed[0][1]


async def test_a_restarted_session_continues_its_client_order_ids(rules, tmp_path):
    path = tmp_path / "restart.duckdb"
    bar = make_bars(1).iloc[0]
    with Store(path) as store:
        first = paper_session(rules, store, session_id="resume-me")
        await first.on_bar("BTC/USDT", bar)
        await first.create_order("BTC/USDT", "market", "buy", 0.01)
        price = round(bar["close"] * 0.97, 2)
        resting = await first.create_order("BTC/USDT", "limit", "buy", 0.01, price, time_in_force="GTC")
        assert resting.client_order_id == "resume-me-2"
    with Store(path) as store:  # the process died without stop(); a new one resumes the session
        again = paper_session(rules, store, session_id="resume-me")
        await again.on_bar("BTC/USDT", bar)
        assert list(again._open) == ["resume-me-2"]
        order = await again.create_order("BTC/USDT", "market", "buy", 0.01)
        assert order.client_order_id == "resume-me-3"
        store.flush()
        assert store.sql("SELECT count(*), count(DISTINCT client_order_id) FROM orders")[0] == (3, 3)
        assert store.sql("SELECT status FROM sessions") == [("running",)]


async def test_run_live_needs_a_venue_with_a_market(rules, store):
    with pytest.raises(WorkbenchError, match="no live market"):
        await paper_session(rules, store).run_live(5)


async def test_the_summary_adds_up_the_fees_of_every_order(rules, store):
    session = paper_session(rules, store)
    await session.on_bar("BTC/USDT", make_bars(1).iloc[0])
    first = await session.create_order("BTC/USDT", "market", "buy", 0.01)
    second = await session.create_order("BTC/USDT", "market", "buy", 0.02)
    fees = session.summary().loc["BTC/USDT", "fees"]
    assert fees == {"BTC": float(first.fees["BTC"] + second.fees["BTC"])} and fees["BTC"] == pytest.approx(0.00003)
