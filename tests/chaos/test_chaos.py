"""Every chaos scenario with several seeds: a testnet session trades through the local exchange
under the scenario's faults, then the store, the executor and the kill switch are checked against
the exchange's own records (see harness.py for the invariants and the scenarios).

The CLI path (cli.py) drives ``workbench run`` and ``workbench sweep`` as subprocesses. Kernel
starts are slow (papermill), so CI runs one seed of each CLI scenario (about 4 minutes on 2 cores);
``CHAOS_CLI_SEEDS=1,2,3`` runs more."""

from __future__ import annotations

import os

import pytest

from .cli import CLI_SCENARIOS
from .harness import CLI_TOTALS, SCENARIOS, TOTALS

SEEDS = (1, 2, 3, 4, 5)
CLI_SEEDS = tuple(int(s) for s in os.environ.get("CHAOS_CLI_SEEDS", "1").split(","))
CASES = [(n, s) for n in SCENARIOS for s in SEEDS] + [(n, s) for n in CLI_SCENARIOS for s in CLI_SEEDS]

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_invariants_hold_under_faults(name, seed, chaos_runs):
    report = chaos_runs.result(name, seed)
    (CLI_TOTALS if report.path == "cli" else TOTALS).add(report)
    assert report.orders > 0, f"no order reached the exchange: the run checked nothing\n{report.describe()}"
    assert report.clean, report.describe()
