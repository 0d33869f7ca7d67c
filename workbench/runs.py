"""Parameterised batch runs: one session notebook executed by papermill, and sweeps of it.

* :func:`run` executes ``notebooks/03_session.ipynb`` with a set of parameters, keeps the executed
  notebook under ``runs/<session_id>.ipynb`` and merges the run's rows into the main store.
* :func:`sweep` runs a grid of parameter sets in parallel processes, or on a Dask cluster when a
  scheduler address is given. DuckDB allows one writer process per file, so every run writes its
  own DuckDB file, exports it as Parquet, and one step (:func:`merge_run`) folds each run into
  the main store: idempotently (a run's rows are replaced, never doubled), so re-running a sweep
  skips what completed and merges nothing twice.
* Durability is the session's own: a run's store and journal are kept, so restarting a session id
  resumes it (see :func:`_execute`); one session id runs once at a time; a killed run is merged
  at its next run or by :func:`merge_unmerged` (``workbench merge``).
* The kill switch: a run watches the main store's flag and its sweep's, and none starts while one
  is tripped; before a run trades, the main store must take a write.
* Safety: a parameter cannot switch a run to mainnet (``mainnet`` is not a parameter, and
  ``mode="mainnet"`` still needs the guard's environment variable in the worker); API keys never
  enter parameters, so they never reach an executed notebook.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import os
import sys
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from workbench.analysis import sweep_table
from workbench.checks import check_id, command_line, inside, positive_int, positive_number, timestamp
from workbench.config import DEFAULT_STORE, MAINNET_CONSENT, MAINNET_ENV, Credentials, TradingMode, load_config
from workbench.data import load_rules
from workbench.errors import ConfigError, KillSwitchActive, MainnetGuardError
from workbench.killswitch import KillSwitch, flag_path, trip_flag
from workbench.store import Store, StoreError
from workbench.strategy import is_portfolio, load_strategy

SESSION_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_session.ipynb"
RUNS_DIR = Path("runs")
PARAMETERS = {
    "mode": "paper",
    "symbols": ["BTC/USDT"],
    "strategy": "sma_cross",
    "strategy_params": {"fast": 10, "slow": 50, "size": 0.001},
    "bars": 1500,
    "start": None,
    "speed": 600.0,
    "risk": {},
    "session_id": None,
    "sweep_id": None,
    "venue": "local",
    "store_path": str(DEFAULT_STORE),
    "halt_flag": None,
    "main_flag": None,
}
_TABLES = (
    "sessions",
    "paper_orders",
    "paper_fills",
    "paper_balances",
    "paper_order_lists",
    "real_orders",
    "real_fills",
    "real_balances",
    "real_order_lists",
    "audit_log",
)
_SECRET_WORDS = ("key", "secret", "password", "passphrase", "token", "credential")


@dataclass(frozen=True)
class RunResult:
    """What one run did: its session, status (``completed``, ``halted`` by the kill switch,
    ``failed``, ``interrupted`` (killed, merged later), ``busy`` (running elsewhere) or
    ``skipped``), executed notebook, its own store file, and the error if it failed."""

    session_id: str
    status: str
    notebook: str
    store_path: str
    parameters: dict[str, Any]
    error: str | None = None


def check_parameters(parameters: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``parameters`` completed with the defaults and checked as the session notebook will use them,
    or :class:`ConfigError` naming a bad one; nothing is started or written.

    Refuses anything that looks like a credential (at any depth, e.g. ``strategy_params.api_secret``),
    unknown names (``mainnet`` among them: only a config file may set it), ``mode="mainnet"``
    without the guard in this process's environment, unsafe ids, a strategy that cannot be built
    from its parameters, symbols without trading rules, bad risk limits, and a real venue without
    its keys in the environment.
    """
    environ = os.environ if environ is None else environ
    credentials = sorted(_credential_names(parameters))
    if credentials:
        raise ConfigError(
            f"Parameter(s) {credentials} look like credentials: a run reads its keys from the environment "
            "(or a file), never from its parameters."
        )
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"Unknown run parameter(s) {unknown}; known: {sorted(PARAMETERS)}.")
    merged = {**PARAMETERS, **parameters}
    try:
        mode = TradingMode(str(merged["mode"]).lower())
    except ValueError:
        raise ConfigError(f"mode={merged['mode']!r} is not one of paper, testnet, mainnet.") from None
    if mode is TradingMode.MAINNET and environ.get(MAINNET_ENV) != MAINNET_CONSENT:
        raise MainnetGuardError(
            "A run parameter cannot switch to mainnet: this worker's environment lacks "
            f"{MAINNET_ENV}={MAINNET_CONSENT}."
        )
    _check_ids(merged)
    positive_int(merged["bars"], "bars")
    positive_number(merged["speed"], "speed")
    if merged["start"] is not None:
        merged["start"] = timestamp(merged["start"], "start")
    if merged["venue"] not in ("local", "testnet") and not str(merged["venue"]).startswith(("http://", "https://")):
        raise ConfigError(
            f"venue must be local, testnet or the URL of a running local exchange; got {merged['venue']!r}."
        )
    symbols = merged["symbols"]
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise ConfigError(f"symbols must be a non-empty list of names like BTC/USDT; got {symbols!r}.")
    _check_symbols(tuple(symbols))
    if "strategy_params" not in parameters and merged["strategy"] != PARAMETERS["strategy"]:
        merged["strategy_params"] = {}  # the defaults are sma_cross's; another strategy has its own
    if not isinstance(merged["strategy"], str) or not isinstance(merged["strategy_params"], Mapping):
        raise ConfigError('strategy must be a name and strategy_params a mapping, e.g. {"fast": 5, "slow": 30}.')
    merged["strategy"] = _strategy_spec(merged["strategy"])
    strategy = load_strategy(merged["strategy"], dict(merged["strategy_params"]))  # built, probed before a kernel
    if is_portfolio(strategy) and (missing := [s for s in strategy.symbols if s not in symbols]):  # type: ignore[attr-defined]
        raise ConfigError(f"The portfolio strategy trades {missing} too: add them to --symbols.")
    load_config(mode=mode, symbols=symbols, risk=merged["risk"])
    if mode.is_real and merged["venue"] != "local" and Credentials.from_env(mode, environ) is None:
        key, secret = Credentials.ENV[mode]
        raise ConfigError(f"A {mode} run on venue {merged['venue']} needs {key} and {secret} in the environment.")
    merged["mode"] = mode.value
    return merged


