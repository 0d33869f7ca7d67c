"""The notebook trading panels, driven from Python as a user would drive them (values typed into the
widgets, buttons clicked), in paper, testnet (the local exchange, through ccxt) and mainnet mode;
checked against what was sent, confirmed, refused and written to the audit log."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from decimal import Decimal

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from workbench.config import MAINNET_CONSENT, MAINNET_ENV, RiskLimits, TradingMode, load_config
from workbench.data import load_klines, load_rules
from workbench.errors import KillSwitchActive
from workbench.exchange import LocalExchange
from workbench.executors import PaperExecutor
from workbench.session import TradingSession
from workbench.store import Store
from workbench.ui import MODE_STYLES, Blotter, EmergencyStopButton, OrderTicket, TradingPanel, mode_banner

D = Decimal
SYMBOLS = ("BTC/USDT", "ETH/USDT")
ALL_CHECKS = [
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
FAKE_KEYS = {
    "BINANCE_API_KEY": "FAKE-UI-MAINNET-KEY-0c9d8e7f",
    "BINANCE_API_SECRET": "FAKE-UI-MAINNET-SECRET-6a5b4c3d",
    "BINANCE_TESTNET_API_KEY": "FAKE-UI-TESTNET-KEY-1f2e3d4c",
    "BINANCE_TESTNET_API_SECRET": "FAKE-UI-TESTNET-SECRET-9b8a7f6e",
}


def ui_audit(store: Store) -> list[tuple[str, dict]]:
    """The audit rows the panels wrote, oldest first."""
    store.flush()
    rows = store.sql("SELECT kind, detail FROM audit_log WHERE kind LIKE 'ui_%' ORDER BY seq")
    return [(kind, json.loads(detail)) for kind, detail in rows]


def audit_kinds(store: Store) -> list[str]:
    store.flush()
    return [kind for (kind,) in store.sql("SELECT kind FROM audit_log ORDER BY seq")]


def bar(close: float, minute: int = 0) -> pd.Series:
    opened = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=minute)
    return pd.Series({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, name=opened)


def type_in(ticket: OrderTicket, **values: str) -> None:
    """Set ticket fields as a user would, in the order given."""
    for name, value in values.items():
        getattr(ticket, name).value = value


def shown(widget) -> bool:
    return widget.layout.display != "none"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ui.duckdb") as s:
        yield s


@pytest.fixture
async def paper(store):
    """A paper session on BTC/USDT and ETH/USDT with 100,000 USDT; BTC last traded at 50,000."""
    rules = load_rules(SYMBOLS)
    executor = PaperExecutor(rules, {"USDT": 100_000, "BTC": 0, "ETH": 0})
    session = TradingSession(executor, store, rules=rules, session_id="ui-paper")
    await session.on_bar("BTC/USDT", bar(50_000))
    return session


@pytest.fixture
def closed_port():
    """A loopback port that refuses every connection (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def mainnet_env(monkeypatch):
    monkeypatch.setenv(MAINNET_ENV, MAINNET_CONSENT)
    for name, value in FAKE_KEYS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def subshell():
    """A thread with its own running event loop, as ipykernel 7 delivers widget messages on a kernel
    subshell: ``await subshell(action)`` runs ``action`` (a click, a typed value) there."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="subshell", daemon=True)
    thread.start()

    async def deliver(action) -> None:
        async def on_subshell() -> None:
            assert threading.current_thread() is thread
            action()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_subshell(), loop))

    yield deliver
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


# -- the banner -------------------------------------------------------------------------------------


async def test_each_mode_has_its_own_banner_with_venue_and_account_and_never_a_key(
    paper, tmp_path, mainnet_env, closed_port
):
    venue = f"http://127.0.0.1:{closed_port}"
    testnet = TradingSession.from_config(
        load_config(mode="testnet", store_path=tmp_path / "t.duckdb", venue_url=venue), session_id="ui-t"
    )
    mainnet = TradingSession.from_config(
        load_config(mode="mainnet", mainnet=True, store_path=tmp_path / "m.duckdb", venue_url=venue), session_id="ui-m"
    )
    try:
        banners = {s.mode: mode_banner(s) for s in (paper, testnet, mainnet)}
        assert [s.mode for s in (paper, testnet, mainnet)] == list(TradingMode)
        colours = {MODE_STYLES[mode].background for mode in TradingMode}
        assert len(colours) == 3  # each mode its own colour
        for mode, banner in banners.items():
            assert MODE_STYLES[mode].background in banner.value and f"wb-mode-{mode}" in banner._dom_classes
            assert not [name for name, key in FAKE_KEYS.items() if key in banner.value]
        assert "PAPER" in banners[TradingMode.PAPER].value and "no order leaves this machine" in (
            banners[TradingMode.PAPER].value
        )
        assert "TESTNET" in banners[TradingMode.TESTNET].value and venue in banners[TradingMode.TESTNET].value
        assert "testnet account" in banners[TradingMode.TESTNET].value
        red = banners[TradingMode.MAINNET].value
        assert "MAINNET: REAL MONEY" in red and "#b71c1c" in red and venue in red and "mainnet account" in red
        assert "real money" in red and "#ffeb3b" in red  # the yellow frame: unmistakable
        # every panel shows it, and so does the session itself in a notebook
        for panel in (OrderTicket(mainnet), EmergencyStopButton(mainnet)):
            assert panel.widget.children[0].value == red
    finally:
        for session in (testnet, mainnet):
            await session.executor.close()
            session.store.close()


def test_importing_the_session_does_not_import_the_ui():
    code = "import sys, workbench.session; assert not {'workbench.ui', 'ipywidgets'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_session_displayed_in_a_notebook_shows_its_banner(tmp_path):
    """In a real kernel: importing the panels registers the banner as every session's HTML."""
    setup = (
        "import workbench.ui\n"
        "from workbench import PaperExecutor, Store, TradingSession, load_rules\n"
        "rules = load_rules(['BTC/USDT'])\n"
        f"session = TradingSession(PaperExecutor(rules, {{'USDT': 1000}}), Store({str(tmp_path / 'nb.duckdb')!r}), "
        "rules=rules, session_id='nb-banner')"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell("session")])
    NotebookClient(notebook, timeout=120, kernel_name="python3", cwd=str(tmp_path)).execute()
    [shown_as] = notebook.cells[1].outputs
    banner = shown_as["data"]["text/html"]
    assert banner.startswith(f'<div style="background:{MODE_STYLES[TradingMode.PAPER].background}')
    assert "PAPER" in banner and "session nb-banner" in banner and "no order leaves this machine" in banner


