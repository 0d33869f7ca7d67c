"""Replays through the real paper executor, risk checks and store; parity with the live path; lookahead."""

import json
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pytest

from workbench.config import RiskLimits
from workbench.data import klines_to_duckdb
from workbench.errors import ConfigError
from workbench.executors import PaperExecutor
from workbench.killswitch import KillSwitch
from workbench.replay import check_lookahead, check_parity, load_bars, replay, replay_grid
from workbench.session import TradingSession
from workbench.store import Store
from workbench.strategy import SmaCross

from .conftest import make_bars, write_klines

SYMBOL = "BTC/USDT"
ORDER_COLUMNS = "side, type, amount, status, filled, cost, signal_price, arrival_price, signal_time, created_at"
FILL_COLUMNS = "trade_id, side, price, amount, cost, fee, fee_currency, is_maker, timestamp"


class PeeksAhead:
    """Leaky: long while the next bar closes higher (``close.shift(-1)``)."""

    warmup = 2

    def __call__(self, bars):
        return (bars["close"].shift(-1) > bars["close"]).astype(float) * 0.01


class CenteredMean:
    """Leaky: long while the close is above a centered rolling mean (half its window is in the future)."""

    warmup = 21

    def __call__(self, bars):
        mean = bars["close"].rolling(21, center=True).mean()
        return (bars["close"] > mean).astype(float) * 0.01


def flips(targets: pd.Series) -> pd.Series:
    """The bars where a target differs from the previous one (the first bar counts from flat)."""
    return targets[targets.diff().fillna(targets) != 0]


def close_ms(bars: pd.DataFrame) -> pd.Series:
    return pd.Series(bars["close_time"].dt.as_unit("ms").astype("int64").to_numpy(), index=bars.index)


async def test_a_replay_is_a_paper_session_marked_as_replay_with_an_order_at_every_signal_change(tmp_path):
    bars = make_bars(600)
    strategy = SmaCross(5, 20, 0.01)
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(strategy, bars, store=store, session_id="replay-one")
        row = store.sql("SELECT mode, venue, strategy, params, status FROM sessions WHERE session_id = 'replay-one'")
        orders = result.orders
        fills = store.sql(
            "SELECT trade_id, price, amount FROM fills WHERE session_id = 'replay-one' ORDER BY timestamp"
        )
        assert len(result.fills) == len(fills)
        trades = await result.session.executor.fetch_my_trades(SYMBOL)

    mode, venue, name, params, status = row[0]
    assert (mode, venue, name, status) == ("paper", "replay", "SmaCross", "completed")
    params = json.loads(params)
    assert params["replay"] is True and (params["fast"], params["slow"]) == (5, 20)
    assert params["bars"][SYMBOL][2] == 600

    changes = flips(strategy(bars))
    expected_times = close_ms(bars)[changes.index]
    assert [int(t.timestamp() * 1000) for t in orders["signal_time"]] == list(expected_times)
    assert list(orders["side"]) == ["buy" if t > 0 else "sell" for t in changes]
    assert set(orders["status"]) == {"FILLED"} and orders["type"].eq("MARKET").all()
    assert [(f.trade_id, f.price, f.amount) for f in trades] == fills
    assert result.summary.loc[SYMBOL, "fills"] == len(trades) > 10
    assert result.bars_per_second > 0 and len(result.signals) == 600


async def test_the_fast_path_writes_exactly_what_a_bar_by_bar_run_writes(rules, tmp_path):
    bars = make_bars(800, seed=11)
    strategy = SmaCross(4, 15, 0.02)
    with Store(tmp_path / "dense.duckdb", batch_size=50) as dense_store, Store(tmp_path / "fast.duckdb") as fast:
        dense = TradingSession(
            PaperExecutor(rules, {"USDT": 10_000}), dense_store, rules=rules, strategy=strategy, session_id="s"
        )
        await dense.run({SYMBOL: bars}, progress=False)
        result = await replay(strategy, bars, store=fast, session_id="s", rules=rules)
        for sql in (
            f"SELECT {ORDER_COLUMNS} FROM orders ORDER BY created_at, client_order_id",
            f"SELECT {FILL_COLUMNS} FROM fills ORDER BY trade_id::INT",
            "SELECT timestamp, asset, free, locked FROM balances ORDER BY asset",
        ):
            expected = dense_store.sql(sql)
            assert expected and fast.sql(sql) == expected
        pd.testing.assert_frame_equal(result.summary, dense.summary())