def _strategy_spec(spec: str) -> str:
    """``spec`` with a strategy file's path made absolute (the kernel runs elsewhere)."""
    where, colon, name = spec.rpartition(":")
    return f"{Path(where).expanduser().resolve()}:{name}" if colon and where.endswith(".py") else spec


def _check_ids(params: Mapping[str, Any]) -> None:
    for name in ("session_id", "sweep_id"):
        if params.get(name) is not None:
            check_id(params[name], name)


@functools.lru_cache(maxsize=64)
def _check_symbols(symbols: tuple[str, ...]) -> None:
    """:class:`ConfigError` unless every symbol has trading rules (read once per set of symbols)."""
    load_rules(symbols)


def _credential_names(value: Any, prefix: str = "") -> Iterator[str]:
    """The dotted names in ``value`` (mappings and lists, at any depth) that look like credentials."""
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = f"{prefix}{key}"
        if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS):
            yield name
        yield from _credential_names(item, f"{name}.")


def run(
    parameters: Mapping[str, Any],
    *,
    runs_dir: str | Path = RUNS_DIR,
    notebook: str | Path = SESSION_NOTEBOOK,
    merge_into: str | Path | None = None,
    timeout: float | None = 600,
    progress: bool = False,
) -> RunResult:
    """Execute the session notebook once with papermill; see the module docstring."""
    params = check_parameters(parameters)
    runs = Path(runs_dir).resolve()  # absolute: runs share nothing with the process's working directory
    session_id = params["session_id"] or _session_id(params)
    main_store = Path(merge_into or params["store_path"]).resolve()
    _preflight(main_store, runs / "single")
    own = _execute(params | {"session_id": session_id}, runs, Path(notebook), timeout, progress, main_store)
    if own.status == "busy":
        raise ConfigError(own.error or f"Session {session_id} is already running.")
    try:
        merge_run(main_store, own)
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        raise StoreError(
            f"Run {session_id} ended {own.status} but merging it into {main_store} failed ({first}); "
            f"`workbench merge --store {main_store}` merges it once the store takes writes."
        ) from None
    return own


