"""Fixtures that build real objects: Binance rules, engines, DuckDB stores on disk, bars."""

from __future__ import annotations

import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.netguard import sitecustomize as netguard  # installs the guard in this process
from workbench.data import load_rules
from workbench.matching import MatchingEngine
from workbench.store import Store

T0 = 1_700_000_000_000

# No test may reach the network: every name lookup of anything but loopback is refused and recorded,
# in this process and in every subprocess and kernel the tests start (they inherit PYTHONPATH, so
# they import tests/netguard/sitecustomize.py at start-up); a run that recorded one fails even where
# the refusal was caught.
NETGUARD = Path(__file__).parent / "netguard"


def pytest_configure(config: pytest.Config) -> None:
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(NETGUARD) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(NETGUARD), *filter(None, paths)])
    if netguard.RECORD not in os.environ:  # a pytest the tests start records into its parent's file
        folder = Path(tempfile.mkdtemp(prefix="workbench-lookups-"))
        os.environ[netguard.RECORD] = str(folder / "refused.txt")
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def refused_lookups(path: str | Path | None = None) -> list[str]:
    """The lookups refused so far (``pid function 'host'`` lines), in the run's file or ``path``."""
    path = Path(path or os.environ[netguard.RECORD])
    return path.read_text().splitlines() if path.exists() else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    refused = refused_lookups()
    if refused:
        print("\nTests tried to look up names outside loopback (pid, function, name):\n  " + "\n  ".join(refused))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def lookups(tmp_path, monkeypatch):
    """For a test that looks a name up on purpose: its refused lookups (its own, its subprocesses'
    and its kernels') go to a file of its own, not the run's; returns a function that reads them."""
    path = tmp_path / "refused-lookups.txt"
    monkeypatch.setenv(netguard.RECORD, str(path))
    return lambda: refused_lookups(path)


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
