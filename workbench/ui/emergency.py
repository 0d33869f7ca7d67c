"""The emergency stop: trip the kill switch, cancel every open order, clear it again."""

from __future__ import annotations

import html

import ipywidgets as widgets

from workbench.session import EmergencyReport, TradingSession
from workbench.ui.base import _Panel, describe_order


class EmergencyStopButton(_Panel):
    """A red button that trips the kill switch and cancels every open order of the session
    (:meth:`TradingSession.emergency_stop`), then shows what was canceled and what could not be.
    Every panel of the session shows HALTED until *Clear kill switch* is pressed."""

    def __init__(self, session: TradingSession, *, header: bool = True) -> None:
        super().__init__(session, header=header)
        self.button = widgets.Button(
            description="EMERGENCY STOP",
            button_style="danger",
            icon="stop",
            tooltip="Trip the kill switch and cancel every open order",
            layout=widgets.Layout(width="220px", height="48px"),
        )
        self.button.add_class("wb-emergency")
        self.clear_button = widgets.Button(description="Clear kill switch", icon="unlock", button_style="warning")
        self.clear_button.add_class("wb-clear-halt")
        self.report_html = widgets.HTML()
        self.report_html.add_class("wb-emergency-report")
        self.report: EmergencyReport | None = None
        self.button.on_click(lambda _: self._spawn(self.stop()))
        self.clear_button.on_click(lambda _: self._soon(self.clear))
        self.widget = widgets.VBox([*self._head(), self.button, self.report_html, self.clear_button, self.message])
        self.widget.add_class("wb-emergency-panel")
        self._show_halt()

    async def stop(self, reason: str = "emergency stop button") -> EmergencyReport | None:
        """Trip the kill switch, cancel every open order and show the report."""
        self._audit("ui_emergency_stop", {"reason": reason})
        try:
            report = await self.session.emergency_stop(reason, source="ui")
        except Exception as e:  # e.g. a ccxt network error while canceling
            self._say(
                "error",
                f"The emergency stop failed part way: {e}. The kill switch is tripped if it got that far; "
                "check the open orders on the venue and press the button again.",
            )
            return None
        self.report = report
        lines = [f"Kill switch tripped. Canceled {len(report.canceled)} order(s)."]
        lines += [f"canceled {describe_order(o)}" for o in report.canceled]
        lines += [f"could not cancel on {symbol}: {error}" for symbol, error in report.failed]
        lines.append("New orders are refused until you press Clear kill switch.")
        self.report_html.value = "<br>".join(html.escape(line) for line in lines)
        self._show_halt()
        return report

    def clear(self, by: str = "notebook panel") -> None:
        """Clear the kill switch (audited) so that orders may be sent again."""
        if not self.halted:
            self._say("info", "The kill switch is not tripped: nothing to clear.")
            return
        self.session.kill_switch.clear(by)
        self._audit("ui_clear_halt", {"by": by})
        self.report_html.value = ""
        self._say("ok", "Kill switch cleared: orders may be sent again.")
        self._hub.halt_changed()

    def _show_halt(self) -> None:
        super()._show_halt()
        if hasattr(self, "clear_button"):
            self.clear_button.layout.display = None if self.halted else "none"
