"""The three engines of benchmarks/replay_vs_nautilus.py, each running the same SMA cross on the same bars.

Every runner takes the bars (a DataFrame indexed by open time, prices on Binance's 0.01 tick) and the
strategy's parameters, and returns what it did: bars, seconds spent in the engine's run, orders and
fills. The strategy is the same in all three: hold ``size`` BTC while the ``fast``-bar SMA of the close
is above the ``slow``-bar one, else nothing; trade with market orders when that target changes; 0.1%
taker fee; a cash account. The first target is known on the ``slow``-th bar in all three (pandas'
rolling mean, Nautilus' and backtrader's SMA are ready there), and an order placed on a bar fills on
that bar (backtrader needs cheat-on-close for that), so the trade counts agree by construction.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd


def real_bars(n: int) -> pd.DataFrame:
    """The first ``n`` real Binance BTCUSDT 1m bars of the catalog (at most one symbol-year: 527,040 with
    ``../shared/data/binance``, 132,480 from the bundled slice alone), prices on Binance's 0.01 tick."""
    from workbench.data import load_klines

    return load_klines("BTC/USDT", limit=n)[["open", "high", "low", "close", "volume"]]


def run_workbench(bars: pd.DataFrame, fast: int, slow: int, size: float, store_path: str) -> dict[str, Any]:
    """workbench.replay: the paper executor, the matching core, the risk checks and the DuckDB store."""
    from workbench.replay import replay
    from workbench.strategy import SmaCross

    started = time.perf_counter()  # with the default risk limits, all checks on
    result = asyncio.run(replay(SmaCross(fast, slow, size), bars, store=store_path, balances={"USDT": 100_000_000}))
    seconds = time.perf_counter() - started
    counts = result.store.sql(
        "SELECT (SELECT count(*) FROM orders WHERE session_id = ?), (SELECT count(*) FROM fills WHERE session_id = ?)",
        [result.session_id, result.session_id],
    )[0]
    rejected = len(result.session.rejections)
    result.store.close()
    return {"seconds": seconds, "orders": counts[0], "fills": counts[1], "rejected": rejected}


def run_nautilus(bars: pd.DataFrame, fast: int, slow: int, size: float) -> dict[str, Any]:
    """NautilusTrader's BacktestEngine: a Binance-like BTCUSDT CurrencyPair, 1-MINUTE-LAST-EXTERNAL bars."""
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, StrategyConfig
    from nautilus_trader.indicators import SimpleMovingAverage
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.wranglers import BarDataWrangler
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    class SmaCrossConfig(StrategyConfig, frozen=True):
        instrument_id: InstrumentId
        bar_type: BarType
        trade_size: Decimal
        fast: int
        slow: int

    class SmaCross(Strategy):
        def __init__(self, config: SmaCrossConfig) -> None:
            super().__init__(config)
            self.fast = SimpleMovingAverage(config.fast)
            self.slow = SimpleMovingAverage(config.slow)
            self.target = 0
            self.fills = 0

        def on_start(self) -> None:
            instrument = self.cache.instrument(self.config.instrument_id)
            self.quantity = instrument.make_qty(self.config.trade_size)
            self.register_indicator_for_bars(self.config.bar_type, self.fast)
            self.register_indicator_for_bars(self.config.bar_type, self.slow)
            self.subscribe_bars(self.config.bar_type)

        def on_bar(self, bar: Bar) -> None:
            if not self.slow.initialized:
                return
            target = 1 if self.fast.value > self.slow.value else 0
            if target != self.target:
                self.target = target
                side = OrderSide.BUY if target else OrderSide.SELL
                self.submit_order(self.order_factory.market(self.config.instrument_id, side, self.quantity))

        def on_order_filled(self, event: Any) -> None:
            self.fills += 1

    instrument = TestInstrumentProvider.btcusdt_binance()  # Binance's BTCUSDT: 0.01 tick, 0.1% fees
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    prepared = time.perf_counter()
    # BarDataWrangler.process() needs writable arrays, which pandas 3 does not hand out: feed its
    # bar builder (the same code) with a copy. Bars are stamped at their close, as Nautilus expects.
    values = np.array(bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float), copy=True)
    stamps = (bars.index + pd.Timedelta(minutes=1)).as_unit("ns").asi8.astype(np.uint64)
    build = BarDataWrangler(bar_type, instrument)._build_bar
    data = [build(row, int(ts), int(ts)) for row, ts in zip(values, stamps, strict=True)]
    prepared = time.perf_counter() - prepared

    engine = BacktestEngine(
        BacktestEngineConfig(trader_id=TraderId("BENCH-001"), logging=LoggingConfig(bypass_logging=True))
    )
    engine.add_venue(
        venue=Venue("BINANCE"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=None,
        starting_balances=[Money(100_000_000, USDT), Money(1, BTC)],
    )
    engine.add_instrument(instrument)
    engine.add_data(data)
    strategy = SmaCross(
        SmaCrossConfig(
            instrument_id=instrument.id, bar_type=bar_type, trade_size=Decimal(str(size)), fast=fast, slow=slow
        )
    )
    engine.add_strategy(strategy)
    started = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - started
    orders = len(engine.cache.orders())
    engine.dispose()
    return {"seconds": seconds, "orders": orders, "fills": strategy.fills, "prepare_seconds": prepared}


def run_backtrader(bars: pd.DataFrame, fast: int, slow: int, size: float) -> dict[str, Any]:
    """backtrader's Cerebro: market orders filled at the signal bar's close (cheat-on-close), 0.1% commission."""
    import backtrader as bt

    class SmaCross(bt.Strategy):
        params = (("fast", fast), ("slow", slow), ("size", size))

        def __init__(self) -> None:
            self.fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
            self.slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
            self.target = 0
            self.fills = 0

        def next(self) -> None:
            target = 1 if self.fast[0] > self.slow[0] else 0
            if target != self.target:
                self.target = target
                (self.buy if target else self.sell)(size=self.p.size)

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

    frame = bars[["open", "high", "low", "close", "volume"]].copy()
    frame.index = frame.index.tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(100_000_000)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.broker.set_coc(True)
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "orders": len(cerebro.broker.orders), "fills": strategy.fills}
