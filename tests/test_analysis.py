"""Post-trade analysis on hand-worked sessions written into a real DuckDB store through the Store API.

Every expected figure is worked out by hand below, as arithmetic on the prices, amounts and fees of
the fills, not read back from the code. Floats are compared with an absolute tolerance of 1e-9 quote
(the analysis computes in double precision; every figure here is below 10,000).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import deque
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench import analysis
from workbench.analysis import AnalysisError, UnknownSession
from workbench.config import TradingMode
from workbench.errors import WorkbenchError
from workbench.executors import PaperExecutor
from workbench.model import Balance, Fill, Order, OrderStatus, OrderType, Side, TimeInForce
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross

from .conftest import make_bars

TOL = 1e-9
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in ms
D = Decimal


def approx(value: float) -> pytest.approx:
    return pytest.approx(value, abs=TOL)


class Writer:
    """Writes one session's orders and fills through the Store API, as a session would."""

    def __init__(self, store: Store, session_id: str, mode: TradingMode = TradingMode.PAPER) -> None:
        self.store, self.session_id, self.mode = store, session_id, mode
        self.trades = 0

    def order(
        self,
        cid: str,
        side: str,
        amount: str,
        fills: list[tuple[str, str, str, str, int]],
        *,
        signal_price: str | None = None,
        arrival_price: str | None = None,
        signal_time: int | None = None,
        created: int = T0,
        symbol: str = "BTC/USDT",
        status: OrderStatus = OrderStatus.FILLED,
        type_: OrderType = OrderType.MARKET,
        price: str | None = None,
    ) -> None:
        """An order and its fills, each fill ``(price, amount, fee, fee_currency, timestamp)``."""
        filled = sum((D(a) for _, a, _, _, _ in fills), D(0))
        cost = sum((D(p) * D(a) for p, a, _, _, _ in fills), D(0))
        order = Order(
            symbol,
            Side(side),
            type_,
            D(amount),
            D(price) if price else None,
            None,
            TimeInForce.GTC if type_ is OrderType.LIMIT else None,
            cid,
            id=f"x-{cid}",
            status=status,
            filled=filled,
            cost=cost,
            timestamp=created,
            last_update=max([created, *(t for *_, t in fills)]),
        )
        self.store.record_order(
            self.session_id,
            self.mode,
            order,
            signal_price=D(signal_price) if signal_price else None,
            arrival_price=D(arrival_price) if arrival_price else None,
            signal_time=signal_time,
        )
        for p, a, fee, currency, ts in fills:
            self.trades += 1
            self.store.record_fill(
                self.session_id,
                self.mode,
                Fill(
                    f"t{self.trades:04d}",
                    f"x-{cid}",
                    cid,
                    symbol,
                    Side(side),
                    D(p),
                    D(a),
                    D(p) * D(a),
                    D(fee),
                    currency,
                    False,
                    ts,
                ),
            )

    def signalled(
        self,
        cid: str,
        side: str,
        amount: str,
        price: str,
        at: int,
        *,
        fee: str = "0",
        filled: str | None = None,
        signal: str | None = None,
        arrival: str | None = None,
        delay: int = 0,
    ) -> None:
        """A market order signalled by the bar closing at ``at``, filled ``delay`` ms later in one part."""
        self.order(
            cid,
            side,
            amount,
            [(price, filled or amount, fee, "USDT", at + delay)],
            signal_price=signal or price,
            arrival_price=arrival or signal or price,
            signal_time=at,
            created=at + delay // 2,
        )


# -- the hand-worked session -----------------------------------------------------------------------
#
# BTC/USDT, paper. Fees: 0.1%, in BTC on buys (what a buy receives), in USDT on sells.
#   o1 buy 1.0 market, signal 100 at T0, arrival 101, acknowledged T0+50ms, filled in two parts:
#      0.4 @ 102 (fee 0.0004 BTC) at T0+100, 0.6 @ 103 (fee 0.0006 BTC) at T0+200
#      -> two lots: 0.3996 BTC costing 40.8 USDT, 0.5994 BTC costing 61.8 USDT
#   o2 sell 0.5 limit 108, signal 110, arrival 109: 0.5 @ 108 (fee 0.054 USDT) at T0+60s
#      -> closes the first lot and 0.1004 BTC of the second: a win
#   o3 sell 0.499 market, signal 94, arrival 94.5: 0.499 @ 95 (fee 0.04741 USDT) at T0+120s
#      -> closes the rest of the second lot: flat again, at a loss
#   o4 buy 0.4 limit 90, signal 91: 0.2 @ 90 (fee 0.018 USDT, paid in quote) at T0+180s, then canceled
#      -> an open lot of 0.2 BTC costing 18.018 USDT; fill ratio 0.5

HAND = "hand-1"
LOT1_UNITS, LOT1_COST = 0.4 - 0.0004, 0.4 * 102
LOT2_UNITS, LOT2_COST = 0.6 - 0.0006, 0.6 * 103
O2_PROCEEDS = 0.5 * 108 - 0.054
O2_PNL = O2_PROCEEDS - LOT1_COST - (0.5 - LOT1_UNITS) * LOT2_COST / LOT2_UNITS
O3_PROCEEDS = 0.499 * 95 - 0.04741
O3_PNL = O3_PROCEEDS - (LOT2_UNITS - (0.5 - LOT1_UNITS)) * LOT2_COST / LOT2_UNITS
O4_COST = 0.2 * 90 + 0.018
FEES = 0.0004 * 102 + 0.0006 * 103 + 0.054 + 0.04741 + 0.018
TURNOVER = 0.4 * 102 + 0.6 * 103 + 0.5 * 108 + 0.499 * 95 + 0.2 * 90
# PnL after each fill = cash received - cash paid + position x that fill's price
EQUITY = [
    -LOT1_COST + LOT1_UNITS * 102,
    -(LOT1_COST + LOT2_COST) + (LOT1_UNITS + LOT2_UNITS) * 103,
    O2_PROCEEDS - (LOT1_COST + LOT2_COST) + (LOT1_UNITS + LOT2_UNITS - 0.5) * 108,
    O2_PROCEEDS + O3_PROCEEDS - (LOT1_COST + LOT2_COST) + 0 * 95,
    O2_PROCEEDS + O3_PROCEEDS - (LOT1_COST + LOT2_COST) - O4_COST + 0.2 * 90,
]
START_USDT = 1000.0