# -- paper ------------------------------------------------------------------------------------------


async def test_a_paper_order_goes_straight_through_is_audited_and_reaches_the_blotter(paper, store):
    blotter = Blotter(paper)
    ticket = OrderTicket(paper)
    type_in(ticket, type="MARKET", amount="0.01")
    assert not shown(ticket.confirmation) and not ticket.send_button.disabled
    ticket.send_button.click()
    await ticket.wait()

    [order] = ticket.sent
    assert (order.symbol, order.side, order.amount, order.status.value) == ("BTC/USDT", "buy", D("0.01"), "FILLED")
    assert [o.client_order_id for o in paper.executor.engine.orders.values()] == [order.client_order_id]
    [(kind, detail)] = ui_audit(store)
    assert kind == "ui_confirm" and detail["confirmation"] == "none: paper orders go straight through"
    assert detail["text"] == "BUY 0.01 BTC on BTC/USDT MARKET" and detail["mode"] == "paper" and detail["at"]
    kinds = audit_kinds(store)
    assert kinds.index("ui_confirm") < kinds.index("order.request") < kinds.index("order.response")
    assert not shown(ticket.confirmation) and "is FILLED" in ticket.message.value

    await blotter.wait()  # the balances fetched after the fill
    assert order.client_order_id in blotter.fills_html.value and "0.01 BTC/USDT" in blotter.fills_html.value
    position = paper.state.positions["BTC/USDT"]
    assert position > 0 and f">{position.normalize():f}</td>" in blotter.positions_html.value
    assert blotter.balances["BTC"].free == position and "USDT" in blotter.balances_html.value

    type_in(ticket, amount="", quote_amount="100")  # a quote amount instead of a quantity
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent[-1].quote_amount == D(100) and ui_audit(store)[-1][1]["text"] == (
        "BUY 100 USDT of BTC on BTC/USDT MARKET"
    )


