"""Every panel of a session together: banner, ticket, emergency stop and blotter."""

from __future__ import annotations

import ipywidgets as widgets

from workbench.session import TradingSession
from workbench.ui.base import _Panel
from workbench.ui.blotter import Blotter
from workbench.ui.emergency import EmergencyStopButton
from workbench.ui.ticket import OrderTicket


class TradingPanel(_Panel):
    """The mode banner, the order ticket, the emergency stop and the blotter of ``session``, with one
    HALTED bar for all of them. ``refresh_every`` (seconds) also refreshes balances and marks on a timer."""

    def __init__(self, session: TradingSession, *, refresh_every: float | None = None) -> None:
        super().__init__(session, header=True)
        self.ticket = OrderTicket(session, header=False)
        self.emergency = EmergencyStopButton(session, header=False)
        self.blotter = Blotter(session, header=False, refresh_every=refresh_every)
        right = widgets.VBox(
            [self.emergency.widget, self.blotter.widget],
            layout=widgets.Layout(flex="1 1 420px", min_width="420px", margin="0 0 0 16px"),
        )
        self.widget = widgets.VBox(
            [*self._head(), widgets.HBox([self.ticket.widget, right], layout=widgets.Layout(flex_flow="row wrap"))]
        )
        self.widget.add_class("wb-trading-panel")

    async def wait(self) -> None:
        """Wait until the work of every part's buttons has finished."""
        for part in (self.ticket, self.emergency, self.blotter):
            await part.wait()
        await super().wait()

    def close(self) -> None:
        for part in (self.ticket, self.emergency, self.blotter):
            part.close()
        super().close()
