"""Notebook trading panels (ipywidgets): the mode banner, an order ticket with its confirmation, a
live blotter and the emergency stop; :class:`TradingPanel` puts them together. The only package of
workbench that imports widgets: one module per panel (``banner``, ``ticket``, ``blotter``,
``emergency``, ``panel``) on the shared plumbing of ``base``.

Every panel shows the session's mode and, while the kill switch is tripped, a HALTED bar. All panel
work runs on the session's event loop, the loop the session's first panel was made on (the kernel's,
in Jupyter), whatever thread a click, a typed value or an executor event arrives on; ``await
panel.wait()`` waits for the work buttons started. Importing this package makes IPython display a
session as its mode banner (:func:`show_banners`); the session never imports the UI.

Every confirmation, refusal and cancel made in a panel is written to the store's audit log (kinds
``ui_confirm``, ``ui_refuse``, ``ui_dismiss``, ``ui_cancel``, ``ui_emergency_stop``,
``ui_clear_halt``) with the time and the summary confirmed.
"""

from workbench.ui.banner import MODE_STYLES, ModeStyle, banner_html, mode_banner, show_banners
from workbench.ui.base import describe_order, describe_request
from workbench.ui.blotter import Blotter
from workbench.ui.emergency import EmergencyStopButton
from workbench.ui.panel import TradingPanel
from workbench.ui.ticket import SIDE_COLOURS, OrderTicket, Review

__all__ = [
    "MODE_STYLES",
    "SIDE_COLOURS",
    "Blotter",
    "EmergencyStopButton",
    "ModeStyle",
    "OrderTicket",
    "Review",
    "TradingPanel",
    "banner_html",
    "describe_order",
    "describe_request",
    "mode_banner",
    "show_banners",
]

show_banners()
