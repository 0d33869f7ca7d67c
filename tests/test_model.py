from decimal import Decimal

import pytest

from workbench.errors import InvalidOrder
from workbench.model import (
    Balance,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    split_symbol,
    to_decimal,
)


def test_request_parses_strings_and_enums_case_insensitively():
    r = OrderRequest("BTC/USDT", "BUY", "limit", amount="0.5", price=100.25, time_in_force="gtc")
    assert r.side is Side.BUY and r.type is OrderType.LIMIT and r.time_in_force is TimeInForce.GTC
    assert r.amount == Decimal("0.5") and r.price == Decimal("100.25")


@pytest.mark.parametrize(
    "kwargs, code, msg, field",
    [
        (
            dict(type="LIMIT", amount=1, time_in_force="GTC"),
            -1102,
            "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
            "price",
        ),
        (
            dict(type="LIMIT", amount=1, price=1),
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
            "time_in_force",
        ),
        (dict(type="MARKET", amount=1, price=1), -1106, "Parameter 'price' sent when not required.", "price"),
        (
            dict(type="MARKET", amount=1, time_in_force="GTC"),
            -1106,
            "Parameter 'timeInForce' sent when not required.",
            "time_in_force",
        ),
        (
            dict(type="LIMIT_MAKER", amount=1, price=1, time_in_force="GTC"),
            -1106,
            "Parameter 'timeInForce' sent when not required.",
            "time_in_force",
        ),
        (
            dict(type="STOP_LOSS_LIMIT", amount=1, price=1, time_in_force="GTC"),
            -1102,
            "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.",
            "stop_price",
        ),
        (
            dict(type="LIMIT", amount=1, price=1, time_in_force="GTC", stop_price=2),
            -1106,
            "Parameter 'stopPrice' sent when not required.",
            "stop_price",
        ),
        (
            dict(type="MARKET"),
            -1102,
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
            "amount",
        ),
        (
            dict(type="MARKET", amount=1, quote_amount=10),
            -1102,
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
            "amount",
        ),
        (
            dict(type="LIMIT", quote_amount=10, price=1, time_in_force="GTC"),
            -1106,
            "Parameter 'quoteOrderQty' sent when not required.",
            "quote_amount",
        ),
        (
            dict(type="LIMIT", price=1, time_in_force="GTC"),
            -1102,
            "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            "amount",
        ),
        (dict(type="MARKET", amount=0), -1013, "Invalid quantity.", "amount"),
        (dict(type="LIMIT", amount=1, price=0, time_in_force="GTC"), -1013, "Invalid price.", "price"),
        (
            dict(type="MARKET", amount=float("nan")),
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            "amount",
        ),
        (
            dict(type="MARKET", amount=-1),
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            "amount",
        ),
        (
            dict(type="MARKET", amount="abc"),
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            "amount",
        ),
        (
            dict(type="MARKET", amount=float("inf")),
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            "amount",
        ),
        (dict(type="OCO", amount=1), -1116, "Invalid orderType.", "type"),
        (dict(type="LIMIT", amount=1, price=1, time_in_force="GTD"), -1115, "Invalid timeInForce.", "time_in_force"),
    ],
)
def test_bad_parameters_name_the_field_and_binance_rule(kwargs, code, msg, field):
    with pytest.raises(InvalidOrder) as e:
        OrderRequest("BTC/USDT", "buy", **kwargs)
    assert (e.value.code, e.value.msg, e.value.field) == (code, msg, field)
    assert field in str(e.value)


def test_bad_side_and_symbol():
    with pytest.raises(InvalidOrder, match="side") as e:
        OrderRequest("BTC/USDT", "hold", "MARKET", amount=1)
    assert e.value.code == -1117
    with pytest.raises(InvalidOrder, match="symbol is required"):
        OrderRequest("", "buy", "MARKET", amount=1)


def test_to_decimal_keeps_none_and_float_text():
    assert to_decimal(None, "price") is None
    assert to_decimal(0.1, "price") == Decimal("0.1")


