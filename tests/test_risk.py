from dataclasses import replace
from decimal import Decimal

import pytest

from workbench.config import RiskLimits
from workbench.errors import FilterError, KillSwitchActive, RiskRejected, UnknownSymbol
from workbench.model import Fill, OrderRequest, Side
from workbench.risk import RiskChecks, RiskContext, RiskState, order_notional, signed_amount

from .conftest import T0

D = Decimal
CTX = RiskContext(last_price=D(50_000))


@pytest.fixture
def checks(rules):
    limits = RiskLimits(
        max_order_notional=D(10_000),
        max_position=D("0.5"),
        max_position_notional=D(20_000),
        max_open_orders=2,
        max_daily_loss=D(100),
        max_orders_per_minute=3,
        price_band_pct=D(5),
        allowed_symbols=("BTC/USDT", "ETH/USDT"),
    )
    return RiskChecks(limits, rules)


def buy(amount="0.01", price=None, side="buy", **kw):
    if price is None:
        return OrderRequest("BTC/USDT", side, "MARKET", amount=amount, **kw)
    return OrderRequest("BTC/USDT", side, "LIMIT", amount=amount, price=price, time_in_force="GTC")


def rejected(checks, request, ctx=CTX):
    with pytest.raises(RiskRejected) as e:
        checks.check(request, ctx)
    assert e.value.rule in str(e.value)
    return e.value


def test_a_good_order_passes_every_check_and_each_result_has_numbers(checks):
    results = checks.evaluate(buy(price="50000"), CTX)
    assert [r.name for r in results] == [
        "kill_switch",
        "allowed_symbols",
        "exchange_filters",
        "max_order_notional",
        "max_position",
        "max_open_orders",
        "max_daily_loss",
        "max_orders_per_minute",
        "price_band_pct",
    ]
    assert all(r.passed and r.error is None for r in results)
    assert "order notional 500.00 (limit 10000)" in results[3].detail
    checks.check(buy(price="50000"), CTX)


def test_kill_switch_blocks_everything(checks):
    with pytest.raises(KillSwitchActive):
        checks.check(buy(), replace(CTX, halted="manual stop"))


def test_allow_list(checks, rules):
    with pytest.raises(RiskRejected, match="not in the allow-list"):
        checks.check(OrderRequest("BNB/USDT", "buy", "MARKET", amount="1"), replace(CTX, last_price=D(600)))
    open_checks = RiskChecks(RiskLimits(allowed_symbols=None), rules)
    assert open_checks.evaluate(buy(), CTX)[1].detail == "no allow-list"


def test_exchange_filters_and_unknown_symbols_are_reported(checks):
    with pytest.raises(FilterError):
        checks.check(buy(amount="0.000001"), CTX)
    results = checks.evaluate(OrderRequest("DOGE/USDT", "buy", "MARKET", amount="1"), CTX)
    assert isinstance(results[2].error, UnknownSymbol) and not results[2].passed


def test_without_the_filters_the_other_checks_still_refuse_and_the_first_failure_is_raised(checks):
    off_grid = buy("0.000001")  # below one lot step: a filter refuses it
    with pytest.raises(FilterError):
        checks.check(off_grid, CTX)
    checks.check(off_grid, CTX, filters=False)  # a caller that applies the filters itself
    with pytest.raises(RiskRejected, match="max_order_notional"):
        checks.check(buy("1"), CTX, filters=False)
    with pytest.raises(KillSwitchActive):  # the first failing check, though others fail too
        checks.check(buy("1"), replace(CTX, halted="manual"), filters=False)


def test_order_notional_limit(checks):
    e = rejected(checks, buy(amount="0.3"))
    assert e.rule == "max_order_notional" and "15000.00 exceeds the limit 10000" in str(e)