async def test_fields_are_checked_live_with_rounded_suggestions_and_every_risk_check_previewed(paper):
    ticket = OrderTicket(paper)
    type_in(ticket, amount="0.01")
    assert ticket.price.value == "" and ticket.price.placeholder == "limit price (last 50000)"
    assert ticket.review().problems == ["The price field is empty: type the limit price (the last price is 50000)."]
    type_in(ticket, amount="0.0123456", price="49999.995")
    review = ticket.review()
    assert "The price 49999.995 is not a multiple of the tick size 0.01: use 50000." in review.hints
    assert "The quantity 0.0123456 is not a multiple of the step size 0.00001: use 0.01234 (rounded down)." in (
        review.hints
    )
    assert [c.name for c in review.checks] == ALL_CHECKS
    assert [c.name for c in review.checks if not c.passed] == ["exchange_filters"]
    assert ticket.send_button.disabled and "use 50000" in ticket.hints.value and shown(ticket.apply_button)
    for name in ALL_CHECKS:
        assert name in ticket.preview.value
    assert ticket.preview.value.count("&#10007;") == 1  # one check fails, shown as such

    ticket.apply_button.click()
    assert (ticket.price.value, ticket.amount.value) == ("50000", "0.01234")
    assert ticket.review().ok and not ticket.send_button.disabled and not shown(ticket.apply_button)
    assert ticket.preview.value.count("&#10003;") == len(ALL_CHECKS)

    type_in(ticket, amount="0.00001")  # 0.5 USDT: below the 5 USDT minimum notional
    assert "The order's value 0.5 is below the minimum notional 5: use a quantity of at least 0.0001." in (
        ticket.review().hints
    )
    type_in(ticket, type="STOP_LOSS_LIMIT")
    assert not ticket.stop_price.disabled and ticket.quote_amount.disabled
    assert any("stop_price is required" in p for p in ticket.review().problems)
    type_in(ticket, type="MARKET", amount="abc")
    assert ticket.price.disabled and ticket.time_in_force.disabled
    assert ticket.review().problems == ["The quantity 'abc' is not a positive number: type e.g. 0.001."]
    type_in(ticket, amount="0.001", quote_amount="50")
    assert "clear the other" in ticket.review().problems[0]


async def test_rounding_never_inflates_the_quantity_at_a_price_outside_the_exchange_band(paper, store):
    ticket = OrderTicket(paper)
    type_in(ticket, amount="0.001", price="1.00")  # 0.001 USDT: below the minimum notional, at an absurd price
    review = ticket.review()
    assert "amount" not in review.suggestions and not shown(ticket.apply_button)
    assert (
        "The price 1 is outside 10000..250000, the band the exchange allows around the last price 50000 for a buy "
        "(PERCENT_PRICE_BY_SIDE): fix the price first; the quantity is not resized at it."
    ) in review.hints
    assert "PERCENT_PRICE_BY_SIDE" in ticket.hints.value and ticket.send_button.disabled
    ticket.apply_button.click()
    assert ticket.amount.value == "0.001"  # never 5 BTC

    type_in(ticket, amount="0.0001", price="49000")  # 4.9 USDT at a sane price: at least 0.000102 -> 0.00011
    assert ticket.review().suggestions == {"amount": "0.00011"}
    ticket.apply_button.click()
    assert ticket.amount.value == "0.00011" and ticket.review().ok

    type_in(ticket, price="")  # an empty limit price is refused, never replaced by the last price
    assert ticket.price.value == "" and ticket.send_button.disabled
    assert "The price field is empty: type the limit price (the last price is 50000)." in ticket.hints.value
    ticket.send_button.click()
    await ticket.wait()
    assert ticket.sent == [] and ticket.price.value == ""
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_refuse" and detail["reason"] == (
        "Not sent: The price field is empty: type the limit price (the last price is 50000)."
    )


async def test_buy_and_sell_look_different_in_the_ticket(paper):
    ticket = OrderTicket(paper)
    css = next(w.value for w in ticket.widget.children if "<style>" in getattr(w, "value", ""))
    assert '.wb-side button[data-value="buy"].mod-active {color:#ffffff;background:#1b5e20' in css
    assert '.wb-side button[data-value="sell"].mod-active {color:#ffffff;background:#b71c1c' in css
    assert ticket.send_button.button_style == "success"
    assert ticket.send_button.description == "Send BUY" and "wb-side-buy" in ticket.widget._dom_classes
    type_in(ticket, side="sell")
    assert ticket.send_button.button_style == "danger"
    assert ticket.send_button.description == "Send SELL" and "wb-side-sell" in ticket.widget._dom_classes
    assert "wb-side-buy" not in ticket.widget._dom_classes


