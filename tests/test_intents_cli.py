"""An intent strategy as a user runs it: `workbench run --strategy sma_bracket` in testnet mode, a
subprocess trading a local exchange in the test's event loop; its stop-losses are on the exchange."""

from __future__ import annotations

import json

import duckdb

from tests.cli_runs import open_venue, session_orders, start_run, workbench
from tests.polling import until


async def test_workbench_run_trades_the_bracket_example_with_stops_on_the_exchange(tmp_path):
    exchange = await open_venue(tmp_path, speed=1200)
    try:
        params = {"fast": 2, "slow": 3, "size": 0.001, "stop": 0.002, "profit": 0.004}
        extra = ("--strategy", "sma_bracket", "--strategy-params", json.dumps(params))
        rc, out = await (await start_run(tmp_path, exchange, "bracket", bars=40, extra=extra)).finish()
        assert rc == 0, out
        kinds = {(o.side.value, o.type.value) for o in session_orders(exchange, "bracket")}
        assert {("buy", "MARKET"), ("sell", "STOP_LOSS_LIMIT")} <= kinds, kinds
    finally:
        await exchange.stop()


async def test_a_protective_oco_survives_a_sigkill_of_the_run_and_is_found_again_at_restart(tmp_path):
    exchange = await open_venue(tmp_path, speed=600)
    engine = exchange.venue.engine
    prefix = "guarded-"

    def open_lists() -> dict[int, str]:
        """The session's open order lists on the exchange: order list id -> list client id."""
        lists = engine.order_lists_of("BTC/USDT", open_only=True)
        return {
            lst.id: lst.list_client_order_id for lst in lists if lst.list_client_order_id.startswith(prefix)
        }

    try:
        params = {"fast": 2, "slow": 3, "size": 0.001, "stop": 0.02, "profit": 0.04}  # wide: the bracket rests
        extra = ("--strategy", "sma_bracket", "--strategy-params", json.dumps(params))
        first = await start_run(tmp_path, exchange, "guarded", bars=400, extra=extra)
        await until(lambda: open_lists(), timeout=120, what="a protective OCO rests on the exchange")
        await first.kill()  # SIGKILL: nothing of the run's own shutdown happens
        survived = open_lists()
        assert len(survived) == 1, survived  # the OCO outlives the process that placed it
        rc, out = await (await start_run(tmp_path, exchange, "guarded", bars=5, extra=extra)).finish()
        assert rc == 0, out
        ids = [o.client_order_id for o in session_orders(exchange, "guarded")]
        assert len(ids) == len(set(ids))  # the restart sent nothing twice
        venue = {lst.list_client_order_id: lst.list_order_status.value for lst in engine.order_lists_of("BTC/USDT")}
        with duckdb.connect(str(tmp_path / "main.duckdb"), read_only=True) as con:
            stored = dict(
                con.sql(
                    "SELECT list_client_order_id, list_order_status FROM order_lists WHERE session_id = 'guarded'"
                ).fetchall()
            )
        (list_id,) = survived.values()
        assert list_id in stored and stored == {k: v for k, v in venue.items() if k.startswith(prefix)}  # found again
        assert len(open_lists()) <= 1  # one bracket protects the position at most, never two
    finally:
        await exchange.stop()


HOLD = """
import pandas as pd


class HoldProtected:
    \"\"\"Hold 0.001 BTC from the first bar, protected by a wide OCO: only the kill switch cancels it.\"\"\"

    warmup = 0

    def __call__(self, bars):
        close = bars["close"]
        return pd.DataFrame({"target": 0.001, "stop_loss": close * 0.97, "take_profit": close * 1.03}, index=bars.index)
"""


async def test_a_kill_switch_tripped_from_another_process_cancels_the_runs_resting_oco(tmp_path):
    exchange = await open_venue(tmp_path, speed=600)
    engine = exchange.venue.engine
    (tmp_path / "hold.py").write_text(HOLD)
    try:
        extra = ("--strategy", "hold.py:HoldProtected", "--strategy-params", "{}")
        run = await start_run(tmp_path, exchange, "tripped", bars=400, extra=extra)
        await until(lambda: engine.order_lists_of("BTC/USDT", open_only=True), timeout=120, what="an OCO rests")
        (resting,) = engine.order_lists_of("BTC/USDT", open_only=True)
        sent = {o.client_order_id for o in session_orders(exchange, "tripped")}
        rc, out = await workbench(tmp_path, "kill-switch", "trip", "--store", "main.duckdb", "--reason", "drill")
        assert rc == 0, out
        legs = [engine.orders[i] for i in resting.orders]
        await until(lambda: all(o.status.is_final for o in legs), 2.5, "the kill switch cancels the OCO's legs")
        assert {o.status.value for o in legs} == {"CANCELED"}, legs
        assert engine.get_order_list("BTC/USDT", id=resting.id).list_order_status.value == "ALL_DONE"
        rc, out = await run.finish(60)
        assert rc == 1 and "run tripped: halted" in out, out
        assert {o.client_order_id for o in session_orders(exchange, "tripped")} == sent  # nothing sent since
        assert not engine.open_orders()
        with duckdb.connect(str(tmp_path / "main.duckdb"), read_only=True) as con:
            stored = con.sql(
                "SELECT list_order_status FROM order_lists WHERE list_client_order_id = ?",
                params=[resting.list_client_order_id],
            ).fetchall()
        assert stored == [("ALL_DONE",)]  # the store knows the list is done, as the venue does
    finally:
        await exchange.stop()
