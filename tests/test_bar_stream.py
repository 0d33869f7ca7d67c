"""The venue's bar stream across venue restarts (issue 14, item 8): ccxt's NetworkError (1006, or a
refused connection while the venue is down) never escapes ``watch_bars``; the stream reconnects
with backoff and the executor reconciles."""

from __future__ import annotations

import asyncio
import logging

from workbench.exchange import LocalExchange

from .polling import until
from .test_binance_e2e import SYMBOLS, executor_for

BTC = "BTC/USDT"


async def test_the_bar_stream_reconnects_after_venue_restarts_and_reconciles(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="workbench.executors.binance")
    state = tmp_path / "venue.json"
    exchange = await LocalExchange(SYMBOLS, speed=3000, state_file=state).start()  # a 1m bar every 20 ms
    executor = executor_for(exchange, reconcile_every=3600)
    await executor.start()
    reconciles = 0
    reconcile = executor.reconcile

    async def counted() -> list[str]:
        nonlocal reconciles
        reconciles += 1
        return await reconcile()

    executor.reconcile = counted
    bars = executor.watch_bars(BTC)
    seen = [await asyncio.wait_for(anext(bars), 30)]
    for _ in range(2):  # the venue goes down, then comes back on the same port with the same account
        port, keys = exchange.port, (exchange.api_key, exchange.secret)
        drops = caplog.text.count("bar stream BTC/USDT dropped")
        await exchange.stop()
        waiting = asyncio.ensure_future(anext(bars))

        async def dropped(n: int = drops) -> bool:
            """Take the bars that closed before the stop, until the stream meets the venue gone."""
            nonlocal waiting
            if waiting.done():
                seen.append(waiting.result())
                waiting = asyncio.ensure_future(anext(bars))
            return caplog.text.count("bar stream BTC/USDT dropped") > n

        await until(dropped, 20, "the drop is seen")
        assert not waiting.done()  # the error did not escape: the stream waits for the venue
        exchange = await LocalExchange(SYMBOLS, port=port, speed=3000, state_file=state, api_key=keys[0],
                                       secret=keys[1]).start()  # fmt: skip
        seen.append(await asyncio.wait_for(waiting, 60))
    assert [b.name for b in seen] == sorted({b.name for b in seen})  # each bar once, in order
    assert reconciles >= 2  # after each reconnection of the bar stream (and of the user data stream)
    await bars.aclose()
    await executor.close()
    await exchange.stop()
