"""The store's writer thread under load: a bounded queue holds a producer that outruns the disk, a
drain waits as long as the writer makes progress, a writer that died is a clear error (never a
hang), and the file is never closed under a running writer, also when the interpreter exits."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import time

import pytest

from workbench.config import TradingMode
from workbench.replay import replay
from workbench.store import Store, StoreError
from workbench.strategy import SmaCross

from .conftest import make_bars

PAPER = TradingMode.PAPER
ROWS = (
    "SELECT count(*) FROM paper_orders WHERE session_id = ?",
    "SELECT count(*) FROM paper_fills WHERE session_id = ?",
    "SELECT kind, count(*) FROM audit_log WHERE session_id = ? GROUP BY kind ORDER BY kind",
    "SELECT client_order_id, status, filled, cost FROM paper_orders WHERE session_id = ? ORDER BY 1",
)


def written(store: Store, session_id: str) -> list[list[tuple]]:
    return [store.sql(sql, [session_id]) for sql in ROWS]


async def test_a_replay_that_outruns_the_writer_completes_with_every_row_written(tmp_path):
    """One row per commit (each one fsynced) and room for 8 writes: the event-path replay produces
    rows far faster than this writer commits them, so it waits for room again and again, and still
    ends with every order, fill and audit row a roomy store gets."""
    bars = make_bars(400, seed=13)
    strategy = SmaCross(2, 5, 0.01)
    with Store(tmp_path / "roomy.duckdb") as roomy:
        await replay(strategy, bars, store=roomy, session_id="r", engine="event")
        expected = written(roomy, "r")
    slow = Store(tmp_path / "slow.duckdb", batch_size=1, linger=0.0, max_queue=8, stall=30.0)
    full = []
    enqueue = slow._enqueue
    slow._enqueue = lambda item: (full.append(slow._queue.full()), enqueue(item))[1]  # count, then queue for real
    result = await replay(strategy, bars, store=slow, session_id="r", engine="event")
    assert result.engine == "event" and written(slow, "r") == expected
    orders, fills, audit, _ = expected
    assert orders[0][0] == len(result.session.orders) > 50 and fills[0][0] > 50
    assert sum(n for _, n in audit) > 50 * 8  # rows far beyond the queue's room ...
    assert sum(full) > 100  # ... so the replay found it full, and waited, many times
    slow.close()


def test_a_drain_outlasting_the_stall_limit_passes_while_the_writer_progresses(tmp_path):
    """No fixed timeout: a backlog that takes several times ``stall`` to commit drains, because
    the writer commits all along."""
    stall = 1.0
    with Store(tmp_path / "drain.duckdb", batch_size=1, linger=0.0, max_queue=100_000, stall=stall) as store:
        started = time.perf_counter()
        for n in range(30):
            store.audit("probe", {"n": n})
        store.flush()
        per_commit = (time.perf_counter() - started) / 30  # this disk's time for a one-row commit
        rows = max(100, math.ceil(3 * stall / per_commit))
        started = time.perf_counter()
        for n in range(rows):
            store.audit("backlog", {"n": n})
        store.flush()
        took = time.perf_counter() - started
        assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'backlog'")[0][0] == rows
    assert took > stall, (took, rows, per_commit)


def kill_on_next_commit(store: Store) -> None:
    """End the store's writer as an unexpected error would: its next commit raises SystemExit (a
    BaseException, which no error handling of the writer catches). Not PyThreadState_SetAsyncExc:
    on Python 3.11 a pending async exception for a thread blocked in C makes every other thread
    take the interpreter's slow path on each instruction until it is delivered."""

    def die(cursor: object, batch: object) -> None:
        raise SystemExit

    store._commit = die  # type: ignore[method-assign]


def test_a_dead_writer_is_a_clear_error_not_a_hang(tmp_path, caplog):
    path = tmp_path / "dead.duckdb"
    store = Store(path, max_queue=4, stall=60.0)
    store.audit("before", {"n": 0})
    store.flush()
    kill_on_next_commit(store)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"store writer of .*dead.duckdb died \(SystemExit"):
        for n in range(100):  # the writer wakes on the first, dies; the queue fills; the next write refuses
            store.audit("after", {"n": n})
        store.flush()
    with pytest.raises(StoreError, match="died.*Open the store again"):
        store.flush()
    assert time.monotonic() - started < 10  # at once, not after the 60 s stall limit
    assert "store writer of" in caplog.text and "SystemExit" in caplog.text
    with pytest.raises(StoreError, match="died"):
        store.close()  # closes the file (no writer runs any more) and says what happened
    with Store(path) as again:
        assert again.sql("SELECT kind FROM audit_log") == [("before",)]


STALLED = textwrap.dedent(
    """
    import sys, threading
    from workbench.store import Store

    store = Store(sys.argv[1], max_queue=2, stall=0.5)
    store._commit = lambda cursor, batch: threading.Event().wait()  # a disk that never finishes a commit
    try:
        for n in range(1000):  # the writer takes a batch (500), then its commit never ends
            store.audit("stuck", {"n": n})
    except Exception as e:
        print(type(e).__name__, e, flush=True)
    import os
    os._exit(0)
    """
)


def test_a_producer_held_by_a_stalled_writer_gives_up_after_the_stall_limit(tmp_path):
    result = subprocess.run([sys.executable, "-c", STALLED, str(tmp_path / "s.duckdb")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.stdout.startswith("StoreError The store writer of"), result.stderr
    assert re.search(r"made no progress for \ds while waiting for room in its queue \(2 writes queued\)", result.stdout)


LEFT_OPEN = textwrap.dedent(
    """
    import sys
    from workbench.store import Store

    store = Store(sys.argv[1], batch_size=1, linger=0.0)
    for n in range(300):
        store.audit("left", {"n": n})
    print("queued", flush=True)
    """  # the script ends with the writer still committing: the store is never closed by it
)


def test_a_store_left_open_is_drained_and_closed_at_exit(tmp_path):
    path = tmp_path / "open.duckdb"
    result = subprocess.run([sys.executable, "-c", LEFT_OPEN, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "queued\n", result.stderr
    assert "terminate called" not in result.stderr
    with Store(path) as store:
        assert store.sql("SELECT count(*) FROM audit_log WHERE kind = 'left'")[0][0] == 300
