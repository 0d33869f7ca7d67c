"""The path a bar's price walks inside the bar, the same for the local exchange, paper and replay.

A kline gives four prices but not the order they traded in: the workbench takes the open, then
the nearer extreme (the low of a bar that closes at or above its open, the high of one that closes
below), the other extreme, and the close. The local exchange, paper sessions and replays fill
resting orders and trigger stops along this one path, so a stop touched inside a bar triggers in
every mode, at the same prices.
"""

from __future__ import annotations

from decimal import Decimal


def price(value: float) -> Decimal:
    """A bar's float price as the Decimal it prints as (``repr``: 29999.99, never 29999.989999...)."""
    return Decimal(repr(float(value)))


def path(open_: float, high: float, low: float, close: float) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """The prices a bar walks through: open, the nearer extreme, the other extreme, close. A bar
    that closes at or above its open dips first (open, low, high, close); one that closes below it
    rises first (open, high, low, close)."""
    o, h, l, c = price(open_), price(high), price(low), price(close)  # noqa: E741
    return (o, l, h, c) if c >= o else (o, h, l, c)