async def test_a_fresh_paper_panel_starts_at_the_latest_bundled_bar_and_its_first_order_fills(store):
    rules = load_rules(SYMBOLS)
    session = TradingSession(PaperExecutor(rules, {"USDT": 100_000}), store, rules=rules, session_id="ui-fresh")
    latest = load_klines("BTC/USDT", allow_sample=True).iloc[-1]
    panel = TradingPanel(session)
    await panel.wait()
    ticket = panel.ticket
    assert session.last_price["BTC/USDT"] == D(str(latest["close"]))
    assert f"starts at {D(str(latest['close'])).normalize():f}, the close of the latest bar" in ticket.message.value
    type_in(ticket, type="MARKET", amount="0.001")
    ticket.send_button.click()
    await panel.wait()
    [order] = ticket.sent
    assert order.status.value == "FILLED" and order.filled == D("0.001")
    assert session.state.positions["BTC/USDT"] > 0  # less the fee, paid in BTC


async def test_a_paper_send_without_a_price_yet_fetches_one_first(store):
    rules = load_rules(SYMBOLS)
    session = TradingSession(PaperExecutor(rules, {"USDT": 100_000}), store, rules=rules, session_id="ui-first")
    ticket = OrderTicket(session)
    ticket.close()  # its own price fetch is canceled: Send must find the price itself
    type_in(ticket, type="MARKET", amount="0.001")
    assert ticket.send_button.disabled
    assert "ETH/USDT" not in session.last_price and "BTC/USDT" not in session.last_price
    await ticket.send()
    assert ticket.sent[0].status.value == "FILLED"


async def test_a_failing_risk_check_refuses_the_order_and_nothing_is_sent(store):
    rules = load_rules(SYMBOLS)
    session = TradingSession(
        PaperExecutor(rules, {"USDT": 100_000}), store, rules=rules, risk=RiskLimits(max_order_notional=D(1_000))
    )
    await session.on_bar("BTC/USDT", bar(50_000))
    ticket = OrderTicket(session)
    type_in(ticket, amount="0.1", price="50000")  # 5,000 USDT
    failed = [c for c in ticket.review().checks if not c.passed]
    assert [c.name for c in failed] == ["max_order_notional"] and "5000.00 exceeds the limit 1000" in failed[0].detail
    assert ticket.send_button.disabled
    ticket.send_button.click()  # a disabled button's click still runs its handler: the ticket refuses
    await ticket.wait()

    assert ticket.sent == [] and session.orders == {} and session.executor.engine.orders == {}
    [(kind, detail)] = ui_audit(store)
    assert kind == "ui_refuse" and detail["reason"].startswith("Not sent: max_order_notional")
    assert detail["text"] == "BUY 0.1 BTC on BTC/USDT LIMIT at 50000 GTC"
    assert "order.request" not in audit_kinds(store) and "max_order_notional" in ticket.message.value


async def test_the_blotter_cancels_an_open_order_and_audits_the_cancel(paper, store):
    blotter = Blotter(paper)
    ticket = OrderTicket(paper)
    type_in(ticket, amount="0.01", price="49000")
    ticket.send_button.click()
    await ticket.wait()
    [order] = ticket.sent
    cid = order.client_order_id
    assert order.status.value == "NEW" and list(blotter.cancel_buttons) == [cid]
    assert f"{cid}: BUY 0.01 BTC/USDT LIMIT at 49000 · NEW" in blotter.orders_box.children[0].children[1].value

    blotter.cancel_buttons[cid].click()
    await blotter.wait()
    assert paper.executor.engine.get_order("BTC/USDT", client_order_id=cid).status.value == "CANCELED"
    assert blotter.cancel_buttons == {} and "No open orders" in blotter.orders_box.children[0].value
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_cancel" and detail["client_order_id"] == cid and detail["at"]
    assert detail["text"].startswith(f"{cid}: BUY 0.01 BTC/USDT LIMIT at 49000")
    kinds = audit_kinds(store)
    assert kinds.index("ui_cancel") < kinds.index("order.cancel")

    for price in ("48500", "48000"):
        type_in(ticket, price=price)
        ticket.send_button.click()
        await ticket.wait()
    assert len(blotter.cancel_buttons) == 2
    blotter.cancel_all_button.click()
    await blotter.wait()
    assert blotter.open_orders == [] and blotter.cancel_buttons == {}
    assert {o.status.value for o in paper.executor.engine.orders.values()} == {"CANCELED"}
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_cancel" and detail["all"] and detail["text"] == "cancel all 2 open order(s)"