async def test_the_fast_path_feeds_every_bar_while_an_order_rests(rules, tmp_path):
    bars = make_bars(400, seed=5)
    low = Decimal(str(round(bars["close"].iloc[50:].min() * 1.002, 2)))
    fills = []
    for skip_idle, name in ((False, "dense"), (True, "fast")):
        with Store(tmp_path / f"{name}.duckdb") as store:
            session = TradingSession(
                PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=SmaCross(10, 50, 0.001)
            )
            await session.on_bar(SYMBOL, bars.iloc[0])
            await session.create_order(SYMBOL, "limit", "buy", 0.01, low, time_in_force="GTC")
            await session.run({SYMBOL: bars.iloc[1:]}, progress=False, skip_idle=skip_idle)
            fills.append(store.sql(f"SELECT {FILL_COLUMNS} FROM fills WHERE is_maker ORDER BY trade_id::INT"))
    assert fills[0] and fills[0] == fills[1]


async def test_the_risk_checks_guard_a_replay_as_they_guard_a_session(tmp_path):
    bars = make_bars(300)
    with Store(tmp_path / "r.duckdb") as store:
        result = await replay(
            SmaCross(5, 20, 0.01), bars, store=store, risk=RiskLimits(max_order_notional=Decimal(100))
        )
        assert result.orders.empty and result.fills.empty
        assert {e.rule for e in result.session.rejections} == {"max_order_notional"}
        rejected = store.sql("SELECT count(*) FROM audit_log WHERE kind = 'risk.rejected'")[0][0]
        # each buy is refused, so the position stays flat and the sells that follow have nothing to sell
        buys = (flips(SmaCross(5, 20, 0.01)(bars)) > 0).sum()
        assert rejected == len(result.session.rejections) == buys > 3

        KillSwitch(store).trip("test", "test")
        halted = await replay(SmaCross(5, 20, 0.01), bars, store=store)
        assert halted.orders.empty and not halted.session.rejections  # a halted session stops before its first bar
        assert store.sql("SELECT status FROM sessions WHERE session_id = ?", [halted.session.session_id]) == [
            ("halted",)
        ]


async def test_a_replay_of_several_symbols_trades_each_on_its_own_signals(tmp_path):
    btc, eth = make_bars(300, seed=1), make_bars(300, start=3_000, seed=2)
    strategy = SmaCross(5, 20, 0.1)
    result = await replay(strategy, {SYMBOL: btc, "ETH/USDT": eth}, store=tmp_path / "m.duckdb")
    orders = result.orders
    for symbol, bars in ((SYMBOL, btc), ("ETH/USDT", eth)):
        mine = orders[orders["symbol"] == symbol]
        changes = flips(strategy(bars))
        assert len(changes) > 3 and [int(t.timestamp() * 1000) for t in mine["signal_time"]] == list(
            close_ms(bars)[changes.index]
        )
    result.store.close()


# -- parity and lookahead ---------------------------------------------------------------------


async def test_bar_by_bar_signals_and_orders_equal_the_replay(rules, tmp_path):
    bars = make_bars(500, seed=9)
    strategy = SmaCross(5, 20, 0.01)
    with Store(tmp_path / "p.duckdb") as store:
        live = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules, strategy=strategy)
        live_signals = []
        for _, bar in bars.iterrows():
            await live.on_bar(SYMBOL, bar)
            live_signals.append(float(live._targets[SYMBOL]))
        await live.stop()
        result = await replay(strategy, bars, store=store)
        columns = "signal_time, side, amount, signal_price"
        query = f"SELECT {columns} FROM orders WHERE session_id = ? ORDER BY signal_time"
        live_orders = store.sql(query, [live.session_id])
        assert len(live_orders) > 10 and live_orders == store.sql(query, [result.session_id])
        assert live_signals == list(result.signals["target"])
        assert (await check_parity(strategy, bars, store=store)).empty