def _execute(
    params: dict[str, Any], runs: Path, notebook: Path, timeout: float | None, progress: bool, main_store: Path
) -> RunResult:
    """Run one session in its own store file, export it as Parquet; never raises for a failed run.

    A session id runs once at a time (an exclusive lock beside its store, held while it runs and
    released by the OS if this process dies: a twin gets status ``busy``). A real-mode run keeps
    its store and journal: a restart of the id replays them, and the session reconciles with the
    venue by client order id before it sends anything, continuing the client order sequence and
    the positions. A paper run, whose venue lives in the kernel, starts over. The run watches the
    kill switch of the main store and of its sweep (``runs/<sweep>/sweep.halt``) and does not
    start while either is tripped."""
    _check_ids(params)  # again here: a Dask worker is an entry of its own
    import papermill

    session_id = params["session_id"]
    folder = runs / (params["sweep_id"] or "single")
    folder.mkdir(parents=True, exist_ok=True)
    own_store = folder / f"{session_id}.duckdb"
    executed = folder / f"{session_id}.ipynb"
    flags = (flag_path(main_store), _halt_flag(runs, folder.name))
    with _session_lock(folder / f"{session_id}.lock") as held:
        if not held:
            return RunResult(session_id, "busy", str(executed), str(own_store), params, _busy(session_id, folder))
        tripped = next((f for f in flags if f.exists()), None)
        if tripped is not None:
            return RunResult(
                session_id, "halted", str(executed), str(own_store), params, f"not started: {_trip_line(tripped)}"
            )
        (folder / session_id / MERGED).unlink(missing_ok=True)
        if params["mode"] == TradingMode.PAPER.value:  # a paper venue lives in the kernel: replay from the start
            for stale in (own_store, Path(f"{own_store}.wal"), Path(f"{own_store}.journal")):
                stale.unlink(missing_ok=True)
        elif own_store.exists():
            _resume(own_store)
        _write_result(RunResult(session_id, "running", str(executed), str(own_store), params), folder / session_id)
        run_params = params | {
            "store_path": str(own_store),
            "main_flag": str(flags[0]),
            "halt_flag": str(flags[1]),
        }
        status, error = "completed", None
        try:
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=run_params,
                kernel_name="python3",
                progress_bar=progress,
                execution_timeout=timeout,
            )
        except Exception as e:  # noqa: BLE001 - a failed run is a result, the sweep goes on
            status, error = "failed", f"{type(e).__name__}: {e}".strip()[:2000] or traceback.format_exc(limit=3)
        ended = _session_status(own_store, session_id)
        if status == "completed" and ended != "completed":
            status = ended if ended == "halted" else "failed"
            error = None if ended == "halted" else f"the notebook ended with the session {ended!r}"
        result = RunResult(session_id, status, str(executed), str(own_store), params, error)
        _export(result, folder / session_id)
    return result


MERGED = "merged.json"  # in a run's export folder once merge_run folded it into a main store


@contextlib.contextmanager
def _session_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (``True``), or ``False`` if another process holds it. The
    OS releases it when the holder dies, however it dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def _busy(session_id: str, folder: Path) -> str:
    return (
        f"Session {session_id} is already running (another process holds {folder / session_id}.lock): "
        "wait for it to end, or give this run another --session-id."
    )


def _trip_line(flag: Path) -> str:
    detail = json.loads(flag.read_text() or "{}")
    store = str(flag)[: -len(".halt")]
    how = f"`workbench halt-sweep {flag.parent.name} --clear`" if flag.name == "sweep.halt" else (
        f"`workbench kill-switch clear --store {store}`"
    )  # fmt: skip
    return f"the kill switch is tripped ({detail.get('reason', 'no reason given')}); clear it with {how}."


def _resume(own_store: Path) -> None:
    """Ready a killed or halted run's store for its restart: wait for a dying kernel to let go of
    it, replay its journal, and clear its own kill switch (the main store's, checked before, is
    clear: the account may trade again)."""
    with Store(own_store, wait=30) as store:
        switch = KillSwitch(store)
        if switch.tripped:
            switch.clear("the run's restart (the main store's kill switch is clear)")


def _session_status(own_store: Path, session_id: str) -> str:
    """The status a session recorded in its own store (``running`` if it never ended), replaying
    the journal a killed kernel left first."""
    if not own_store.exists():
        return "missing"
    with Store(own_store, wait=10) as store:
        rows = store.sql("SELECT status FROM sessions WHERE session_id = ?", [session_id])
    return rows[0][0] if rows else "missing"


