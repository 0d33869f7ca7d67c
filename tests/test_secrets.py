"""No API key in any output: logs, executed notebooks, DuckDB and Parquet files, exception texts."""

import logging
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.config import MAINNET_ENV, Credentials, TradingMode, load_config
from workbench.errors import ConfigError, WorkbenchError
from workbench.exchange import LocalExchange
from workbench.executors import build_executor
from workbench.report import report
from workbench.runs import check_parameters, sweep
from workbench.session import TradingSession

KEYS = {
    "BINANCE_TESTNET_API_KEY": "FAKE-TESTNET-KEY-7c1e9a0b",
    "BINANCE_TESTNET_API_SECRET": "FAKE-TESTNET-SECRET-55d2f4e8",
    "BINANCE_API_KEY": "FAKE-MAINNET-KEY-a9b8c7d6",
    "BINANCE_API_SECRET": "FAKE-MAINNET-SECRET-e5f4a3b2",
}


SECRET = KEYS["BINANCE_TESTNET_API_SECRET"]


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def leaks(text: bytes | str) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [name for name, value in KEYS.items() if value.encode() in data]


def test_a_session_a_sweep_and_the_cli_write_no_key_anywhere(data_dir, tmp_path, monkeypatch, capfd, caplog):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert main(["paper", "--store", "paper.duckdb", "--bars", "200", "--fast", "5", "--slow", "20", "--quiet"]) == 0
    frame = sweep(
        {"fast": [3, 5]},
        sweep_id="secrets",
        base={"bars": 200, "strategy_params": {"slow": 20}},
        store_path="sweep.duckdb",
        progress=False,
    )
    assert set(frame["status"]) == {"completed"}
    assert main(["kill-switch", "trip", "--store", "paper.duckdb"]) == 0
    executor = build_executor(load_config(venue_url="http://127.0.0.1:9"), {})
    texts = [repr(executor), repr(vars(executor)), repr(Credentials.from_env(TradingMode.TESTNET))]
    monkeypatch.delenv("BINANCE_API_SECRET")
    with pytest.raises(ConfigError) as e:
        Credentials.from_env(TradingMode.MAINNET)
    texts.append(str(e.value))
    out = capfd.readouterr()
    texts += [out.out, out.err, caplog.text]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".duckdb" for p in files)
    assert any(p.suffix == ".parquet" for p in files)
    found = {str(p): leaks(p.read_bytes()) for p in files}
    found |= {f"text {i}": leaks(t) for i, t in enumerate(texts)}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_cli_cannot_switch_to_mainnet(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(MAINNET_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--mode", "mainnet", "--bars", "100"]) == 2
    assert "cannot switch to mainnet" in capsys.readouterr().err
    assert not Path("runs").exists()  # refused before anything ran


async def test_a_testnet_session_and_its_report_write_no_key_anywhere(tmp_path, monkeypatch, capfd, caplog):
    """Real signed requests with recognisable keys (the local exchange accepts them), a rejected
    order's exception, the store, the logs and the HTML report: none holds a key."""
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    key, secret = KEYS["BINANCE_TESTNET_API_KEY"], KEYS["BINANCE_TESTNET_API_SECRET"]
    texts = []
    async with LocalExchange(("BTC/USDT",), api_key=key, secret=secret) as exchange:
        config = load_config(
            mode="testnet", venue_url=exchange.url, symbols=["BTC/USDT"], store_path=tmp_path / "real.duckdb"
        )
        session = TradingSession.from_config(config, session_id="secret-run", shadow=True)
        await session.create_order("BTC/USDT", "market", "buy", "0.001")
        with pytest.raises(WorkbenchError) as rejected:
            await session.create_order("BTC/USDT", "market", "sell", "900")  # more than the account holds
        texts += [str(rejected.value), repr(rejected.value), repr(session.executor), repr(vars(session.executor))]
        await session.stop()
        await session.executor.close()
        session.store.close()
    html = report("secret-run", store_path=tmp_path / "real.duckdb", output=tmp_path / "report.html")
    assert "secret-run" in html.read_text()
    out = capfd.readouterr()
    texts += [out.out, out.err, caplog.text]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".duckdb", ".html"}
    found = {str(p): leaks(p.read_bytes()) for p in files} | {f"text {i}": leaks(t) for i, t in enumerate(texts)}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize(
    "params",
    [
        {"api_secret": SECRET},
        {"strategy_params": {"fast": 5, "API_KEY": SECRET}},
        {"strategy_params": {"nested": {"Passphrase": SECRET}}},
        {"risk": {"token": SECRET}},
        {"strategy_params": {"legs": [{"password": SECRET}]}},
    ],
)
def test_credential_like_parameters_are_refused_at_any_depth_without_their_value(params):
    """Item 7 of issue 14: a key as a run parameter would reach the notebook, result.json and the store."""
    with pytest.raises(ConfigError, match="look like credentials") as e:
        check_parameters(params, {})
    assert SECRET not in str(e.value)


def test_a_sweep_with_a_credential_parameter_writes_nothing(tmp_path, monkeypatch):
    """Refused before anything runs: no notebook, result.json, Parquet or store is written."""
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    for grid in ({"api_secret": [SECRET]}, [{"strategy_params": {"Bot_Token": SECRET}}]):
        with pytest.raises(ConfigError, match="look like credentials") as e:
            sweep(grid, sweep_id="leak", store_path="main.duckdb", progress=False)
        assert SECRET not in str(e.value)
    assert tree(tmp_path) == before
