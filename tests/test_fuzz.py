"""Fuzzing every input surface: a clear error or a correct result; never a crash, never an order
sent after a rejection, never a half-written row."""

import asyncio
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.checks import check_id, inside
from workbench.cli import main
from workbench.config import load_config
from workbench.errors import ConfigError, MalformedMessage, WorkbenchError
from workbench.executors import PaperExecutor
from workbench.executors.binance import fill_from_ccxt, order_from_ccxt
from workbench.runs import check_parameters
from workbench.session import TradingSession
from workbench.store import Store

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.decimals(allow_nan=True, allow_infinity=True),
)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**9),
    st.text(max_size=8),
    st.sampled_from(["0.001", "0.01", "50000", "49999.99", "1e-9", "-1", "NaN", "1e400", ""]),
)


@pytest.fixture(scope="module")
def fuzz_session(rules, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb")
    session = TradingSession(PaperExecutor(rules, {"USDT": 1_000_000, "BTC": 10}), store, rules=rules)
    asyncio.run(_prime(session))
    yield session
    store.close()


async def _prime(session):
    import pandas as pd

    for symbol, price in (("BTC/USDT", 50_000.0), ("ETH/USDT", 3_000.0)):
        await session.on_bar(symbol, pd.Series({"close": price}, name=pd.Timestamp("2024-01-01", tz="UTC")))


@FUZZ
@given(
    symbol=st.sampled_from(["BTC/USDT", "ETH/USDT", "DOGE/EUR", "", "BTCUSDT"]),
    type_=st.sampled_from(["market", "limit", "LIMIT_MAKER", "stop_loss_limit", "take_profit_limit", "oco", ""]),
    side=st.sampled_from(["buy", "sell", "BUY", "hold"]),
    amount=numbers,
    price=numbers,
    stop_price=numbers,
    tif=st.sampled_from([None, "GTC", "IOC", "FOK", "GTX"]),
    quote=numbers,
)
def test_order_requests_get_a_clear_error_or_a_correct_order(
    fuzz_session, symbol, type_, side, amount, price, stop_price, tif, quote
):
    session = fuzz_session
    engine = session.executor.engine
    before_orders = len(engine.orders)
    session.store.flush()
    before_rows = session.store.sql("SELECT count(*) FROM orders")[0][0]
    before_audit = session.store.sql("SELECT count(*) FROM audit_log")[0][0]
    try:
        order = asyncio.run(
            session.create_order(
                symbol, type_, side, amount, price, stop_price=stop_price, time_in_force=tif, quote_amount=quote
            )
        )
    except WorkbenchError as e:
        assert str(e)  # a message the user can read
        session.store.flush()
        assert len(engine.orders) == before_orders  # nothing reached the venue
        statuses = session.store.sql("SELECT status FROM orders ORDER BY created_at")
        assert len(statuses) - before_rows in (0, 1)  # at most the order's record, marked rejected
        assert ("PENDING_NEW",) not in statuses and (len(statuses) == before_rows or statuses[-1] == ("REJECTED",))
        assert session.store.sql("SELECT count(*) FROM audit_log")[0][0] > before_audit
        return
    assert order.symbol == symbol and order.amount is None or order.amount > 0
    assert all(b.free >= 0 and b.locked >= 0 for b in engine.balances().values())
    asyncio.run(session.cancel_all_orders())


toml_values = st.one_of(
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.lists(st.text(max_size=8), max_size=3),
)
keys = st.sampled_from(["mode", "mainnet", "store_path", "venue_url", "symbols", "quote_balance", "colour"])
risk_keys = st.sampled_from(["max_order_notional", "max_open_orders", "price_band_pct", "allowed_symbols", "bogus"])


@FUZZ
@given(top=st.dictionaries(keys, toml_values, max_size=5), risk=st.dictionaries(risk_keys, toml_values, max_size=3))
def test_config_files_load_or_fail_clearly(tmp_path, top, risk):
    import json

    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    lines += ["[risk]"] + [f"{k} = {json.dumps(v)}" for k, v in risk.items()]
    text = "\n".join(lines)
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    try:
        config = load_config(path)
    except ConfigError as e:
        assert str(e)
        return
    assert config.mode.value in ("paper", "testnet", "mainnet")
    assert config.risk.max_order_notional is None or config.risk.max_order_notional >= 0


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["mode", "symbols", "bars", "speed", "api_secret", "mainnet", "x"]), anything, max_size=4
    )
)
def test_papermill_parameters_are_checked(params):
    try:
        checked = check_parameters(params, {})
    except ConfigError as e:
        assert str(e)
        return
    assert checked["mode"] != "mainnet" and checked["bars"] > 0 and checked["symbols"]


tokens = st.sampled_from(
    [
        "paper",
        "run",
        "sweep",
        "kill-switch",
        "status",
        "trip",
        "--bars",
        "-1",
        "0",
        "abc",
        "--mode",
        "mainnet",
        "--param",
        "fast",
        "fast=1,x",
        "--strategy-params",
        "{",
        "--symbols",
        "DOGE/EUR",
        "--sweep-id",
        "--workers",
        "--store",
        "/dev/null/x.duckdb",
        "--risk",
        "[]",
        "--quiet",
    ]
)