def _preflight(main_store: Path, folder: Path) -> None:
    """Refuse a run before it trades: the main store must take a write, and its kill switch (its
    record or its flag file) and the sweep's (``folder/sweep.halt``) must be clear. Raises
    :class:`StoreError` or :class:`KillSwitchActive` with one line."""
    with Store(main_store) as store:
        store.audit("run.preflight", {"folder": str(folder)})
        store.flush()  # the main store takes a write: a read-only one fails here, not after the run
        tripped, reason = store.kill_switch_state()
    flag = next((f for f in (flag_path(main_store), _halt_flag(folder.parent, folder.name)) if f.exists()), None)
    if flag is not None or tripped:
        how = (
            f"the kill switch is tripped ({reason}); clear it with `workbench kill-switch clear --store {main_store}`."
        )
        raise KillSwitchActive(
            f"No run starts on {main_store}: {_trip_line(flag) if flag else how}", rule="kill_switch"
        )


def merge_unmerged(main_store: str | Path, runs_dir: str | Path = RUNS_DIR) -> list[RunResult]:
    """Merge into ``main_store`` every run under ``runs_dir`` that was never merged (a run whose
    process was killed, or whose merge failed); a run still going is left alone. A run killed
    before it ended is merged with status ``interrupted``: run its session id again to resume it."""
    main = Path(main_store).resolve()
    results = []
    for own_store in sorted(Path(runs_dir).resolve().glob("*/*.duckdb")):
        folder, session_id = own_store.parent, own_store.stem
        if (folder / session_id / MERGED).exists():
            continue
        result = _recover(folder, session_id)
        if result.status != "busy":
            merge_run(main, result)
        results.append(result)
    return results


def _recover(folder: Path, session_id: str, params: dict[str, Any] | None = None) -> RunResult:
    """The result of a run whose process died: its store (journal replayed) exported as Parquet."""
    own_store = folder / f"{session_id}.duckdb"
    executed = folder / f"{session_id}.ipynb"
    saved = folder / session_id / "result.json"
    if params is None:
        params = json.loads(saved.read_text())["parameters"] if saved.exists() else {"mode": "testnet"}
    with _session_lock(folder / f"{session_id}.lock") as held:
        if not held:
            return RunResult(session_id, "busy", str(executed), str(own_store), params, _busy(session_id, folder))
        status = _session_status(own_store, session_id)
        error = None
        if status not in ("completed", "halted"):
            status, error = (
                "interrupted",
                (f"the run was killed before it ended; `workbench run --session-id {session_id}` resumes it"),
            )
        result = RunResult(session_id, status, str(executed), str(own_store), params, error)
        _export(result, folder / session_id)
    return result


def _write_result(result: RunResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(asdict(result), default=str))


def _export(result: RunResult, folder: Path) -> None:
    """Write the run's tables and its result as Parquet/JSON beside its store file."""
    folder.mkdir(parents=True, exist_ok=True)
    if Path(result.store_path).exists():
        con = duckdb.connect(result.store_path, read_only=True)
        try:
            for table in _TABLES:  # a relation writes the file: no path is ever part of an SQL text
                con.table(table).write_parquet(str(inside(folder, f"{table}.parquet")))
        finally:
            con.close()
    _write_result(result, folder)


def merge_run(main_store: str | Path, result: RunResult) -> None:
    """Fold one run's exported Parquet into ``main_store``: its rows replace any earlier copy of
    the same session, in one transaction; a failed or interrupted run is recorded with its error
    and notebook. A run that is busy elsewhere, or was refused before it started, is left alone."""
    check_id(result.session_id, "session_id")
    folder = Path(result.store_path).with_suffix("")
    if result.status == "busy" or not (folder / "sessions.parquet").exists() and result.status == "halted":
        return
    Store(main_store).close()  # creates the schema if the file is new
    con = duckdb.connect(str(main_store))
    try:
        con.execute("BEGIN TRANSACTION")
        for table in _TABLES:
            con.execute(f"DELETE FROM {table} WHERE session_id = ?", [result.session_id])
            parquet = folder / f"{table}.parquet"
            if parquet.exists():
                columns = "* EXCLUDE (seq)" if table == "audit_log" else "*"  # the main store numbers audit rows
                con.execute(
                    f"INSERT INTO {table} BY NAME SELECT {columns} FROM read_parquet(?) WHERE session_id = ?",
                    [str(parquet), result.session_id],
                )
        if result.status in ("failed", "interrupted"):
            summary = json.dumps({"error": result.error, "notebook": result.notebook})
            con.execute(
                "INSERT INTO sessions (session_id, mode, params, status, summary, sweep_id) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, summary = excluded.summary",
                [
                    result.session_id,
                    result.parameters.get("mode", "testnet"),
                    json.dumps(result.parameters, default=str),
                    result.status,
                    summary,
                    result.parameters.get("sweep_id"),
                ],
            )
        con.execute("COMMIT")
    except Exception:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MERGED).write_text(json.dumps({"into": str(main_store), "status": result.status}))


