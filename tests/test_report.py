"""``workbench report`` as a user runs it: a subprocess, on a real DuckDB store."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.config import load_config
from workbench.data import load_klines
from workbench.session import TradingSession
from workbench.strategy import SmaCross

WORKBENCH = Path(sys.executable).with_name("workbench")
SECTIONS = ("Data", "Performance", "Fees", "Trades", "Open positions at the end", "Execution quality",
            "Refusals and drops", "Explain", "Paper versus real", "Sweep")  # fmt: skip
SCIENTIFIC = re.compile(r"(?<![\w.])\d+(\.\d+)?[eE][+-]?\d+(?![\w])")
SESSION_ID = re.compile(r"\b[\w-]+-\d{8}T\d{6}-[0-9a-f]{4}\b")  # its random hex can read 3e45


def scientific(text: str) -> list[str]:
    """The numbers in ``text`` printed in scientific notation (session ids left out)."""
    return [m.group(0) for m in SCIENTIFIC.finditer(SESSION_ID.sub(" ", text))]


def paper_session(store_path: Path, bars: int = 600) -> str:
    """A paper session over the bundled klines (or the labelled synthetic sample), as `workbench paper` trades."""
    config = load_config(mode="paper", symbols=["BTC/USDT"], store_path=store_path)
    session = TradingSession.from_config(config, strategy=SmaCross(fast=5, slow=20, size=0.001))
    asyncio.run(session.run({"BTC/USDT": load_klines("BTC/USDT", limit=bars, allow_sample=True)}, progress=False))
    session.store.close()
    return session.session_id


def visible_text(html: str) -> str:
    """The page's text: no scripts, styles, embedded images or tags."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    html = re.sub(r'src="data:[^"]*"', " ", html)
    return re.sub(r"<[^>]+>", " ", html)