def write_hand(store: Store) -> None:
    store.start_session(HAND, TradingMode.PAPER, strategy="manual", params={"note": "hand"}, symbols=["BTC/USDT"])
    w = Writer(store, HAND)
    w.order(
        "o1",
        "buy",
        "1.0",
        [("102", "0.4", "0.0004", "BTC", T0 + 100), ("103", "0.6", "0.0006", "BTC", T0 + 200)],
        signal_price="100",
        arrival_price="101",
        signal_time=T0,
        created=T0 + 50,
    )
    w.order(
        "o2",
        "sell",
        "0.5",
        [("108", "0.5", "0.054", "USDT", T0 + 60_000)],
        signal_price="110",
        arrival_price="109",
        signal_time=T0 + 59_990,
        created=T0 + 59_995,
        type_=OrderType.LIMIT,
        price="108",
    )
    w.order(
        "o3",
        "sell",
        "0.499",
        [("95", "0.499", "0.04741", "USDT", T0 + 120_000)],
        signal_price="94",
        arrival_price="94.5",
        signal_time=T0 + 119_000,
        created=T0 + 119_500,
    )
    w.order(
        "o4",
        "buy",
        "0.4",
        [("90", "0.2", "0.018", "USDT", T0 + 180_000)],
        signal_price="91",
        arrival_price="91",
        signal_time=T0 + 179_000,
        created=T0 + 179_000,
        status=OrderStatus.CANCELED,
        type_=OrderType.LIMIT,
        price="90",
    )
    # The account at the end: 1000 USDT at the start, less what was paid, plus what was received;
    # BTC: what the buys received less what the sells gave.
    usdt = START_USDT - LOT1_COST - LOT2_COST + O2_PROCEEDS + O3_PROCEEDS - O4_COST
    btc = LOT1_UNITS + LOT2_UNITS - 0.5 - 0.499 + 0.2
    store.record_balances(
        HAND, TradingMode.PAPER, [Balance("USDT", D(repr(usdt))), Balance("BTC", D(repr(round(btc, 12))))], T0 + 200_000
    )
    store.end_session(HAND, "completed")


@pytest.fixture
def hand_store(tmp_path):
    store = Store(tmp_path / "hand.duckdb")
    write_hand(store)
    store.flush()
    yield store
    store.close()


# -- FIFO PnL --------------------------------------------------------------------------------------


def test_fifo_pnl_of_the_hand_worked_session(hand_store):
    pnl = analysis.fifo_pnl(hand_store, HAND)
    assert len(pnl) == 1
    row = pnl.iloc[0]
    assert row["symbol"] == "BTC/USDT"
    assert row["fills"] == 5
    assert row["turnover"] == approx(TURNOVER)
    assert row["fees"] == approx(FEES)
    assert row["position"] == approx(0.2)
    assert O2_PNL > 0 > O3_PNL  # the worked example has one winning and one losing round trip
    assert row["realised_pnl"] == approx(O2_PNL + O3_PNL)
    assert row["open_cost"] == approx(O4_COST)
    # marked at the last fill price (90) by default
    assert row["mark_price"] == approx(90)
    assert row["unrealised_pnl"] == approx(0.2 * 90 - O4_COST)
    assert row["total_pnl"] == approx(EQUITY[-1])


def test_unrealised_pnl_at_a_given_mark(hand_store):
    at_92 = analysis.fifo_pnl(hand_store, HAND, mark=92.0).iloc[0]
    assert at_92["unrealised_pnl"] == approx(0.2 * 92 - O4_COST)
    assert at_92["total_pnl"] == approx(O2_PNL + O3_PNL + 0.2 * 92 - O4_COST)
    by_symbol = analysis.fifo_pnl(hand_store, [HAND], mark={"BTC/USDT": 80.0, "ETH/USDT": 1.0}).iloc[0]
    assert by_symbol["unrealised_pnl"] == approx(0.2 * 80 - O4_COST)
    assert by_symbol["avg_open_price"] == approx(O4_COST / 0.2)


def test_per_fill_pnl_and_round_trips(hand_store):
    fills = analysis.fills_pnl(hand_store, HAND)
    assert fills["equity"].tolist() == pytest.approx(EQUITY, abs=TOL)
    assert fills["position"].tolist() == pytest.approx(
        [LOT1_UNITS, LOT1_UNITS + LOT2_UNITS, LOT1_UNITS + LOT2_UNITS - 0.5, 0.0, 0.2], abs=TOL
    )
    # fees in quote: the BTC fees at their fill's price
    assert fills["fee_quote"].tolist() == pytest.approx([0.0004 * 102, 0.0006 * 103, 0.054, 0.04741, 0.018], abs=TOL)
    assert fills["realised_delta"].tolist() == pytest.approx([0, 0, O2_PNL, O3_PNL, 0], abs=TOL)
    trips = analysis.round_trips(hand_store, HAND)
    assert trips["client_order_id"].tolist() == ["o2", "o3"]
    assert trips["pnl"].tolist() == pytest.approx([O2_PNL, O3_PNL], abs=TOL)
    assert trips["win"].tolist() == [True, False]
    assert trips["closed_units"].tolist() == pytest.approx([0.5, 0.499], abs=TOL)


def test_equity_curve_and_drawdown(hand_store):
    curve = analysis.drawdown(hand_store, HAND)
    assert curve["equity"].tolist() == pytest.approx(EQUITY, abs=TOL)
    # the starting capital, inferred from the final balance snapshot, is the 1000 USDT the account had
    assert curve["value"].iloc[0] - curve["equity"].iloc[0] == approx(START_USDT)
    peaks, peak = [], 0.0
    for e in EQUITY:
        peak = max(peak, e)
        peaks.append(peak)
    assert curve["peak"].tolist() == pytest.approx(peaks, abs=TOL)
    # the worst point is the last fill, 6.55 below the peak after o2
    assert curve["drawdown"].min() == approx(EQUITY[-1] - EQUITY[2])
    assert curve["drawdown_pct"].min() == approx((EQUITY[-1] - EQUITY[2]) / (START_USDT + EQUITY[2]))
    realised = [0, 0, O2_PNL, O2_PNL + O3_PNL, O2_PNL + O3_PNL]
    assert curve["realised_pnl"].tolist() == pytest.approx(realised, abs=TOL)
    assert (curve["unrealised_pnl"] + curve["realised_pnl"]).tolist() == pytest.approx(EQUITY, abs=TOL)


def test_session_metrics(hand_store):
    m = analysis.session_metrics(hand_store, HAND).iloc[0]
    assert m["orders"] == 4
    assert m["fills"] == 5
    assert m["turnover"] == approx(TURNOVER)
    assert m["fees"] == approx(FEES)
    assert m["realised_pnl"] == approx(O2_PNL + O3_PNL)
    assert m["unrealised_pnl"] == approx(0.2 * 90 - O4_COST)
    assert m["total_pnl"] == approx(EQUITY[-1])
    assert m["round_trips"] == 2
    assert m["wins"] == 1
    assert m["win_rate"] == approx(1 / 2)
    assert m["profit_factor"] == approx(O2_PNL / -O3_PNL)
    assert m["max_drawdown"] == approx(EQUITY[-1] - EQUITY[2])
    assert m["max_drawdown_pct"] == approx((EQUITY[-1] - EQUITY[2]) / (START_USDT + EQUITY[2]))
    assert m["capital"] == approx(START_USDT)
    assert m["return_pct"] == approx(EQUITY[-1] / START_USDT)
    assert m["status"] == "completed"
    marked = analysis.session_metrics(hand_store, HAND, mark=92.0, capital=2000.0).iloc[0]
    assert marked["unrealised_pnl"] == approx(0.2 * 92 - O4_COST)
    assert marked["capital"] == approx(2000.0)