def expand_grid(grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Parameter sets from a grid (``{"fast": [5, 10], "slow": [50]}`` -> every combination) or a
    list of sets. Strategy parameters may be given flat (``fast``) or under ``strategy_params``."""
    if isinstance(grid, Mapping):
        names = list(grid)
        sets = [dict(zip(names, values, strict=True)) for values in itertools.product(*(list(grid[n]) for n in names))]
    else:
        sets = [dict(s) for s in grid]
    expanded = []
    for params in sets:
        strategy = {k: params.pop(k) for k in list(params) if k not in PARAMETERS}
        if strategy:
            params["strategy_params"] = {**params.get("strategy_params", {}), **strategy}
        expanded.append(params)
    return expanded


def load_grid(path: str | Path) -> list[dict[str, Any]]:
    """A grid from a YAML or JSON file (a mapping of lists, or a list of parameter sets)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"Grid file {path} does not exist.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Grid file {path} is not valid YAML/JSON: {e}.") from None
    if not isinstance(data, dict | list) or not data:
        raise ConfigError(f"Grid file {path} must hold a mapping of lists or a list of parameter sets.")
    return expand_grid(data)


def sweep(
    grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]],
    *,
    sweep_id: str,
    base: Mapping[str, Any] | None = None,
    store_path: str | Path = DEFAULT_STORE,
    runs_dir: str | Path = RUNS_DIR,
    workers: int = 2,
    scheduler: str | None = None,
    notebook: str | Path = SESSION_NOTEBOOK,
    timeout: float | None = 600,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every parameter set of ``grid`` (on top of ``base``) as one session each, ``workers`` at
    a time (or on the Dask cluster at ``scheduler``), merging each into ``store_path`` as it ends.

    Runs that completed before (same sweep, same parameters) are skipped. Returns one row per run:
    session_id, status, error, notebook and the parameters.
    """
    check_id(sweep_id, "sweep_id")
    runs = Path(runs_dir).resolve()  # absolute: runs share nothing with the process's working directory
    store_path = Path(store_path).resolve()
    sets = []
    base = dict(base or {})
    for params in expand_grid(grid):
        merged = check_parameters({**base, **params, **_strategy_params(base, params), "sweep_id": sweep_id})
        merged["session_id"] = merged["session_id"] or _session_id(merged)
        sets.append(merged)
    twins = sorted(sid for sid, n in Counter(p["session_id"] for p in sets).items() if n > 1)
    if twins:
        raise ConfigError(f"Several parameter sets of the grid would run as session(s) {twins}: make each distinct.")
    _preflight(store_path, runs / sweep_id)
    done = _completed(store_path, sweep_id)
    todo = [p for p in sets if p["session_id"] not in done]
    results = [RunResult(p["session_id"], "skipped", "", "", p) for p in sets if p["session_id"] in done]
    bar = _progress(len(todo), sweep_id, progress)
    if scheduler:
        results += _on_dask(todo, scheduler, runs, Path(notebook), timeout, store_path, bar)
    else:
        results += _on_processes(todo, workers, runs, Path(notebook), timeout, store_path, bar)
    bar.close()
    frame = pd.DataFrame([{**asdict(r), **r.parameters.get("strategy_params", {})} for r in results])
    return frame.drop(columns=["parameters"]).sort_values("session_id").reset_index(drop=True)


def _strategy_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A grid set's strategy parameters on top of the base's (``--strategy-params``), or of the
    default strategy's defaults: a grid axis changes one parameter, never drops the others."""
    if "strategy_params" not in params:
        return {}
    strategy = params.get("strategy", base.get("strategy", PARAMETERS["strategy"]))
    default = PARAMETERS["strategy_params"] if strategy == PARAMETERS["strategy"] else {}
    return {"strategy_params": {**base.get("strategy_params", default), **params["strategy_params"]}}


