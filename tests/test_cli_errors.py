"""The command line answers a mistake before it starts work (issue 14, items 3, 7 and 11): run as a
user runs it (``.venv/bin/workbench`` in a subprocess), every refusal is one line on stderr starting
``workbench:``, exit status 2, no traceback, and nothing is created or changed on disk."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import parser
from workbench.store import Store

WORKBENCH = Path(sys.executable).with_name("workbench")
INJECTION = "q.parquet' (FORMAT parquet); COPY (SELECT 'injected' AS x) TO 'PWNED.csv' (FORMAT csv); --"
SECRET = "s3cr3t-VALUE-77c1"
ID_RULE = "must be 1 to 64 letters"


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def user(tmp_path, data_dir):
    """A user's working folder two levels below ``tmp_path`` (so ``../../x`` would land in it) with
    a store, a config file and a grid; ``user(*argv)`` runs the CLI there and checks nothing changed."""
    work = tmp_path / "home" / "user"
    work.mkdir(parents=True)
    Store(work / "precious.duckdb").close()
    (work / "risk5.toml").write_text("risk = 5\n")
    (work / "grid.yaml").write_text(f"password: [{SECRET}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "WORKBENCH_ALLOW"))}
    env["WORKBENCH_DATA"] = str(data_dir)

    def refused(*argv: str) -> str:
        before = tree(tmp_path)
        done = subprocess.run([str(WORKBENCH), *argv], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stdout == "" and done.stderr.startswith("workbench: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr and "fills are in" not in done.stderr
        assert tree(tmp_path) == before  # nothing created or changed, here or above
        return done.stderr

    return refused


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--session-id", INJECTION],
        ["run", "--session-id", "../../precious"],
        ["run", "--session-id", "fast=5"],
        ["run", "--session-id", "a" * 300],
        ["sweep", "--sweep-id", "../../x", "--param", "fast=3"],
        ["sweep", "--sweep-id", "fast=5", "--param", "fast=3"],
        ["halt-sweep", "../../x"],
        ["report", "../../x", "--store", "precious.duckdb"],
        ["report", "../../x", "--sweep", "--store", "precious.duckdb"],
        ["explain", "../../x", "--store", "precious.duckdb"],
        ["explain", "fine", "--against", INJECTION, "--store", "precious.duckdb"],
    ],
)
def test_unsafe_ids_are_refused_before_anything_is_created(user, argv):
    message = user(*argv)
    assert ID_RULE in message and len(message) < 300  # a 300-character id is shown cut short


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--sweep-id", "s1", "--param", f"api_secret={SECRET}"],
        ["sweep", "--sweep-id", "s1", "--param", f"Exchange_TOKEN={SECRET}", "--param", "fast=3"],
        ["sweep", "--sweep-id", "s1", "--grid", "grid.yaml"],
        ["run", "--strategy-params", f'{{"fast": 5, "legs": {{"PassPhrase": "{SECRET}"}}}}'],
        ["run", "--risk", f'{{"api_key": "{SECRET}"}}'],
    ],
)
def test_credential_parameters_are_refused_and_never_echoed(user, argv):
    message = user(*argv)
    assert "look like credentials" in message and SECRET not in message


@pytest.mark.parametrize(
    "argv, says",
    [
        (["run", "--strategy", "moon"], "Unknown strategy 'moon'"),
        (["run", "--strategy-params", '{"fast": 50, "slow": 5}'], "0 < fast < slow"),
        (["sweep", "--sweep-id", "s", "--param", "colour=red"], "unexpected keyword argument 'colour'"),
        (["run", "--symbols", "DOGE/EUR"], "No trading rules for ['DOGE/EUR']"),
        (["run", "--risk", '{"max_open_ordrs": 5}'], "max_open_ordrs"),
        (["run", "--risk", "5"], "--risk: must be a JSON object"),
        (["run", "--mode", "testnet", "--venue", "testnet"], "needs BINANCE_TESTNET_API_KEY and"),
        (["sweep", "--sweep-id", "s", "--param", "fast=3,4", "--mode", "testnet", "--venue", "testnet"], "needs"),
        (["run", "--bars", "0"], "--bars: must be a whole number above 0; got 0"),
        (["run", "--speed", "nan"], "--speed: must be a finite number above 0"),
        (["run", "--start", "notadate"], "--start: must be a date or time"),
        (["sweep", "--sweep-id", "s", "--param", "fast=3", "--workers", "0"], "--workers: must be a whole number"),
        (["sweep", "--sweep-id", "s", "--param", "fast"], "--param: must look like NAME=V1,V2"),
        (["paper", "--bars", "0"], "--bars: must be a whole number above 0; got 0"),
        (["paper", "--bars", "-5"], "--bars: must be a whole number above 0; got -5"),
        (["paper", "--start", "notadate"], "--start: must be a date or time"),
        (["paper", "--size", "inf"], "--size: must be a finite number above 0; got inf"),
        (["paper", "--config", "risk5.toml"], "risk must be a table of limits"),
        (["kill-switch", "status", "--store", "precous.duckdb"], "The store precous.duckdb does not exist"),
        (["kill-switch", "trip", "--store", "precous.duckdb"], "does not exist"),
        (["halt-sweep", "nosuch"], "No sweep 'nosuch' under runs"),
    ],
)
def test_commands_answer_mistakes_on_one_line_before_they_start_work(user, argv, says):
    assert says in user(*argv)


def undocumented(command: argparse.ArgumentParser, name: str) -> list[str]:
    """The options and arguments of ``command`` (and of its subcommands) without a help text."""
    missing = []
    for action in command._actions:
        if not action.help:
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        for verb, sub in (action.choices or {}).items() if isinstance(action, argparse._SubParsersAction) else ():
            if verb != "exchange":  # the local exchange's options are its own module's (workbench/exchange/cli.py)
                missing += undocumented(sub, f"{name} {verb}")
    return missing


def test_every_option_of_every_command_has_a_help_text():
    commands = parser()._subparsers._group_actions[0].choices
    assert {"paper", "run", "sweep", "halt-sweep", "report", "kill-switch", "exchange"} <= set(commands)
    assert undocumented(parser(), "workbench") == []
    for first in ("--help", "-h", "exchange", "bogus"):  # what `workbench --help` lists, each with its text
        listed = parser(first)._subparsers._group_actions[0]._choices_actions
        assert {a.dest for a in listed} == set(commands) and all(a.help for a in listed)