# -- execution quality -----------------------------------------------------------------------------


def test_execution_quality(hand_store):
    ex = analysis.execution_quality(hand_store, HAND).set_index("client_order_id")
    assert list(ex.index) == ["o1", "o2", "o3", "o4"]
    o1_avg = (0.4 * 102 + 0.6 * 103) / 1.0
    assert ex.loc["o1", "avg_price"] == approx(o1_avg)
    # a buy filled above the reference is worse: positive
    assert ex.loc["o1", "slippage_signal_bps"] == approx((o1_avg / 100 - 1) * 1e4)
    assert ex.loc["o1", "slippage_arrival_bps"] == approx((o1_avg / 101 - 1) * 1e4)
    assert ex.loc["o1", "slippage_arrival_quote"] == approx((o1_avg - 101) * 1.0)
    # a sell filled below the reference is worse: positive
    assert ex.loc["o2", "slippage_signal_bps"] == approx(-(108 / 110 - 1) * 1e4)
    assert ex.loc["o2", "slippage_arrival_bps"] == approx(-(108 / 109 - 1) * 1e4)
    # a sell filled above the signal is better: negative
    assert ex.loc["o3", "slippage_signal_bps"] == approx(-(95 / 94 - 1) * 1e4)
    assert ex.loc["o3", "slippage_signal_bps"] < 0
    assert ex.loc["o1", "fill_ratio"] == approx(1.0)
    assert ex.loc["o4", "fill_ratio"] == approx(0.2 / 0.4)
    assert ex.loc["o1", "fills"] == 2
    assert ex.loc["o1", "fees"] == approx(0.0004 * 102 + 0.0006 * 103)
    # signal T0 -> acknowledged T0+50 -> first fill T0+100 -> last fill T0+200
    assert ex.loc["o1", "signal_to_ack_ms"] == 50
    assert ex.loc["o1", "ack_to_first_fill_ms"] == 100 - 50
    assert ex.loc["o1", "ack_to_last_fill_ms"] == 200 - 50
    assert ex.loc["o1", "signal_to_last_fill_ms"] == 200
    assert ex.loc["o2", "signal_to_ack_ms"] == 5
    assert ex.loc["o2", "ack_to_first_fill_ms"] == 5


def test_order_without_fills_or_signal(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        store.start_session("bare", TradingMode.PAPER, symbols=["BTC/USDT"])
        Writer(store, "bare").order("n1", "buy", "1", [], status=OrderStatus.CANCELED, type_=OrderType.LIMIT, price="1")
        ex = analysis.execution_quality(store, "bare").iloc[0]
        assert ex["fills"] == 0
        assert ex["fill_ratio"] == 0
        assert pd.isna(ex["avg_price"]) and pd.isna(ex["slippage_signal_bps"]) and pd.isna(ex["signal_to_ack_ms"])
        m = analysis.session_metrics(store, "bare").iloc[0]
        assert (m["orders"], m["fills"], m["round_trips"]) == (1, 0, 0)
        assert m["total_pnl"] == 0
        assert pd.isna(m["win_rate"])
        assert analysis.fifo_pnl(store, "bare").empty


# -- views agree with the functions ----------------------------------------------------------------


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=TOL, rtol=0, err_msg=column)
        else:
            assert a.astype(object).where(a.notna(), None).tolist() == b.astype(object).where(b.notna(), None).tolist()


def test_views_agree_with_the_functions(tmp_path):
    path = tmp_path / "views.duckdb"
    with Store(path) as store:
        write_hand(store)
        write_random(store, "rand-a", seed=1, sweep_id="sw", params={"fast": 5})
        write_random(store, "rand-b", seed=2, sweep_id="sw", params={"fast": 10})
        write_shadow_pair(store)
        assert analysis.create_views(store) == list(analysis.VIEWS)
    con = duckdb.connect(str(path), read_only=True)
    try:
        checks = [
            ("analysis_fills_pnl", analysis.fills_pnl, "session_id, symbol, seq"),
            ("analysis_pnl", analysis.fifo_pnl, "session_id, symbol"),
            ("analysis_round_trips", analysis.round_trips, "session_id, closed_at, client_order_id"),
            ("analysis_execution_quality", analysis.execution_quality, "session_id, created_at, client_order_id"),
        ]
        for view, function, order in checks:
            from_view = analysis._tidy(con.execute(f"SELECT * FROM {view} ORDER BY {order}").df())
            from_python = function(path)
            assert len(from_view) > 0
            extra = [c for c in from_python.columns if c not in from_view.columns]
            _same(from_view, from_python.drop(columns=extra))
        view_metrics = analysis._tidy(con.execute("SELECT * FROM analysis_session_metrics ORDER BY session_id").df())
        view_equity = analysis._tidy(
            con.execute('SELECT * FROM analysis_equity ORDER BY session_id, "timestamp", symbol, trade_id').df()
        )
        view_pairs = analysis._tidy(
            con.execute("SELECT * FROM analysis_paper_vs_real ORDER BY signal_time, symbol, side").df()
        )
    finally:
        con.close()
    metrics = analysis.session_metrics(path)
    _same(view_metrics, metrics[view_metrics.columns])
    assert view_metrics.set_index("session_id").loc[HAND, "total_pnl"] == approx(EQUITY[-1])
    curve = analysis.drawdown(path)
    _same(view_equity, curve[view_equity.columns])
    _same(view_pairs, analysis.paper_vs_real(path, "real-1"))
    # one session, by id, gives the rows of the view that belong to it
    one = analysis.session_metrics(path, "rand-a")
    _same(one, metrics[metrics["session_id"] == "rand-a"].reset_index(drop=True))


def test_views_answer_in_plain_sql(tmp_path):
    path = tmp_path / "sql.duckdb"
    with Store(path) as store:
        write_hand(store)
    assert "analysis_session_metrics" in analysis.create_views(path)  # a path: opened, written, closed
    con = duckdb.connect(str(path))
    try:
        analysis.create_views(con)  # a connection: replaced in place
        total, trips, wins = con.execute(
            "SELECT total_pnl, round_trips, wins FROM analysis_session_metrics WHERE session_id = ?", [HAND]
        ).fetchone()
        o1 = con.execute(
            "SELECT slippage_signal_bps FROM analysis_execution_quality WHERE client_order_id = 'o1'"
        ).fetchone()[0]
    finally:
        con.close()
    assert total == approx(EQUITY[-1])
    assert (trips, wins) == (2, 1)
    assert o1 == approx(((0.4 * 102 + 0.6 * 103) / 100 - 1) * 1e4)


# -- an independent reference: a plain FIFO loop and empyrical -------------------------------------


