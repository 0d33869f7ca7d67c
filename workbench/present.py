"""Numbers for people: the report's formatting, one place. Thousands separators, fixed decimals,
percentages, basis points, milliseconds and durations; never scientific notation; a dash for a
missing value."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

MISSING = "–"
LARGE = 1e9  # beyond this, a ratio says "more than" instead of printing a meaningless 13-digit figure


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array is not a missing value
        return False


def number(value: Any, decimals: int = 2) -> str:
    """``1234.5`` -> ``"1,234.50"``; small values keep three significant digits (``0.000123`` ->
    ``"0.000123"``), never ``1.23e-04``."""
    if _missing(value):
        return MISSING
    x = float(value) + 0.0  # no "-0.00"
    if x == 0:
        x = 0.0
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if abs(x) >= LARGE:
        return f"{'>' if x > 0 else '<'} {'-' if x < 0 else ''}{LARGE:,.0f}"
    if x != 0 and abs(x) < 10**-decimals:
        digits = min(12, 2 - math.floor(math.log10(abs(x))))  # three significant digits
        return f"{x:,.{digits}f}".rstrip("0")
    return f"{x:,.{decimals}f}"


def quote(value: Any, decimals: int = 2) -> str:
    """An amount of the quote currency (the unit is in the column's name)."""
    return number(value, decimals)


def pct(value: Any, decimals: int = 2) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``"12.34 %"``."""
    return MISSING if _missing(value) else f"{number(float(value) * 100, decimals)} %"


def bps(value: Any, decimals: int = 1) -> str:
    """Basis points: ``3.25`` -> ``"3.2 bps"``."""
    return MISSING if _missing(value) else f"{number(value, decimals)} bps"


def ms(value: Any) -> str:
    """Milliseconds: ``1234.4`` -> ``"1,234 ms"``."""
    return MISSING if _missing(value) else f"{number(value, 0)} ms"


def duration(value: Any) -> str:
    """A time span in milliseconds (or a Timedelta) as ``"2 h 05 min"``, ``"3 min 20 s"``, ``"850 ms"``."""
    if _missing(value):
        return MISSING
    total = value.total_seconds() * 1000 if isinstance(value, pd.Timedelta) else float(value)
    seconds = total / 1000
    if seconds < 1:
        return ms(total)
    days, rest = divmod(int(round(seconds)), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def when(value: Any) -> str:
    """A timestamp to the second, in UTC (say so in the heading): ``"2024-01-01 08:45:59"``."""
    if _missing(value):
        return MISSING
    stamp = pd.Timestamp(value)
    return f"{stamp.tz_localize('UTC') if stamp.tz is None else stamp.tz_convert('UTC'):%Y-%m-%d %H:%M:%S}"


def count(value: Any) -> str:
    """A whole number with thousands separators."""
    return MISSING if _missing(value) else f"{int(value):,}"


FORMATS = {
    "quote": quote,
    "price": lambda v: number(v, 2),
    "units": lambda v: number(v, 6),
    "pct": pct,
    "bps": bps,
    "ms": ms,
    "duration": duration,
    "time": when,
    "count": count,
    "ratio": number,
    "text": lambda v: MISSING if _missing(v) else str(v),
}


def table(frame: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """``frame``'s ``columns`` as strings for people: ``{column: (heading with its unit, kind)}``,
    kind one of :data:`FORMATS`. Returns a new frame of strings, headed by the headings."""
    out = pd.DataFrame(index=frame.index)
    for column, (heading, kind) in columns.items():
        out[heading] = [FORMATS[kind](v) for v in frame[column]] if column in frame else MISSING
    return out


def figures(items: Mapping[str, tuple[Any, str]]) -> pd.DataFrame:
    """A two-column table of labelled figures: ``{label: (value, kind)}``."""
    return pd.DataFrame({"value": [FORMATS[kind](v) for v, kind in items.values()]}, index=list(items)).rename_axis(
        "figure"
    )


def banner(mode: str, session_id: str, *, venue: str | None = None) -> str:
    """The mode banner of a recorded session as HTML, in the colours the live panels use."""
    import html

    from workbench.config import TradingMode
    from workbench.ui import MODE_STYLES

    style = MODE_STYLES[TradingMode(mode)]
    where = f"venue {html.escape(str(venue))} &middot; " if venue else ""
    return (
        f'<div style="background:{style.background};color:{style.colour};padding:6px 10px;border-radius:4px">'
        f'<b style="letter-spacing:0.05em">{style.title}</b> &mdash; {html.escape(style.words)}<br>'
        f'<span style="font-family:monospace">{where}session {html.escape(session_id)}</span></div>'
    )
