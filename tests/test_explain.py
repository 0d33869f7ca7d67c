"""Explain: a session's PnL against a reference's, split into causes that add up to the difference.

The constructed pair plants one cause per order, each worked out by hand at the mark of 120 USDT
(an order's part of the PnL is sign x (units x mark - cost) - fees):

=========  ======================================  ==========================================
bar        reference (the replay)                  session
=========  ======================================  ==========================================
A          buy 1 @ 100, fee 0.1                    buy 1, signal 100, arrival 100.5, fill 101,
                                                   fee 0.2: timing -0.5, slippage -0.5, fees -0.1
B          sell 1 @ 110, fee 0.11                  the same: nothing
C          buy 1 @ 105                             refused by a risk check: refused -15
D          sell 1 @ 106                            stopped by the kill switch: not sent +14
E          buy 2 @ 100                             filled 1.5 @ 100: missed or partial -10
F          -                                       buy 1 @ 115 (a signal the replay had not): +5
=========  ======================================  ==========================================

Total: -0.5 - 0.5 - 0.1 - 15 + 14 - 10 + 5 = -7.1.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from workbench import analysis, explain
from workbench.config import TradingMode
from workbench.store import Store

from .test_analysis import T0, Writer

MARK = {"BTC/USDT": 120.0}
BAR = {k: T0 + 60_000 * i + 59_999 for i, k in enumerate("ABCDEF")}


def write_pair(store: Store) -> None:
    for sid in ("live", "ref"):
        store.start_session(sid, TradingMode.PAPER, strategy="SmaCross", params={}, symbols=["BTC/USDT"])
    ref = Writer(store, "ref")
    for cid, side, amount, price, fee, bar in [
        ("r1", "buy", "1", "100", "0.1", "A"),
        ("r2", "sell", "1", "110", "0.11", "B"),
        ("r3", "buy", "1", "105", "0", "C"),
        ("r4", "sell", "1", "106", "0", "D"),
        ("r5", "buy", "2", "100", "0", "E"),
    ]:
        ref.signalled(cid, side, amount, price, BAR[bar], fee=fee)
    live = Writer(store, "live")
    live.signalled("l1", "buy", "1", "101", BAR["A"], fee="0.2", signal="100", arrival="100.5", delay=500)
    live.signalled("l2", "sell", "1", "110", BAR["B"], fee="0.11")
    for bar, side, rule in (("C", "buy", "max_position"), ("D", "sell", "kill_switch")):
        detail = {"symbol": "BTC/USDT", "side": side, "rule": rule, "signal_time": BAR[bar]}
        store.audit("risk.rejected", detail, session_id="live", mode=TradingMode.PAPER)
    live.signalled("l5", "buy", "2", "100", BAR["E"], filled="1.5")
    live.signalled("l6", "buy", "1", "115", BAR["F"])
    store.flush()


def test_each_planted_cause_has_its_own_line_and_the_lines_add_up(store):
    write_pair(store)
    why = explain.attribute(store, "live", "ref", marks_at=MARK)
    got = why.lines.set_index("cause")["quote"].to_dict()
    assert got == pytest.approx(
        {
            "signals": 5.0,
            "refused": -15.0,
            "not sent": 14.0,
            "missed or partial fills": -10.0,
            "slippage": -0.5,
            "fees": -0.1,
            "timing": -0.5,
        },
        abs=1e-9,
    )
    assert why.lines.set_index("cause")["orders"].to_dict() == {
        "signals": 1,
        "refused": 1,
        "not sent": 1,
        "missed or partial fills": 1,
        "slippage": 1,
        "fees": 1,
        "timing": 1,
    }
    # the parts sum to the difference, and each side's PnL is the store's FIFO PnL at the same mark
    assert why.difference == pytest.approx(-7.1, abs=1e-9)
    assert abs(why.lines["quote"].sum() - why.difference) < 1e-9
    pnl = analysis.fifo_pnl(store, ["live", "ref"], mark=MARK).set_index("session_id")["total_pnl"]
    assert why.pnl == pytest.approx(pnl["live"], abs=1e-9) and why.reference_pnl == pytest.approx(pnl["ref"], abs=1e-9)
    assert why.first_divergence == analysis.pd.Timestamp(BAR["C"], unit="ms", tz="UTC")
    assert "-7.1000" in why.sentence() and "refused" in why.sentence()


def test_a_session_against_itself_differs_in_nothing(store):
    write_pair(store)
    why = explain.attribute(store, "live", "live", marks_at=MARK)
    assert why.difference == 0 and (why.lines["quote"] == 0).all() and why.first_divergence is None


async def test_a_paper_session_and_its_replay_agree_exactly(store, rules):
    """A paper session over historical bars is what its replay is: nothing to explain."""
    from workbench.data import load_klines
    from workbench.executors import PaperExecutor
    from workbench.session import TradingSession
    from workbench.strategy import SmaCross

    btc = {"BTC/USDT": rules["BTC/USDT"]}
    bars = load_klines("BTC/USDT", limit=400, allow_sample=True)
    session = TradingSession(PaperExecutor(btc, {"USDT": 10_000}), store, rules=btc, strategy=SmaCross(5, 20, 0.01))
    await session.run({"BTC/USDT": bars}, progress=False)
    why = await asyncio.to_thread(explain.explain, store, session.session_id)
    assert len(why.pairs) > 10 and (why.pairs["pairing"] == "both").all()
    assert why.difference == pytest.approx(0, abs=1e-9) and why.lines["quote"].abs().max() < 1e-9


async def test_a_testnet_session_against_the_local_exchange_and_its_replay(store):
    """A real testnet session (ccxt over HTTP and WebSocket to the local exchange) with a paper
    shadow: explain against its replay and against the shadow; the parts add up each time."""
    from workbench.config import Credentials, Secret
    from workbench.data import load_rules
    from workbench.exchange import LocalExchange
    from workbench.executors import PaperExecutor
    from workbench.executors.binance import BinanceExecutor
    from workbench.session import TradingSession
    from workbench.strategy import SmaCross

    rules = load_rules(["BTC/USDT"])
    strategy = SmaCross(2, 3, 0.001)
    async with LocalExchange(("BTC/USDT",), speed=3000) as exchange:
        credentials = Credentials(Secret(exchange.api_key), Secret(exchange.secret))
        executor = BinanceExecutor(TradingMode.TESTNET, rules, credentials, venue_url=exchange.url)
        shadow = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=strategy)
        session = TradingSession(executor, store, rules=rules, strategy=strategy, shadow=shadow)
        await asyncio.wait_for(session.run_live(40), 120)
        await executor.close()
    assert analysis.data_source(store, session.session_id).iloc[0]["bars"] == 40
    replayed = await asyncio.to_thread(explain.explain, store, session.session_id)
    shadowed = explain.attribute(store, session.session_id, shadow.session_id, reference="its paper shadow")
    for why in (replayed, shadowed):
        assert len(why.pairs) > 0
        assert abs(why.lines["quote"].sum() - why.difference) < 1e-9
    assert (replayed.pairs["pairing"] == "both").sum() > 0  # live orders pair with the replay's on their bars
    assert replayed.reference == "its replay" and "its replay" in replayed.sentence()


async def test_two_runs_of_a_sweep_differ_by_their_signals(store):
    """Two replays of the same bars with different parameters (two runs of a sweep): the difference
    is all signals, from the first bar where their orders differ."""
    from workbench.data import load_klines
    from workbench.replay import replay
    from workbench.strategy import SmaCross

    bars = load_klines("BTC/USDT", limit=400, allow_sample=True)
    runs = [await replay(SmaCross(fast, 20, 0.01), bars, store=store, sweep_id="sw") for fast in (5, 8)]
    why = explain.attribute(store, runs[0].session_id, runs[1].session_id)
    assert why.difference == pytest.approx(runs[0].pnl() - runs[1].pnl(), abs=1e-6)  # both at the last close
    assert abs(why.lines["quote"].sum() - why.difference) < 1e-9
    parts = why.lines.set_index("cause")["quote"]
    assert abs(parts["signals"]) > 0 and parts[["refused", "not sent", "timing"]].abs().max() == 0
    first = why.pairs[why.pairs["pairing"] != "both"]["signal_time"].min()
    assert why.first_divergence == first and first is not pd.NaT