def test_position_limits_only_stop_orders_that_grow_the_position(checks):
    e = rejected(checks, buy(amount="0.1"), replace(CTX, position=D("0.45")))
    assert e.rule == "max_position" and "0.55" in str(e)
    e = rejected(checks, buy(amount="0.1"), replace(CTX, position=D("0.35")))
    assert "notional" in str(e)  # 0.45 BTC = 22,500 > 20,000
    checks.check(buy(amount="0.1", side="sell"), replace(CTX, position=D("0.6")))  # reducing is fine


def test_open_orders_limit_applies_to_resting_orders(checks):
    e = rejected(checks, buy(price="50000"), replace(CTX, open_orders=2))
    assert e.rule == "max_open_orders"
    checks.check(buy(), replace(CTX, open_orders=2))  # a market order does not rest


def test_daily_loss_allows_only_reducing_orders(checks):
    ctx = replace(CTX, daily_realised_pnl=D(-100), position=D("0.1"))
    e = rejected(checks, buy(), ctx)
    assert e.rule == "max_daily_loss" and "100.00 has reached the limit 100" in str(e)
    checks.check(buy(side="sell"), ctx)


def test_order_rate(checks):
    e = rejected(checks, buy(), replace(CTX, orders_last_minute=3))
    assert e.rule == "max_orders_per_minute"


def test_price_band(checks):
    e = rejected(checks, buy(price="53000"))
    assert e.rule == "price_band_pct" and "6.00% from the last price" in str(e)
    assert checks.evaluate(buy(), CTX)[-1].detail == "no limit price to check"


def test_limits_switched_off(rules):
    checks = RiskChecks(RiskLimits(None, None, None, None, None, None, None, None), rules)
    ctx = replace(CTX, position=D(100), open_orders=1000, daily_realised_pnl=D(-1e9), orders_last_minute=1000)
    results = checks.evaluate(buy(price="50000"), ctx)
    assert all(r.passed for r in results) and results[-1].detail == "no price band"


def test_notional_and_signed_amount_helpers():
    assert order_notional(OrderRequest("BTC/USDT", "buy", "MARKET", quote_amount="25"), D(1)) == 25
    assert signed_amount(OrderRequest("BTC/USDT", "sell", "MARKET", quote_amount="100"), D(50)) == -2


def fill(side, amount, price, fee, fee_currency, ts=T0, symbol="BTC/USDT"):
    amount, price = D(amount), D(price)
    return Fill("t", "1", "c", symbol, Side(side), price, amount, amount * price, D(fee), fee_currency, False, ts)


def test_state_tracks_position_average_cost_and_realised_pnl_by_day():
    state = RiskState()
    state.record_fill(fill("buy", "1", "100", "0.001", "BTC"), "BTC")
    state.record_fill(fill("buy", "1", "200", "0.001", "BTC"), "BTC")
    assert state.positions["BTC/USDT"] == D("1.998")
    assert state.avg_cost["BTC/USDT"] == D(300) / D("1.998")
    state.record_fill(fill("sell", "1.998", "250", "0.4995", "USDT"), "BTC")
    assert state.positions["BTC/USDT"] == 0 and state.avg_cost["BTC/USDT"] == 0
    expected = (D(250) - D(300) / D("1.998")) * D("1.998") - D("0.4995")
    assert state.realised["2023-11-14"] == expected == state.realised_by_symbol["BTC/USDT"]
    state.record_order(T0)
    state.record_order(T0 + 30_000)
    ctx = state.context("BTC/USDT", D(1), T0 + 60_000, open_orders=1, open_orders_symbol=1, halted="")
    assert ctx.orders_last_minute == 1 and ctx.daily_realised_pnl == expected and ctx.position == 0


def test_a_zero_position_buy_with_all_quantity_paid_in_fees():
    state = RiskState()
    state.record_fill(fill("buy", "1", "100", "1", "BTC"), "BTC")
    assert state.positions["BTC/USDT"] == 0 and state.avg_cost["BTC/USDT"] == 0
