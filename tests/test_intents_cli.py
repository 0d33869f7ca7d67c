"""An intent strategy as a user runs it: `workbench run --strategy sma_bracket` in testnet mode, a
subprocess trading a local exchange in the test's event loop; its stop-losses are on the exchange."""

from __future__ import annotations

import json

from tests.cli_runs import open_venue, session_orders, start_run


async def test_workbench_run_trades_the_bracket_example_with_stops_on_the_exchange(tmp_path):
    exchange = await open_venue(tmp_path, speed=1200)
    try:
        params = {"fast": 2, "slow": 3, "size": 0.001, "stop": 0.002, "profit": 0.004}
        extra = ("--strategy", "sma_bracket", "--strategy-params", json.dumps(params))
        rc, out = await (await start_run(tmp_path, exchange, "bracket", bars=40, extra=extra)).finish()
        assert rc == 0, out
        kinds = {(o.side.value, o.type.value) for o in session_orders(exchange, "bracket")}
        assert {("buy", "MARKET"), ("sell", "STOP_LOSS_LIMIT")} <= kinds, kinds
    finally:
        await exchange.stop()