def write_random(store: Store, session_id: str, *, seed: int, sweep_id: str | None = None, params=None) -> list:
    """A long-only session of random buys and sells (partial closes, flat again, base and quote fees)
    around 100 USDT; returns the fills written as (side, price, amount, fee, fee_currency)."""
    rng = random.Random(seed)
    store.start_session(
        session_id, TradingMode.PAPER, params=params or {}, symbols=["ETH/USDT"], sweep_id=sweep_id, strategy="random"
    )
    w = Writer(store, session_id)
    held, written = D(0), []
    for i in range(120):
        price = D(100) + D(rng.randint(-2000, 2000)) / 100
        if held > D("0.05") and rng.random() < 0.5:
            amount = held if rng.random() < 0.3 else (held * D(rng.randint(1, 9)) / 10).quantize(D("0.0001"))
            side, fee, currency = "sell", (price * amount / 1000).quantize(D("1e-8")), "USDT"
            held -= amount
        else:
            amount = D(rng.randint(1, 20)) / 10
            if rng.random() < 0.5:
                side, fee, currency = "buy", (amount / 1000).quantize(D("1e-8")), "ETH"
                held += amount - fee
            else:
                side, fee, currency = "buy", (price * amount / 1000).quantize(D("1e-8")), "USDT"
                held += amount
        at = T0 + 60_000 * i
        w.order(
            f"r{i}",
            side,
            str(amount),
            [(str(price), str(amount), str(fee), currency, at)],
            signal_price=str(price),
            arrival_price=str(price),
            signal_time=at - 10,
            created=at - 5,
            symbol="ETH/USDT",
        )
        written.append((side, float(price), float(amount), float(fee), currency))
    store.end_session(session_id, "completed")
    return written


def reference_fifo(fills: list) -> tuple[list[float], list[float]]:
    """Realised PnL and equity after each fill, by a plain loop over a deque of lots."""
    lots: deque[list[float]] = deque()  # [units, cost per unit]
    realised, cash, held = 0.0, 0.0, 0.0
    realised_after, equity_after = [], []
    for side, price, amount, fee, currency in fills:
        fee_in_base = fee if currency == "ETH" else 0.0
        fee_in_quote = fee if currency == "USDT" else 0.0
        if side == "buy":
            units = amount - fee_in_base
            lots.append([units, (price * amount + fee_in_quote) / units])
            cash -= price * amount + fee_in_quote
            held += units
        else:
            units = amount + fee_in_base
            proceeds_per_unit = (price * amount - fee_in_quote) / units
            cash += price * amount - fee_in_quote
            held -= units
            left = units
            while left > 1e-15:
                lot = lots[0]
                take = min(lot[0], left)
                realised += take * (proceeds_per_unit - lot[1])
                lot[0] -= take
                left -= take
                if lot[0] <= 1e-15:
                    lots.popleft()
        realised_after.append(realised)
        equity_after.append(cash + held * price)
    return realised_after, equity_after


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_fifo_matches_a_plain_loop_on_a_random_session(store, seed):
    fills = write_random(store, "rand", seed=seed)
    realised, equity = reference_fifo(fills)
    got = analysis.fills_pnl(store, "rand")
    assert got["realised_pnl"].tolist() == pytest.approx(realised, abs=1e-7)
    assert got["equity"].tolist() == pytest.approx(equity, abs=1e-7)
    # the per-symbol summary is computed lot by lot, not fill by fill: it must land on the same figures
    summary = analysis.fifo_pnl(store, "rand").iloc[0]
    assert summary["realised_pnl"] == pytest.approx(realised[-1], abs=1e-7)
    assert summary["total_pnl"] == pytest.approx(equity[-1], abs=1e-7)
    assert summary["position"] == approx(got["position"].iloc[-1])
    sells = sum(1 for f in fills if f[0] == "sell")
    assert 10 < sells < 100
    assert analysis.session_metrics(store, "rand").iloc[0]["round_trips"] == sells


def decimal_fifo(fills: list[tuple[str, Decimal, Decimal, Decimal, str | None]], base: str, quote: str) -> dict:
    """A slow reference FIFO in exact decimals: one queue of lots, long or short; a fill first closes
    lots of the other side, oldest first, then opens a lot with what is left. ``fills`` are
    (side, price, amount, fee, fee_currency); a fee in ``base`` changes the units, one in ``quote``
    the value, any other is not converted."""
    lots: deque[list[Decimal]] = deque()  # [signed units, value per unit]
    realised = position = cash = D(0)
    for side, price, amount, fee, currency in fills:
        base_fee = fee if currency == base else D(0)
        quote_fee = fee if currency == quote else D(0)
        sign = 1 if side == "buy" else -1
        units = amount - base_fee if side == "buy" else amount + base_fee
        value = price * amount + quote_fee if side == "buy" else price * amount - quote_fee
        per_unit = value / units
        cash -= sign * value
        position += sign * units
        left = units
        while left and lots and (lots[0][0] > 0) != (sign > 0):
            take = min(left, abs(lots[0][0]))
            realised += take * (per_unit - lots[0][1]) * -sign
            lots[0][0] += sign * take
            left -= take
            if not lots[0][0]:
                lots.popleft()
        if left:
            lots.append([sign * left, per_unit])
    mark = fills[-1][1]
    return {"realised_pnl": realised, "position": position, "total_pnl": cash + position * mark, "mark": mark}


prices = st.decimals(min_value="1", max_value="100000", places=2)
amounts = st.decimals(min_value="0.00000001", max_value="50", places=8)
fills_of_one_symbol = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), prices, amounts, st.sampled_from(["BTC", "USDT", "BNB", None])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=st.lists(st.lists(fills_of_one_symbol, min_size=1, max_size=2), min_size=1, max_size=3))
def test_fifo_pnl_agrees_with_a_slow_decimal_fifo_on_random_fills(store, sessions):
    """Sessions of one or two symbols, random buys and sells (shorts too) with fees in the base asset,
    the quote asset, BNB or none: the exact figures are exact, the others agree within 1e-9."""
    run = store.sql("SELECT count(*) FROM sessions")[0][0]
    expected = {}
    for s, symbols in enumerate(sessions):
        session_id = f"h{run}-{s}"
        store.start_session(session_id, TradingMode.PAPER, symbols=["BTC/USDT", "ETH/USDT"])
        w = Writer(store, session_id)
        for symbol, fills in zip(["BTC/USDT", "ETH/USDT"], symbols, strict=False):
            base, quote = symbol.split("/")
            written = []
            for k, (side, price, amount, currency) in enumerate(fills):
                currency = base if currency == "BTC" else currency
                fee = (amount / 1000 if currency == base else price * amount / 1000).quantize(D("1e-8"))
                fee = D(0) if currency is None or (side == "buy" and currency == base and fee >= amount) else fee
                w.order(f"{symbol}-{k}", side, str(amount), [(str(price), str(amount), str(fee), currency, T0 + k)],
                        symbol=symbol)  # fmt: skip
                written.append((side, price, amount, fee, currency))
            expected[(session_id, symbol)] = decimal_fifo(written, base, quote)
    store.flush()
    got = analysis.fifo_pnl(store, [sid for sid, _ in expected]).set_index(["session_id", "symbol"])
    assert set(got.index) == set(expected)
    for key, want in expected.items():
        row = got.loc[key]
        assert row["position"] == float(want["position"])  # exact: a closed position is exactly zero
        assert row["mark_price"] == float(want["mark"])
        scale = max(1.0, abs(float(want["total_pnl"])), float(row["turnover"]))
        assert row["realised_pnl"] == pytest.approx(float(want["realised_pnl"]), abs=1e-9 * scale)
        assert row["total_pnl"] == pytest.approx(float(want["total_pnl"]), abs=1e-9 * scale)
        assert row["realised_pnl"] + row["unrealised_pnl"] == pytest.approx(row["total_pnl"], abs=1e-9 * scale)


