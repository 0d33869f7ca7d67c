"""The trading panels in a real browser: JupyterLab on loopback, headless Debian Chromium driven by
Playwright. It opens notebooks/02_interactive_trading.ipynb, runs every cell, fills in the order ticket,
presses Send and Confirm, finds the order in the blotter; replays the ticket sequence that hung the
panels (issue 14 item 10: JupyterLab delivers widget messages on an ipykernel subshell thread) and a
MARKET Send right after a LIMIT; presses Emergency stop and sees HALTED.

A screenshot of each step is saved under test-artifacts/browser/. Every wait is a Playwright wait
(or an event) with a deadline. Needs /usr/bin/chromium (``apt-get install -y chromium``) and the
``playwright`` package; never ``playwright install``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "02_interactive_trading.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
SERVER_START = 90.0  # seconds for JupyterLab to answer
RUN_ALL = 180_000  # ms for the notebook's cells to run (the kernel starts the local exchange)
STEP = 60_000  # ms for one click's effect to show


@dataclass
class Lab:
    url: str
    token: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_settings(folder: Path) -> None:
    """JupyterLab user settings for the test: every cell attached to the page (no windowing), no news."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, values in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the notebook (the repository's stays clean)."""
    with running_lab(tmp_path, {NOTEBOOK: (ROOT / "notebooks" / NOTEBOOK).read_text()}) as served:
        yield served


@contextmanager
def running_lab(tmp_path: Path, notebooks: Mapping[str, str]) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with a token, serving ``notebooks`` (file name -> JSON text) from a
    folder of ``tmp_path``; skips the test without Debian Chromium."""
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium: apt-get install -y chromium")
    work = tmp_path / "notebooks"
    work.mkdir()
    for name, text in notebooks.items():
        (work / name).write_text(text)
    write_settings(tmp_path / "settings")
    port, token = free_port(), secrets.token_hex(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINANCE_") and k != "WORKBENCH_ALLOW_MAINNET"}
    env |= {
        "WORKBENCH_VENUE": "local",  # the bundled exchange in the kernel, whatever keys the machine has
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(ROOT / ".venv" / "bin" / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
    ]
    log = tmp_path / "jupyter.log"
    ready = threading.Event()
    server = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def drain() -> None:  # keep the pipe empty; say when the server is up (or has ended)
        with log.open("w") as out:
            for line in server.stdout:  # type: ignore[union-attr]
                out.write(line)
                out.flush()
                if f"127.0.0.1:{port}/lab" in line:
                    ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        started = ready.wait(SERVER_START) and server.poll() is None
        assert started, f"JupyterLab did not start within {SERVER_START}s:\n{log.read_text()}"
        yield Lab(url, token, log)
    finally:
        try:  # a clean shutdown also stops the kernel (and the exchange inside it)
            request = urllib.request.Request(f"{url}/api/shutdown", method="POST")
            request.add_header("Authorization", f"token {token}")
            urllib.request.urlopen(request, timeout=10).close()
        except OSError:
            server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        reader.join(timeout=10)


@contextmanager
def browser_page(lab: Lab, folder: Path) -> Iterator[tuple[Any, Callable[[str], None], list[str]]]:
    """Headless Chromium on a fresh page; ``shot(name)`` saves a numbered screenshot in ``folder`` (its
    old screenshots removed) and ``shots`` lists them. A failure saves failure.png and prints the server log."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP)  # every expectation waits as long as a step may take (2 busy cores)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    shots: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(STEP)

        def shot(name: str) -> None:
            path = folder / f"{len(shots) + 1:02d}-{name}.png"
            page.screenshot(path=str(path))
            shots.append(path.name)

        try:
            yield page, shot, shots
        except Exception:
            page.screenshot(path=str(folder / "failure.png"))
            print(lab.log.read_text()[-5000:])
            raise
        finally:
            browser.close()