def halt_sweep(sweep_id: str, reason: str, runs_dir: str | Path = RUNS_DIR, *, clear: bool = False) -> Path:
    """Trip the kill switch of every running session of a sweep (``single``: of every single
    run); its runs, and new ones, stay halted until ``clear=True`` clears it. :class:`ConfigError`
    for an unsafe sweep id."""
    folder = inside(runs_dir, check_id(sweep_id, "sweep_id"))
    folder.mkdir(parents=True, exist_ok=True)
    if clear:
        _halt_flag(Path(runs_dir), sweep_id).unlink(missing_ok=True)
        return _halt_flag(Path(runs_dir), sweep_id)
    return trip_flag(folder / "sweep", reason, "sweep")


def _halt_flag(runs: Path, sweep_id: str) -> Path:
    """The flag file that halts every session of a sweep (what :func:`halt_sweep` writes)."""
    return flag_path(runs / sweep_id / "sweep")


def _on_processes(todo, workers, runs, notebook, timeout, store_path, bar) -> list[RunResult]:  # type: ignore[no-untyped-def]
    """Every run is its own kernel process (papermill starts one); these threads only wait on them,
    so a killed kernel fails its own run and nothing else."""
    results = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: set[Future[RunResult]] = {
            pool.submit(_execute, p, runs, notebook, timeout, False, store_path) for p in todo
        }
        by_future = dict(zip(pending, todo, strict=True))
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                results.append(_settle(future, by_future[future], runs, store_path, bar))
    return results


def _on_dask(todo, scheduler, runs, notebook, timeout, store_path, bar) -> list[RunResult]:  # type: ignore[no-untyped-def]
    from distributed import Client, as_completed

    results = []
    with Client(scheduler) as client:
        futures = {
            client.submit(
                _execute,
                p,
                runs.resolve(),
                notebook,
                timeout,
                False,
                store_path,
                key=f"run-{p['session_id']}",
                pure=False,
            ): p
            for p in todo
        }
        for future in as_completed(futures):
            results.append(_settle(future, futures[future], runs, store_path, bar))
    return results


def _settle(future: Any, params: dict[str, Any], runs: Path, store_path: str | Path, bar: Any) -> RunResult:
    """A finished run's result (a crashed worker becomes a failed run), merged into the main store."""
    try:
        result = future.result()
    except Exception as e:  # noqa: BLE001 - a killed worker: record what its store holds and go on
        result = _recover(runs / params["sweep_id"], params["session_id"], params)
        if result.status != "busy":
            result = replace(result, status="failed", error=f"worker died: {type(e).__name__}: {e}")
    merge_run(store_path, result)
    bar.update(1)
    bar.set_postfix_str(f"{result.session_id}: {result.status}")
    return result


def _completed(store_path: str | Path, sweep_id: str) -> set[str]:
    if not Path(store_path).exists():
        return set()
    with Store(store_path) as store:
        rows = store.sql("SELECT session_id FROM sessions WHERE sweep_id = ? AND status = 'completed'", [sweep_id])
    return {r[0] for r in rows}


def _session_id(params: Mapping[str, Any]) -> str:
    """A run's session id: the sweep id and a digest of its parameters, so a re-run finds it."""
    digest = hashlib.sha1(
        json.dumps(
            {k: v for k, v in params.items() if k not in ("halt_flag", "main_flag", "store_path")},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:8]
    return f"{(params.get('sweep_id') or 'run')[:55]}-{digest}"  # at most 64 characters, as ids are


def _progress(total: int, sweep_id: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"sweep {sweep_id}", unit="run", disable=not enabled)


def register(subparsers: Any) -> None:
    """Add ``workbench run``, ``workbench sweep`` and ``workbench halt-sweep`` to the command line."""
    one = subparsers.add_parser("run", help="run one parameterised session notebook with papermill")
    _session_flags(one)
    one.set_defaults(func=_run_command)
    many = subparsers.add_parser("sweep", help="run a grid of sessions in parallel and merge them into one store")
    _session_flags(many)
    many.add_argument("--sweep-id", type=_id, required=True, help="names the sweep; re-running it skips completed runs")
    many.add_argument("--grid", help="YAML/JSON file: a mapping of parameter lists, or a list of parameter sets")
    many.add_argument(
        "--param",
        action="append",
        default=[],
        type=_axis,
        metavar="NAME=V1,V2",
        help="a grid axis from the command line, e.g. --param fast=5,10 --param slow=50",
    )
    many.add_argument("--workers", type=command_line(positive_int, int), default=2, help="runs at a time (default 2)")
    many.add_argument("--scheduler", help="a Dask scheduler address: run on that cluster instead of local processes")
    many.set_defaults(func=_sweep_command)
    halt = subparsers.add_parser("halt-sweep", help="trip the kill switch of every running session of a sweep")
    halt.add_argument("sweep_id", type=_id, help="the sweep to halt (its --sweep-id)")
    halt.add_argument("--reason", default="halted from the command line", help="why, for the audit log")
    halt.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"the sweep's runs folder (default {RUNS_DIR})")
    halt.add_argument("--clear", action="store_true", help="clear the sweep's kill switch: its runs may start again")
    halt.set_defaults(func=_halt_command)
    merge = subparsers.add_parser("merge", help="merge every run that was never merged (a killed one) into the store")
    merge.add_argument("--store", default=str(DEFAULT_STORE), help=f"the main DuckDB file (default {DEFAULT_STORE})")
    merge.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"the runs folder (default {RUNS_DIR})")
    merge.set_defaults(func=_merge_command)


