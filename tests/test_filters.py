from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.errors import FilterError, InvalidOrder, UnknownSymbol
from workbench.filters import SymbolRules, check_order, check_order_list, rules_for
from workbench.model import OrderRequest

D = Decimal


def limit(amount, price, side="buy", **kw):
    return OrderRequest("BTC/USDT", side, "LIMIT", amount=amount, price=price, time_in_force="GTC", **kw)


def market(amount=None, quote=None, side="buy"):
    return OrderRequest("BTC/USDT", side, "MARKET", amount=amount, quote_amount=quote)


@pytest.fixture(scope="module")
def btc(rules):
    return rules["BTC/USDT"]


def failure(request, rules, avg=D(50_000), open_orders=0):
    with pytest.raises(FilterError) as e:
        check_order(request, rules, avg_price=avg, open_orders=open_orders)
    assert e.value.code == -1013
    assert e.value.msg == f"Filter failure: {e.value.rule}"
    return e.value


def test_exchange_info_round_trips(btc):
    info = btc.to_exchange_info()
    assert info["symbol"] == "BTCUSDT" and info["baseAsset"] == "BTC" and info["quoteAsset"] == "USDT"
    assert SymbolRules.from_exchange_info(info) == btc
    assert btc.filter("NO_SUCH_FILTER") is None
    assert btc.filter("ICEBERG_PARTS") == {"limit": 10}


def test_valid_orders_pass(btc):
    check_order(limit("0.01", "50000.01"), btc, avg_price=D(50_000))
    check_order(market("0.001"), btc, avg_price=D(50_000))
    check_order(market(quote="10"), btc, avg_price=D(50_000))


@pytest.mark.parametrize(
    "price, rule_text",
    [
        ("0.001", "below the minimum price 0.01"),
        ("2000000", "above the maximum price"),
        ("50000.005", "tick size 0.01; try 50000 or 50000.01"),
    ],
)
def test_price_filter(btc, price, rule_text):
    e = failure(limit("0.01", price), btc, avg=D(price))
    assert e.rule == "PRICE_FILTER" and e.field == "price" and rule_text in str(e)


def test_price_filter_checks_stop_price(btc):
    request = OrderRequest(
        "BTC/USDT", "sell", "STOP_LOSS_LIMIT", amount="0.01", price="49000", stop_price="49000.001", time_in_force="GTC"
    )
    e = failure(request, btc)
    assert e.field == "stop_price"


def test_percent_price_by_side(btc):
    e = failure(limit("0.0001", "250001"), btc)
    assert e.rule == "PERCENT_PRICE_BY_SIDE" and "0.2x..5x" in str(e)
    e = failure(limit("0.01", "9999", side="sell"), btc)
    assert e.rule == "PERCENT_PRICE_BY_SIDE"
    check_order(limit("0.01", "250000"), btc, avg_price=D(50_000))  # exactly at the band passes


@pytest.mark.parametrize(
    "amount, text",
    [
        ("0.000001", "below the minimum quantity 0.00001"),
        ("9001", "above the maximum quantity 9000"),
        ("0.000015", "step size 0.00001; try 0.00001"),
    ],
)
def test_lot_size(btc, amount, text):
    e = failure(limit(amount, "50000"), btc)
    assert e.rule == "LOT_SIZE" and e.field == "amount" and text in str(e)


def test_market_lot_size_applies_to_market_orders_only(btc):
    e = failure(market("75"), btc)
    assert e.rule == "MARKET_LOT_SIZE" and "above the maximum quantity 74.38" in str(e)
    check_order(limit("75", "50000"), btc, avg_price=D(50_000))  # LOT_SIZE allows 75 on a limit order


def test_notional(btc):
    e = failure(limit("0.0001", "40000"), btc, avg=D(40_000))
    assert e.rule == "NOTIONAL" and "notional (amount x price = 0.0001 x 40000) 4 is below the minimum 5" in str(e)
    e = failure(market(quote="4.99"), btc)
    assert e.rule == "NOTIONAL"
    e = failure(market("0.00009"), btc)  # 4.5 USDT at the average price
    assert e.rule == "NOTIONAL"


