"""``workbench report``: the post-trade analysis notebook, executed for one session (or a sweep)
and exported as a standalone HTML file (plots embedded, code hidden).

The notebook runs in its own kernel (nbclient, as papermill does, without papermill's start-up).
The kernel is started first, so that it boots while this process loads the notebook machinery.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workbench import lookup
from workbench.checks import check_id, command_line
from workbench.config import DEFAULT_STORE
from workbench.errors import WorkbenchError

REPORT_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_post_trade_analysis.ipynb"
REPORTS_DIR = Path("reports")


class ReportError(WorkbenchError):
    """The analysis notebook failed while building a report; the executed notebook says where."""


def report(
    session_id: str | None = None,
    *,
    sweep_id: str | None = None,
    store_path: str | Path = DEFAULT_STORE,
    output: str | Path | None = None,
    notebook: str | Path = REPORT_NOTEBOOK,
    show_code: bool = False,
    timeout: float | None = 600,
    progress: bool = False,
) -> Path:
    """Execute the analysis notebook for ``session_id`` (or every session of ``sweep_id``) in the
    store at ``store_path`` and write it as one HTML file: ``output``, by default
    ``reports/<id>.html``. Returns the file's path.

    Raises :class:`~workbench.analysis.UnknownSession` (before any kernel starts) when the store has
    no such session, and :class:`ReportError` if the notebook fails (its executed copy is kept
    beside ``output`` as ``.ipynb``). ``progress`` tells each step and section on stderr, one line each."""
    if (session_id is None) == (sweep_id is None):
        raise WorkbenchError("A report is of one session or of one sweep: give exactly one of the two.")
    check_id(session_id or sweep_id, "session_id" if sweep_id is None else "sweep_id")  # ids name files
    store_path = Path(store_path).resolve()
    lookup.check(store_path, session_id, sweep_id)  # a clear error for an unknown id, before a kernel starts
    started = time.perf_counter()

    def say(step: str) -> None:
        if progress:
            print(f"report: {step} ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)

    name = session_id or f"sweep-{sweep_id}"
    target = Path(output or REPORTS_DIR / f"{name}.html").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"store_path": str(store_path), "session_id": session_id, "sweep_id": sweep_id}
    say("starting the analysis kernel")
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory() as folder:
        # IPC sockets in the temporary folder: no TCP port, and no warning about one without encryption
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(folder) / "kernel"))
        kernel.start_kernel()
        try:
            node = _execute(kernel, Path(notebook), parameters, timeout, say, target.with_suffix(".ipynb"), name)
        finally:
            kernel.shutdown_kernel(now=True)
    say("exporting HTML")
    from nbconvert import HTMLExporter

    node.metadata["title"] = f"Post-trade analysis: {name}"
    exporter = HTMLExporter(
        exclude_input=not show_code, exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True
    )
    body, _ = exporter.from_notebook_node(node)
    target.write_text(body, encoding="utf-8")
    say(f"written {target}")
    return target


def _execute(
    kernel: Any,
    notebook: Path,
    parameters: Mapping[str, Any],
    timeout: float | None,
    say: Callable[[str], None],
    kept: Path,
    name: str,
) -> Any:
    """Run ``notebook`` with ``parameters`` (a cell after its ``parameters`` cell, as papermill
    injects them) in the started ``kernel``; the executed notebook node. Tells each section (a
    ``##`` heading) as its first cell starts. On failure, keeps the executed copy at ``kept``."""
    # jsonschema (which nbformat loads) builds an IRI grammar for a second or two when rfc3987_syntax
    # is installed; notebooks have no IRI to check
    blocked = "rfc3987_syntax" not in sys.modules and "jsonschema" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  (an import of it fails: skipped)
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter  # noqa: F401  (loaded now, while the kernel boots)
    finally:
        if blocked:
            del sys.modules["rfc3987_syntax"]
    node = nbformat.read(notebook, as_version=4)
    tagged = [i for i, c in enumerate(node.cells) if "parameters" in c.metadata.get("tags", [])]
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{k} = {v!r}" for k, v in parameters.items()), metadata={"tags": ["injected-parameters"]}
    )
    node.cells.insert(tagged[0] + 1 if tagged else 0, injected)
    sections, heading = {}, "loading the session"
    for index, cell in enumerate(node.cells):
        lines = cell.source.splitlines()
        if cell.cell_type == "markdown" and lines and lines[0].startswith("## "):
            heading = lines[0][3:].strip()
        elif cell.cell_type == "code" and heading not in sections.values():
            sections[index] = heading

    def started(cell: Any, cell_index: int) -> None:
        if cell_index in sections:
            say(sections[cell_index])

    client = NotebookClient(node, km=kernel, timeout=timeout, on_cell_start=started)
    try:
        client.execute()
    except Exception as e:  # nbclient's errors carry the cell's traceback
        nbformat.write(node, kept)
        raise ReportError(f"The analysis notebook failed for {name}: {e}. Executed notebook: {kept}.") from None
    finally:
        if client.kc is not None:  # its sockets, closed now: at exit they would linger
            client.kc.stop_channels()
    return node


def register(subparsers: Any) -> None:
    """Add ``workbench report`` and ``workbench explain`` to the command line (neither loads pandas
    before it has checked the store and the session id)."""
    p = subparsers.add_parser("report", help="export the post-trade analysis of a session as a standalone HTML file")
    p.add_argument("session_id", help="the session to analyse (or the sweep's id, with --sweep)")
    p.add_argument("--sweep", action="store_true", help="SESSION_ID is a sweep id: compare every session of it")
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"the DuckDB file (default {DEFAULT_STORE})")
    p.add_argument("--output", help="the HTML file to write (default reports/<id>.html)")
    p.add_argument("--show-code", action="store_true", help="keep the notebook's code cells in the HTML")
    p.add_argument("--timeout", type=float, default=600, help="seconds a notebook cell may take")
    p.set_defaults(func=_report_command)

    session_id = command_line(check_id)
    p = subparsers.add_parser("explain", help="why a session's result differs from a replay of its bars, by cause")
    p.add_argument("session_id", type=session_id, help="the session to explain")
    p.add_argument(
        "--against", type=session_id, help="another session instead of the replay: its paper shadow, a run of its sweep"
    )
    p.add_argument("--store", default=str(DEFAULT_STORE), help=f"the DuckDB file (default {DEFAULT_STORE})")
    p.set_defaults(func=_explain_command)


def _report_command(args: argparse.Namespace) -> int:
    ids = {"sweep_id": args.session_id} if args.sweep else {"session_id": args.session_id}
    path = report(
        **ids, store_path=args.store, output=args.output, show_code=args.show_code, timeout=args.timeout, progress=True
    )
    print(path)
    return 0


def _explain_command(args: argparse.Namespace) -> int:
    lookup.check(args.store, [args.session_id, *([args.against] if args.against else [])], None)
    import pandas as pd

    from workbench import present
    from workbench.explain import explain

    why = explain(args.store, args.session_id, against=args.against)
    print(why.sentence())
    total = pd.DataFrame([{"cause": "total", "orders": len(why.pairs), "quote": why.difference}])
    rows = pd.concat([why.lines, total], ignore_index=True)
    rows["quote"] = [present.number(v, 4) for v in rows["quote"]]
    print(
        present.table(
            rows,
            {"cause": ("cause", "text"), "orders": ("orders", "count"), "quote": ("PnL difference (quote)", "text")},
        ).to_string(index=False)
    )
    return 0