def _merge_command(args: Any) -> int:
    results = merge_unmerged(args.store, args.runs_dir)
    for r in results:
        print(f"{r.session_id}: {r.status}{' (' + r.error + ')' if r.error else ''}")
    print(f"merged {sum(r.status != 'busy' for r in results)} run(s) into {args.store}")
    return 0 if all(r.status != "busy" for r in results) else 1


def _session_flags(p: Any) -> None:
    """The flags ``run`` and ``sweep`` share: the session notebook's parameters and where runs go."""
    modes = [m.value for m in TradingMode]
    p.add_argument("--mode", type=str.lower, choices=modes, help="paper (default) | testnet; mainnet needs the guard")
    p.add_argument("--symbols", nargs="+", help="symbols, e.g. BTC/USDT ETH/USDT (default BTC/USDT)")
    p.add_argument(
        "--strategy", help="a registered strategy's name (default sma_cross), module:Name or path/to/file.py:Name"
    )
    p.add_argument("--strategy-params", type=_json_object, help='JSON, e.g. \'{"fast": 5, "slow": 30}\'')
    p.add_argument("--bars", type=command_line(positive_int, int), help="bars to trade (default 1500)")
    p.add_argument("--start", type=command_line(timestamp), help="first bar's open time, e.g. 2024-01-02")
    p.add_argument(
        "--speed", type=command_line(positive_number, float), help="replay speed of the local exchange (default 600)"
    )
    p.add_argument("--risk", type=_json_object, help="JSON risk limits, e.g. '{\"max_order_notional\": 500}'")
    p.add_argument("--session-id", type=_id, help="names the session (default: <sweep or run>-<parameter digest>)")
    p.add_argument("--venue", help="local (the bundled exchange, in the kernel) | testnet | a running exchange's URL")
    p.add_argument("--store", dest="store_path", help=f"the DuckDB file runs are merged into (default {DEFAULT_STORE})")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"where run files go (default {RUNS_DIR})")
    p.add_argument("--timeout", type=command_line(positive_number, float), default=600, help="seconds a run may take")


_id = command_line(check_id)