@FUZZ
@given(argv=st.lists(tokens, max_size=6))
def test_cli_flags_fail_with_a_message_not_a_traceback(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "no-data"))
    capsys.readouterr()  # the fixture lives across examples: start each with nothing captured
    if argv[:1] in (["run"], ["sweep"]) and "--bars" not in argv:
        argv = [*argv, "--bars", "abc"]  # keep the fuzzer from starting real runs
    code = main(argv)  # a usage error too is a status, not a SystemExit
    assert code in (0, 1, 2)
    if code == 2:
        err = capsys.readouterr().err
        assert err.startswith("workbench: ") and err.count("\n") == 1 and "Traceback" not in err


ids = st.one_of(
    st.text(max_size=70),
    st.text(st.sampled_from("aZ09_.-=/\\'\" ;\n\x00é"), max_size=70),
    st.sampled_from(["..", "../x", "a/../b", "fast=5", "x" * 64, "x" * 65, ".", "-", "a..b", "ok.1"]),
)


@FUZZ
@given(value=ids)
def test_an_id_is_refused_or_names_one_file_inside_its_folder(value, tmp_path):
    try:
        checked = check_id(value, "session_id")
    except ConfigError as e:
        assert "must be 1 to 64 letters" in str(e) and "\n" not in str(e)
        return
    assert inside(tmp_path, checked) == tmp_path.resolve() / value and len(value) <= 64
    assert not set(value) & set("/=\\'\" \n\x00") and ".." not in value


@FUZZ
@given(value=ids, command=st.sampled_from(["halt-sweep", "report", "run", "sweep"]))
def test_every_command_refuses_a_bad_id_or_an_unknown_one_and_creates_nothing(value, command, capsys, tmp_path):
    """In-process for speed (tests/test_cli_errors.py runs the same refusals as subprocesses);
    ``--strategy moon`` keeps run and sweep from starting a kernel when the id is good."""
    work = tmp_path / "fuzz-cli"
    work.mkdir(exist_ok=True)
    before = sorted(work.rglob("*"))
    store, runs = str(work / "no-store.duckdb"), str(work / "runs")
    argv = {
        "halt-sweep": ["halt-sweep", value, "--runs-dir", runs],
        "report": ["report", value, "--store", store],
        "run": ["run", "--session-id", value, "--strategy", "moon", "--runs-dir", runs, "--store", store],
        "sweep": ["sweep", "--sweep-id", value, "--param", "fast=3", "--strategy", "moon", "--runs-dir", runs],
    }[command]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: ") and err.count("\n") == 1
    assert sorted(work.rglob("*")) == before


flag_values = st.one_of(
    st.sampled_from(["0", "-1", "1", "3", "1e3", "inf", "nan", "NaN", "1.5", "", " ", "2024-01-02", "notadate"]),
    st.sampled_from(['{"fast": 3}', '{"max_open_orders": 2}', '{"bogus": 1}', "[]", "{", "5", '{"api_key": "k"}']),
    st.text(max_size=8),
)
run_flags = st.sampled_from(
    ["--bars", "--speed", "--start", "--timeout", "--risk", "--strategy-params", "--session-id", "--symbols", "--mode"]
)


@FUZZ
@given(flags=st.lists(st.tuples(run_flags, flag_values), max_size=5))
def test_run_flags_parse_to_checked_parameters_or_one_line_refusal(flags, capsys):
    """What the parser lets through, check_parameters accepts or refuses clearly: a run never
    starts with a value the notebook would trip over."""
    from workbench.cli import parser
    from workbench.runs import _parameters

    argv = ["run", *(part for flag, value in flags for part in (flag, value))]
    capsys.readouterr()
    try:
        args = parser("run").parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 2 and err.startswith("workbench: ") and err.count("\n") == 1
        return
    try:
        checked = check_parameters(_parameters(args), {})
    except ConfigError as e:
        assert str(e) and "Traceback" not in str(e)
        return
    assert checked["bars"] > 0 and math.isfinite(checked["speed"]) and checked["mode"] != "mainnet"
    assert checked["session_id"] is None or check_id(checked["session_id"])


@settings(max_examples=150, deadline=None)
@given(
    message=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "symbol",
                "side",
                "type",
                "amount",
                "price",
                "filled",
                "cost",
                "status",
                "timestamp",
                "info",
                "clientOrderId",
                "order",
                "fee",
                "takerOrMaker",
                "triggerPrice",
                "timeInForce",
            ]
        ),
        st.one_of(
            anything,
            st.dictionaries(
                st.sampled_from(["X", "o", "c", "Q", "status", "type", "cost", "currency"]), anything, max_size=3
            ),
        ),
        max_size=12,
    )
)
def test_malformed_venue_messages_are_refused_clearly(message):
    for parse in (lambda m: order_from_ccxt(m), lambda m: fill_from_ccxt(m, "cid")):
        try:
            result = parse(message)
        except MalformedMessage as e:
            assert "Could not read the venue's" in str(e)
            continue
        for value in (getattr(result, "filled", None), getattr(result, "amount", None)):
            assert value is None or (isinstance(value, Decimal) and not (value.is_nan() or math.isinf(value)))
