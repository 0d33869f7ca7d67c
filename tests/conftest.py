"""Fixtures that build real objects: Binance rules, engines, DuckDB stores on disk, bars."""

from __future__ import annotations

import socket
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from workbench.data import load_rules
from workbench.matching import MatchingEngine
from workbench.store import Store

T0 = 1_700_000_000_000

# No test may reach a mainnet host: every name lookup of one (*.binance.com) is refused and
# recorded, and a run that recorded one fails even where the refusal was caught.
MAINNET_LOOKUPS: list[str] = []
_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.rstrip(".").endswith("binance.com"):
        MAINNET_LOOKUPS.append(name)
        raise OSError(f"tests must not reach the mainnet host {name}")
    return _getaddrinfo(host, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    socket.getaddrinfo = _guarded_getaddrinfo


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if MAINNET_LOOKUPS:
        print(f"\nA test tried to reach mainnet hosts: {sorted(set(MAINNET_LOOKUPS))}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
async def exchange():
    """The local Binance exchange on 127.0.0.1 (BTC/USDT and ETH/USDT, a thin book), for ccxt."""
    from workbench.exchange import LocalExchange
    from workbench.matching import BookConfig

    async with LocalExchange(("BTC/USDT", "ETH/USDT"), book=BookConfig(level_notional=Decimal(20_000))) as ex:
        yield ex


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


def write_klines(folder, symbol: str, bars: pd.DataFrame) -> None:
    """Write ``bars`` as a Binance kline CSV under ``folder/binance/spot/1m``."""
    from workbench.data import KLINE_COLUMNS

    frame = pd.DataFrame(
        {
            "open_time": bars.index.as_unit("ms").astype("int64"),
            **{c: bars[c] for c in ("open", "high", "low", "close", "volume")},
            "close_time": bars["close_time"].dt.as_unit("ms").astype("int64"),
            "quote_volume": bars["close"],
            "trades": 10,
            "taker_buy_base_volume": 0.5,
            "taker_buy_quote_volume": bars["close"] / 2,
        }
    )
    target = folder / "binance" / "spot" / "1m"
    target.mkdir(parents=True, exist_ok=True)
    frame[list(KLINE_COLUMNS)].to_csv(target / f"{symbol.replace('/', '')}-1m.csv", index=False)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data folder with 400 synthetic BTCUSDT 1m klines in Binance's CSV layout (WORKBENCH_DATA)."""
    folder = tmp_path / "data"
    write_klines(folder, "BTC/USDT", make_bars(400))
    monkeypatch.setenv("WORKBENCH_DATA", str(folder))
    return folder
