"""Order intents against the local Binance exchange through ccxt (REST and the user data stream):
a testnet session fed bars at the venue's price places, protects, re-places and cancels what the
intents ask, and the exchange's own records say so."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from tests.polling import until
from tests.test_binance_e2e import RISK, SYMBOLS, executor_for, price_of
from workbench.data import load_rules
from workbench.session import TradingSession

T0 = pd.Timestamp("2024-01-01", tz="UTC")


class Script:
    """Intents by bar number (bars are numbered by their open minute since T0)."""

    warmup = 0

    def __init__(self, rows: dict[int, dict]) -> None:
        self.rows = pd.DataFrame.from_dict({T0 + pd.Timedelta(minutes=i): r for i, r in rows.items()}, orient="index")

    def __call__(self, bars: pd.DataFrame) -> pd.DataFrame:
        return self.rows.reindex(bars.index)


def session_with(exchange, store, rows: dict[int, dict]) -> TradingSession:
    return TradingSession(
        executor_for(exchange), store, rules=load_rules(SYMBOLS), risk=RISK, strategy=Script(rows), session_id="intents"
    )


async def bar(session: TradingSession, exchange, i: int, price: Decimal | None = None, symbol: str = "BTC/USDT"):
    """The venue trades at ``price`` (if given); then bar ``i`` closes at the venue's price."""
    if price is not None:
        exchange.set_price(symbol, price)
    p = float(price_of(exchange, symbol))
    row = pd.Series({"open": p, "high": p, "low": p, "close": p, "volume": 1.0}, name=T0 + pd.Timedelta(minutes=i))
    return await session.on_bar(symbol, row)


async def enter(session: TradingSession, exchange) -> None:
    """Bar 1 (the entry), its fill on the session's books, then bar 2 (the exits are known to be placed)."""
    await bar(session, exchange, 1)
    await until(lambda: held(session) > 0, what="the entry fills")
    await bar(session, exchange, 2)


def venue_orders(exchange, symbol: str = "BTC/USDT") -> list[tuple[str, str, str]]:
    """(side, type, status) of the exchange's orders of ``symbol``, in the order they were placed."""
    orders = sorted(exchange.venue.engine.orders.values(), key=lambda o: int(o.id))
    return [(o.side.value, o.type.value, o.status.value) for o in orders if o.symbol == symbol]


def held(session: TradingSession, symbol: str = "BTC/USDT") -> Decimal:
    return session.state.positions.get(symbol, Decimal(0))


async def test_a_stop_loss_goes_on_the_exchange_once_the_entry_fills_and_sells_when_touched(exchange, store):
    p = price_of(exchange)
    session = session_with(exchange, store, {1: {"target": 0.01, "stop_loss": float(p * Decimal("0.97"))}})
    await bar(session, exchange, 0)
    await bar(session, exchange, 1)  # the entry: a MARKET buy; its fill arrives on the user data stream
    await until(lambda: held(session) > 0, what="the entry's fill reaches the session")
    await bar(session, exchange, 2)  # the position is known: the stop goes on the exchange
    assert venue_orders(exchange) == [("buy", "MARKET", "FILLED"), ("sell", "STOP_LOSS_LIMIT", "NEW")]
    stop = next(o for o in exchange.venue.engine.orders.values() if o.type.value == "STOP_LOSS_LIMIT")
    assert stop.amount == held(session) and stop.stop_price == (p * Decimal("0.97")).quantize(Decimal("0.01"))
    exchange.set_price("BTC/USDT", p * Decimal("0.9675"))  # below the stop, above its limit (0.5% under it)
    await until(lambda: held(session) == 0, what="the stop's fill reaches the session")
    await bar(session, exchange, 3)
    assert venue_orders(exchange)[-1] == ("sell", "STOP_LOSS_LIMIT", "FILLED") and not session._open
    await session.stop()
    await session.executor.close()


async def test_a_limit_entry_rests_on_the_exchange_and_is_canceled_after_its_bars(exchange, store):
    p = price_of(exchange)
    limit = float(p * Decimal("0.99"))
    session = session_with(exchange, store, {1: {"target_quote": 500.0, "limit_price": limit, "cancel_after": 2}})
    await bar(session, exchange, 0)
    entry = await bar(session, exchange, 1)
    assert entry.type.value == "LIMIT" and entry.price == Decimal(str(limit)).quantize(Decimal("0.01"), "ROUND_DOWN")
    assert entry.amount == (Decimal(500) / p).quantize(Decimal("0.00001"), "ROUND_DOWN")  # quote at the bar's price
    await bar(session, exchange, 2)
    assert venue_orders(exchange) == [("buy", "LIMIT", "NEW")]
    await bar(session, exchange, 3)  # its second bar: canceled
    await until(lambda: venue_orders(exchange) == [("buy", "LIMIT", "CANCELED")], what="the entry is canceled")
    await session.stop()
    await session.executor.close()