def market_orders(store: Store, session_id: str, orders: list[tuple[str, str, str, str]]) -> None:
    """A BTC/USDT session of orders ``s1``, ``s2``...: each (side, price, amount, fee in USDT), one
    fill each, a second apart."""
    store.start_session(session_id, TradingMode.PAPER, symbols=["BTC/USDT"])
    w = Writer(store, session_id)
    for k, (side, price, amount, fee) in enumerate(orders, start=1):
        w.order(f"s{k}", side, amount, [(price, amount, fee, "USDT", T0 + 1000 * (k - 1))])
    store.flush()


def test_units_finer_than_binance_precision_take_the_exact_decimal_path(store):
    # 0.1234567891 BTC has ten decimals: integer units of 1e-8 would round it, so the SQL answers
    market_orders(store, "fine", [("buy", "100", "0.1234567891", "0"), ("sell", "110", "0.1234567891", "0"),
                                  ("buy", "110", "0.00000000001", "0")])  # fmt: skip
    row = analysis.fifo_pnl(store, "fine").iloc[0]
    assert row["position"] == 1e-11 and row["bought"] == float(D("0.12345678911"))
    assert row["realised_pnl"] == approx(10 * 0.1234567891)
    fills = store.query(analysis._FIFO_FILLS.format(where="WHERE session_id = 'fine'"))
    assert not fills["whole"].all()  # what sent it to the SQL


def test_a_sell_beyond_the_position_opens_a_short_that_later_buys_cover(store):
    # sell 1 @ 100 (fee 0.1 USDT) from flat: a short lot of 1 unit, proceeds (100 - 0.1) / 1 per unit
    # buy 0.4 @ 90 (fee 0.036 USDT): covers 0.4 units costing 0.4 * 90 + 0.036
    # buy 1 @ 95 (fee 0.095 USDT): covers the other 0.6 and opens a long lot of 0.4 at (95 + 0.095) / 1 per unit
    market_orders(
        store, "short", [("sell", "100", "1", "0.1"), ("buy", "90", "0.4", "0.036"), ("buy", "95", "1", "0.095")]
    )
    short_unit = (100 - 0.1) / 1
    long_unit = (95 + 0.095) / 1
    first = 0.4 * short_unit - (0.4 * 90 + 0.036)
    second = 0.6 * short_unit - 0.6 * long_unit
    fills = analysis.fills_pnl(store, "short")
    assert fills["position"].tolist() == pytest.approx([-1, -0.6, 0.4], abs=TOL)
    assert fills["realised_delta"].tolist() == pytest.approx([0, first, second], abs=TOL)
    pnl = analysis.fifo_pnl(store, "short").iloc[0]
    assert pnl["realised_pnl"] == approx(first + second)
    assert pnl["open_cost"] == approx(0.4 * long_unit)
    assert pnl["unrealised_pnl"] == approx(0.4 * 95 - 0.4 * long_unit)
    # the whole PnL is the cash: received 99.9, paid 36.036 and 95.095, holding 0.4 at 95
    assert pnl["total_pnl"] == approx(99.9 - 36.036 - 95.095 + 0.4 * 95)
    trips = analysis.round_trips(store, "short")
    assert trips["client_order_id"].tolist() == ["s2", "s3"]
    assert trips["closed_units"].tolist() == pytest.approx([0.4, 0.6], abs=TOL)


def test_drawdown_and_returns_agree_with_empyrical(hand_store):
    empyrical = pytest.importorskip("empyrical")
    values = pd.Series([START_USDT + e for e in EQUITY])
    returns = values / values.shift().fillna(START_USDT) - 1  # each fill's return on the value before it
    curve = analysis.equity_curve(hand_store, HAND)
    assert curve["returns"].tolist() == pytest.approx(returns.tolist(), abs=1e-12)
    index = pd.date_range("2024-01-01", periods=len(returns), freq="D", tz="UTC")
    daily = pd.Series(returns.to_numpy(), index=index)
    metrics = analysis.session_metrics(hand_store, HAND).iloc[0]
    # tolerance: 1e-12 of the capital, far below a cent on 1000 USDT
    assert metrics["max_drawdown_pct"] == pytest.approx(empyrical.max_drawdown(daily), abs=1e-12)
    assert metrics["return_pct"] == pytest.approx(empyrical.cum_returns_final(daily), abs=1e-12)


def test_max_drawdown_against_a_plain_loop(store):
    fills = write_random(store, "rand", seed=11)
    _, equity = reference_fifo(fills)
    worst, peak = 0.0, 0.0
    for e in equity:
        peak = max(peak, e)
        worst = min(worst, e - peak)
    assert worst < 0
    assert analysis.session_metrics(store, "rand").iloc[0]["max_drawdown"] == pytest.approx(worst, abs=1e-7)


async def test_agrees_with_a_paper_sessions_own_bookkeeping(store, rules):
    """A session traded by the workbench itself (SMA cross on 600 bars, 0.1% fees in BTC on buys and
    USDT on sells) keeps its own average-cost books; every round trip ends flat, so FIFO must agree."""
    btc = {"BTC/USDT": rules["BTC/USDT"]}
    session = TradingSession(PaperExecutor(btc, {"USDT": 100_000}), store, rules=btc, strategy=SmaCross(5, 20, 0.01))
    summary = (await session.run({"BTC/USDT": make_bars(600)}, progress=False)).loc["BTC/USDT"]
    last_close = summary["last_price"]
    m = analysis.session_metrics(store, session.session_id, mark=last_close).iloc[0]
    assert m["fills"] == summary["fills"] > 10
    assert m["orders"] == summary["orders"]
    assert m["turnover"] == pytest.approx(summary["notional"], abs=1e-6)
    assert m["total_pnl"] == pytest.approx(summary["realised_pnl"] + summary["unrealised_pnl"], abs=1e-6)
    assert m["capital"] == pytest.approx(100_000, abs=1e-6)  # the account it started with, from its balances
    pnl = analysis.fifo_pnl(store, session.session_id).iloc[0]
    assert pnl["position"] == pytest.approx(summary["position"], abs=1e-12)
    # fees: the USDT ones as they are, the BTC ones at their fill's price
    fills = store.query("SELECT price, fee, fee_currency FROM fills WHERE session_id = ?", [session.session_id])
    usdt = sum(float(f) for f, c in zip(fills["fee"], fills["fee_currency"], strict=True) if c == "USDT")
    in_btc = sum(
        float(p) * float(f)
        for p, f, c in zip(fills["price"], fills["fee"], fills["fee_currency"], strict=True)
        if c == "BTC"
    )
    assert usdt > 0 and in_btc > 0
    assert m["fees"] == pytest.approx(usdt + in_btc, abs=1e-9)


