"""Order intents end to end on the paper paths: a replay, a paper session's run() and its live
path (on_bar, one bar at a time) place the same orders for each intent kind; protective exits
follow the position; portfolios share one budget; the intent frame's checks and the sizing
helpers by hand-worked numbers."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from workbench.config import RiskLimits
from workbench.data import load_rules
from workbench.errors import ConfigError
from workbench.executors.paper import PaperExecutor
from workbench.intents import intent_frame, iter_intents
from workbench.replay import check_parity, load_bars, replay
from workbench.session import TradingSession
from workbench.sizing import at_risk, equal_weight, to_units, volatility_target
from workbench.store import Store
from workbench.strategy import STRATEGIES, MomentumRotation, RsiReversion, SmaBracket, make_strategy

RISK = RiskLimits(max_order_notional=None, max_position_notional=None, max_orders_per_minute=None)
MODES = ("replay", "paper", "live")


def path_bars(closes: list[float], start: str = "2024-01-01") -> pd.DataFrame:
    """1m bars whose open, high, low and close are the given prices (one price per bar)."""
    index = pd.date_range(start, periods=len(closes), freq="1min", tz="UTC", name="open_time")
    close = np.asarray(closes, dtype=float)
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    frame["close_time"] = index + pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1)
    return frame


class Scripted:
    """A strategy that asks, at given bar positions, for given intents (by time: no lookahead)."""

    warmup = 0

    def __init__(self, bars: pd.DataFrame, rows: dict[int, dict[str, float]]) -> None:
        self.rows = pd.DataFrame.from_dict({bars.index[i]: r for i, r in rows.items()}, orient="index")

    def __call__(self, bars: pd.DataFrame) -> pd.DataFrame:
        return self.rows.reindex(bars.index)


class ScriptedPortfolio:
    """The same for several symbols at once."""

    warmup = 0

    def __init__(self, symbols: tuple[str, ...], bars: pd.DataFrame, rows: dict[str, dict[int, dict]]) -> None:
        self.symbols = symbols
        self.scripts = {s: Scripted(bars, rows.get(s, {0: {"target_fraction": np.nan}})) for s in symbols}

    def __call__(self, bars):
        return {s: self.scripts[s](bars[s]).reindex(columns=["target_fraction"]) for s in self.symbols}


async def run_in(mode: str, strategy, bars, store, balances=None):
    """The session that ran ``strategy`` over ``bars`` (a frame of BTC/USDT or a mapping) in ``mode``."""
    frames = bars if isinstance(bars, dict) else {"BTC/USDT": bars}
    funds = balances or {"USDT": 10_000}
    if mode == "replay":
        return (await replay(strategy, frames, store=store, balances=funds, risk=RISK)).session
    rules = load_rules(list(frames))
    session = TradingSession(PaperExecutor(rules, funds), store, rules=rules, strategy=strategy, risk=RISK)
    if mode == "paper":
        await session.run(frames, progress=False)
        return session
    timeline = pd.concat(pd.DataFrame({"s": s, "i": range(len(f))}, index=f.index) for s, f in frames.items())
    for symbol, i in zip(*timeline.sort_index(kind="stable").T.values, strict=True):
        await session.on_bar(symbol, frames[symbol].iloc[i])
    await session.stop()
    return session


def orders_of(session) -> list[tuple]:
    """(bar signalled on, side, type, status, amount, stop) of each order, in the order placed."""
    session.store.flush()
    frame = session.store.query(
        "SELECT signal_time, side, type, status, amount, stop_price FROM orders WHERE session_id = ? "
        "ORDER BY created_at, CAST(split_part(client_order_id, '-', -1) AS INT)",
        [session.session_id],
    )
    start = pd.Timestamp("2024-01-01", tz="UTC")
    bar = ((frame["signal_time"] - start) // pd.Timedelta(minutes=1)).tolist()
    rows = zip(bar, frame["side"], frame["type"], frame["status"], frame["amount"], frame["stop_price"], strict=True)
    return [
        (b, side, kind, status, amount, None if np.isnan(stop) else stop)
        for b, side, kind, status, amount, stop in rows
    ]


def position(session, symbol: str = "BTC/USDT") -> Decimal:
    return session.state.positions.get(symbol, Decimal(0))


# -- each intent kind, in the three paper modes -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_stop_loss_is_placed_once_the_market_entry_fills_and_sells_when_touched(mode, store):
    bars = path_bars([50_000] * 10 + [49_500] * 5 + [48_900] * 5)
    strategy = Scripted(bars, {2: {"target": 0.01, "stop_loss": 49_000}})
    session = await run_in(mode, strategy, bars, store)
    orders = orders_of(session)
    held = 0.01 * (1 - 0.001)  # the buy's fee is paid in base
    assert orders == [
        (2, "buy", "MARKET", "FILLED", 0.01, None),
        (2, "sell", "STOP_LOSS_LIMIT", "FILLED", held, 49_000.0),  # placed on the entry's bar, after its fill
    ]
    assert position(session) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_limit_entry_waits_is_canceled_after_n_bars_and_a_reached_one_fills(mode, store):
    bars = path_bars([100.0] * 20 + [98.0] * 5, start="2024-01-01")
    script = {
        1: {"target_quote": 500.0, "limit_price": 99.0, "cancel_after": 3},  # never reached in 3 bars
        10: {"target_quote": 0.0},
        12: {"target_quote": 500.0, "limit_price": 99.0, "cancel_after": 30},  # reached at bar 20
    }
    bars_eth = bars.copy()
    session = await run_in(mode, Scripted(bars_eth, script), {"ETH/USDT": bars_eth}, store)
    orders = [o[:4] for o in orders_of(session)]
    # 500 quote at 100 is 5 ETH; the first limit is canceled on its third bar after placing
    assert orders == [(1, "buy", "LIMIT", "CANCELED"), (12, "buy", "LIMIT", "FILLED")]
    canceled = session.store.query(
        "SELECT updated_at FROM orders WHERE session_id = ? AND status = 'CANCELED'", [session.session_id]
    )["updated_at"][0]
    assert canceled == bars.index[4] + pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1)
    assert position(session, "ETH/USDT") == Decimal("5") * (1 - Decimal("0.001"))


@pytest.mark.parametrize("mode", MODES)
async def test_an_ioc_limit_entry_that_cannot_fill_expires(mode, store):
    bars = path_bars([50_000] * 6)
    session = await run_in(mode, Scripted(bars, {1: {"target": 0.01, "limit_price": 49_000, "time_in_force": "ioc"}}),
                           bars, store)  # fmt: skip
    assert [o[:4] for o in orders_of(session)] == [(1, "buy", "LIMIT", "EXPIRED")]


@pytest.mark.parametrize("mode", MODES)
async def test_a_take_profit_alone_is_a_resting_limit_sell(mode, store):
    bars = path_bars([50_000] * 5 + [50_600] * 3)
    session = await run_in(mode, Scripted(bars, {1: {"target": 0.01, "take_profit": 50_500}}), bars, store)
    assert [o[:4] for o in orders_of(session)] == [(1, "buy", "MARKET", "FILLED"), (1, "sell", "LIMIT", "FILLED")]
    assert position(session) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_trailing_stop_follows_the_high_and_sells_on_the_retrace(mode, store):
    # 100 BIPS: from a high of 52,000 the stop is at 51,480; 51,600 does not trigger, 51,400 does
    bars = path_bars([50_000] * 3 + [51_000, 52_000, 51_600, 51_400, 51_400])
    session = await run_in(mode, Scripted(bars, {1: {"target": 0.01, "trailing_delta": 100}}), bars, store)
    orders = orders_of(session)
    assert [o[:4] for o in orders] == [(1, "buy", "MARKET", "FILLED"), (1, "sell", "STOP_LOSS_LIMIT", "FILLED")]
    fill = session.store.query(
        "SELECT timestamp FROM fills WHERE session_id = ? AND side = 'sell'", [session.session_id]
    )["timestamp"][0]
    assert fill == bars["close_time"].iloc[6]
    assert position(session) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_protective_oco_is_placed_after_the_entry_and_canceled_when_flat(mode, store):
    bars = path_bars([50_000] * 8 + [50_200] * 4)
    script = {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}, 6: {"target": 0.0}}
    session = await run_in(mode, Scripted(bars, script), bars, store)
    orders = orders_of(session)
    assert [o[:4] for o in orders] == [
        (1, "buy", "MARKET", "FILLED"),
        (1, "sell", "LIMIT_MAKER", "CANCELED"),  # the OCO's legs, placed once the entry filled ...
        (1, "sell", "STOP_LOSS_LIMIT", "CANCELED"),  # ... and canceled when the target went flat
        (6, "sell", "MARKET", "FILLED"),
    ]
    lists = session.store.query(
        "SELECT contingency_type, list_order_status, epoch_ms(signal_time) AS at FROM order_lists WHERE session_id = ?",
        [session.session_id],
    )
    assert lists[["contingency_type", "list_order_status"]].values.tolist() == [["OCO", "ALL_DONE"]]
    assert position(session) == 0 and not session._open


@pytest.mark.parametrize("mode", MODES)
async def test_the_oco_take_profit_fills_the_stop_expires_and_a_bigger_position_is_protected_again(mode, store):
    bars = path_bars([50_000] * 4 + [51_100] * 3 + [51_000] * 4)
    script = {
        1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_050},
        8: {"target": 0.02, "stop_loss": 50_000, "take_profit": 52_000},
    }
    session = await run_in(mode, Scripted(bars, script), bars, store)
    orders = orders_of(session)
    assert [o[:4] for o in orders] == [
        (1, "buy", "MARKET", "FILLED"),
        (1, "sell", "LIMIT_MAKER", "FILLED"),
        (1, "sell", "STOP_LOSS_LIMIT", "EXPIRED"),  # Binance expires the other leg
        (8, "buy", "MARKET", "FILLED"),  # flat after the bracket: 0.02 from zero
        (8, "sell", "LIMIT_MAKER", "NEW"),
        (8, "sell", "STOP_LOSS_LIMIT", "NEW"),
    ]
    assert orders[3][4] == 0.02 and orders[4][4] == orders[5][4] == 0.01998  # the whole position, less the fee


@pytest.mark.parametrize("mode", MODES)
async def test_a_triggered_stop_resting_past_its_limit_is_canceled_when_the_target_goes_flat(mode, store):
    # The price gaps through the stop and its limit: the stop-limit triggers (the OCO is done, its
    # take-profit expired) and rests as a limit sell below the market. Going flat must cancel it
    # and sell at market, not leave it holding the base the sale needs.
    bars = path_bars([50_000] * 4 + [48_000] * 3 + [48_100] * 3)
    script = {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}, 6: {"target": 0.0}}
    session = await run_in(mode, Scripted(bars, script), bars, store)
    assert [o[:4] for o in orders_of(session)] == [
        (1, "buy", "MARKET", "FILLED"),
        (1, "sell", "LIMIT_MAKER", "EXPIRED"),
        (1, "sell", "STOP_LOSS_LIMIT", "CANCELED"),
        (6, "sell", "MARKET", "FILLED"),
    ]
    free = (await session.executor.fetch_balance())["BTC"].total
    assert position(session) == free == 0 and not session._open and not session.rejections


@pytest.mark.parametrize("mode", MODES)
async def test_a_fraction_of_equity_is_sized_on_the_equity_and_rounded_to_the_step(mode, store):
    bars = path_bars([30_000] * 5)
    session = await run_in(mode, Scripted(bars, {1: {"target_fraction": 0.5}}), bars, store)
    # 0.5 x 10,000 USDT / 30,000 = 0.1666666..., rounded down to the 0.00001 step
    assert orders_of(session) == [(1, "buy", "MARKET", "FILLED", 0.16666, None)]


@pytest.mark.parametrize("mode", MODES)
async def test_a_portfolio_sells_before_it_buys_within_one_shared_budget(mode, store):
    symbols = ("ETH/USDT", "BTC/USDT")  # ETH first: its buy would find no cash if BTC's sale came after
    btc = path_bars([30_000.0] * 6)
    eth = path_bars([2_000.0] * 6)
    strategy = ScriptedPortfolio(
        symbols,
        btc,
        {
            "BTC/USDT": {1: {"target_fraction": 0.9}, 3: {"target_fraction": 0.0}},
            "ETH/USDT": {3: {"target_fraction": 0.9}},
        },
    )
    session = await run_in(mode, strategy, {"ETH/USDT": eth, "BTC/USDT": btc}, store)
    assert not session.rejections
    frame = session.store.query(
        "SELECT symbol, side, status, amount FROM orders WHERE session_id = ? ORDER BY created_at, "
        "CAST(split_part(client_order_id, '-', -1) AS INT)",
        [session.session_id],
    )
    assert frame[["symbol", "side", "status"]].values.tolist() == [
        ["BTC/USDT", "buy", "FILLED"],
        ["BTC/USDT", "sell", "FILLED"],
        ["ETH/USDT", "buy", "FILLED"],
    ]
    assert frame["amount"][0] == 0.3  # 0.9 x 10,000 / 30,000
    # after the round trip the equity is a little under 10,000 (fees, spread): 0.9 of it at 2,000
    assert 4.45 < frame["amount"][2] < 4.5


# -- checks and refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"target": [1.0], "stop": [2.0]}), r"Unknown intent column\(s\) \['stop'\]"),
        (pd.DataFrame({"target": [1.0], "target_quote": [2.0]}), "exactly one of"),
        (pd.DataFrame({"limit_price": [1.0]}), "exactly one of .* none"),
        (pd.DataFrame({"target": [-1.0]}), "target must be between 0 and inf"),
        (pd.DataFrame({"target_fraction": [1.5]}), "target_fraction must be between 0 and 1"),
        (pd.DataFrame({"target": [1.0], "limit_price": [0.0]}), "limit_price must be a price above zero"),
        (pd.DataFrame({"target": [1.0], "cancel_after": [1.5]}), "cancel_after must be a whole number of bars"),
        (pd.DataFrame({"target": [1.0], "trailing_delta": [0.0]}), "trailing_delta must be a whole number of BIPS"),
        (pd.DataFrame({"target": [1.0], "time_in_force": ["GTX"]}), "time_in_force 'GTX'"),
        (pd.DataFrame({"target": ["a lot"]}), "'target' must hold numbers"),
        (pd.DataFrame({"target": [np.inf]}), "'target' holds an infinite value"),
        (pd.DataFrame({"target": [1.0], "stop_loss": [10.0], "take_profit": [9.0]}), "stop_loss must be below"),
        (pd.DataFrame({"target": [1.0], "stop_loss": [10.0], "trailing_delta": [50]}), "trailing_delta replaces"),
        ([1, 2], "not a list"),
    ],
)
def test_an_intent_frame_that_breaks_a_rule_is_refused_naming_it(frame, message):
    with pytest.raises(ConfigError, match=message):
        intent_frame(frame)


def test_intents_off_the_bars_index_are_refused_and_nan_rows_ask_nothing():
    bars = path_bars([1.0] * 3)
    with pytest.raises(ConfigError, match="not on the bars' index"):
        intent_frame(pd.DataFrame({"target": [1.0]}), bars.index)
    frame = intent_frame(pd.DataFrame({"target": [np.nan, 2.0], "time_in_force": [None, "fok"]}))
    first, second = iter_intents(frame)
    assert first is None
    assert (second.entry.value, second.entry.time_in_force, bool(second.exits)) == (2.0, "FOK", False)


async def test_brackets_take_the_fast_path_and_limit_entries_and_portfolios_the_event_path(store):
    bars = load_bars(None, "BTC/USDT", limit=400)
    assert (await replay(SmaBracket(fast=5, slow=20), bars, store=store, engine="fast")).engine == "fast"
    with pytest.raises(ConfigError, match="cancel_after"):
        await replay(RsiReversion(), bars, store=store, engine="fast")
    result = await replay(RsiReversion(), bars, store=store)
    assert result.engine == "event" and "cancel_after" in result.fallback
    with pytest.raises(ConfigError, match="portfolio"):
        await replay(MomentumRotation(), {s: load_bars(None, s, limit=300) for s in MomentumRotation().symbols},
                     store=store, engine="fast")  # fmt: skip


async def test_a_portfolio_needs_bars_of_exactly_its_symbols(store):
    with pytest.raises(ConfigError, match="give bars of exactly those symbols"):
        await replay(MomentumRotation(), {"BTC/USDT": load_bars(None, "BTC/USDT", limit=300)}, store=store)


def test_the_examples_are_registered_and_check_their_parameters():
    assert {"sma_bracket", "rsi_reversion", "momentum_rotation"} <= set(STRATEGIES)
    for name, bad in (
        ("sma_bracket", {"stop": 1.5}),
        ("rsi_reversion", {"lower": 70, "upper": 60}),
        ("rsi_reversion", {"hold": 0}),
        ("momentum_rotation", {"gross": 2}),
        ("momentum_rotation", {"symbols": ()}),
    ):
        with pytest.raises(ConfigError, match="needs"):
            make_strategy(name, **bad)


# -- the examples: live equals replay on real data --------------------------------------------------


async def test_the_bracket_example_trades_its_ocos_and_has_parity_on_real_bars(tmp_path):
    strategy = SmaBracket(fast=5, slow=20, stop=0.002, profit=0.003)
    bars = load_bars(None, "BTC/USDT", limit=1000)
    differences = await check_parity(strategy, bars, store=tmp_path / "p.duckdb")
    assert differences.empty, differences.head()
    result = await replay(strategy, bars, store=tmp_path / "r.duckdb")
    kinds = set(result.orders["type"])
    assert {"MARKET", "LIMIT_MAKER", "STOP_LOSS_LIMIT"} <= kinds
    assert (result.orders["status"] == "FILLED").sum() > 10


async def test_the_rsi_example_trades_limits_and_trailing_stops_with_parity_on_real_bars(tmp_path):
    strategy = RsiReversion(size=0.05)  # 0.05 ETH: above the 5 USDT minimum notional
    bars = load_bars(None, "ETH/USDT", limit=1000)
    differences = await check_parity(strategy, bars, symbol="ETH/USDT", store=tmp_path / "p.duckdb")
    assert differences.empty, differences.head()
    orders = (await replay(strategy, bars, symbol="ETH/USDT", store=tmp_path / "r.duckdb")).orders
    assert {"LIMIT", "STOP_LOSS_LIMIT"} <= set(orders["type"])
    assert (orders["type"] == "LIMIT").sum() > 5


async def test_the_rotation_example_rebalances_three_symbols_with_parity_on_real_bars(tmp_path):
    strategy = MomentumRotation(lookback=120, every=30, vol_window=30)
    frames = {s: load_bars(None, s, limit=700) for s in strategy.symbols}
    differences = await check_parity(strategy, frames, store=tmp_path / "p.duckdb")
    assert differences.empty, differences.head()
    result = await replay(strategy, frames, store=tmp_path / "r.duckdb")
    assert set(result.orders["symbol"]) == set(strategy.symbols)
    assert not result.session.rejections


# -- sizing, by hand-worked numbers --------------------------------------------------------------------


def test_equal_weight_splits_the_gross_among_the_selected():
    selected = pd.DataFrame({"A": [True, False, True], "B": [False, False, True], "C": [True, False, True]})
    weights = equal_weight(selected, gross=0.9)
    assert weights.values.tolist() == [[0.45, 0.0, 0.45], [0.0, 0.0, 0.0], [0.3, 0.3, 0.3]]


def test_volatility_target_sizes_inversely_to_volatility_and_scales_to_the_gross():
    # log returns +-1% and +-2%: over 4 bars the sample std is 2r/sqrt(3)
    ups = np.exp(np.cumsum([0.0, 0.01, -0.01, 0.01, -0.01]))
    wide = np.exp(np.cumsum([0.0, 0.02, -0.02, 0.02, -0.02]))
    closes = pd.DataFrame({"A": 100 * ups, "B": 100 * wide})
    free = volatility_target(closes, target=0.005, window=4)
    assert free.iloc[:4].isna().all().all()
    assert free.iloc[4].tolist() == pytest.approx([0.005 * 3**0.5 / 0.02, 0.005 * 3**0.5 / 0.04])  # 0.433, 0.2165
    capped = volatility_target(closes, target=0.005, window=4, gross=0.5)
    assert capped.iloc[4].tolist() == pytest.approx([1 / 3, 1 / 6])  # 2:1, adding up to 0.5
    only_b = volatility_target(closes, selected=pd.DataFrame({"A": False, "B": True}, index=closes.index),
                               target=0.005, window=4)  # fmt: skip
    assert only_b.iloc[4].tolist() == pytest.approx([0.0, 0.2165063509])


def test_fixed_fraction_at_risk_and_units_round_down_to_each_symbols_step(rules):
    btc = rules["BTC/USDT"]
    assert at_risk(10_000, 0.01, 50_000, 49_000, btc) == Decimal("0.1")  # 100 at risk over a 1,000 fall
    assert at_risk(10_000, 0.01, 50_000, 49_900, btc) == Decimal("0.2")  # 1 BTC at risk, capped by the cash
    assert at_risk(10_000, 0.01, 30_000, 29_700, btc) == Decimal("0.33333")  # 0.333..., down to the step
    with pytest.raises(ValueError, match="stop < entry"):
        at_risk(10_000, 0.01, 30_000, 31_000, btc)
    fractions = pd.DataFrame({"BTC/USDT": [0.5, np.nan], "SOL/USDT": [0.25, 0.1]})
    closes = pd.DataFrame({"BTC/USDT": [30_000.0, 30_000.0], "SOL/USDT": [17.0, 17.0]})
    units = to_units(fractions, 10_000, closes, rules)
    step = float(rules["SOL/USDT"].step_size())
    assert units["BTC/USDT"].tolist()[0] == 0.16666 and np.isnan(units["BTC/USDT"][1])
    assert units["SOL/USDT"].tolist() == [np.floor(2500 / 17 / step) * step, np.floor(1000 / 17 / step) * step]


# -- risk checks and the kill switch see every intent order -------------------------------------------


async def test_intent_orders_pass_the_risk_checks_and_the_kill_switch_cancels_the_exits(store):
    bars = path_bars([50_000] * 12)
    script = {1: {"target": 0.5, "stop_loss": 49_000}, 3: {"target": 0.01, "stop_loss": 49_000}}
    rules = load_rules(["BTC/USDT"])
    session = TradingSession(
        PaperExecutor(rules, {"USDT": 10_000}),
        store,
        rules=rules,
        strategy=Scripted(bars, script),
        risk=RiskLimits(max_order_notional=Decimal(1_000)),
    )
    for i in range(6):
        await session.on_bar("BTC/USDT", bars.iloc[i])
    # 0.5 BTC (25,000 USDT) is over the 1,000 limit: refused and audited; 0.01 BTC goes, then its stop
    assert [e.rule for e in session.rejections] == ["max_order_notional"]
    assert [o[:4] for o in orders_of(session)] == [
        (3, "buy", "MARKET", "FILLED"),
        (3, "sell", "STOP_LOSS_LIMIT", "NEW"),
    ]
    store.flush()
    assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'risk.rejected'")[0][0] == 1
    await session.emergency_stop("test")
    for i in range(6, 12):
        await session.on_bar("BTC/USDT", bars.iloc[i])
    assert [o[:4] for o in orders_of(session)][-1] == (3, "sell", "STOP_LOSS_LIMIT", "CANCELED")
    assert len(orders_of(session)) == 2  # the kill switch refuses every new protective order
    await session.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_an_exit_reached_already_sells_at_once(mode, store):
    bars = path_bars([50_000] * 4)
    session = await run_in(mode, Scripted(bars, {1: {"target": 0.01, "stop_loss": 50_100}}), bars, store)
    assert [o[:4] for o in orders_of(session)] == [(1, "buy", "MARKET", "FILLED"), (1, "sell", "MARKET", "FILLED")]
    assert position(session) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_while_a_limit_sale_rests_the_stop_protects_only_what_it_does_not_sell(mode, store):
    bars = path_bars([50_000] * 5 + [50_600] * 3)
    script = {
        1: {"target": 0.02, "stop_loss": 49_000},
        3: {"target": 0.01, "limit_price": 50_500, "stop_loss": 49_000},
    }
    session = await run_in(mode, Scripted(bars, script), bars, store)
    assert [o[:5] for o in orders_of(session)] == [
        (1, "buy", "MARKET", "FILLED", 0.02),
        (1, "sell", "STOP_LOSS_LIMIT", "CANCELED", 0.01998),  # canceled: the sale needs the base it holds
        (3, "sell", "LIMIT", "FILLED", 0.00998),  # down to the 0.01 target from 0.01998 held
        (3, "sell", "STOP_LOSS_LIMIT", "NEW", 0.01),  # what the sale leaves
    ]


async def test_a_portfolio_refuses_a_session_without_its_symbols(store):
    rules = load_rules(["BTC/USDT"])
    session = TradingSession(PaperExecutor(rules, {"USDT": 1_000}), store, rules=rules, strategy=MomentumRotation())
    with pytest.raises(ConfigError, match="the session has no"):
        await session.on_bar("BTC/USDT", path_bars([30_000.0]).iloc[0])


async def test_a_halted_session_runs_no_intents(store):
    bars = path_bars([50_000] * 5)
    rules = load_rules(["BTC/USDT"])
    session = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), store, rules=rules,
                             strategy=Scripted(bars, {1: {"target": 0.01}}))  # fmt: skip
    session.kill_switch.trip("test")
    await session.run({"BTC/USDT": bars}, progress=False)
    assert orders_of(session) == [] and not session._books


def test_the_rotation_sizes_a_budget_in_quote_as_it_sizes_a_fraction_of_equity():
    frames = {s: load_bars(None, s, limit=400) for s in MomentumRotation().symbols}
    fractions = MomentumRotation(lookback=120, every=30)(frames)
    quotes = MomentumRotation(lookback=120, every=30, budget=2_000)(frames)
    for symbol in fractions:
        expected = fractions[symbol]["target_fraction"] * 2_000
        pd.testing.assert_series_equal(quotes[symbol]["target_quote"], expected, check_names=False)
    assert sum(f["target_fraction"].gt(0).sum() for f in fractions.values()) > 0


@pytest.mark.parametrize(
    ("strategy", "symbols"),
    [
        (SmaBracket(fast=5, slow=20, stop=0.002, profit=0.003), ("BTC/USDT",)),
        (RsiReversion(size=0.05), ("ETH/USDT",)),
        (MomentumRotation(lookback=120, every=30, vol_window=30), MomentumRotation().symbols),
    ],
)
async def test_the_replay_steps_only_the_bars_that_matter_and_places_what_every_bar_would(strategy, symbols, tmp_path):
    frames = {s: load_bars(None, s, limit=3000) for s in symbols}
    sparse = await replay(strategy, frames, store=tmp_path / "r.duckdb")
    rules = load_rules(list(symbols))
    every = TradingSession(PaperExecutor(rules, {"USDT": 10_000}), sparse.store, rules=rules, strategy=strategy)
    await every.run(frames, progress=False, skip_idle=False)
    columns = "symbol, side, type, status, amount, price, stop_price, signal_time, updated_at, filled"

    def rows(session_id: str) -> list:
        query = f"SELECT {columns} FROM orders WHERE session_id = ? ORDER BY created_at, client_order_id"
        return sparse.store.query(query, [session_id]).fillna(-1).values.tolist()

    assert len(rows(sparse.session_id)) > 20
    assert rows(sparse.session_id) == rows(every.session_id)


class CountingPaper(PaperExecutor):
    """The paper executor, counting the prices fed to it and the bars found quiet while orders rest."""

    fed = quiet = 0

    def update_price(self, symbol, price, timestamp):
        self.fed += 1
        super().update_price(symbol, price, timestamp)

    def untouched(self, symbol, low, high):
        quiet = super().untouched(symbol, low, high)
        self.quiet += quiet
        return quiet


@pytest.mark.parametrize("stop", [0.004, 0.01])
async def test_a_bracket_skips_the_bars_its_resting_exits_do_not_reach_and_trades_as_every_bar(stop, tmp_path):
    strategy = SmaBracket(fast=10, slow=50, size=0.001, stop=stop, profit=2 * stop)
    frames = {"BTC/USDT": load_bars(None, "BTC/USDT", limit=20_000)}
    rules = load_rules(["BTC/USDT"])
    sparse = TradingSession(CountingPaper(rules, {"USDT": 10_000}), Store(tmp_path / "r.duckdb"), rules=rules,
                            strategy=strategy, risk=RISK)  # fmt: skip
    every = TradingSession(CountingPaper(rules, {"USDT": 10_000}), sparse.store, rules=rules, strategy=strategy,
                           risk=RISK)  # fmt: skip
    await sparse.run(frames, progress=False, skip_idle=True)
    await every.run(frames, progress=False, skip_idle=False)
    orders = "symbol, side, type, status, amount, price, stop_price, signal_time, updated_at, filled, cost"
    fills = "symbol, side, price, amount, fee, fee_currency, timestamp, is_maker"

    def rows(table: str, columns: str, session_id: str) -> list:
        query = f"SELECT {columns} FROM {table} WHERE session_id = ? ORDER BY {columns}"
        return sparse.store.query(query, [session_id]).fillna(-1).values.tolist()

    assert len(rows("orders", orders, sparse.session_id)) > 100
    assert sparse.executor.quiet > 100 and sparse.executor.fed * 4 < every.executor.fed  # skipped while an OCO rested
    for table, columns in (("orders", orders), ("fills", fills)):
        assert rows(table, columns, sparse.session_id) == rows(table, columns, every.session_id)
    assert sparse.executor.engine.balances() == every.executor.engine.balances()
    sparse.store.close()


class NoLists(PaperExecutor):
    """A paper venue that trades no order lists (as an executor that has not adopted them)."""

    create_order_list = None  # not an OrderListExecutor


async def test_without_order_lists_a_bracket_keeps_its_stop_loss_and_says_the_take_profit_is_not_placed(store):
    bars = path_bars([50_000] * 3 + [48_900] * 3)
    strategy = Scripted(bars, {1: {"target": 0.01, "stop_loss": 49_000, "take_profit": 51_000}})
    rules = load_rules(["BTC/USDT"])
    session = TradingSession(NoLists(rules, {"USDT": 10_000}), store, rules=rules, strategy=strategy, risk=RISK)
    with pytest.warns(UserWarning, match="stop-loss is placed, not its take-profit"):
        await session.run({"BTC/USDT": bars}, progress=False)
    assert [o[1:4] for o in orders_of(session)] == [
        ("buy", "MARKET", "FILLED"),
        ("sell", "STOP_LOSS_LIMIT", "FILLED"),  # the stop still protects the position, and sells it
    ]
    audit = store.query("SELECT detail FROM audit_log WHERE session_id = ? AND kind = 'intent.unsupported'",
                        [session.session_id])  # fmt: skip
    assert len(audit) == 1 and "take-profit" in audit["detail"][0]


@pytest.mark.parametrize("mode", MODES)
async def test_a_protective_oco_the_risk_checks_refuse_is_counted_and_warned_not_silent(mode, store, caplog):
    bars = path_bars([50_000] * 6)
    script = {1: {"target": 0.01, "stop_loss": 40_000, "take_profit": 60_000}}  # 20% away: past the 5% band
    session = await run_in(mode, Scripted(bars, script), bars, store)
    assert [o[1:4] for o in orders_of(session)][0] == ("buy", "MARKET", "FILLED")
    assert not session._open  # unprotected ...
    dropped = session.dropped()
    assert dropped.to_dict("records") == [{"symbol": "BTC/USDT", "reason": "price_band_pct", "orders": 1}]
    assert int(session.summary()["dropped"].iloc[0]) == 1  # ... and the summary says so
    assert "price_band_pct" in caplog.text