def test_notional_maximum_and_market_flags():
    rules = make_rules(
        {
            "filterType": "NOTIONAL",
            "minNotional": "5",
            "applyMinToMarket": False,
            "maxNotional": "100",
            "applyMaxToMarket": True,
            "avgPriceMins": 5,
        }
    )
    check_order(OrderRequest("X/Y", "buy", "MARKET", quote_amount="1"), rules, avg_price=D(1))  # min not applied
    e = failure(OrderRequest("X/Y", "buy", "MARKET", quote_amount="101"), rules, avg=D(1))
    assert "above the maximum 100" in str(e)
    e = failure(OrderRequest("X/Y", "buy", "LIMIT", amount="2", price="1", time_in_force="GTC"), rules, avg=D(1))
    assert "below the minimum 5" in str(e)


def test_legacy_min_notional():
    rules = make_rules({"filterType": "MIN_NOTIONAL", "minNotional": "10", "applyToMarket": False, "avgPriceMins": 5})
    check_order(OrderRequest("X/Y", "buy", "MARKET", amount="1"), rules, avg_price=D(1))
    e = failure(OrderRequest("X/Y", "buy", "LIMIT", amount="1", price="1", time_in_force="GTC"), rules, avg=D(1))
    assert e.rule == "MIN_NOTIONAL"


def test_max_num_orders(btc):
    check_order(limit("0.01", "50000"), btc, avg_price=D(50_000), open_orders=199)
    e = failure(limit("0.01", "50000"), btc, open_orders=200)
    assert e.rule == "MAX_NUM_ORDERS" and "200 orders are already open" in str(e)


def test_precision_over_asset_maximum(btc):
    with pytest.raises(InvalidOrder) as e:
        check_order(limit("0.000000001", "50000"), btc, avg_price=D(50_000))
    assert (e.value.code, e.value.msg) == (-1111, "Precision is over the maximum defined for this asset.")


def test_rules_without_filters_accept_anything():
    rules = make_rules()
    check_order(
        OrderRequest("X/Y", "buy", "LIMIT", amount="0.123", price="7.77", time_in_force="GTC"), rules, avg_price=D(0)
    )
    assert rules.tick_size == 0 and rules.step_size() == 0 and rules.round_price(D("1.234")) == D("1.234")


def test_rounding_helpers(btc):
    assert btc.round_price(D("50000.005")) == D("50000.01")
    assert btc.round_amount(D("0.123456789")) == D("0.12345")
    assert btc.step_size(market=True) == D("0.00001")  # MARKET_LOT_SIZE has step 0: LOT_SIZE's applies


def test_unknown_symbol(rules):
    with pytest.raises(UnknownSymbol) as e:
        rules_for("DOGE/EUR", rules)
    assert (e.value.code, e.value.msg) == (-1121, "Invalid symbol.") and "BTC/USDT" in str(e.value)
    with pytest.raises(UnknownSymbol, match="listed: none"):
        rules_for("DOGE/EUR", {})


def make_rules(*filters):
    return SymbolRules("X/Y", "XY", "X", "Y", tuple(filters))


prices = st.decimals(min_value=D("0.001"), max_value=D("300000"), places=3)
amounts = st.decimals(min_value=D("0.000001"), max_value=D("20"), places=6)


@given(amount=amounts, price=prices, side=st.sampled_from(["buy", "sell"]))
def test_no_order_that_violates_a_filter_is_accepted(btc, amount, price, side):
    """Property: an order passes check_order exactly when every filter rule holds."""
    avg = D(50_000)
    request = limit(amount, price, side=side)
    ok = (
        price >= D("0.01")
        and (price - D("0.01")) % D("0.01") == 0
        and amount >= D("0.00001")
        and amount <= 9000
        and (amount - D("0.00001")) % D("0.00001") == 0
        and amount * price >= 5
        and D("10000") <= price <= D("250000")
    )
    try:
        check_order(request, btc, avg_price=avg)
        accepted = True
    except FilterError:
        accepted = False
    assert accepted == ok


