"""Papermill runs and sweeps, for real: notebooks executed in kernels, DuckDB files on disk."""

import json
import os
from pathlib import Path

import duckdb
import nbformat
import pytest

from workbench import analysis
from workbench.config import MAINNET_CONSENT, MAINNET_ENV
from workbench.errors import ConfigError, KillSwitchActive, MainnetGuardError
from workbench.runs import SESSION_NOTEBOOK, check_parameters, expand_grid, halt_sweep, load_grid, run, sweep

FAKE_KEY = "FAKEKEY-runs-0123456789abcdef"
FAKE_SECRET = "FAKESECRET-runs-fedcba9876543210"


@pytest.fixture
def workdir(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BINANCE_TESTNET_API_KEY", FAKE_KEY)
    monkeypatch.setenv("BINANCE_TESTNET_API_SECRET", FAKE_SECRET)
    return tmp_path


def counts(store, session_id=None):
    con = duckdb.connect(str(store), read_only=True)
    where = f"WHERE session_id = '{session_id}'" if session_id else ""
    try:
        return tuple(con.execute(f"SELECT count(*) FROM {t} {where}").fetchone()[0] for t in ("orders", "fills"))
    finally:
        con.close()


def test_a_single_run_keeps_its_notebook_and_merges_its_rows(workdir):
    result = run(
        {"bars": 300, "strategy_params": {"fast": 5, "slow": 20, "size": 0.01}, "session_id": "one"},
        merge_into=workdir / "main.duckdb",
    )
    assert result.status == "completed", result.error
    executed = nbformat.read(result.notebook, as_version=4)
    assert Path(result.notebook) == Path("runs/single/one.ipynb").resolve()
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "fills in" in outputs and FAKE_KEY not in outputs and FAKE_SECRET not in outputs
    merged = counts(workdir / "main.duckdb", "one")
    assert merged == counts(result.store_path, "one") and merged[1] > 0


def test_a_testnet_run_trades_the_bundled_local_exchange(workdir):
    """The README's main job: the session notebook starts the local exchange in its kernel and trades
    its replayed market through ccxt in testnet mode; nothing of the keys reaches the notebook."""
    result = run(
        {"mode": "testnet", "venue": "local", "bars": 40, "speed": 3000,
         "strategy_params": {"fast": 3, "slow": 8, "size": 0.001}, "session_id": "live"},
        merge_into=workdir / "main.duckdb",
    )  # fmt: skip
    assert result.status == "completed", result.error
    con = duckdb.connect(str(workdir / "main.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT mode, venue FROM sessions").fetchall()[0][1].startswith("http://127.0.0.1:")
        modes = con.sql("SELECT DISTINCT mode FROM fills").fetchall()
        orders, fills = con.sql(
            "SELECT (SELECT count(*) FROM real_orders), (SELECT count(*) FROM real_fills)"
        ).fetchall()[0]
    finally:
        con.close()
    assert modes == [("testnet",)] and orders > 0 and fills >= orders
    # one clock: the venue replays at 3000x, yet signal -> order -> fill takes plausible milliseconds
    quality = analysis.execution_quality(workdir / "main.duckdb", "live")
    latency = quality[["signal_to_ack_ms", "signal_to_last_fill_ms"]]
    assert len(latency) == orders and latency.notna().all().all(), latency
    assert ((latency >= 0) & (latency < 60_000)).all().all(), latency
    text = Path(result.notebook).read_text()
    assert "Local exchange at http://127.0.0.1" in text and FAKE_KEY not in text and FAKE_SECRET not in text


TESTNET_LOCAL = {"mode": "testnet", "venue": "local", "bars": 30, "speed": 3000}


def test_a_sweep_merges_every_run_exactly_once_and_a_rerun_skips_them(workdir):
    """Six testnet runs, each trading its own local exchange through ccxt, two at a time."""
    grid = {"fast": [2, 3, 4], "slow": [6, 8]}
    main = workdir / "sweep.duckdb"
    frame = sweep(grid, sweep_id="grid6", base=TESTNET_LOCAL, store_path=main, workers=2, progress=False)
    assert len(frame) == 6 and set(frame["status"]) == {"completed"}, frame[["session_id", "error"]]
    per_run = {sid: counts(path, sid) for sid, path in zip(frame["session_id"], frame["store_path"], strict=True)}
    for sid, expected in per_run.items():
        assert counts(main, sid) == expected and expected[1] > 0
    total = counts(main)
    assert total == tuple(sum(c[i] for c in per_run.values()) for i in range(2))
    again = sweep(grid, sweep_id="grid6", base=TESTNET_LOCAL, store_path=main, workers=2, progress=False)
    assert set(again["status"]) == {"skipped"} and counts(main) == total
    con = duckdb.connect(str(main), read_only=True)
    assert con.execute("SELECT DISTINCT mode FROM orders").fetchall() == [("testnet",)]
    assert con.execute(
        "SELECT count(*) FROM sessions WHERE sweep_id = 'grid6' AND status = 'completed'"
    ).fetchone() == (6,)
    assert con.execute("SELECT count(DISTINCT session_id) FROM audit_log").fetchone() == (6,)
    con.close()


def test_a_run_killed_midway_is_reported_and_the_others_are_intact(workdir):
    notebook = nbformat.read(SESSION_NOTEBOOK, as_version=4)
    notebook.cells.insert(
        4,
        nbformat.v4.new_code_cell(
            "import os, signal\nawait session.start()\n"
            "if strategy_params['fast'] == 4:\n    os.kill(os.getpid(), signal.SIGKILL)"
        ),
    )
    killer = workdir / "killer.ipynb"
    nbformat.write(notebook, killer)
    main = workdir / "killed.duckdb"

    def kill_sweep(notebook):
        base = {**TESTNET_LOCAL, "strategy_params": {"slow": 6}}
        return sweep(
            {"fast": [3, 4, 5]}, sweep_id="kill", base=base, store_path=main, notebook=notebook, progress=False
        )

    frame = kill_sweep(killer).set_index("fast")
    assert frame.loc[4, "status"] == "failed" and "DeadKernel" in frame.loc[4, "error"]
    assert Path(frame.loc[4, "notebook"]).exists()
    assert list(frame.loc[[3, 5], "status"]) == ["completed", "completed"]
    con = duckdb.connect(str(main), read_only=True)
    statuses = dict(con.execute("SELECT session_id, status FROM sessions").fetchall())
    con.close()
    assert statuses[frame.loc[4, "session_id"]] == "failed" and list(statuses.values()).count("completed") == 2
    rerun = kill_sweep(SESSION_NOTEBOOK).set_index("fast")
    assert list(rerun.loc[[3, 4, 5], "status"]) == ["skipped", "completed", "skipped"]  # only the failed one reruns


def test_a_sweep_runs_on_a_dask_cluster(workdir):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        frame = sweep(
            {"fast": [3, 5]},
            sweep_id="dask",
            base={"bars": 200, "strategy_params": {"slow": 20}},
            store_path=workdir / "dask.duckdb",
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert set(frame["status"]) == {"completed"}, frame["error"].tolist()
    for sid, path in zip(frame["session_id"], frame["store_path"], strict=True):
        assert counts(workdir / "dask.duckdb", sid) == counts(path, sid)
        assert (Path(path).with_suffix("") / "paper_fills.parquet").exists()


def test_a_halted_sweep_starts_nothing_until_it_is_cleared(workdir):
    halt_sweep("halted", "stop everything")
    kwargs = {"sweep_id": "halted", "base": {"bars": 200, "strategy_params": {"slow": 20}}, "progress": False}
    with pytest.raises(KillSwitchActive, match="stop everything.*halt-sweep halted --clear"):
        sweep({"fast": [3, 5]}, store_path=workdir / "halt.duckdb", **kwargs)
    assert not list(Path("runs/halted").glob("*.duckdb"))  # refused before any kernel started
    halt_sweep("halted", "", clear=True)
    frame = sweep({"fast": [3, 5]}, store_path=workdir / "halt.duckdb", **kwargs)
    assert set(frame["status"]) == {"completed"} and all(
        counts(workdir / "halt.duckdb", s)[0] for s in frame["session_id"]
    )


def test_parameters_cannot_reach_mainnet_or_carry_keys(monkeypatch):
    monkeypatch.delenv(MAINNET_ENV, raising=False)
    with pytest.raises(MainnetGuardError, match="cannot switch to mainnet"):
        check_parameters({"mode": "mainnet"})
    with pytest.raises(ConfigError, match="Unknown run parameter"):
        check_parameters({"mainnet": True})
    with pytest.raises(ConfigError, match="look like credentials"):
        check_parameters({"api_key": "x"})
    assert check_parameters({"mode": "MAINNET"}, {MAINNET_ENV: MAINNET_CONSENT})["mode"] == "mainnet"
    for bad in ({"mode": "moon"}, {"symbols": "BTC/USDT"}, {"bars": 0}):
        with pytest.raises(ConfigError):
            check_parameters(bad)


def test_grids_from_files_and_flags(tmp_path):
    assert expand_grid({"fast": [5, 10], "slow": [50], "bars": [100]}) == [
        {"bars": 100, "strategy_params": {"fast": 5, "slow": 50}},
        {"bars": 100, "strategy_params": {"fast": 10, "slow": 50}},
    ]
    path = tmp_path / "grid.yaml"
    path.write_text("- {fast: 5}\n- {fast: 7, mode: paper}\n")
    assert [g["strategy_params"]["fast"] for g in load_grid(path)] == [5, 7]
    path.write_text("just text")
    with pytest.raises(ConfigError, match="must hold"):
        load_grid(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(tmp_path / "missing.yaml")


def test_cli_run_and_sweep(workdir, capsys):
    from workbench.cli import main

    assert (
        main(
            [
                "run",
                "--bars",
                "200",
                "--strategy-params",
                '{"fast": 5, "slow": 20}',
                "--session-id",
                "cli-run",
                "--store",
                "cli.duckdb",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "run cli-run: completed" in out and "runs/single/cli-run.ipynb" in out and "cli.duckdb" in out
    data = next(line for line in out.splitlines() if line.startswith("data: BTC/USDT: "))
    assert "Binance" in data and "SYNTHETIC" not in data.upper() and "200 bars, 20" in data, data
    assert (
        main(
            [
                "sweep",
                "--sweep-id",
                "cli",
                "--param",
                "fast=3,5",
                "--param",
                "slow=20",
                "--bars",
                "200",
                "--store",
                "cli.duckdb",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    assert "sweep_id = 'cli'" in capsys.readouterr().out
    assert main(["sweep", "--sweep-id", "none", "--store", "cli.duckdb"]) == 2
    assert main(["sweep", "--sweep-id", "none", "--param", "fast"]) == 2
    assert counts("cli.duckdb", "cli-run")[1] > 0 and os.path.exists("runs/cli")
