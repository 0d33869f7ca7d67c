"""The kill switch reads its flag files at most every ``POLL`` seconds (the order path asks per
order), yet a trip in this process refuses the very next order, and one from another process
(the CLI) every order from ``POLL`` seconds after it."""

from __future__ import annotations

import subprocess
import time

import pytest

from workbench.errors import KillSwitchActive
from workbench.executors import PaperExecutor
from workbench.killswitch import POLL, KillSwitch, trip_flag
from workbench.session import TradingSession
from workbench.store import Store

from .cli_runs import WORKBENCH
from .conftest import make_bars


def cli_trip(store: Store, reason: str) -> None:
    """Trip the store's switch from another process, as a user at a terminal does."""
    command = [WORKBENCH, "kill-switch", "trip", "--store", str(store.path), "--reason", reason]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


async def paper_session(rules, store: Store) -> TradingSession:
    session = TradingSession(PaperExecutor(rules, {"USDT": 100_000, "BTC": 1}), store, rules=rules)
    await session.on_bar("BTC/USDT", make_bars(1).iloc[0])
    return session


async def test_a_trip_in_this_process_refuses_the_very_next_order(rules, tmp_path, monkeypatch):
    monkeypatch.setattr("workbench.killswitch.POLL", 3600.0)  # the files would not be read again for an hour
    with Store(tmp_path / "s.duckdb") as store:
        session = await paper_session(rules, store)
        assert (await session.create_order("BTC/USDT", "market", "buy", 0.01)).status.value == "FILLED"
        trip_flag(store.path, "another switch of this process", "code")  # not the session's own switch
        with pytest.raises(KillSwitchActive, match="another switch of this process"):
            await session.create_order("BTC/USDT", "market", "buy", 0.01)
        session.kill_switch.clear("test")
        assert (await session.create_order("BTC/USDT", "market", "buy", 0.01)).status.value == "FILLED"
        KillSwitch(store).trip("a second switch on the store")
        with pytest.raises(KillSwitchActive, match="a second switch on the store"):
            await session.create_order("BTC/USDT", "market", "buy", 0.01)


async def test_a_trip_from_another_process_is_seen_once_poll_seconds_passed(rules, tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        session = await paper_session(rules, store)
        assert (await session.create_order("BTC/USDT", "market", "buy", 0.01)).status.value == "FILLED"
        cli_trip(store, "from a terminal")
        tripped = time.monotonic()
        while time.monotonic() < tripped + POLL:  # orders asked within POLL may pass or be refused
            try:
                await session.create_order("BTC/USDT", "market", "buy", 0.01)
            except KillSwitchActive:
                break
        with pytest.raises(KillSwitchActive, match="from a terminal"):  # never after POLL
            await session.create_order("BTC/USDT", "market", "buy", 0.01)
        assert session.kill_switch.tripped and store.kill_switch_state() == (True, "from a terminal")


def test_the_flag_files_are_read_at_most_every_poll_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr("workbench.killswitch.POLL", 3600.0)
    with Store(tmp_path / "s.duckdb") as store:
        switch = KillSwitch(store)
        assert not switch.tripped
        switch.flag.write_text('{"reason": "written by another process"}')  # what its trip_flag leaves
        assert not switch.tripped  # not looked at again within POLL
        monkeypatch.setattr("workbench.killswitch.POLL", 0.0)
        assert switch.tripped and switch.reason == "written by another process"