@pytest.mark.parametrize("leaky", [PeeksAhead(), CenteredMean()], ids=["shift(-1)", "centered window"])
async def test_parity_catches_a_leaky_strategy(leaky, tmp_path):
    bars = make_bars(300, seed=4)
    differences = await check_parity(leaky, bars, store=tmp_path / "p.duckdb")
    assert len(differences) > 10
    assert (differences["live_order"].fillna("") != differences["replay_order"].fillna("")).any()


def test_lookahead_passes_a_strategy_that_looks_backwards():
    bars = make_bars(400)
    assert check_lookahead(SmaCross(10, 50, 0.01), bars).empty
    assert check_lookahead(SmaCross(10, 50, 0.01), bars, cuts=range(50, 399)).empty


def test_lookahead_reports_the_bars_a_shift_minus_one_changes():
    bars = make_bars(400)
    cuts = [100, 200, 300]
    report = check_lookahead(PeeksAhead(), bars, cuts=cuts)
    # shift(-1) leaves the last kept bar without a next close: only that bar can change, and it does
    # whenever the full history's signal there was long.
    full = PeeksAhead()(bars)
    assert list(report["position"]) == [k for k in cuts if full.iloc[k] > 0]
    assert (report["truncated"] == 0).all() and (report["full"] == 0.01).all()
    assert list(report["cut_at"]) == list(report.index)


def test_lookahead_reports_a_centered_window_within_half_a_window_of_the_cut():
    bars = make_bars(600)
    report = check_lookahead(CenteredMean(), bars, n_cuts=30)
    assert len(report) >= 5
    cut_positions = bars.index.get_indexer(report["cut_at"])
    assert ((cut_positions - report["position"]) <= 10).all() and (cut_positions >= report["position"]).all()


# -- bars from files and DuckDB; grids -------------------------------------------------------


def test_bars_load_the_same_from_a_frame_csv_parquet_and_duckdb(tmp_path, monkeypatch):
    bars = make_bars(120)
    prices = ["open", "high", "low", "close", "volume"]
    bars[prices] = bars[prices].round(2)
    write_klines(tmp_path / "data", SYMBOL, bars)
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "data"))
    csv = tmp_path / "data/binance/spot/1m/BTCUSDT-1m.csv"
    parquet = tmp_path / "bars.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{parquet}' (FORMAT parquet)")
    db = tmp_path / "klines.duckdb"
    con = duckdb.connect(str(db))
    klines_to_duckdb(con, [SYMBOL])
    con.close()

    for source in (None, bars, csv, parquet, db):
        loaded = load_bars(source, SYMBOL)
        assert list(loaded.index) == list(bars.index), source
        assert np.array_equal(loaded[prices].to_numpy(), bars[prices].to_numpy()), source
    window = load_bars(csv, SYMBOL, start="2024-01-01 00:10", end="2024-01-01 00:19", limit=5)
    assert list(window.index) == list(bars.index[10:15])
    with duckdb.connect(str(db), read_only=True) as open_con:
        assert len(load_bars(open_con, SYMBOL)) == 120


def test_bars_that_cannot_be_used_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="missing \\['volume'\\]"):
        load_bars(make_bars(10).drop(columns="volume"))
    with pytest.raises(ConfigError, match="No 1m bars of BTC/USDT"):
        load_bars(make_bars(10), start="2030-01-01")
    with pytest.raises(ConfigError, match="use a .duckdb, .parquet, .csv"):
        load_bars(tmp_path / "bars.xlsx")


async def test_a_grid_replays_every_combination_into_one_store(tmp_path):
    bars = make_bars(400)
    with Store(tmp_path / "g.duckdb") as store:
        grid = await replay_grid(SmaCross, bars, {"fast": [5, 10, 30], "slow": [20, 40]}, store=store, sweep_id="g1")
        assert len(grid) == 6
        refused = grid[grid["error"].notna()]
        assert list(zip(refused["fast"], refused["slow"], strict=True)) == [(30, 20)]
        ran = grid[grid["error"].isna()]
        stored = store.query(
            "SELECT session_id, count(*) AS fills FROM fills WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE sweep_id = 'g1') GROUP BY session_id"
        ).set_index("session_id")["fills"]
        assert dict(zip(ran["session_id"], ran["fills"], strict=True)) == stored.to_dict()
        for _, row in ran.iterrows():
            expected = len(flips(SmaCross(int(row["fast"]), int(row["slow"]))(bars)))
            assert row["orders"] == expected