async def test_a_take_profit_rests_as_a_limit_sell_and_fills_at_its_price(exchange, store):
    p = price_of(exchange)
    session = session_with(exchange, store, {1: {"target": 0.01, "take_profit": float(p * Decimal("1.01"))}})
    await enter(session, exchange)
    assert venue_orders(exchange) == [("buy", "MARKET", "FILLED"), ("sell", "LIMIT", "NEW")]
    exchange.set_price("BTC/USDT", p * Decimal("1.02"))
    await until(lambda: held(session) == 0, what="the take-profit fills")
    assert venue_orders(exchange)[-1] == ("sell", "LIMIT", "FILLED")
    await session.stop()
    await session.executor.close()


async def test_a_trailing_stop_carries_binances_trailing_delta_and_triggers_on_the_retrace(exchange, store):
    p = price_of(exchange)
    session = session_with(exchange, store, {1: {"target": 0.01, "trailing_delta": 150}})
    await enter(session, exchange)
    trailing = next(o for o in exchange.venue.engine.orders.values() if o.type.value == "STOP_LOSS_LIMIT")
    assert trailing.trailing_delta == 150 and trailing.stop_price is None  # 1.5%, tracking from placement
    exchange.set_price("BTC/USDT", p * Decimal("1.03"))  # a new high: the stop follows it
    exchange.set_price("BTC/USDT", p * Decimal("1.02"))  # a 0.97% retrace: not yet
    assert trailing.is_open
    exchange.set_price("BTC/USDT", p * Decimal("1.01"))  # 1.94% below the high: triggers and sells
    await until(lambda: held(session) == 0, what="the trailing stop's fill reaches the session")
    assert venue_orders(exchange)[-1] == ("sell", "STOP_LOSS_LIMIT", "FILLED")
    await session.stop()
    await session.executor.close()


async def test_a_bracket_is_one_oco_on_the_exchange_and_flat_cancels_the_list(exchange, store):
    p = price_of(exchange)
    stop, profit = float(p * Decimal("0.97")), float(p * Decimal("1.03"))
    session = session_with(
        exchange, store, {1: {"target": 0.01, "stop_loss": stop, "take_profit": profit}, 4: {"target": 0.0}}
    )
    await enter(session, exchange)
    assert venue_orders(exchange) == [
        ("buy", "MARKET", "FILLED"),
        ("sell", "LIMIT_MAKER", "NEW"),
        ("sell", "STOP_LOSS_LIMIT", "NEW"),
    ]
    legs = [o for o in exchange.venue.engine.orders.values() if o.type.value != "MARKET"]
    assert len({o.order_list_id for o in legs}) == 1 and legs[0].order_list_id != -1  # one list on the venue
    await bar(session, exchange, 3)
    await bar(session, exchange, 4)  # flat: the list is canceled before the sale
    await until(lambda: held(session) == 0, what="the exit fills")
    assert venue_orders(exchange) == [
        ("buy", "MARKET", "FILLED"),
        ("sell", "LIMIT_MAKER", "CANCELED"),
        ("sell", "STOP_LOSS_LIMIT", "CANCELED"),
        ("sell", "MARKET", "FILLED"),
    ]
    store.flush()
    assert store.sql("SELECT list_order_status FROM order_lists WHERE session_id = 'intents'") == [("ALL_DONE",)]
    await session.stop()
    await session.executor.close()


async def test_a_restarted_session_finds_its_stop_on_the_exchange_and_replaces_it_once(exchange, store):
    p = price_of(exchange)
    rows = {i: {"target": 0.01, "stop_loss": float(p * Decimal("0.97"))} for i in range(1, 6)}  # held every bar
    first = session_with(exchange, store, rows)
    await enter(first, exchange)
    await first.stop()  # the process ends; its stop stays on the exchange
    await first.executor.close()
    again = session_with(exchange, store, rows)  # the same session id and store: it resumes
    await again.start()
    assert held(again) == held(first) > 0  # its position, from its fills
    await bar(again, exchange, 3)
    # the old stop is canceled (it holds the base) and one new stop protects the position
    assert venue_orders(exchange) == [
        ("buy", "MARKET", "FILLED"),
        ("sell", "STOP_LOSS_LIMIT", "CANCELED"),
        ("sell", "STOP_LOSS_LIMIT", "NEW"),
    ]
    await bar(again, exchange, 4)
    assert len(venue_orders(exchange)) == 3  # and it stays
    await again.stop()
    await again.executor.close()
