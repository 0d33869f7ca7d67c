"""No silent drops (issue 17 item 6): a rebalance no order can carry (dust below the minimum
notional, smaller than a lot step, refused by a risk check) is counted, written to the audit log,
shown in the session summary, the console of ``workbench paper``/``run`` and the report's refusals,
and its first of each kind is a warning."""

import json
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_bars
from workbench import analysis
from workbench.config import RiskLimits
from workbench.data import load_rules
from workbench.executors import PaperExecutor
from workbench.replay import replay
from workbench.session import TradingSession
from workbench.strategy import SmaCross

WORKBENCH = Path(sys.executable).with_name("workbench")
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def bars_of(symbol: str, n: int = 400) -> pd.DataFrame:
    """Synthetic bars on the symbol's tick grid (0.01), as Binance's prices are."""
    bars = make_bars(n, start=50_000.0 if symbol == "BTC/USDT" else 2_000.0, seed=len(symbol))
    return bars.round({c: 2 for c in ("open", "high", "low", "close")})


class Constant:
    """Targets ``size`` on every bar."""

    warmup = 0

    def __init__(self, size: float) -> None:
        self.size = size

    def __call__(self, bars: pd.DataFrame) -> pd.Series:
        return pd.Series(self.size, index=bars.index)


def audit(store, session_id: str, kind: str) -> list[dict]:
    rows = store.query(
        "SELECT detail FROM audit_log WHERE session_id = ? AND kind = ? ORDER BY seq", [session_id, kind]
    )
    return [json.loads(d) for d in rows["detail"]]


async def test_dust_is_counted_audited_summarised_reported_and_warned_once(store, caplog):
    rules = load_rules(SYMBOLS)
    session = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=SmaCross(5, 20))
    with caplog.at_level(logging.WARNING, logger="workbench.session"):
        summary = await session.run({s: bars_of(s) for s in SYMBOLS}, progress=False)
    eth = summary.loc["ETH/USDT"]
    assert eth["orders"] == 0 and eth["dropped"] > 5  # 0.001 ETH is about 2 USDT: below the 5 USDT minimum
    assert summary.loc["BTC/USDT", "orders"] > 5 and summary.loc["BTC/USDT", "dropped"] == 0
    assert session.dropped().to_dict("records") == [
        {"symbol": "ETH/USDT", "reason": "NOTIONAL", "orders": eth["dropped"]}
    ]
    rows = audit(store, session.session_id, "order.dropped")
    assert len(rows) == eth["dropped"] and {(r["symbol"], r["rule"]) for r in rows} == {("ETH/USDT", "NOTIONAL")}
    assert all("below the minimum" in r["error"] and Decimal(r["amount"]) == Decimal("0.001") for r in rows)
    warned = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warned) == 1 and "ETH/USDT" in warned[0] and "NOTIONAL" in warned[0]
    recorded = store.query("SELECT summary FROM sessions WHERE session_id = ?", [session.session_id])
    assert json.loads(recorded["summary"][0])["dropped"] == session.dropped().to_dict("records")
    refused = analysis.refusals(store, session.session_id)  # the report's refusals section
    [row] = refused.itertuples()
    assert (row.stage, row.outcome, row.symbol, row.reason, row.orders) == (
        "too small to trade",
        "dropped",
        "ETH/USDT",
        "NOTIONAL",
        eth["dropped"],
    )