def write_report(folder: Path) -> tuple[str, Path, subprocess.CompletedProcess]:
    """A paper session in a new store in ``folder`` and its report, written by ``workbench report``."""
    store = folder / "report.duckdb"
    session_id = paper_session(store)
    output = folder / "report.html"
    done = subprocess.run(
        [str(WORKBENCH), "report", session_id, "--store", str(store), "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return session_id, output, done


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> tuple[str, Path, subprocess.CompletedProcess]:
    return write_report(tmp_path_factory.mktemp("report"))


HEAVY = {"pandas", "numpy", "ccxt", "matplotlib", "papermill", "nbconvert", "nbformat", "jupyter_client", "aiohttp"}


@pytest.mark.parametrize("command", ["report", "explain"])
def test_an_unknown_session_fails_with_one_clear_line_before_any_heavy_import(tmp_path, command):
    store = tmp_path / "one.duckdb"
    paper_session(store, bars=100)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(WORKBENCH), command, "no-such-session", "--store", str(store)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith("workbench: Unknown session id(s) ['no-such-session']"), lines
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "duckdb" in imported  # the check ran, and neither pandas nor the notebook machinery was loaded for it
    assert not imported & HEAVY, imported & HEAVY


def test_a_missing_store_or_a_file_that_is_no_store_is_one_line_without_duckdb(tmp_path):
    (tmp_path / "notes.duckdb").write_text("not a database")
    for store, says in ((tmp_path / "typo.duckdb", "No store at"), (tmp_path / "notes.duckdb", "Cannot open")):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", str(WORKBENCH), "report", "s1", "--store", str(store)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"workbench: {says}"), lines
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert ("duckdb" in imported) == (says == "Cannot open") and not imported & HEAVY


def test_importing_the_package_or_its_command_line_loads_no_heavy_module():
    probe = (
        "import sys, workbench, workbench.cli\n"
        "from workbench import Side, TradingMode, WorkbenchError\n"
        "assert set(workbench.__all__) <= set(dir(workbench))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))\n"
        "from workbench import TradingSession\n"
        "print(TradingSession.__module__, 'pandas' in sys.modules)\n"
    ).format(heavy=HEAVY | {"duckdb"})
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded, session = done.stdout.splitlines()
    assert loaded == "[]"
    assert session == "workbench.session True"  # a public name loads its module when first used


def test_every_public_name_is_exported_and_unknown_names_fail_as_attributes():
    import workbench

    assert sorted(workbench.__all__) == sorted(workbench._EXPORTS)
    for name in workbench.__all__:
        assert getattr(workbench, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        workbench.nope  # noqa: B018


def test_the_report_of_a_session_shows_progress_and_every_section(reported):
    session_id, output, done = reported
    assert done.stdout.strip() == str(output)
    progress = [line for line in done.stderr.splitlines() if line.startswith("report: ")]
    told = [re.sub(r" \(\d+\.\d s\)$", "", line.removeprefix("report: ")) for line in progress]
    # one line per step and per section of the notebook, in order, each with the seconds since the start
    assert len(told) == len(progress) == len(SECTIONS) + 4, progress
    assert told[:2] == ["starting the analysis kernel", "loading the session"]
    assert [t.split(":")[0] for t in told[2:-2]] == list(SECTIONS)
    assert told[-2:] == ["exporting HTML", f"written {output}"]
    seconds = [float(re.search(r"\((\d+\.\d) s\)$", line).group(1)) for line in progress]
    assert seconds == sorted(seconds)
    html = output.read_text()
    text = visible_text(html)
    for section in SECTIONS:
        assert re.search(rf"<h2[^>]*>{re.escape(section)}", html), section
    assert session_id in text and "Traceback" not in text
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html)) >= 1  # the equity against buy and hold
    # the loader's label of the data, without the period it appends (the report shows the session's own)
    data = re.split(r", \d{4}-\d\d-\d\d", load_klines("BTC/USDT", limit=1, allow_sample=True).attrs["source"])[0]
    assert data in text and (("SYNTHETIC DATA" in text) == ("SYNTHETIC" in data))
    for figure in ("Sharpe ratio (annualised)", "Max drawdown (USDT)", "Buy and hold return", "Time in market"):
        assert figure in text
    assert not scientific(text), scientific(text)[:5]
    assert re.search(r"\d %", text) and "bps" in text  # percentages and basis points, with their units


def test_the_report_of_a_paper_session_says_in_words_what_has_nothing_to_plot(reported):
    text = visible_text(reported[1].read_text())
    assert "Slippage: every order within" in text  # paper fills within a fraction of a bp: no histogram
    assert "Latency: zero for every order" in text


def test_the_report_of_a_sweep_labels_runs_by_their_parameters(tmp_path):
    from tests.test_analysis import write_random
    from workbench.store import Store

    store = tmp_path / "sweep.duckdb"
    with Store(store) as s:
        for i, (fast, slow) in enumerate([(5, 20), (10, 20), (5, 40), (10, 40)]):
            write_random(s, f"grid-{i}", seed=i, sweep_id="grid", params={"fast": fast, "slow": slow})
    output = tmp_path / "sweep.html"
    done = subprocess.run(
        [str(WORKBENCH), "report", "grid", "--sweep", "--store", str(store), "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = output.read_text()
    text = visible_text(html)
    assert re.search(r"<th[^>]*>fast</th>\s*<th[^>]*>slow</th>", html)  # the parameter columns head the table
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html)) >= 2  # the heatmap and the PnL lines
    assert not scientific(text), scientific(text)[:5]


def test_a_failing_notebook_is_a_report_error_with_the_executed_copy_kept(tmp_path, capsys):
    import nbformat

    from tests.test_analysis import HAND, write_hand
    from workbench.report import ReportError, report
    from workbench.store import Store

    store = tmp_path / "hand.duckdb"
    with Store(store) as s:
        write_hand(s)
    notebook = tmp_path / "broken.ipynb"
    cells = [
        nbformat.v4.new_code_cell("store_path = session_id = sweep_id = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("## Fine"),
        nbformat.v4.new_code_cell("print(session_id, store_path)"),
        nbformat.v4.new_markdown_cell("## Broken"),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebook)
    output = tmp_path / "out" / "broken.html"
    with pytest.raises(ReportError, match="ZeroDivisionError") as failed:
        report(HAND, store_path=store, output=output, notebook=notebook, progress=True)
    kept = output.with_suffix(".ipynb")
    assert str(kept) in str(failed.value) and not output.exists()
    executed = nbformat.read(kept, as_version=4)
    assert "injected-parameters" in executed.cells[1].metadata["tags"]  # after the parameters cell
    assert executed.cells[3].outputs[0]["text"] == f"{HAND} {store}\n"  # the parameters reached the kernel
    assert executed.cells[-1].outputs[0]["ename"] == "ZeroDivisionError"
    told = [line.split(" (")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("report: ")]
    assert told == ["report: starting the analysis kernel", "report: loading the session", "report: Fine",
                    "report: Broken"]  # fmt: skip