# -- sweeps and comparisons ------------------------------------------------------------------------


def test_compare_sessions_of_a_sweep(store):
    write_random(store, "sw-1", seed=3, sweep_id="sweep-x", params={"name": "SmaCross", "fast": 5, "slow": 20})
    write_random(store, "sw-2", seed=4, sweep_id="sweep-x", params={"name": "SmaCross", "fast": 10, "slow": 20})
    write_random(store, "other", seed=5, params={"fast": 99})
    table = analysis.compare_sessions(store, sweep_id="sweep-x")
    assert table["session_id"].tolist() == ["sw-1", "sw-2"]
    assert table["param_fast"].tolist() == [5, 10]
    assert table["param_slow"].tolist() == [20, 20]
    assert set(table["sweep_id"]) == {"sweep-x"}
    alone = analysis.session_metrics(store, "sw-2").iloc[0]
    assert table.iloc[1]["total_pnl"] == approx(alone["total_pnl"])
    assert table.iloc[0]["total_pnl"] != approx(alone["total_pnl"])
    every = analysis.compare_sessions(store)
    assert every["session_id"].tolist() == ["other", "sw-1", "sw-2"]


# -- paper versus real -----------------------------------------------------------------------------
#
# real-1 (testnet) and its paper shadow paper-1 trade the same three signals on BTC/USDT:
#   signal s1 buy 0.01 @ 50,000: real fills 0.01 @ 50,010 (ack 120ms, fill 300ms); paper 0.01 @ 50,002
#   signal s2 sell 0.01 @ 50,500: real fills 0.006 @ 50,480 and 0.004 @ 50,470; paper 0.01 @ 50,495
#   signal s3 buy 0.02 @ 49,000: paper only (the real order was rejected before it reached the venue)
REAL_BUY, PAPER_BUY = 50_010.0, 50_002.0
REAL_SELL = (0.006 * 50_480 + 0.004 * 50_470) / 0.01
PAPER_SELL = 50_495.0


def write_shadow_pair(store: Store) -> None:
    store.start_session("real-1", TradingMode.TESTNET, symbols=["BTC/USDT"])
    store.start_session("paper-1", TradingMode.PAPER, symbols=["BTC/USDT"], shadow_of="real-1")
    real, paper = Writer(store, "real-1", TradingMode.TESTNET), Writer(store, "paper-1")
    s1, s2, s3 = T0, T0 + 60_000, T0 + 120_000
    real.order(
        "r1",
        "buy",
        "0.01",
        [("50010", "0.01", "0.00001", "BTC", s1 + 300)],
        signal_price="50000",
        arrival_price="50000",
        signal_time=s1,
        created=s1 + 120,
    )
    paper.order(
        "p1",
        "buy",
        "0.01",
        [("50002", "0.01", "0.00001", "BTC", s1 + 1)],
        signal_price="50000",
        arrival_price="50000",
        signal_time=s1,
        created=s1 + 1,
    )
    real.order(
        "r2",
        "sell",
        "0.01",
        [("50480", "0.006", "0.30288", "USDT", s2 + 200), ("50470", "0.004", "0.20188", "USDT", s2 + 250)],
        signal_price="50500",
        arrival_price="50500",
        signal_time=s2,
        created=s2 + 100,
    )
    paper.order(
        "p2",
        "sell",
        "0.01",
        [("50495", "0.01", "0.50495", "USDT", s2 + 1)],
        signal_price="50500",
        arrival_price="50500",
        signal_time=s2,
        created=s2 + 1,
    )
    paper.order(
        "p3",
        "buy",
        "0.02",
        [("49001", "0.02", "0.00002", "BTC", s3 + 1)],
        signal_price="49000",
        arrival_price="49000",
        signal_time=s3,
        created=s3 + 1,
    )


def test_paper_vs_real(store):
    write_shadow_pair(store)
    assert analysis.shadow_of(store, "real-1") == "paper-1"
    pairs = analysis.paper_vs_real(store, "real-1")
    assert len(pairs) == 3
    assert pairs["matched"].tolist() == [True, True, False]
    buy, sell, only = pairs.iloc[0], pairs.iloc[1], pairs.iloc[2]
    assert (buy["real_client_order_id"], buy["paper_client_order_id"]) == ("r1", "p1")
    assert buy["gap_bps"] == approx((REAL_BUY / PAPER_BUY - 1) * 1e4)
    assert buy["gap_quote"] == approx((REAL_BUY - PAPER_BUY) * 0.01)
    assert sell["real_avg_price"] == approx(REAL_SELL)
    assert sell["gap_bps"] == approx(-(REAL_SELL / PAPER_SELL - 1) * 1e4)
    assert sell["gap_quote"] == approx(-(REAL_SELL - PAPER_SELL) * 0.01)
    assert sell["real_latency_ms"] == 250 and sell["paper_latency_ms"] == 1
    assert sell["real_slippage_bps"] == approx(-(REAL_SELL / 50_500 - 1) * 1e4)
    assert only["paper_client_order_id"] == "p3" and pd.isna(only["real_client_order_id"])
    total = analysis.paper_vs_real_summary(store, "real-1").iloc[0]
    assert total["orders_matched"] == 2
    assert total["orders_paper_only"] == 1 and total["orders_real_only"] == 0
    gap = (REAL_BUY - PAPER_BUY) * 0.01 - (REAL_SELL - PAPER_SELL) * 0.01
    assert total["gap_quote"] == approx(gap)
    assert total["gap_bps"] == approx(gap / (PAPER_BUY * 0.01 + PAPER_SELL * 0.01) * 1e4)
    assert total["fee_gap"] == approx((0.00001 * 50_010 + 0.30288 + 0.20188) - (0.00001 * 50_002 + 0.50495))
    assert total["pnl_gap"] == approx(total["real_total_pnl"] - total["paper_total_pnl"])


def test_paper_vs_real_without_a_shadow(hand_store):
    with pytest.raises(AnalysisError, match="no paper shadow"):
        analysis.paper_vs_real(hand_store, HAND)


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_session_is_a_clear_error(hand_store, tmp_path):
    for call in (
        lambda: analysis.fifo_pnl(hand_store, "nope"),
        lambda: analysis.session_metrics(hand_store, [HAND, "nope"]),
        lambda: analysis.execution_quality(hand_store, "nope"),
        lambda: analysis.paper_vs_real(hand_store, "nope"),
    ):
        with pytest.raises(UnknownSession, match=r"\['nope'\].*Most recent sessions: hand-1") as caught:
            call()
        assert isinstance(caught.value, WorkbenchError)
    with pytest.raises(UnknownSession, match="No session of sweep 'none'"):
        analysis.compare_sessions(hand_store, sweep_id="none")
    with pytest.raises(AnalysisError, match="No store at"):
        analysis.fifo_pnl(tmp_path / "missing.duckdb", HAND)


def test_a_path_to_a_store_open_in_this_process_says_what_to_do(hand_store):
    with pytest.raises(AnalysisError, match="pass that Store instead"):
        analysis.fifo_pnl(hand_store.path, HAND)


# -- the report ------------------------------------------------------------------------------------