async def test_a_target_change_below_one_lot_step_and_a_risk_refusal_are_drops_too(store, caplog):
    rules = load_rules(["BTC/USDT"])
    bars = {"BTC/USDT": bars_of("BTC/USDT", 30)}
    tiny = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=Constant(0.000004))
    await tiny.run(bars, progress=False)
    assert tiny.dropped().to_dict("records") == [{"symbol": "BTC/USDT", "reason": "LOT_SIZE", "orders": 1}]
    [row] = audit(store, tiny.session_id, "order.dropped")
    assert "below one lot step (0.00001)" in row["error"]
    risky = TradingSession(
        PaperExecutor(rules, {"USDT": 10_000}),
        store,
        rules=rules,
        strategy=SmaCross(5, 20, 0.01),
        risk=RiskLimits(max_order_notional=Decimal(100)),  # 0.01 BTC is about 500 USDT
    )
    with caplog.at_level(logging.WARNING, logger="workbench.session"):
        summary = await risky.run({"BTC/USDT": bars_of("BTC/USDT")}, progress=False)
    refused = len(risky.rejections)
    assert refused > 3 and summary.loc["BTC/USDT", "dropped"] == refused and summary.loc["BTC/USDT", "orders"] == 0
    assert risky.dropped()["reason"].tolist() == ["max_order_notional"]
    assert audit(store, risky.session_id, "order.dropped") == []  # its risk.rejected rows say it once
    assert len(audit(store, risky.session_id, "risk.rejected")) == refused
    assert sum("max_order_notional" in r.getMessage() for r in caplog.records) == 1


async def test_the_fast_replay_counts_the_drops_the_event_path_counts(tmp_path):
    bars = {s: bars_of(s) for s in SYMBOLS}
    fast = await replay(SmaCross(5, 20), bars, store=tmp_path / "f.duckdb")
    event = await replay(SmaCross(5, 20), bars, store=tmp_path / "e.duckdb", engine="event")
    assert fast.engine == "fast"
    pd.testing.assert_frame_equal(fast.summary, event.summary, check_exact=True)
    pd.testing.assert_frame_equal(fast.session.dropped(), event.session.dropped())
    assert fast.summary.loc["ETH/USDT", "dropped"] > 5
    count = "SELECT count(*) FROM audit_log WHERE session_id = ? AND kind = 'order.dropped'"
    assert fast.store.sql(count, [fast.session_id]) == event.store.sql(count, [event.session_id])


@pytest.fixture
def two_symbols(tmp_path, monkeypatch):
    """A working folder and data with 400 bars of BTC/USDT near 50,000 and ETH/USDT near 2,000."""
    from tests.conftest import write_klines

    data = tmp_path / "data"
    for symbol in SYMBOLS:
        write_klines(data, symbol, bars_of(symbol))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "WORKBENCH_ALLOW"))}
    return work, env | {"WORKBENCH_DATA": str(data)}


def assert_reports_eth_drops(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout + done.stderr
    assert "dropped: " in out and " order(s) of ETH/USDT (NOTIONAL)" in out
    assert "e-0" not in done.stdout and "{'" not in done.stdout  # fees formatted, never a raw dict


def test_workbench_paper_reports_its_eth_drops(two_symbols):
    work, env = two_symbols
    argv = [str(WORKBENCH), "paper", "--symbols", *SYMBOLS, "--quiet", "--store", "p.duckdb"]
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert_reports_eth_drops(done)
    assert done.stderr.count("dropped a buy of 0.001 ETH/USDT") == 1  # the first of its kind, as a warning


def test_workbench_run_reports_its_eth_drops_and_formats_fees_and_so_does_its_report(two_symbols):
    work, env = two_symbols
    argv = [
        "run",
        "--mode",
        "paper",
        "--symbols",
        *SYMBOLS,
        "--bars",
        "300",
        "--session-id",
        "two",
        "--store",
        "m.duckdb",
    ]
    done = subprocess.run([str(WORKBENCH), *argv], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert_reports_eth_drops(done)
    assert " USDT" in done.stdout.split("dropped: ")[0]  # the fees column: "0.0150 USDT"
    argv = ["report", "two", "--store", "m.duckdb", "--output", "two.html"]
    done = subprocess.run([str(WORKBENCH), *argv], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr)
    html = (work / "two.html").read_text()
    refusals = html[html.index("Refusals and drops") :]
    assert "too small to trade" in refusals and "ETH/USDT" in refusals and "NOTIONAL" in refusals