def test_market_step_size_and_legacy_min_notional_that_passes():
    rules = make_rules(
        {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "100", "stepSize": "1"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": "5"},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10", "applyToMarket": True, "avgPriceMins": 5},
    )
    assert rules.step_size(market=True) == 5 and rules.step_size() == 1
    check_order(OrderRequest("X/Y", "buy", "MARKET", amount="10"), rules, avg_price=D(1))


def stop(side="sell", type_="STOP_LOSS_LIMIT", delta=100, **kw):
    return OrderRequest(
        "BTC/USDT", side, type_, amount="0.01", price="50000", time_in_force="GTC", trailing_delta=delta, **kw
    )


def test_iceberg_parts(btc):
    check_order(limit("1", "50000", iceberg_amount="0.1"), btc, avg_price=D(50_000))  # 10 parts: the limit
    e = failure(limit("1", "50000", iceberg_amount="0.09"), btc)
    assert e.rule == "ICEBERG_PARTS" and "makes 12 parts" in str(e) and "at least 0.1" in str(e)


TRAILS = [
    ("buy", "STOP_LOSS_LIMIT", "Above"),
    ("sell", "STOP_LOSS_LIMIT", "Below"),
    ("sell", "TAKE_PROFIT_LIMIT", "Above"),
    ("buy", "TAKE_PROFIT_LIMIT", "Below"),
]


@pytest.mark.parametrize("side, type_, where", TRAILS)
def test_trailing_delta_uses_the_above_or_below_range_by_side_and_type(btc, side, type_, where):
    filters = [f for f in btc.filters if f["filterType"] != "TRAILING_DELTA"]
    ranges = {"minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10,
              "maxTrailingBelowDelta": 2000}  # fmt: skip
    ranges[f"maxTrailing{where}Delta"] = 500
    rules = SymbolRules(btc.symbol, btc.id, btc.base, btc.quote, (*filters, {"filterType": "TRAILING_DELTA", **ranges}))
    check_order(stop(side, type_, delta=500), rules, avg_price=D(50_000))
    other = "Below" if where == "Above" else "Above"
    assert ranges[f"maxTrailing{other}Delta"] == 2000
    e = failure(stop(side, type_, delta=501), rules)
    assert e.rule == "TRAILING_DELTA" and e.field == "trailing_delta" and "10..500" in str(e)
    assert failure(stop(side, type_, delta=9), rules).rule == "TRAILING_DELTA"


def test_algo_orders_and_order_lists_are_counted(btc):
    check_order(stop(), btc, avg_price=D(50_000), open_orders=10, open_algo_orders=4)
    with pytest.raises(FilterError) as e:
        check_order(stop(), btc, avg_price=D(50_000), open_orders=10, open_algo_orders=5)
    assert (e.value.code, e.value.msg) == (-1013, "Filter failure: MAX_NUM_ALGO_ORDERS")
    assert "5 stop orders are already open" in str(e.value)
    check_order(limit("0.01", "50000"), btc, avg_price=D(50_000), open_algo_orders=5)  # not an algo order
    check_order_list(btc, 100)  # no MAX_NUM_ORDER_LISTS filter
    listed = SymbolRules(btc.symbol, btc.id, btc.base, btc.quote,
                         (*btc.filters, {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20}))  # fmt: skip
    check_order_list(listed, 19)
    with pytest.raises(FilterError) as e:
        check_order_list(listed, 20)
    assert e.value.msg == "Filter failure: MAX_NUM_ORDER_LISTS"


def test_exchange_info_says_what_the_venue_supports(btc):
    info = btc.to_exchange_info()
    assert info["ocoAllowed"] and info["otoAllowed"] and info["icebergAllowed"] and info["allowTrailingStop"]
    assert (
        info["defaultSelfTradePreventionMode"] == "EXPIRE_MAKER"
        and "DECREMENT" in info["allowedSelfTradePreventionModes"]
    )