async def test_emergency_stop_halts_every_panel_and_new_orders_are_refused_until_cleared(paper, store):
    panel = TradingPanel(paper)
    ticket, blotter, stop = OrderTicket(paper), Blotter(paper), EmergencyStopButton(paper)
    for price in ("49000", "48000"):
        type_in(ticket, amount="0.01", price=price)
        ticket.send_button.click()
        await ticket.wait()
    open_ids = [o.client_order_id for o in ticket.sent]
    assert [o.client_order_id for o in blotter.open_orders] == open_ids
    for part in (panel, ticket, blotter, stop):
        assert not shown(part.halted_bar) and "HALTED" not in part.halted_bar.value

    panel.emergency.button.click()
    await panel.wait()
    report = panel.emergency.report
    assert [o.client_order_id for o in report.canceled] == open_ids and report.failed == []
    assert "Canceled 2 order(s)" in panel.emergency.report_html.value
    assert all(cid in panel.emergency.report_html.value for cid in open_ids)
    engine = paper.executor.engine
    assert [engine.get_order("BTC/USDT", client_order_id=c).status.value for c in open_ids] == ["CANCELED"] * 2
    for part in (panel, ticket, blotter, stop):
        assert shown(part.halted_bar) and "HALTED" in part.halted_bar.value
    assert blotter.open_orders == [] and shown(stop.clear_button)

    type_in(ticket, price="49500")
    assert ticket.send_button.disabled and "HALTED" in ticket.hints.value
    ticket.send_button.click()
    await ticket.wait()
    assert len(ticket.sent) == 2 and len(engine.orders) == 2  # nothing new was sent
    kind, detail = ui_audit(store)[-1]
    assert kind == "ui_refuse" and "HALTED (emergency stop button)" in detail["reason"]
    with pytest.raises(KillSwitchActive):
        await paper.create_order("BTC/USDT", "limit", "buy", "0.01", "49500", time_in_force="GTC")
    assert "ui_emergency_stop" in [k for k, _ in ui_audit(store)]

    stop.clear_button.click()
    for part in (panel, ticket, blotter, stop):
        assert not shown(part.halted_bar)
    assert not paper.kill_switch.tripped and not ticket.send_button.disabled
    ticket.send_button.click()
    await ticket.wait()
    assert len(ticket.sent) == 3 and ticket.sent[-1].status.value == "NEW"
    assert [k for k, _ in ui_audit(store)][-2:] == ["ui_clear_halt", "ui_confirm"]


async def test_events_from_another_thread_change_the_widgets_on_the_panels_loop(paper):
    blotter = Blotter(paper)
    ticket = OrderTicket(paper)
    type_in(ticket, amount="0.01", price="49900")
    ticket.send_button.click()
    await ticket.wait()
    await blotter.wait()
    changed_on = []
    blotter.fills_html.observe(lambda change: changed_on.append(threading.get_ident()), names="value")
    worker = []

    def market_drops() -> None:  # the paper venue fills the resting buy on this worker thread
        worker.append(threading.get_ident())
        paper.executor.update_price("BTC/USDT", D(49_000), 1_704_067_260_000)

    await asyncio.to_thread(market_drops)
    assert changed_on and set(changed_on) == {threading.get_ident()} and worker[0] != threading.get_ident()
    assert ticket.sent[0].client_order_id in blotter.fills_html.value and blotter.cancel_buttons == {}
    await blotter.wait()


# -- testnet: the local exchange, through ccxt --------------------------------------------------------


@pytest.fixture
async def exchange():
    async with LocalExchange(("BTC/USDT",)) as ex:
        yield ex


async def real_session(exchange, tmp_path, monkeypatch, mode: str, session_id: str) -> TradingSession:
    prefix = "BINANCE_TESTNET_API" if mode == "testnet" else "BINANCE_API"
    monkeypatch.setenv(f"{prefix}_KEY", exchange.api_key)
    monkeypatch.setenv(f"{prefix}_SECRET", exchange.secret)
    config = load_config(
        mode=mode, mainnet=mode == "mainnet", symbols=["BTC/USDT"], store_path=tmp_path / f"{mode}.duckdb",
        venue_url=exchange.url,
    )  # fmt: skip
    session = TradingSession.from_config(config, session_id=session_id)
    await session.start()
    return session


