"""The chaos suite's runner (every selected scenario x seed, several at once on a background event
loop) and its summary line, printed at the end of the run for CI."""

from __future__ import annotations

import os

import pytest

from .harness import CLI_TOTALS, TOTALS, Runner


@pytest.fixture(scope="session")
def chaos_runs(request, tmp_path_factory):
    """Starts every selected run at once (``CHAOS_CONCURRENCY`` at a time, 6 by default); each test
    then waits for its own run's report."""
    runner = Runner(tmp_path_factory.mktemp("chaos"), int(os.environ.get("CHAOS_CONCURRENCY", "6")))
    runner.submit(
        (item.callspec.params["name"], item.callspec.params["seed"])
        for item in request.session.items
        if item.get_closest_marker("chaos") and "name" in getattr(getattr(item, "callspec", None), "params", {})
    )
    yield runner
    runner.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for totals in (TOTALS, CLI_TOTALS):
        if totals.scenarios:
            terminalreporter.write_line(totals.line())
