"""The mode banner: blue PAPER, orange TESTNET, red MAINNET with a yellow frame; the HALTED bar."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from IPython import get_ipython

from workbench.config import TradingMode
from workbench.session import TradingSession


@dataclass(frozen=True)
class ModeStyle:
    """How a mode looks: its colours, its title and the sentence that says what an order does there."""

    background: str
    colour: str
    title: str
    words: str


MODE_STYLES: dict[TradingMode, ModeStyle] = {
    TradingMode.PAPER: ModeStyle(
        "#1565c0", "#ffffff", "PAPER", "Simulated fills in this kernel: no order leaves this machine."
    ),
    TradingMode.TESTNET: ModeStyle(
        "#e65100",
        "#ffffff",
        "TESTNET",
        "Orders go to a test exchange with test funds: the real API, no real money. Each order needs a Confirm click.",
    ),
    TradingMode.MAINNET: ModeStyle(
        "#b71c1c",
        "#ffffff",
        "MAINNET: REAL MONEY",
        "Orders go to Binance and spend real money. Each order needs its symbol and quantity typed back.",
    ),
}

_HALTED_STYLE = "background:#212121;color:#ffeb3b;padding:6px 10px;border-radius:4px;font-weight:bold"


def account_name(session: TradingSession) -> str:
    """The account a session trades in, as the banner names it (never a key)."""
    return getattr(session.executor, "account", None) or f"{session.mode} account (simulated balances)"


def banner_html(session: TradingSession) -> str:
    """The mode banner of ``session`` as HTML: mode, what an order does there, venue URL, account and
    session id. Never an API key."""
    style = MODE_STYLES[session.mode]
    mainnet = session.mode is TradingMode.MAINNET
    border = "border:6px solid #ffeb3b;" if mainnet else ""
    size = "1.6em" if mainnet else "1.15em"
    mark = "&#9888; " if mainnet else ""
    venue, account = html.escape(str(session.executor.venue)), html.escape(account_name(session))
    return (
        f'<div style="background:{style.background};color:{style.colour};padding:6px 10px;border-radius:4px;'
        f'{border}line-height:1.4">'
        f'<span style="font-size:{size};font-weight:bold;letter-spacing:0.05em">{mark}{style.title}</span>'
        f" &mdash; {html.escape(style.words)}<br>"
        f'<span style="font-family:monospace">venue {venue} &middot; account {account} &middot; '
        f"session {html.escape(session.session_id)}</span></div>"
    )


def mode_banner(session: TradingSession) -> widgets.HTML:
    """A banner that makes ``session``'s mode impossible to miss: blue PAPER, orange TESTNET, red
    MAINNET with a yellow frame; with the venue URL and the account, never an API key."""
    banner = widgets.HTML(banner_html(session), layout=widgets.Layout(width="100%"))
    banner.add_class("wb-banner")
    banner.add_class(f"wb-mode-{session.mode.value}")
    return banner


def show_banners(shell: Any = None) -> bool:
    """Make IPython (Jupyter, nbval, papermill) display every :class:`TradingSession` as its mode
    banner; done when this module is imported. Returns whether an IPython shell was there to tell."""
    shell = shell if shell is not None else get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(TradingSession, banner_html)
    return True


def halted_html(reason: str) -> str:
    """The HALTED bar's HTML for a kill switch tripped for ``reason``."""
    return (
        f'<div style="{_HALTED_STYLE}">HALTED: the kill switch is tripped ({html.escape(reason)}). '
        "New orders are refused everywhere until it is cleared: press <i>Clear kill switch</i> on the "
        "emergency stop panel, or run <code>workbench kill-switch clear</code>.</div>"
    )