async def test_testnet_sends_only_after_a_confirm_click_on_the_summary(exchange, tmp_path, monkeypatch):
    session = await real_session(exchange, tmp_path, monkeypatch, "testnet", "ui-testnet")
    venue = exchange.venue.engine
    try:
        panel = TradingPanel(session)
        ticket, blotter = panel.ticket, panel.blotter
        await panel.wait()
        last = session.last_price["BTC/USDT"]
        price = session.rules["BTC/USDT"].round_price(last * D("0.97"))
        type_in(ticket, amount="0.001", price=f"{price:f}")
        ticket.send_button.click()
        await panel.wait()
        text = f"BUY 0.001 BTC on BTC/USDT LIMIT at {price.normalize():f} GTC"
        assert shown(ticket.confirmation) and text in ticket.confirm_summary.value
        assert "TESTNET" in ticket.confirm_summary.value and "press Confirm" in ticket.message.value
        assert venue.orders == {} and ui_audit(session.store) == []  # nothing sent, nothing confirmed yet

        type_in(ticket, amount="0.002")  # changing the ticket closes the confirmation
        assert not shown(ticket.confirmation) and ticket.pending is None
        ticket.confirm_button.click()
        await panel.wait()
        assert venue.orders == {} and "Nothing to confirm" in ticket.message.value
        assert ui_audit(session.store)[-1][1]["reason"].startswith("The ticket changed after Send")

        type_in(ticket, amount="0.001")
        ticket.send_button.click()
        await panel.wait()
        ticket.confirm_button.click()
        await panel.wait()
        [order] = ticket.sent
        [placed] = venue.orders.values()
        assert (placed.client_order_id, placed.amount, placed.price) == (order.client_order_id, D("0.001"), price)
        kind, detail = ui_audit(session.store)[-1]
        assert kind == "ui_confirm" and detail["confirmation"] == "Confirm click" and detail["text"] == text
        assert detail["venue"] == exchange.url and detail["mode"] == "testnet" and detail["at"]
        assert list(blotter.cancel_buttons) == [order.client_order_id] and not shown(ticket.confirmation)

        type_in(ticket, type="MARKET", amount="0.001")  # a market buy fills: the blotter shows the fill
        ticket.send_button.click()
        await panel.wait()
        ticket.confirm_button.click()
        await panel.wait()
        market = ticket.sent[-1]
        assert market.status.value == "FILLED" and market.client_order_id in blotter.fills_html.value
        assert session.state.positions["BTC/USDT"] > 0 and "unrealised PnL" in blotter.positions_html.value
        assert blotter.balances["BTC"].free == venue.balances()["BTC"].free

        panel.emergency.button.click()
        await panel.wait()
        assert [o.client_order_id for o in panel.emergency.report.canceled] == [order.client_order_id]
        assert placed.status.value == "CANCELED" and "HALTED" in panel.halted_bar.value
        type_in(ticket, type="LIMIT", price=f"{price:f}")
        ticket.send_button.click()
        await panel.wait()
        assert len(venue.orders) == 2 and ui_audit(session.store)[-1][0] == "ui_refuse"
    finally:
        await session.executor.close()
        session.store.close()


# -- mainnet ----------------------------------------------------------------------------------------


@pytest.fixture
async def offline_mainnet(tmp_path, mainnet_env, closed_port):
    """A mainnet session that never connects: its venue is a loopback port that refuses connections."""
    config = load_config(
        mode="mainnet", mainnet=True, symbols=["BTC/USDT"], store_path=tmp_path / "m.duckdb",
        venue_url=f"http://127.0.0.1:{closed_port}",
    )  # fmt: skip
    session = TradingSession.from_config(config, session_id="ui-mainnet")
    yield session
    await session.executor.close()
    session.store.close()


