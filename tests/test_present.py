"""Numbers for people: separators, units, no scientific notation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from workbench import present


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234567.891, "1,234,567.89"),
        (0.5, "0.50"),
        (-0.0, "0.00"),
        (0.000123, "0.000123"),
        (-0.00000457, "-0.00000457"),
        (2.6e-05, "0.000026"),
        (9.2e10, "> 1,000,000,000"),
        (np.nan, "–"),
        (None, "–"),
        (pd.NA, "–"),
    ],
)
def test_number(value, text):
    assert present.number(value) == text


def test_units():
    assert present.pct(0.1234) == "12.34 %"
    assert present.pct(-0.000004) == "-0.0004 %"
    assert present.bps(3.25) == "3.2 bps"
    assert present.ms(1234.4) == "1,234 ms"
    assert present.duration(850) == "850 ms"
    assert present.duration(200_000) == "3 min 20 s"
    assert present.duration(pd.Timedelta(hours=2, minutes=5)) == "2 h 05 min"
    assert present.duration(3 * 86_400_000 + 3_600_000) == "3 d 01 h"
    assert present.when(pd.Timestamp("2024-01-01 08:45:59.999", tz="UTC")) == "2024-01-01 08:45:59"
    assert present.count(1234567) == "1,234,567"


def test_no_magnitude_is_printed_in_scientific_notation():
    for exponent in range(-15, 16):
        for kind in ("quote", "pct", "bps", "ms", "ratio", "units"):
            text = present.FORMATS[kind](1.2345 * 10.0**exponent)
            assert not re.search(r"\d[eE][+-]?\d", text), (kind, exponent, text)


def test_table_heads_columns_with_their_units():
    frame = pd.DataFrame({"pnl": [1234.5, -0.25], "ret": [0.01, np.nan]})
    out = present.table(frame, {"pnl": ("PnL (USDT)", "quote"), "ret": ("return", "pct"), "gone": ("x", "text")})
    assert out.to_dict("list") == {"PnL (USDT)": ["1,234.50", "-0.25"], "return": ["1.00 %", "–"], "x": ["–", "–"]}
