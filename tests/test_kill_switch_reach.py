"""One trip reaches every session of the account (issue 14, item 2): a trip from code or a panel
writes its store's flag file, which sessions on other stores (a run's own) watch; a session that
sees it mid-run stops and ends ``halted``."""

from __future__ import annotations

from workbench.executors import PaperExecutor
from workbench.killswitch import KillSwitch, flag_path
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross

from .conftest import make_bars


def test_a_trip_in_one_process_s_store_reaches_a_switch_that_watches_its_flag(tmp_path):
    with Store(tmp_path / "main.duckdb") as main, Store(tmp_path / "run.duckdb") as own:
        watching = KillSwitch(own, flags=(flag_path(main.path),))
        assert not watching.tripped
        KillSwitch(main).trip("emergency stop", "panel")  # what a panel's Emergency stop does
        assert flag_path(main.path).exists() and watching.tripped and watching.reason == "emergency stop"
        assert own.kill_switch_state() == (True, "emergency stop")  # recorded where the run trades
        assert not flag_path(own.path).exists()  # a trip seen through a flag does not spread further


async def test_a_session_that_sees_a_trip_mid_run_ends_halted(rules, tmp_path, monkeypatch):
    monkeypatch.setattr("workbench.session.HALT_POLL", 0.0)  # look at the flags before every bar
    with Store(tmp_path / "main.duckdb") as main, Store(tmp_path / "run.duckdb") as own:
        switch = KillSwitch(own, flags=(flag_path(main.path),))
        session = TradingSession(PaperExecutor(rules, {"USDT": 100_000, "BTC": 0}), own, rules=rules,
                                 strategy=SmaCross(2, 3, 0.001), session_id="halted", kill_switch=switch)  # fmt: skip
        steps = 0
        step = session._step

        async def counted(*args):
            nonlocal steps
            steps += 1
            if steps == 50:
                KillSwitch(main).trip("drill", "cli")
            return await step(*args)

        session._step = counted
        await session.run({"BTC/USDT": make_bars(400)}, progress=False)
        own.flush()
        assert own.sql("SELECT status FROM sessions") == [("halted",)]
        assert steps == 50  # the bar after the trip was not traded
