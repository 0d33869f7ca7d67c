"""Fixtures that build real objects: Binance rules, engines, DuckDB stores on disk, bars."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from workbench.data import load_rules
from workbench.matching import MatchingEngine
from workbench.store import Store

T0 = 1_700_000_000_000


@pytest.fixture(scope="session")
def rules():
    return load_rules()


@pytest.fixture
def engine(rules):
    """One account with 100k USDT and 1 BTC, BTC/USDT last traded at 50,000."""
    e = MatchingEngine(rules, {"USDT": 100_000, "BTC": 1, "ETH": 0})
    e.set_price("BTC/USDT", Decimal(50_000), T0)
    e.set_price("ETH/USDT", Decimal(3_000), T0)
    return e


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.duckdb")
    yield s
    s.close()


def make_bars(n: int = 600, start: float = 50_000.0, seed: int = 7) -> pd.DataFrame:
    """A random-walk 1m bar frame in the bundled data's layout (for tests that need no real data)."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="open_time")
    frame = pd.DataFrame(
        {"open": close, "high": close * 1.001, "low": close * 0.999, "close": close, "volume": 1.0}, index=index
    )
    frame["close_time"] = index + pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1)
    return frame
