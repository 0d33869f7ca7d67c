import subprocess
import sys

import pandas as pd
import pytest

from workbench.cli import main
from workbench.data import available_symbols, klines_to_duckdb, load_klines, load_rules
from workbench.errors import ConfigError
from workbench.store import Store


def test_loader_reads_binance_klines_into_pandas_and_duckdb(data_dir):
    bars = load_klines("BTC/USDT")
    assert len(bars) == 400 and bars.index.tz is not None and bars.index.is_monotonic_increasing
    assert (bars["close_time"] - bars.index == pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1)).all()
    window = load_klines("BTC/USDT", start="2024-01-01 01:00", end=pd.Timestamp("2024-01-01 01:09", tz="UTC"), limit=5)
    assert list(window.index.strftime("%H:%M")) == ["01:00", "01:01", "01:02", "01:03", "01:04"]
    assert available_symbols() == ["BTC/USDT"]
    import duckdb

    con = duckdb.connect()
    assert klines_to_duckdb(con, ["BTC/USDT"]) == 400
    assert klines_to_duckdb(con, ["BTC/USDT"]) == 400  # again: no duplicates
    assert con.execute("SELECT count(*) FROM klines").fetchone()[0] == 400
    with pytest.raises(ConfigError, match="bundled symbols: BTC/USDT"):
        load_klines("ETH/USDT")
    with pytest.raises(ConfigError, match="No trading rules"):
        load_rules(["DOGE/EUR"])


def test_workbench_paper_prints_a_summary_and_where_the_fills_are(data_dir, tmp_path, capsys):
    store = tmp_path / "cli.duckdb"
    args = ["paper", "--store", str(store), "--bars", "300", "--fast", "5", "--slow", "20", "--size", "0.01"]
    assert main([*args, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Paper session wb-" in out and "300 bars" in out and "BTC/USDT" in out and str(store) in out
    with Store(store) as s:
        assert s.sql("SELECT count(*) > 0 FROM fills")[0][0]


def test_kill_switch_commands(tmp_path, capsys):
    store = str(tmp_path / "k.duckdb")
    Store(store).close()
    assert main(["kill-switch", "status", "--store", store]) == 0
    assert "clear" in capsys.readouterr().out
    assert main(["kill-switch", "trip", "--store", store, "--reason", "lunch"]) == 0
    assert main(["kill-switch", "status", "--store", store]) == 0
    assert "TRIPPED (lunch)" in capsys.readouterr().out
    assert main(["kill-switch", "clear", "--store", store]) == 0
    assert main(["kill-switch", "status", "--store", store]) == 0
    assert capsys.readouterr().out.strip().endswith("clear")


def test_errors_are_one_line_messages_with_exit_code_2(data_dir, capsys):
    assert main(["paper", "--symbols", "DOGE/EUR", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("workbench: No trading rules for ['DOGE/EUR']")


def test_the_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "kill-switch" in result.stdout