def test_a_user_trades_from_the_notebook_and_stops_everything(lab):
    from playwright.sync_api import expect

    with browser_page(lab, ARTIFACTS) as (page, shot, shots):
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
        expect(page.get_by_role("heading", name="Interactive trading from a notebook")).to_be_visible()
        shot("notebook-opened")

        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        audit = page.locator(".jp-OutputArea-output", has_text="ui_cancel")
        expect(audit).to_be_visible(timeout=RUN_ALL)  # the last code cell: every cell ran
        panel = page.locator(".wb-trading-panel")
        expect(panel).to_be_visible()
        session_banner = page.locator(".jp-OutputArea-output", has_text="Orders go to a test exchange")
        expect(session_banner.filter(has_not=panel).first).to_be_visible()  # the session, displayed
        expect(panel.locator(".wb-banner")).to_contain_text("TESTNET")
        panel.scroll_into_view_if_needed()
        shot("cells-run-panel-shown")

        ticket = panel.locator(".wb-ticket")
        buy, sell = (ticket.locator(f'.wb-side button[data-value="{side}"]') for side in ("buy", "sell"))
        send = ticket.locator("button.wb-send")
        sell.click()  # buy and sell never look alike: green buy, red sell, and Send says which
        expect(sell).to_have_css("background-color", "rgb(183, 28, 28)")
        expect(buy).to_have_css("background-color", "rgb(232, 245, 233)")
        expect(send).to_have_text("Send SELL")
        buy.click()
        expect(buy).to_have_css("background-color", "rgb(27, 94, 32)")
        expect(sell).to_have_css("background-color", "rgb(255, 235, 238)")
        expect(send).to_have_text("Send BUY")
        ticket.locator(".wb-type select").select_option("LIMIT")
        last = ticket.locator(".wb-last-price")
        expect(last).to_contain_text("Last price of BTC/USDT")
        price = Decimal(re.search(r"([0-9.]+)\s*$", last.inner_text()).group(1))  # type: ignore[union-attr]
        limit = (price * Decimal("0.97")).quantize(Decimal("0.01"))
        ticket.locator(".wb-amount input").fill("0.002")
        ticket.locator(".wb-price input").fill(f"{limit:f}")
        expect(ticket.locator(".wb-preview")).to_contain_text("price_band_pct")
        expect(send).to_be_enabled()  # the kernel reviewed the typed values: every check passes
        ticket.scroll_into_view_if_needed()
        shot("ticket-filled")

        send.click()
        confirmation = ticket.locator(".wb-confirmation")
        expect(confirmation).to_be_visible()
        summary = f"BUY 0.002 BTC on BTC/USDT LIMIT at {limit.normalize():f} GTC"
        expect(confirmation).to_contain_text(summary)
        blotter = panel.locator(".wb-blotter")
        expect(blotter.locator(".wb-open-orders")).to_contain_text("No open orders")  # nothing sent yet
        shot("confirmation")

        ticket.locator("button.wb-confirm").click()
        row = blotter.locator(".wb-open-orders .wb-order", has_text="BUY 0.002 BTC/USDT LIMIT")
        expect(row).to_be_visible()
        expect(row).to_contain_text("NEW")
        expect(ticket.locator(".wb-message")).to_contain_text("is NEW")
        expect(confirmation).to_be_hidden()
        order_id = row.inner_text().split(":")[0].strip()
        blotter.scroll_into_view_if_needed()
        shot("order-in-blotter")

        # The sequence that hung: 0.001 at an absurd price, Use rounded values, clear the price...
        amount, price_box = ticket.locator(".wb-amount input"), ticket.locator(".wb-price input")
        amount.fill("0.001")
        price_box.fill("1.005")
        hints = ticket.locator(".wb-hints")
        expect(hints).to_contain_text("PERCENT_PRICE_BY_SIDE")
        ticket.locator("button.wb-apply").click()  # Use rounded values
        expect(price_box).to_have_value("1.01")
        expect(amount).to_have_value("0.001")  # never sized up at the absurd price
        expect(hints).to_contain_text("the quantity is not resized at it")
        ticket.scroll_into_view_if_needed()
        shot("rounded-not-inflated")
        price_box.fill("")
        amount.fill("0.001")
        expect(hints).to_contain_text("The price field is empty: type the limit price")
        expect(send).to_be_disabled()
        expect(price_box).to_have_value("")  # never silently the last price
        shot("empty-price-refused")
        price_box.fill(f"{limit:f}")
        expect(send).to_be_enabled()
        send.click()  # ... and Send answers
        expect(confirmation).to_contain_text(f"BUY 0.001 BTC on BTC/USDT LIMIT at {limit.normalize():f} GTC")
        ticket.locator("button.wb-confirm").click()
        second = blotter.locator(".wb-open-orders .wb-order", has_text="BUY 0.001 BTC/USDT LIMIT")
        expect(second).to_be_visible()
        second_id = second.inner_text().split(":")[0].strip()
        shot("limit-after-the-sequence-sent")

        ticket.locator(".wb-type select").select_option("MARKET")  # a MARKET Send right after a LIMIT
        expect(send).to_be_enabled()
        send.click()
        expect(confirmation).to_contain_text("BUY 0.001 BTC on BTC/USDT MARKET")
        expect(confirmation.locator(".wb-side-badge")).to_have_text("BUY")
        shot("market-confirmation")
        ticket.locator("button.wb-confirm").click()
        expect(ticket.locator(".wb-message")).to_contain_text("is FILLED")
        expect(blotter.locator(".wb-fills")).to_contain_text("0.001 BTC/USDT")
        shot("market-after-limit-filled")

        panel.locator("button.wb-emergency").click()
        halted = panel.locator(".wb-halted")
        expect(halted).to_contain_text("HALTED")
        report = panel.locator(".wb-emergency-report")
        expect(report).to_contain_text("Canceled 2 order(s)")
        expect(report).to_contain_text(order_id)
        expect(report).to_contain_text(second_id)
        expect(blotter.locator(".wb-open-orders")).to_contain_text("No open orders")
        expect(send).to_be_disabled()
        halted.scroll_into_view_if_needed()
        shot("halted")

    assert shots == [
        "01-notebook-opened.png",
        "02-cells-run-panel-shown.png",
        "03-ticket-filled.png",
        "04-confirmation.png",
        "05-order-in-blotter.png",
        "06-rounded-not-inflated.png",
        "07-empty-price-refused.png",
        "08-limit-after-the-sequence-sent.png",
        "09-market-confirmation.png",
        "10-market-after-limit-filled.png",
        "11-halted.png",
    ]
    assert all((ARTIFACTS / name).stat().st_size > 10_000 for name in shots)
