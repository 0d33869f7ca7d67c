"""Every chaos scenario with several seeds: a testnet session trades through the local exchange
under the scenario's faults, then the store, the executor and the kill switch are checked against
the exchange's own records (see harness.py for the invariants and the scenarios)."""

from __future__ import annotations

import pytest

from .harness import SCENARIOS, TOTALS

SEEDS = (1, 2, 3, 4, 5)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_invariants_hold_under_faults(name, seed, chaos_runs):
    report = chaos_runs.result(name, seed)
    TOTALS.add(report)
    assert report.orders > 0, f"no order reached the exchange: the run checked nothing\n{report.describe()}"
    assert report.clean, report.describe()
