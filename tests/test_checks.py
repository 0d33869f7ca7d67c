"""Ids, parameters and paths are checked at every Python entry before anything is created (issue 14,
items 3 and 7): the attacks of the issue are refused, SQL never holds a path or an id."""

from datetime import date
from pathlib import Path

import duckdb
import pytest

from workbench.checks import ID_RULE, check_id, inside, positive_int, positive_number, timestamp
from workbench.config import TradingMode
from workbench.errors import ConfigError
from workbench.report import report
from workbench.runs import (
    _TABLES,
    SESSION_NOTEBOOK,
    RunResult,
    _execute,
    _export,
    _session_id,
    check_parameters,
    halt_sweep,
    merge_run,
    run,
    sweep,
)
from workbench.store import Store

INJECTION = "q.parquet' (FORMAT parquet); COPY (SELECT 'injected' AS x) TO 'PWNED.csv' (FORMAT csv); --"
ATTACKS = [INJECTION, "../../precious", "../../x", "fast=5", "a/b", "..", "x..y", ".hidden", "-flag", "", "a" * 65]


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its modification time: what changed shows as a difference."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def nest(tmp_path, monkeypatch, data_dir):
    """Work two folders down, so that ``../../x`` would land in ``tmp_path``; a precious store there."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    Store(tmp_path / "a" / "b" / "precious.duckdb").close()
    return tmp_path


@pytest.mark.parametrize("good", ["a", "run-1a2b3c4d", "Sweep_2024.01.02", "x" * 64, "9"])
def test_safe_ids_pass(good):
    assert check_id(good) == good


@pytest.mark.parametrize("bad", [*ATTACKS, "a\n", "é", "a b", None, 5, ["a"]])
def test_unsafe_ids_are_refused_with_the_rule_on_one_line(bad):
    with pytest.raises(ConfigError) as e:
        check_id(bad, "session_id")
    assert ID_RULE in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 250


def test_paths_must_stay_inside_their_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path / "elsewhere")
    assert inside(tmp_path / "runs", "s1", "x.parquet") == (tmp_path / "runs" / "s1" / "x.parquet").resolve()
    for parts in (("..", "x"), ("link", "x"), ("/etc/passwd",), (".",)):
        with pytest.raises(ConfigError, match="lies outside"):
            inside(tmp_path / "runs", *parts)


def test_values_are_checked_with_a_message_that_names_them():
    assert positive_int(3, "bars") == 3 and positive_number(2, "speed") == 2.0
    assert timestamp("2024-01-02", "start") == "2024-01-02"
    assert timestamp(date(2024, 1, 2), "start") == "2024-01-02T00:00:00"
    for check, bad in ((positive_int, True), (positive_int, 0), (positive_int, 1.5), (positive_number, float("nan"))):
        with pytest.raises(ConfigError, match="^bars must be"):
            check(bad, "bars")
    for bad in ("notadate", "NaT", 5, None, "99999-01-01"):
        with pytest.raises(ConfigError, match="start must be a date"):
            timestamp(bad, "start")


@pytest.mark.parametrize("attack", ATTACKS[:4])
def test_run_sweep_halt_and_report_refuse_unsafe_ids_and_create_nothing(nest, attack):
    before = tree(nest)
    for call in (
        lambda: run({"session_id": attack, "bars": 50}),
        lambda: run({"sweep_id": attack, "bars": 50}),
        lambda: sweep({"fast": [3]}, sweep_id=attack, progress=False),
        lambda: sweep({"fast": [3]}, sweep_id="ok", base={"session_id": attack}, progress=False),
        lambda: halt_sweep(attack, "attack"),
        lambda: report(attack, store_path="precious.duckdb"),
        lambda: report(sweep_id=attack, store_path="precious.duckdb"),
    ):
        with pytest.raises(ConfigError, match="must be 1 to 64 letters"):
            call()
    assert tree(nest) == before and not list(nest.rglob("PWNED*"))


def test_a_worker_and_the_merge_check_the_ids_again(tmp_path):
    """A Dask worker runs ``_execute`` in another process, and ``merge_run`` is public: both entries check."""
    for params in ({"session_id": "../../x", "sweep_id": None}, {"session_id": "ok", "sweep_id": "a=b"}):
        with pytest.raises(ConfigError, match="must be 1 to 64 letters"):
            _execute(params, tmp_path, SESSION_NOTEBOOK, 10, False, tmp_path / "main.duckdb")
    with pytest.raises(ConfigError, match="must be 1 to 64 letters"):
        merge_run(tmp_path / "main.duckdb", RunResult("../../x", "failed", "", str(tmp_path / "x"), {"mode": "paper"}))
    assert list(tmp_path.iterdir()) == []


def test_halt_sweep_refuses_a_link_out_of_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "outside").mkdir()
    (runs / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(ConfigError, match="lies outside"):
        halt_sweep("escape", "why", runs)
    assert not list((tmp_path / "outside").iterdir())
    assert halt_sweep("later", "halted before it starts", runs) == runs / "later" / "sweep.halt"


def test_export_writes_parquet_without_an_sql_text_holding_the_path(tmp_path, monkeypatch):
    """The issue's injection, as a folder name (ids can no longer carry it): ``_export`` writes each
    table through a relation, so the quote in the path is only a character of a file name."""
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "own.duckdb"
    with Store(own) as store:
        store.audit("probe", {"n": 1}, session_id="s1", mode=TradingMode.PAPER)
    folder = tmp_path / INJECTION
    _export(RunResult("s1", "completed", "", str(own), {"mode": "paper"}), folder)
    assert not list(tmp_path.rglob("PWNED*"))
    con = duckdb.connect()
    rows = con.execute("SELECT kind FROM read_parquet(?)", [str(folder / "audit_log.parquet")]).fetchall()
    assert rows == [("probe",)] and (folder / "result.json").exists()
    assert len(list(folder.glob("*.parquet"))) == len(_TABLES) == 10


@pytest.mark.parametrize(
    "params, message",
    [
        ({"strategy": "moon"}, "Unknown strategy 'moon'"),
        ({"strategy": ["x"]}, "strategy must be a name"),
        ({"strategy_params": {"fast": 50, "slow": 5}}, "fast < slow"),
        ({"strategy_params": {"size": float("inf")}}, "finite size"),
        ({"strategy_params": {"colour": 1}}, "Bad parameters for strategy"),
        ({"symbols": ["DOGE/EUR"]}, "No trading rules for \\['DOGE/EUR'\\]"),
        ({"symbols": [5]}, "symbols must be"),
        ({"risk": {"bogus": 1}}, "bogus"),
        ({"risk": 5}, "risk must be a table"),
        ({"risk": {"max_order_notional": "lots"}}, "max_order_notional"),
        ({"bars": True}, "bars must be a whole number"),
        ({"speed": 0}, "speed must be a finite number"),
        ({"start": "notadate"}, "start must be a date"),
        ({"venue": "moon"}, "venue must be"),
        ({"mode": "testnet", "venue": "testnet"}, "needs BINANCE_TESTNET_API_KEY and BINANCE_TESTNET_API_SECRET"),
    ],
)
def test_run_parameters_are_checked_as_the_notebook_will_use_them(params, message):
    with pytest.raises(ConfigError, match=message):
        check_parameters(params, {})


def test_good_parameters_pass_and_testnet_keys_come_from_the_environment():
    keys = {"BINANCE_TESTNET_API_KEY": "k", "BINANCE_TESTNET_API_SECRET": "s"}
    checked = check_parameters({"mode": "testnet", "venue": "testnet", "start": "2024-01-02"}, keys)
    assert checked["start"] == "2024-01-02" and checked["mode"] == "testnet"
    assert check_parameters({"mode": "testnet", "venue": "local"}, {})["venue"] == "local"


def test_derived_session_ids_are_valid_ids_and_twins_in_a_grid_are_refused(nest):
    assert check_id(_session_id({"sweep_id": "s" * 64, "bars": 5}))
    with pytest.raises(ConfigError, match="make each distinct"):
        sweep([{"fast": 3}, {"fast": 3}], sweep_id="twins", progress=False)
    with pytest.raises(ConfigError, match="make each distinct"):
        sweep({"fast": [3, 4]}, sweep_id="twins", base={"session_id": "one"}, progress=False)