def test_workbench_report_writes_standalone_html(tmp_path):
    path = tmp_path / "report.duckdb"
    with Store(path) as store:
        write_hand(store)
    output = tmp_path / "out" / "hand.html"
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "report", HAND, "--store", str(path), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(str(output))
    html = output.read_text()
    assert HAND in html
    assert re.search(r'<img[^>]+src="data:image/png;base64,', html)
    assert "Traceback" not in html


def test_workbench_report_of_an_unknown_session(tmp_path):
    path = tmp_path / "report.duckdb"
    with Store(path) as store:
        write_hand(store)
    from workbench.cli import main

    assert main(["report", "nope", "--store", str(path), "--output", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()


# -- what a trader reads: bar-marked performance, trades, fees, refusals ----------------------------
#
# "bars-1": BTC/USDT 1m bars closing at 100, 110, 99, 108.9, 120 (recorded as a live session records
# them). Buy 1 BTC on the first bar's signal at 100, sell it on the fourth's at 108.9, no fees;
# capital 1000 USDT. Value at each close: 1000, 1010, 999, 1008.9, 1008.9; buy and hold:
# 1000 x close / 100 = 1000, 1100, 990, 1089, 1200.

CLOSES = [100.0, 110.0, 99.0, 108.9, 120.0]
VALUES = [1000.0, 1010.0, 999.0, 1008.9, 1008.9]


def write_bars_session(store: Store, session_id: str = "bars-1") -> None:
    store.start_session(session_id, TradingMode.PAPER, strategy="SmaCross", params={"fast": 2}, symbols=["BTC/USDT"])
    for i, close in enumerate(CLOSES):
        opened = T0 + 60_000 * i
        bar = {
            "symbol": "BTC/USDT",
            "open_time": opened,
            "close_time": opened + 59_999,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1.0,
        }
        store.audit("market.bar", bar, session_id=session_id, mode=TradingMode.PAPER)
    w = Writer(store, session_id)
    w.signalled("b1", "buy", "1", "100", T0 + 59_999)
    w.signalled("b2", "sell", "1", "108.9", T0 + 239_999)
    store.end_session(session_id, "completed")


def test_bar_equity_against_buy_and_hold(store):
    write_bars_session(store)
    curve = analysis.bar_equity(store, "bars-1", capital=1000)
    assert curve["value"].tolist() == pytest.approx(VALUES, abs=TOL)
    assert curve["buy_hold"].tolist() == pytest.approx([1000, 1100, 990, 1089, 1200], abs=TOL)
    assert curve["in_market"].tolist() == [True, True, True, False, False]
    assert curve["exposure"].tolist() == pytest.approx([100 / 1000, 110 / 1010, 99 / 999, 0, 0], abs=TOL)
    returns = [0.0, 1010 / 1000 - 1, 999 / 1010 - 1, 1008.9 / 999 - 1, 0.0]
    assert curve["returns"].tolist() == pytest.approx(returns, abs=1e-12)
    assert curve.index[0] == pd.Timestamp(T0 + 59_999, unit="ms", tz="UTC")


def test_bars_known_closed_in_the_same_millisecond_count_once(store):
    # a fast replay streams bars faster than the clock ticks: the 2nd and 3rd bars (closes 110, 99)
    # were both known closed at the 3rd's signal time; the market stood at the later one, 99
    write_bars_session(store)
    bars = analysis.session_bars(store, "bars-1")
    frame = bars["BTC/USDT"]
    frame.loc[frame.index[1], "close_time"] = frame["close_time"].iloc[2]
    curve = analysis.bar_equity(store, "bars-1", bars=bars, capital=1000)
    assert curve.index.is_unique and len(curve) == 4
    assert curve["value"].tolist() == pytest.approx([VALUES[0], *VALUES[2:]], abs=TOL)
    perf = analysis.performance(store, "bars-1", bars=bars, capital=1000)
    assert perf["max_drawdown_quote"] == approx(999 - 1000) and perf["final_value"] == approx(VALUES[-1])


def test_performance_by_hand_and_against_empyrical(store):
    empyrical = pytest.importorskip("empyrical")
    write_bars_session(store)
    perf = analysis.performance(store, "bars-1", capital=1000, periods_per_year=252)
    r = np.array([0.0, 0.01, 999 / 1010 - 1, 1008.9 / 999 - 1, 0.0])
    # by hand: mean / sample std x sqrt(252); Sortino: mean x 252 / (rms of the negative returns x sqrt(252))
    mean = r.sum() / 5
    std = np.sqrt(((r - mean) ** 2).sum() / 4)
    assert perf["sharpe"] == pytest.approx(mean / std * np.sqrt(252), rel=1e-12)
    downside = np.sqrt((999 / 1010 - 1) ** 2 / 5) * np.sqrt(252)
    assert perf["sortino"] == pytest.approx(mean * 252 / downside, rel=1e-12)
    annual = (1008.9 / 1000) ** (252 / 5) - 1
    assert perf["annual_return"] == pytest.approx(annual, rel=1e-12)
    assert perf["calmar"] == pytest.approx(annual / (11 / 1010), rel=1e-12)
    assert perf["total_return"] == pytest.approx(0.0089, abs=1e-12)
    assert perf["buy_hold_return"] == pytest.approx(0.2, abs=1e-12)
    assert perf["max_drawdown_pct"] == pytest.approx(-11 / 1010, abs=1e-12)
    assert perf["max_drawdown_quote"] == pytest.approx(-11, abs=TOL)
    assert perf["drawdown_peak"] == pd.Timestamp(T0 + 60_000 + 59_999, unit="ms", tz="UTC")
    assert perf["drawdown_trough"] == pd.Timestamp(T0 + 120_000 + 59_999, unit="ms", tz="UTC")
    assert pd.isna(perf["drawdown_recovery"])  # 1008.9 never gets back to 1010
    assert perf["time_in_market"] == pytest.approx(3 / 5)
    assert perf["exposure"] == pytest.approx((0.1 + 110 / 1010 + 99 / 999) / 5, abs=1e-12)
    assert perf["gross_pnl"] == perf["net_pnl"] == pytest.approx(8.9, abs=TOL)
    # empyrical, on the same returns
    returns = pd.Series(r, index=pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC"))
    assert perf["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, annualization=252), rel=1e-9)
    assert perf["sortino"] == pytest.approx(empyrical.sortino_ratio(returns, annualization=252), rel=1e-9)
    assert perf["annual_return"] == pytest.approx(empyrical.annual_return(returns, annualization=252), rel=1e-9)
    assert perf["calmar"] == pytest.approx(empyrical.calmar_ratio(returns, annualization=252), rel=1e-9)
    assert perf["max_drawdown_pct"] == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)


def test_ratios_of_no_returns_and_of_flat_returns():
    assert all(np.isnan(v) for v in analysis.ratios(pd.Series(dtype=float)).values())
    flat = analysis.ratios(pd.Series([0.0, 0.0, 0.0]))
    assert np.isnan(flat["sharpe"]) and np.isnan(flat["sortino"]) and np.isnan(flat["calmar"])
    assert flat["annual_return"] == 0


def test_data_source_and_bars_of_a_live_session(store):
    write_bars_session(store)
    data = analysis.data_source(store, "bars-1").iloc[0]
    assert data["symbol"] == "BTC/USDT" and data["bars"] == 5 and not data["synthetic"]
    assert "source not recorded" in data["source"]
    assert data["first"] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert data["last"] == pd.Timestamp(T0 + 240_000, unit="ms", tz="UTC")
    bars = analysis.session_bars(store, "bars-1")["BTC/USDT"]
    assert bars["close"].tolist() == CLOSES


async def test_a_paper_session_records_its_data_and_the_report_reloads_it(store, rules):
    from workbench.data import load_klines

    btc = {"BTC/USDT": rules["BTC/USDT"]}
    history = load_klines("BTC/USDT", limit=300, allow_sample=True)
    session = TradingSession(PaperExecutor(btc, {"USDT": 10_000}), store, rules=btc, strategy=SmaCross(5, 20, 0.01))
    await session.run({"BTC/USDT": history}, progress=False)
    data = analysis.data_source(store, session.session_id).iloc[0]
    assert data["source"] == history.attrs["source"] and data["bars"] == 300
    assert data["synthetic"] == ("SYNTHETIC" in history.attrs["source"])
    assert data["first"] == history.index[0] and data["last"] == history.index[-1]
    again = analysis.session_bars(store, session.session_id)["BTC/USDT"]
    assert again["close"].tolist() == history["close"].tolist()
    ends = analysis.open_positions(store, session.session_id)
    assert (ends["mark_price"] == history["close"].iloc[-1]).all()


def test_trades_of_the_hand_worked_session(hand_store):
    trades = analysis.trades(hand_store, HAND)
    assert trades["trade"].tolist() == [1, 2] and trades["open"].tolist() == [False, True]
    first, second = trades.iloc[0], trades.iloc[1]
    assert first["direction"] == "long" and first["units"] == approx(1.0)
    assert first["entry_price"] == approx(102.6) and first["exit_price"] == approx((54 + 47.405) / 0.999)
    assert first["pnl"] == approx(O2_PNL + O3_PNL)
    assert first["return_pct"] == approx((O2_PNL + O3_PNL) / 102.6)
    assert first["holding_ms"] == 120_000 - 100
    assert first["fees"] == approx(0.0004 * 102 + 0.0006 * 103 + 0.054 + 0.04741)
    # slippage: buys (102-100) x 0.4 + (103-100) x 0.6; sells (110-108) x 0.5 + (94-95) x 0.499
    assert first["slippage_signal_quote"] == approx(2.6 + 1.0 - 0.499)
    assert first["slippage_signal_bps"] == approx(3.101 / (100 + 55 + 94 * 0.499) * 1e4)
    assert first["slippage_arrival_quote"] == approx(1.6 + 0.5 - 0.2495)
    assert first["slippage_arrival_bps"] == approx(1.8505 / (101 + 54.5 + 94.5 * 0.499) * 1e4)
    assert pd.isna(second["exit_time"]) and second["units"] == approx(0.2)
    assert second["slippage_signal_quote"] == approx((90 - 91) * 0.2)


def test_fees_by_asset_and_liquidity(hand_store):
    fees = analysis.fees(hand_store, HAND).set_index("fee_currency")
    assert fees["liquidity"].tolist() == ["taker", "taker"]
    assert fees.loc["BTC", "fills"] == 2 and fees.loc["USDT", "fills"] == 3
    assert fees.loc["BTC", "fee"] == approx(0.001)
    assert fees.loc["BTC", "fee_quote"] == approx(0.0004 * 102 + 0.0006 * 103)
    assert fees.loc["USDT", "fee_quote"] == approx(0.054 + 0.04741 + 0.018)
    assert fees.loc["USDT", "fee_bps"] == approx((0.054 + 0.04741 + 0.018) / (54 + 47.405 + 18) * 1e4)
    assert fees["fee_quote"].sum() == approx(FEES)


def test_refusals_by_stage_and_reason(hand_store):
    for kind, rule in [
        ("risk.rejected", "max_position"),
        ("risk.rejected", "max_position"),
        ("risk.rejected", "kill_switch"),
        ("order.rejected", "balance"),
    ]:
        hand_store.audit(
            kind,
            {"symbol": "BTC/USDT", "rule": rule, "error": f"refused by {rule}"},
            session_id=HAND,
            mode=TradingMode.PAPER,
        )
    frame = analysis.refusals(hand_store, HAND)
    got = {(r.stage, r.outcome, r.reason): r.orders for r in frame.itertuples()}
    assert got == {
        ("risk check or filter", "refused", "max_position"): 2,
        ("risk check or filter", "not sent", "kill_switch"): 1,
        ("venue", "refused", "balance"): 1,
    }


def test_sweep_table_labels_runs_by_their_parameters(store):
    write_random(store, "sw-a", seed=1, sweep_id="sw", params={"fast": 5, "slow": 20})
    write_random(store, "sw-b", seed=2, sweep_id="sw", params={"fast": 10, "slow": 20})
    table = analysis.sweep_table(store, "sw")
    assert list(table.columns) == ["session_id", "fast", *analysis.SWEEP_COLUMNS[1:]]  # slow does not vary
    metrics = analysis.session_metrics(store, sweep_id="sw").set_index("session_id")
    assert table.set_index("session_id")["total_pnl"].to_dict() == pytest.approx(metrics["total_pnl"].to_dict())
    runs = pd.DataFrame(
        {"session_id": ["sw-a", "sw-b", "sw-c"], "status": ["completed"] * 2 + ["failed"], "store_path": ["x"] * 3}
    )
    joined = analysis.sweep_table(store, "sw", runs)
    assert joined["session_id"].tolist() == ["sw-a", "sw-b", "sw-c"] and "store_path" not in joined
    assert joined["status"].tolist() == ["completed", "completed", "failed"]  # the runs' own
    assert joined["total_pnl"].notna().tolist() == [True, True, False]
    nothing = analysis.sweep_table(store, "no-such-sweep", runs)  # every run failed: still a table
    assert nothing["total_pnl"].isna().all() and len(nothing) == 3


def test_the_new_views_agree_with_the_functions(tmp_path):
    path = tmp_path / "views2.duckdb"
    with Store(path) as store:
        write_hand(store)
        store.audit("risk.rejected", {"rule": "max_position"}, session_id=HAND, mode=TradingMode.PAPER)
        analysis.create_views(store)
    con = duckdb.connect(str(path), read_only=True)
    try:
        for view, function, order in [
            ("analysis_trades", analysis.trades, "session_id, entry_time, symbol, trade"),
            ("analysis_fees", analysis.fees, "session_id, fee_currency, liquidity"),
            ("analysis_refusals", analysis.refusals, "session_id, orders DESC, reason"),
        ]:
            from_view = analysis._tidy(con.execute(f"SELECT * FROM {view} ORDER BY {order}").df())
            assert len(from_view) > 0
            _same(from_view, function(path))
    finally:
        con.close()