def _json_object(text: str) -> dict[str, Any]:
    """An ``argparse`` type: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"fast\": 5}'")
    return value


def _axis(text: str) -> tuple[str, list[Any]]:
    """An ``argparse`` type: one grid axis, ``NAME=V1,V2``, its values read as YAML (``5`` -> 5)."""
    import yaml

    name, _, values = text.partition("=")
    try:
        if name and values:
            return name, [yaml_value(v) for v in values.split(",")]
    except yaml.YAMLError:
        pass
    raise argparse.ArgumentTypeError(f"must look like NAME=V1,V2, e.g. fast=5,10; got {name[:40]!r}=...")


def _parameters(args: Any) -> dict[str, Any]:
    names = (
        "mode",
        "symbols",
        "strategy",
        "strategy_params",
        "bars",
        "start",
        "speed",
        "risk",
        "session_id",
        "venue",
        "store_path",
    )
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _run_command(args: Any) -> int:
    result = run(_parameters(args), runs_dir=args.runs_dir, timeout=args.timeout, progress=True)
    store = _parameters(args).get("store_path", PARAMETERS["store_path"])
    print(f"run {result.session_id}: {result.status}; executed notebook {result.notebook}")
    if result.error:  # the notebook's traceback is in the executed notebook; its last line says what failed
        cause = (result.error.strip().splitlines() or ["see the notebook"])[-1]
        print(
            f"workbench: run {result.session_id} {result.status}: {cause} ({result.notebook} shows where).",
            file=sys.stderr,
        )
        return 1
    print(f"fills are in {store}: SELECT * FROM fills WHERE session_id = '{result.session_id}'")
    from workbench.analysis import data_source

    for row in data_source(store, result.session_id).itertuples():
        period = f"{row.first:%Y-%m-%d %H:%M} .. {row.last:%Y-%m-%d %H:%M} UTC"
        print(f"data: {row.symbol}: {row.source}; {row.bars} bars, {period}")
    print("\n".join(summary_lines(session_summary(store, result.session_id), session_drops(store, result.session_id))))
    return 0 if result.status == "completed" else 1


def _halt_command(args: Any) -> int:
    if not (Path(args.runs_dir) / args.sweep_id).is_dir():  # a mistyped id: say so rather than halt nothing
        raise ConfigError(f"No sweep {args.sweep_id!r} under {args.runs_dir}: check the sweep id and --runs-dir.")
    flag = halt_sweep(args.sweep_id, args.reason, args.runs_dir, clear=args.clear)
    print(f"{'cleared' if args.clear else 'halted'}: {flag}")
    return 0


def session_summary(store_path: str | Path, session_id: str) -> pd.DataFrame:
    """The summary a session recorded when it ended (one row per symbol)."""
    return pd.DataFrame(_recorded(store_path, session_id).get("symbols", []))


def session_drops(store_path: str | Path, session_id: str) -> pd.DataFrame:
    """The rebalances a session dropped (too small, or refused), per symbol and reason, as it recorded them."""
    return pd.DataFrame(_recorded(store_path, session_id).get("dropped", []), columns=["symbol", "reason", "orders"])


def _recorded(store_path: str | Path, session_id: str) -> dict[str, Any]:
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        rows = con.execute("SELECT summary FROM sessions WHERE session_id = ?", [session_id]).fetchall()
    finally:
        con.close()
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def summary_lines(summary: pd.DataFrame, dropped: pd.DataFrame) -> list[str]:
    """A session's summary for the console: numbers as the report writes them (no scientific
    notation, fees as ``0.0125 USDT``), then one line per kind of dropped order."""
    from workbench import present

    first = ["symbol", "orders", "dropped", "fills", "notional", "fees", "position", "avg_cost", "last_price"]
    frame = summary[[c for c in first if c in summary] + [c for c in summary if c not in first]].copy()
    for column in frame.columns:
        if column == "fees":
            frame[column] = [
                ", ".join(f"{present.number(v, 4)} {a}" for a, v in (f or {}).items()) or "0" for f in frame[column]
            ]
        elif pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].map(present.number)
    lines = [frame.to_string(index=False)] if len(frame) else []
    for row in dropped.itertuples():
        lines.append(
            f"dropped: {row.orders} order(s) of {row.symbol} ({row.reason}): too small or refused; "
            "the audit log has each (order.dropped, risk.rejected)"
        )
    return lines


def _sweep_command(args: Any) -> int:
    grid: list[dict[str, Any]] = load_grid(args.grid) if args.grid else []
    axes = dict(args.param)
    if axes:
        grid = [{**g, **a} for g in (grid or [{}]) for a in expand_grid(axes)] if grid else expand_grid(axes)
    if not grid:
        raise ConfigError("A sweep needs a grid: --grid FILE or --param NAME=V1,V2.")
    base = _parameters(args)
    store = base.pop("store_path", PARAMETERS["store_path"])
    frame = sweep(
        grid,
        sweep_id=args.sweep_id,
        base=base,
        store_path=store,
        runs_dir=args.runs_dir,
        workers=args.workers,
        scheduler=args.scheduler,
        timeout=args.timeout,
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 60):
        print(sweep_table(store, args.sweep_id, frame).to_string())  # each run's PnL beside its parameters
    print(f"merged into {store}: SELECT * FROM sessions WHERE sweep_id = '{args.sweep_id}'")
    return 0 if (frame["status"] != "failed").all() else 1


def yaml_value(text: str) -> Any:
    """A command-line value as YAML reads it: ``5`` -> 5, ``0.1`` -> 0.1, ``abc`` -> 'abc'."""
    import yaml

    return yaml.safe_load(text)