def test_status_rank_ccxt_and_finality():
    open_ = (OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)
    assert [s.rank for s in open_] == [0, 1, 2, 3] and not any(s.is_final for s in open_)
    assert all(s.rank == 4 and s.is_final for s in OrderStatus if s not in open_)
    assert OrderStatus.NEW.ccxt == "open" and OrderStatus.FILLED.ccxt == "closed"
    assert OrderStatus.CANCELED.ccxt == "canceled" and OrderStatus.EXPIRED_IN_MATCH.ccxt == "expired"
    assert OrderType.STOP_LOSS_LIMIT.is_stop and not OrderType.LIMIT.is_stop


def test_order_derived_fields_and_snapshot_independence():
    r = OrderRequest("BTC/USDT", "buy", "LIMIT", amount=2, price=10, time_in_force="GTC")
    o = Order.from_request(r, "c1", 5, id="9")
    assert o.remaining == 2 and o.average is None and o.is_open
    o.filled, o.cost = Decimal(1), Decimal(10)
    copy = o.snapshot()
    o.fees["BTC"] = Decimal(1)
    assert copy.average == 10 and copy.fees == {} and copy.remaining == 1
    quote = Order.from_request(OrderRequest("BTC/USDT", "buy", "MARKET", quote_amount=5), "c2", 5)
    assert quote.remaining is None


def test_balance_total_and_split_symbol():
    assert Balance("BTC", Decimal(1), Decimal(2)).total == 3
    assert split_symbol("BTC/USDT") == ("BTC", "USDT")
    with pytest.raises(InvalidOrder) as e:
        split_symbol("BTCUSDT")
    assert e.value.code == -1121


def stop(**kw):
    return OrderRequest("BTC/USDT", "sell", "STOP_LOSS_LIMIT", amount="1", price="100", time_in_force="GTC", **kw)


def test_trailing_stops_may_leave_out_the_stop_price_but_need_a_whole_positive_delta():
    assert stop(trailing_delta=100).stop_price is None
    with pytest.raises(InvalidOrder) as e:
        stop()
    assert e.value.code == -1102 and e.value.field == "stop_price"
    for bad in (0, -5, 1.5, True, "100"):
        with pytest.raises(InvalidOrder) as e:
            stop(trailing_delta=bad)
        assert (e.value.code, e.value.field) == (-1100, "trailing_delta")
    with pytest.raises(InvalidOrder) as e:
        OrderRequest("BTC/USDT", "buy", "LIMIT", amount="1", price="1", time_in_force="GTC", trailing_delta=100)
    assert (e.value.code, e.value.msg) == (-1106, "Parameter 'trailingDelta' sent when not required.")


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(type="LIMIT", price="1", time_in_force="IOC", iceberg_amount="0.1"), "Unsupported order combination"),
        (dict(type="MARKET", iceberg_amount="0.1"), "Unsupported order combination"),
        (dict(type="LIMIT_MAKER", price="1", iceberg_amount="1"), "IcebergQty exceeds QTY."),
    ],
)
def test_iceberg_rules(kwargs, msg):
    with pytest.raises(InvalidOrder) as e:
        OrderRequest("BTC/USDT", "buy", amount="1", **kwargs)
    assert (e.value.code, e.value.msg, e.value.field) == (-2010, msg, "iceberg_amount")
    ok = OrderRequest("BTC/USDT", "buy", "LIMIT_MAKER", amount="1", price="1", iceberg_amount="0.25")
    order = Order.from_request(ok, "c", 0)
    assert order.iceberg_amount == Decimal("0.25") and order.visible == Decimal("0.25")


def test_self_trade_prevention_defaults_to_expire_maker_and_refuses_unknown_modes():
    plain = OrderRequest("BTC/USDT", "buy", "MARKET", amount="1")
    assert plain.self_trade_prevention is SelfTradePrevention.EXPIRE_MAKER
    assert Order.from_request(plain, "c", 0).self_trade_prevention == "EXPIRE_MAKER"
    lower = OrderRequest("BTC/USDT", "buy", "MARKET", amount="1", self_trade_prevention="decrement")
    assert lower.self_trade_prevention is SelfTradePrevention.DECREMENT
    with pytest.raises(InvalidOrder) as e:
        OrderRequest("BTC/USDT", "buy", "MARKET", amount="1", self_trade_prevention="BOGUS")
    assert e.value.code == -1100 and "selfTradePreventionMode" in e.value.msg and "DECREMENT" in e.value.msg