async def test_mainnet_refuses_a_wrong_symbol_or_quantity_typed_back_and_sends_nothing(offline_mainnet):
    assert offline_mainnet.mode is TradingMode.MAINNET
    offline_mainnet.last_price["BTC/USDT"] = D(50_000)
    ticket = OrderTicket(offline_mainnet)
    type_in(ticket, type="MARKET", amount="0.001")
    ticket.send_button.click()
    await ticket.wait()
    assert shown(ticket.confirmation) and "MAINNET: REAL MONEY" in ticket.confirm_summary.value
    assert "type the symbol (BTC/USDT) and the quantity (0.001)" in ticket.confirm_summary.value
    assert ticket.confirm_symbol in ticket.confirmation.children

    for symbol, quantity in (("", ""), ("ETH/USDT", "0.001"), ("BTC/USDT", "0.01"), ("BTC/USDT", "1e-3x")):
        type_in(ticket, confirm_symbol=symbol, confirm_quantity=quantity)
        ticket.confirm_button.click()
        await ticket.wait()
        assert "Not sent" in ticket.message.value and shown(ticket.confirmation)
    refusals = ui_audit(offline_mainnet.store)
    assert [kind for kind, _ in refusals] == ["ui_refuse"] * 4
    assert [d["typed"] for _, d in refusals] == [
        {"symbol": "", "quantity": ""},
        {"symbol": "ETH/USDT", "quantity": "0.001"},
        {"symbol": "BTC/USDT", "quantity": "0.01"},
        {"symbol": "BTC/USDT", "quantity": "1e-3x"},
    ]
    assert "the symbol typed ('ETH/USDT') is not BTC/USDT" in refusals[1][1]["reason"]
    assert "the quantity typed ('0.01') is not 0.001" in refusals[2][1]["reason"]
    assert all(d["text"] == "BUY 0.001 BTC on BTC/USDT MARKET" for _, d in refusals)
    ticket.back_button.click()
    assert not shown(ticket.confirmation) and ticket.pending is None
    assert ui_audit(offline_mainnet.store)[-1][0] == "ui_dismiss"
    assert ticket.sent == [] and offline_mainnet.orders == {}
    kinds = audit_kinds(offline_mainnet.store)
    assert "session.start" not in kinds and "order.request" not in kinds  # never connected, nothing sent


async def test_mainnet_sends_exactly_what_was_typed_back(exchange, tmp_path, monkeypatch):
    """Mainnet mode pointed at the local exchange: a wrong quantity sends nothing, the right one sends it."""
    monkeypatch.setenv(MAINNET_ENV, MAINNET_CONSENT)
    session = await real_session(exchange, tmp_path, monkeypatch, "mainnet", "ui-mainnet-local")
    venue = exchange.venue.engine
    try:
        assert session.mode is TradingMode.MAINNET
        ticket = OrderTicket(session)
        await ticket.wait()
        price = session.rules["BTC/USDT"].round_price(session.last_price["BTC/USDT"] * D("0.97"))
        type_in(ticket, amount="0.0015", price=f"{price:f}")
        ticket.send_button.click()
        await ticket.wait()
        type_in(ticket, confirm_symbol="BTC/USDT", confirm_quantity="0.015")
        ticket.confirm_button.click()
        await ticket.wait()
        assert venue.orders == {} and ticket.sent == []

        type_in(ticket, confirm_symbol="btc/usdt ", confirm_quantity="0.00150")
        ticket.confirm_button.click()
        await ticket.wait()
        [placed] = venue.orders.values()
        assert (placed.amount, placed.price, placed.client_order_id) == (
            D("0.0015"),
            price,
            ticket.sent[0].client_order_id,
        )
        kinds = [kind for kind, _ in ui_audit(session.store)]
        assert kinds == ["ui_refuse", "ui_confirm"]
        detail = ui_audit(session.store)[-1][1]
        assert detail["confirmation"] == "typed symbol and quantity" and detail["mode"] == "mainnet"
        assert detail["typed"] == {"symbol": "btc/usdt ", "quantity": "0.00150"} and detail["amount"] == "0.0015"
        assert not shown(ticket.confirmation)
    finally:
        await session.executor.close()
        session.store.close()


# -- clicks on another thread (ipykernel 7's subshells) -----------------------------------------------


