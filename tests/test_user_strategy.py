"""Your own code in runs and sweeps (issue 17 item 5): ``--strategy module:Name`` and
``--strategy path/to/file.py:Name``, checked (built and probed) before a kernel starts; run as a
user runs it, ``workbench`` in a subprocess, in paper mode and in a sweep."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from workbench.errors import ConfigError
from workbench.runs import check_parameters
from workbench.strategy import SmaCross, load_strategy

WORKBENCH = Path(sys.executable).with_name("workbench")
RSI = '''
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Rsi:
    """Long from RSI < low until RSI > high (a user's strategy, about 20 lines)."""

    period: int = 6
    low: float = 40.0
    high: float = 60.0
    size: float = 0.001

    def __post_init__(self):
        if self.period < 2:
            raise ValueError(f"period must be at least 2, got {self.period}")

    @property
    def warmup(self):
        return self.period

    def __call__(self, bars):
        change = bars["close"].diff()
        up = change.clip(lower=0).ewm(alpha=1 / self.period, adjust=False).mean()
        down = (-change.clip(upper=0)).ewm(alpha=1 / self.period, adjust=False).mean()
        rsi = 100 - 100 / (1 + up / down)
        state = np.where(rsi < self.low, 1.0, np.where(rsi > self.high, 0.0, np.nan))
        return pd.Series(state, index=bars.index).ffill().fillna(0.0) * self.size


class Broken:
    warmup = 5

    def __call__(self, bars):
        return bars["close"] / 0 + bars["no such column"]


class NotASeries:
    def __call__(self, bars):
        return [1.0] * len(bars)


class Pair:
    """A portfolio: long the symbol that rose most over ``window`` bars."""

    symbols = ("BTC/USDT", "ETH/USDT")
    warmup = 10

    def __init__(self, window=10, forget=None):
        self.window, self.forget = window, forget

    def __call__(self, bars):
        rise = pd.DataFrame({s: b["close"].pct_change(self.window) for s, b in bars.items()})
        best = rise.fillna(0.0).idxmax(axis=1)
        return {s: (best == s).astype(float) * 0.001 for s in bars if s != self.forget}
'''


@pytest.fixture
def work(tmp_path, data_dir, monkeypatch):
    """A user's folder with their strategy file ``mine.py`` (also importable as module ``mine``)."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "mine.py").write_text(RSI)
    monkeypatch.chdir(folder)
    return folder


def cli(folder: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "WORKBENCH_ALLOW"))}
    return subprocess.run([str(WORKBENCH), *argv], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_strategy_loads_by_name_module_or_file(work):
    assert load_strategy("sma_cross", {"fast": 3, "slow": 9}) == SmaCross(3, 9)
    by_file = load_strategy("mine.py:Rsi", {"period": 9})
    by_module = load_strategy("mine:Rsi", {"period": 9})
    assert type(by_file).__name__ == type(by_module).__name__ == "Rsi" and by_file.period == by_module.period == 9
    assert load_strategy(f"{work / 'mine.py'}:Rsi") is not None  # an absolute path, as a run passes it on


@pytest.mark.parametrize(
    ("spec", "params", "says"),
    [
        ("rsi_cross", {}, "Unknown strategy 'rsi_cross'"),
        ("nowhere.py:Rsi", {}, "Strategy file nowhere.py does not exist"),
        ("no_such_module:Rsi", {}, "No module named 'no_such_module'"),
        ("mine.py:Missing", {}, "has no strategy 'Missing'"),
        ("mine.py:Rsi", {"speed": 3}, "unexpected keyword argument 'speed'"),
        ("mine.py:Rsi", {"period": 1}, "ValueError: period must be at least 2, got 1"),
        ("mine.py:Broken", {}, "raised on a probe over 500 synthetic bars: KeyError"),
        ("mine.py:NotASeries", {}, "must return a Series (or DataFrame) on the bars' index; it returned a list"),
        ("mine.py:Pair", {"forget": "ETH/USDT"}, "must return for ETH/USDT a Series (or DataFrame) on the bars' index"),
    ],
)
def test_a_bad_strategy_is_one_clear_error(work, spec, params, says):
    with pytest.raises(ConfigError) as caught:
        load_strategy(spec, params)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_portfolio_is_probed_on_a_mapping_of_its_symbols_bars(work):
    assert load_strategy("mine.py:Pair").symbols == ("BTC/USDT", "ETH/USDT")
    assert load_strategy("momentum_rotation").symbols == ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def test_a_run_gets_the_strategy_file_by_its_absolute_path(work):
    checked = check_parameters({"strategy": "mine.py:Rsi", "strategy_params": {"period": 5}})
    assert checked["strategy"] == f"{work / 'mine.py'}:Rsi"
    assert check_parameters({"strategy": "mine.py:Rsi"})["strategy_params"] == {}  # not sma_cross's defaults


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--strategy", "rsi_cross"], "Unknown strategy 'rsi_cross'"),
        (["run", "--strategy", "mine.py:Missing"], "has no strategy 'Missing'"),
        (["run", "--strategy", "mine.py:Rsi", "--strategy-params", '{"period": 1}'], "period must be at least 2"),
        (["run", "--strategy", "mine.py:Broken"], "raised on a probe"),
        (["sweep", "--sweep-id", "s", "--strategy", "mine.py:Rsi", "--param", "period=5,1"], "period must be at least"),
        (["sweep", "--sweep-id", "s", "--strategy", "mine:Rsi", "--param", "window=3"], "unexpected keyword"),
        (["run", "--strategy", "mine.py:Pair", "--symbols", "BTC/USDT"], "trades ['ETH/USDT'] too: add them"),
        (["run", "--strategy", "momentum_rotation"], "trades ['ETH/USDT', 'SOL/USDT'] too"),
    ],
)
def test_the_cli_refuses_a_bad_strategy_fast_before_a_kernel_starts(work, argv, says):
    started = time.monotonic()
    done = cli(work, *argv, "--store", "main.duckdb")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and done.stderr.startswith("workbench: ") and done.stderr.count("\n") == 1
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (work / "runs").exists() and not (work / "main.duckdb").exists()  # nothing started
    assert time.monotonic() - started < 30  # no kernel: a kernel alone takes seconds


def trade(work: Path, *argv: str) -> tuple[str, list[tuple]]:
    """Run ``workbench *argv`` to a successful end: what it printed, and the sessions of its store."""
    done = cli(work, *argv, "--store", "main.duckdb")
    assert done.returncode == 0, (done.stdout, done.stderr)
    con = duckdb.connect(str(work / "main.duckdb"), read_only=True)
    try:
        return done.stdout, con.execute(
            "SELECT s.session_id, s.strategy, s.params, s.status, count(o.client_order_id) FROM sessions s "
            "LEFT JOIN orders o USING (session_id) GROUP BY ALL ORDER BY 1"
        ).fetchall()
    finally:
        con.close()


def test_a_user_file_strategy_runs_in_paper_mode_through_the_cli(work):
    out, rows = trade(
        work, "run", "--mode", "paper", "--strategy", "mine.py:Rsi", "--strategy-params", '{"period": 5}',
        "--bars", "300", "--session-id", "mine-paper",
    )  # fmt: skip
    assert "run mine-paper: completed" in out
    [(session_id, strategy, params, status, orders)] = rows
    assert (session_id, strategy, status) == ("mine-paper", "Rsi", "completed")
    assert json.loads(params)["period"] == 5 and orders > 5


def test_a_sweep_of_a_user_strategy_keeps_its_strategy_params_beside_the_grid(work):
    _, rows = trade(
        work, "sweep", "--sweep-id", "mine", "--strategy", "mine:Rsi", "--bars", "200",
        "--strategy-params", '{"low": 45, "size": 0.002}', "--param", "period=4,7",
    )  # fmt: skip
    assert len(rows) == 2 and {r[1] for r in rows} == {"Rsi"} and {r[3] for r in rows} == {"completed"}
    params = sorted((json.loads(r[2]) for r in rows), key=lambda p: p["period"])
    assert [(p["period"], p["low"], p["size"]) for p in params] == [(4, 45, 0.002), (7, 45, 0.002)]
    assert all(r[4] > 0 for r in rows)


def test_a_sweep_axis_keeps_the_other_strategy_params(work):
    """The known bug: ``--param fast=...`` replaced ``--strategy-params`` with the defaults."""
    from workbench.runs import _strategy_params, expand_grid

    base = {"strategy_params": {"slow": 8, "size": 0.002}}
    merged = [{**base, **p, **_strategy_params(base, p)} for p in expand_grid({"fast": [2, 4]})]
    assert [m["strategy_params"] for m in merged] == [
        {"slow": 8, "size": 0.002, "fast": 2},
        {"slow": 8, "size": 0.002, "fast": 4},
    ]
    plain = expand_grid({"fast": [3]})[0]
    assert _strategy_params({}, plain) == {"strategy_params": {"fast": 3, "slow": 50, "size": 0.001}}
