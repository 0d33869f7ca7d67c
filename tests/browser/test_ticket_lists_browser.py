"""The order ticket's OCO and *protect position* in a real browser: JupyterLab on loopback, headless
Debian Chromium driven by Playwright, on a notebook that opens a testnet trading panel on the local
exchange (started in the kernel, reached through ccxt). A market buy, confirmed, makes a position; the
OCO fields are typed in, the off-tick stop-limit price is rounded by *Use rounded values*, *Send SELL
OCO* opens the confirmation and *Confirm* places both legs (seen in the blotter); *Protect: OCO* sizes
an OCO to the position rounded to the step, confirmed and placed too. Screenshots under
test-artifacts/browser-lists/."""

from __future__ import annotations

import re
from decimal import Decimal

import nbformat
import pytest

from tests.browser.test_notebook_browser import ROOT, RUN_ALL, browser_page, running_lab

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NOTEBOOK = "ticket_lists.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser-lists"
SETUP = """\
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from workbench import TradingSession, load_config
from workbench.exchange import LocalExchange
from workbench.ui import TradingPanel

exchange = await LocalExchange(("BTC/USDT",)).start()  # the market moves only when stepped
os.environ["BINANCE_TESTNET_API_KEY"], os.environ["BINANCE_TESTNET_API_SECRET"] = exchange.api_key, exchange.secret
store_path = Path(tempfile.mkdtemp()) / "lists.duckdb"
config = load_config(mode="testnet", symbols=["BTC/USDT"], store_path=store_path, venue_url=exchange.url)
session = TradingSession.from_config(config, session_id="nb-lists")
await session.start()
panel = TradingPanel(session)
panel"""
READY = """\
await panel.wait()
print("testnet ready at", session.last_price["BTC/USDT"])"""


def test_a_user_places_an_oco_and_protects_a_position_from_the_panel(tmp_path):
    from playwright.sync_api import expect

    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(READY)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    )  # the kernel named: JupyterLab asks no question
    with (
        running_lab(tmp_path, {NOTEBOOK: nbformat.writes(notebook)}) as lab,
        browser_page(lab, ARTIFACTS) as (page, shot, shots),
    ):
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
        expect(page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle"))).to_be_visible()  # else Run asks for one
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        expect(page.locator(".jp-OutputArea-output", has_text="testnet ready at")).to_be_visible(timeout=RUN_ALL)
        panel = page.locator(".wb-trading-panel")
        expect(panel.locator(".wb-banner")).to_contain_text("TESTNET")
        ticket, blotter = panel.locator(".wb-ticket"), panel.locator(".wb-blotter")
        send, message = ticket.locator("button.wb-send"), ticket.locator(".wb-message")
        confirmation, confirm = ticket.locator(".wb-confirmation"), ticket.locator("button.wb-confirm")
        orders = blotter.locator(".wb-open-orders")

        ticket.locator(".wb-type select").select_option("MARKET")  # a position to protect
        ticket.locator(".wb-amount input").fill("0.0123")
        expect(send).to_be_enabled()
        send.click()
        expect(confirmation).to_contain_text("BUY 0.0123 BTC on BTC/USDT MARKET")
        confirm.click()
        expect(message).to_contain_text("is FILLED")
        position = ticket.locator(".wb-position")
        expect(position).to_contain_text("Position in BTC/USDT: 0.0122877 BTC")  # less the fee, in BTC
        panel.scroll_into_view_if_needed()
        shot("position-bought")

        ticket.locator(".wb-kind button", has_text="OCO").click()
        expect(ticket.locator(".wb-type")).to_be_hidden()
        expect(ticket.locator(".wb-stop-limit-price")).to_be_visible()
        ticket.locator('.wb-side button[data-value="sell"]').click()
        last = Decimal(re.search(r"([0-9.]+)\s*$", ticket.locator(".wb-last-price").inner_text()).group(1))  # type: ignore[union-attr]
        cent = Decimal("0.01")
        limit, stop = (last * Decimal("1.02")).quantize(cent), (last * Decimal("0.98")).quantize(cent)
        stop_limit = (last * Decimal("0.975")).quantize(cent)
        ticket.locator(".wb-amount input").fill("0.005")
        ticket.locator(".wb-price input").fill(f"{limit:f}")
        ticket.locator(".wb-stop-price input").fill(f"{stop:f}")
        ticket.locator(".wb-stop-limit-price input").fill(f"{stop_limit:f}4")  # off the 0.01 tick
        hints = ticket.locator(".wb-hints")
        expect(hints).to_contain_text(f"The stop-limit price {stop_limit.normalize():f}4 is not a multiple of the tick")
        expect(send).to_be_disabled()
        shot("oco-off-tick")
        ticket.locator("button.wb-apply").click()  # Use rounded values
        expect(ticket.locator(".wb-stop-limit-price input")).to_have_value(f"{stop_limit.normalize():f}")
        preview = ticket.locator(".wb-preview")
        expect(preview).to_contain_text("limit leg · exchange_filters")
        expect(preview).to_contain_text("stop leg · price_band_pct")
        expect(send).to_have_text("Send SELL OCO")
        expect(send).to_be_enabled()
        ticket.scroll_into_view_if_needed()
        shot("oco-filled")

        send.click()
        text = (
            f"OCO SELL 0.005 BTC on BTC/USDT: LIMIT_MAKER at {limit.normalize():f} + STOP_LOSS_LIMIT at "
            f"{stop_limit.normalize():f} stop {stop.normalize():f} GTC"
        )
        expect(confirmation).to_contain_text(text)
        expect(confirmation.locator(".wb-side-badge")).to_have_text("SELL")
        expect(orders).to_contain_text("No open orders")  # nothing sent before Confirm
        shot("oco-confirmation")
        confirm.click()
        expect(message).to_contain_text("is EXECUTING")
        expect(orders.locator(".wb-order", has_text="SELL 0.005 BTC/USDT LIMIT_MAKER")).to_be_visible()
        expect(orders.locator(".wb-order", has_text="SELL 0.005 BTC/USDT STOP_LOSS_LIMIT")).to_be_visible()
        expect(confirmation).to_be_hidden()
        blotter.scroll_into_view_if_needed()
        shot("oco-in-blotter")

        ticket.locator("button.wb-protect-oco").click()  # sized to the position, rounded down to the step
        expect(ticket.locator(".wb-amount input")).to_have_value("0.01228")
        expect(message).to_contain_text("rounded down to the step size 0.00001")
        expect(send).to_be_enabled()
        send.click()
        expect(confirmation).to_contain_text("OCO SELL 0.01228 BTC on BTC/USDT: LIMIT_MAKER at")
        confirm.click()
        expect(message).to_contain_text("is EXECUTING")
        expect(orders.locator(".wb-order", has_text="SELL 0.01228 BTC/USDT")).to_have_count(2)
        blotter.scroll_into_view_if_needed()
        shot("position-protected")

    assert shots == [
        "01-position-bought.png",
        "02-oco-off-tick.png",
        "03-oco-filled.png",
        "04-oco-confirmation.png",
        "05-oco-in-blotter.png",
        "06-position-protected.png",
    ]
    assert all((ARTIFACTS / name).stat().st_size > 10_000 for name in shots)
