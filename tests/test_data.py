"""load_klines over the catalog: the bundled real slice, the shared year beside the repository, one
series, labelled; the README's first example verbatim on real data; gaps listed, never filled."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from workbench import data
from workbench.catalog import Catalog
from workbench.data import find_gaps, load_klines
from workbench.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
BUNDLED_BARS = 92 * 1440  # 2023-06-26 .. 2023-09-25


@pytest.fixture
def bundled_only(monkeypatch):
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    monkeypatch.setenv("WORKBENCH_SHARED_DATA", "")


def test_a_fresh_clone_reads_the_bundled_real_klines(bundled_only):
    assert data.available_symbols() == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        bars = load_klines(symbol)
        assert len(bars) == BUNDLED_BARS and find_gaps(bars).empty
        assert bars.index[0] == pd.Timestamp("2023-06-26", tz="UTC")
        assert bars.index[-1] == pd.Timestamp("2023-09-25 23:59", tz="UTC")
        assert bars.attrs["source"] == (
            f"Binance spot 1m klines of {symbol.replace('/', '')} (data/binance), "
            "2023-06-26 00:00 .. 2023-09-25 23:59 UTC, 132,480 bars"
        )
        assert (bars["close_time"] - bars.index == pd.Timedelta(milliseconds=59_999)).all()


def test_the_catalog_is_queried_by_duckdb_directly():
    counts = duckdb.sql(
        f"SELECT symbol, count(*) AS n, count(DISTINCT month) AS months FROM read_parquet("
        f"'{REPO}/data/binance/spot/klines/*/*/*/*.parquet', hive_partitioning = true) GROUP BY symbol ORDER BY symbol"
    ).fetchall()
    assert counts == [("BTCUSDT", BUNDLED_BARS, 4), ("ETHUSDT", BUNDLED_BARS, 4), ("SOLUSDT", BUNDLED_BARS, 4)]


@pytest.mark.skipif(data.shared_dir() is None, reason="no ../shared/data/binance beside the repository")
def test_the_shared_year_and_the_bundle_are_one_series(monkeypatch):
    monkeypatch.delenv("WORKBENCH_DATA", raising=False)
    year = load_klines("ETH/USDT")
    assert len(year) == 527_040 and find_gaps(year).empty and year.index.is_unique
    assert year.index[0] == pd.Timestamp("2023-06-26", tz="UTC")
    assert "shared/data/binance" in year.attrs["source"] and "527,040 bars" in year.attrs["source"]
    monkeypatch.setenv("WORKBENCH_SHARED_DATA", "")
    bundled = load_klines("ETH/USDT")
    pd.testing.assert_frame_equal(year.loc[bundled.index], bundled, check_exact=True, check_like=True)


def test_no_real_klines_is_a_clear_error_and_the_sample_says_it_is_synthetic(data_dir):
    with pytest.raises(ConfigError, match=r"No 1m klines for ETH/USDT .*workbench data download ETHUSDT"):
        load_klines("ETH/USDT")
    sample = load_klines("ETH/USDT", allow_sample=True)
    assert sample.attrs["source"].startswith("SYNTHETIC sample of ETH/USDT")
    with pytest.raises(ConfigError, match=r"No 1m klines of BTC/USDT between 2030-01-01 and None"):
        load_klines("BTC/USDT", start="2030-01-01")


def test_gaps_are_listed_and_never_filled(tmp_path):
    catalog = Catalog(tmp_path / "binance")
    rows = Catalog(REPO / "data" / "binance").read("SOLUSDT").head(600)
    halt = rows.iloc[100:180]  # 80 minutes, as long as Binance's halt of 2023-03-24
    assert catalog.ingest("SOLUSDT", "1m", rows.drop(halt.index).astype(str), "test") == 520
    assert catalog.ingest("SOLUSDT", "1m", rows.head(50).astype(str), "again") == 0  # what is there stays
    assert catalog.sources("SOLUSDT", "1m", "2023-06") == {"test"}
    bars = load_klines("SOL/USDT", folder=tmp_path)
    gaps = find_gaps(bars)
    assert len(bars) == 520 and len(gaps) == 1 and gaps["bars"].iloc[0] == 80
    first = pd.to_datetime(halt["open_time"].iloc[0], unit="ms", utc=True)
    assert gaps["first_missing"].iloc[0] == first and gaps["last_missing"].iloc[0] == first + pd.Timedelta(minutes=79)
    assert not list(tmp_path.rglob("*.tmp"))


async def test_the_readme_first_example_runs_verbatim_on_real_data(bundled_only, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example's store is data/workbench.duckdb, relative
    (tmp_path / "data").mkdir()
    scope: dict = {}
    await eval(compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), scope)
    assert scope["bars"].index[0] == pd.Timestamp("2023-09-18", tz="UTC") and len(scope["bars"]) == 8 * 1440
    assert "Binance spot 1m klines of BTCUSDT" in capsys.readouterr().out
    assert scope["session"].kill_switch.tripped and len(scope["summary"]) > 0
    scope["session"].store.close()