async def test_clicks_on_a_subshell_thread_run_on_the_sessions_loop_and_never_hang(
    exchange, tmp_path, monkeypatch, subshell
):
    """The ticket sequence of issue 14 item 10, every value typed and every click delivered on a thread
    with its own running loop; then a MARKET Send right after a LIMIT, and the emergency stop."""
    session = await real_session(exchange, tmp_path, monkeypatch, "testnet", "ui-subshell")
    venue = exchange.venue.engine
    try:
        panel = TradingPanel(session)
        ticket = panel.ticket
        await panel.wait()
        changed_on: set[int] = set()
        for widget in (ticket.message, ticket.hints, ticket.confirm_summary, panel.emergency.report_html):
            widget.observe(lambda change: changed_on.add(threading.get_ident()), names="value")

        async def settled() -> None:
            await asyncio.wait_for(panel.wait(), timeout=30)  # a hang fails here

        last = session.last_price["BTC/USDT"]
        await subshell(lambda: type_in(ticket, type="LIMIT", amount="0.001", price="1.00"))
        await subshell(ticket.apply_button.click)  # "Use rounded values"
        await settled()
        assert ticket.amount.value == "0.001" and "PERCENT_PRICE_BY_SIDE" in ticket.hints.value
        await subshell(lambda: type_in(ticket, price="", amount="0.001"))
        await subshell(ticket.send_button.click)
        await settled()
        assert "Not sent: The price field is empty" in ticket.message.value and not shown(ticket.confirmation)
        assert ticket.price.value == "" and venue.orders == {}

        price = session.rules["BTC/USDT"].round_price(last * D("0.97"))
        await subshell(lambda: type_in(ticket, price=f"{price:f}"))
        await subshell(ticket.send_button.click)
        await settled()
        assert shown(ticket.confirmation) and not ticket.send_button.disabled
        await subshell(ticket.confirm_button.click)
        await settled()
        [limit] = ticket.sent
        assert limit.status.value == "NEW" and venue.get_order("BTC/USDT", client_order_id=limit.client_order_id)

        await subshell(lambda: type_in(ticket, type="MARKET"))  # a MARKET Send right after the LIMIT
        await subshell(ticket.send_button.click)
        await settled()
        assert "BUY 0.001 BTC on BTC/USDT MARKET" in ticket.confirm_summary.value
        await subshell(ticket.confirm_button.click)
        await settled()
        assert ticket.sent[-1].status.value == "FILLED" and session.state.positions["BTC/USDT"] > 0

        await subshell(panel.emergency.button.click)
        await settled()
        assert [o.client_order_id for o in panel.emergency.report.canceled] == [limit.client_order_id]
        assert "HALTED" in panel.halted_bar.value
        await subshell(panel.emergency.clear_button.click)
        await settled()
        assert not session.kill_switch.tripped and not shown(panel.halted_bar)
        assert changed_on == {threading.get_ident()}  # every widget changed on the session's loop
    finally:
        await session.executor.close()
        session.store.close()


async def test_an_error_in_work_clicked_on_a_subshell_shows_in_the_panel(paper, subshell):
    ticket = OrderTicket(paper)

    async def broken() -> None:
        raise RuntimeError("venue on fire")

    await subshell(lambda: ticket._spawn(broken()))
    await ticket.wait()
    assert "Unexpected error: RuntimeError(&#x27;venue on fire&#x27;)" in ticket.message.value


def test_panels_made_before_any_loop_run_their_work_on_the_loop_of_the_first_panel_made_in_one(store, subshell):
    rules = load_rules(SYMBOLS)
    session = TradingSession(PaperExecutor(rules, {"USDT": 100_000}), store, rules=rules, session_id="ui-noloop")
    session.executor.update_price("BTC/USDT", D(50_000), 1_704_067_200_000)
    session.last_price["BTC/USDT"] = D(50_000)
    ticket = OrderTicket(session)  # no event loop is running here
    type_in(ticket, type="MARKET", amount="0.001")

    async def in_a_loop() -> int:
        blotter = Blotter(session)  # the session's loop from now on
        await subshell(ticket.send_button.click)
        await asyncio.wait_for(ticket.wait(), timeout=30)
        await blotter.wait()
        return threading.get_ident()

    changed_on: list[int] = []
    ticket.message.observe(lambda change: changed_on.append(threading.get_ident()), names="value")
    loop_thread = asyncio.run(in_a_loop())
    assert ticket.sent[0].status.value == "FILLED" and set(changed_on) == {loop_thread}


async def test_the_confirmation_shows_buy_in_green_and_sell_in_red(tmp_path, closed_port, mainnet_env):
    config = load_config(
        mode="testnet", symbols=["BTC/USDT"], store_path=tmp_path / "t.duckdb",
        venue_url=f"http://127.0.0.1:{closed_port}",
    )  # fmt: skip
    session = TradingSession.from_config(config, session_id="ui-sides")
    try:
        session.last_price["BTC/USDT"] = D(50_000)
        ticket = OrderTicket(session)
        for side, colour in (("buy", "#1b5e20"), ("sell", "#b71c1c")):
            type_in(ticket, side=side, type="MARKET", amount="0.001")
            ticket.send_button.click()
            await ticket.wait()
            badge = f'<span class="wb-side-badge" style="background:{colour};'
            assert shown(ticket.confirmation) and badge in ticket.confirm_summary.value
            assert f">{side.upper()}</span> {side.upper()} 0.001 BTC" in ticket.confirm_summary.value
    finally:
        await session.executor.close()
        session.store.close()
