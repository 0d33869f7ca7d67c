import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from workbench.config import TradingMode
from workbench.model import Balance, Fill, Order, OrderStatus, OrderType, Side, TimeInForce
from workbench.store import Store, StoreError

from .conftest import T0

D = Decimal


def order(status=OrderStatus.NEW, filled="0", cid="c1"):
    o = Order("BTC/USDT", Side.BUY, OrderType.LIMIT, D(1), D(100), None, TimeInForce.GTC, cid, id="1", timestamp=T0)
    o.status, o.filled, o.cost = status, D(filled), D(filled) * 100
    return o


def fill(trade_id="1"):
    return Fill(trade_id, "1", "c1", "BTC/USDT", Side.BUY, D(100), D(1), D(100), D("0.001"), "BTC", False, T0)


def test_paper_and_real_rows_live_apart_and_the_views_union_them(store):
    store.record_order("s", TradingMode.PAPER, order())
    store.record_order("s", TradingMode.TESTNET, order())
    store.record_fill("s", TradingMode.PAPER, fill())
    store.record_fill("s", TradingMode.MAINNET, fill())
    store.record_balances("s", TradingMode.TESTNET, [Balance("BTC", D(1), D(2))], T0)
    store.record_balances("s", TradingMode.PAPER, [Balance("USDT", D(5))], T0)
    store.flush()
    assert store.sql("SELECT count(*) FROM paper_orders")[0][0] == 1
    assert store.sql("SELECT mode FROM real_orders") == [("testnet",)]
    assert sorted(store.sql("SELECT mode FROM orders")) == [("paper",), ("testnet",)]
    assert sorted(store.sql("SELECT mode FROM fills")) == [("mainnet",), ("paper",)]
    assert sorted(store.sql("SELECT mode, asset, free, locked FROM balances")) == [
        ("paper", "USDT", D(5), D(0)),
        ("testnet", "BTC", D(1), D(2)),
    ]


def test_orders_only_move_forward_and_fills_are_kept_once(store):
    store.record_order("s", TradingMode.PAPER, order(), signal_price=D(99), arrival_price=D(100), signal_time=T0)
    store.record_order("s", TradingMode.PAPER, order(OrderStatus.FILLED, "1"))
    store.record_order("s", TradingMode.PAPER, order(OrderStatus.PARTIALLY_FILLED, "0.5"))  # late, older event
    for _ in range(3):
        store.record_fill("s", TradingMode.PAPER, fill())
    store.flush()
    assert store.sql("SELECT status, filled, signal_price, arrival_price FROM paper_orders") == [
        ("FILLED", D(1), D(99), D(100))
    ]
    assert store.sql("SELECT count(*) FROM paper_fills")[0][0] == 1


def test_sessions_audit_and_kill_switch(store):
    store.start_session(
        "s", TradingMode.PAPER, venue="paper", strategy="SmaCross", params={"fast": 1}, symbols=["BTC/USDT"]
    )
    store.audit("order.request", {"amount": D("0.1")}, session_id="s", mode=TradingMode.PAPER)
    store.end_session("s", "completed", {"fills": 3})
    assert store.kill_switch_state() == (False, "")
    store.set_kill_switch(True, "test", "code")
    assert store.kill_switch_state() == (True, "test")
    assert store.sql("SELECT status, symbols, params FROM sessions") == [("completed", ["BTC/USDT"], '{"fast": 1}')]
    assert store.sql("SELECT kind, detail FROM audit_log") == [("order.request", '{"amount": "0.1"}')]
    store.start_session("s", TradingMode.PAPER)  # a restart marks it running again
    store.flush()
    assert store.sql("SELECT status, ended_at FROM sessions") == [("running", None)]


def test_a_failed_write_rolls_back_its_batch_and_is_reported(store):
    store._put("INSERT INTO no_such_table VALUES (1)", ())
    with pytest.raises(StoreError, match="rolled back"):
        store.flush()
    store.record_fill("s", TradingMode.PAPER, fill("2"))
    store.flush()  # the writer carries on
    assert store.sql("SELECT trade_id FROM paper_fills") == [("2",)]


def test_closed_store_refuses_writes(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        store.record_fill("s", TradingMode.PAPER, fill())
    store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.record_fill("s", TradingMode.PAPER, fill())
    with pytest.raises(StoreError, match="closed"):
        store.flush()
    with pytest.raises(StoreError, match="closed"):
        store.sql("SELECT count(*) FROM paper_fills")
    with Store(tmp_path / "c.duckdb") as again:
        assert again.sql("SELECT count(*) FROM paper_fills")[0][0] == 1


def test_a_second_process_gets_a_clear_error(tmp_path):
    path = tmp_path / "locked.duckdb"
    with Store(path):
        code = f"from workbench.store import Store\nStore({str(path)!r})"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "one writer process per file" in result.stderr


def test_stores_share_one_duckdb_instance_and_let_go_of_each_file_when_closed(tmp_path):
    import duckdb

    from workbench import store as store_module

    def attached() -> set[str]:
        con = store_module._INSTANCES[os.getpid()]
        return {name for (name,) in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}

    quoted = tmp_path / "it's" / "a.duckdb"  # a quote in the path
    first, other = Store(quoted), Store(tmp_path / "b.duckdb")
    before = attached()
    second = Store(quoted)  # the same file again: the same catalog
    first.record_fill("s", TradingMode.PAPER, fill("1"))
    first.flush()
    seen_by_second = second.sql("SELECT count(*) FROM fills")[0][0]
    first.close()
    second.record_fill("s", TradingMode.PAPER, fill("2"))  # still open for the second
    second.flush()
    counts = second.sql("SELECT count(*) FROM paper_fills")[0][0], other.sql("SELECT count(*) FROM paper_fills")[0][0]
    second.close()
    after_both = attached()
    other.close()
    with duckdb.connect(str(quoted)) as con:  # let go of: a plain connection opens it
        kept = con.execute("SELECT trade_id FROM paper_fills ORDER BY 1").fetchall()
    assert seen_by_second == 1 and counts == (2, 0)
    assert len(before - {"memory", "system", "temp"}) >= 2 and after_both == before - {second._catalog}
    assert kept == [("1",), ("2",)] and store_module._ATTACHED.keys().isdisjoint({(os.getpid(), str(quoted))})


def test_a_new_store_copied_from_the_empty_one_has_the_schema_its_statements_make(tmp_path):
    import duckdb

    with duckdb.connect(str(tmp_path / "made.duckdb")):  # a file already there: the statements run
        pass
    schema = (
        "SELECT table_name, column_name, data_type, column_default FROM information_schema.columns "
        "WHERE table_catalog = current_database() ORDER BY ALL",
        "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints() "
        "WHERE database_name = current_database() ORDER BY ALL",
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() ORDER BY ALL",
        "SELECT sequence_name FROM duckdb_sequences() WHERE database_name = current_database()",
    )
    with Store(tmp_path / "made.duckdb") as made, Store(tmp_path / "copied.duckdb") as copied:
        copied.record_fill("s", TradingMode.PAPER, fill())
        copied.flush()
        answers = [(made.sql(q), copied.sql(q)) for q in schema]
        rows = copied.sql("SELECT trade_id FROM fills")
    assert all(a == b and a for a, b in answers[:3]) and answers[3][0] == answers[3][1] == [("audit_seq",)]
    files = {f"{name}.duckdb{end}" for name in ("made", "copied") for end in ("", ".journal")}
    assert rows == [("1",)] and {p.name for p in tmp_path.iterdir()} == files  # no spare copy left beside


def test_a_file_the_process_opened_with_duckdb_connect_opens_as_a_store_too(tmp_path):
    import duckdb

    path = tmp_path / "mine.duckdb"
    con = duckdb.connect(str(path))  # a user's own connection, opened first
    try:
        with Store(path) as store:
            store.record_fill("s", TradingMode.PAPER, fill())
            store.flush()
            catalog = store._catalog
        rows = con.execute("SELECT trade_id, price FROM paper_fills").fetchall()
    finally:
        con.close()
    code = f"from workbench.store import Store\nStore({str(path)!r}).close()"
    reopened = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # the lock is gone
    assert catalog is None and rows == [("1", D(100))] and reopened.returncode == 0, reopened.stderr


WRITER = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    from workbench.config import TradingMode
    from workbench.model import Fill, Side
    from workbench.store import Store

    store = Store(sys.argv[1], batch_size=50)
    n = 0
    while True:
        for _ in range(50):
            n += 1
            store.record_fill("s", TradingMode.PAPER, Fill(str(n), "1", "c", "BTC/USDT", Side.BUY, Decimal(1),
                              Decimal(1), Decimal(1), Decimal(0), "BTC", False, 0))
        store.flush()
        print(n, flush=True)
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_a_writer_killed_mid_write_leaves_every_committed_fill(tmp_path, round_):
    path = tmp_path / "kill.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 200 * (round_ + 1) and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 200
    with Store(path) as store:
        rows = store.sql("SELECT count(*), count(DISTINCT trade_id) FROM paper_fills")[0]
    assert rows[0] == rows[1] >= committed


STALLED = textwrap.dedent(
    """
    import os, signal, sys, threading
    from decimal import Decimal
    from workbench.config import TradingMode
    from workbench.model import Order, OrderType, Side
    from workbench.store import Store

    store = Store(sys.argv[1])
    store._commit = lambda cursor, batch: threading.Event().wait()  # a disk that never finishes a commit
    for n in range(1, 6):
        order = Order("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.5"), None, None, None, f"s-{n}")
        store.record_order("s", TradingMode.TESTNET, order, arrival_price=Decimal(100), durable=True)
    print("journaled", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_durable_order_survives_a_kill_before_its_commit(tmp_path):
    """A real order is journaled (fsynced) before it is sent; the store replays the journal when it
    opens, so an order whose commit never happened is still there, exactly once."""
    path = tmp_path / "stalled.duckdb"
    result = subprocess.run([sys.executable, "-c", STALLED, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL and result.stdout == "journaled\n", result.stderr
    assert len(Path(f"{path}.journal").read_text().splitlines()) == 5
    with Store(path) as store:
        rows = store.sql("SELECT client_order_id, status, amount, arrival_price, mode FROM real_orders ORDER BY 1")
        assert Path(f"{path}.journal").stat().st_size == 0  # replayed, then emptied
    assert rows == [(f"s-{n}", "NEW", D("0.5"), D(100), "testnet") for n in range(1, 6)]
    with Store(path) as store:  # opening again replays nothing twice
        assert store.sql("SELECT count(*) FROM real_orders")[0][0] == 5


def test_replaying_the_journal_never_moves_an_order_back_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "replay.duckdb"
    with Store(path) as store:
        store.record_order("s", TradingMode.TESTNET, order(OrderStatus.NEW, cid="c1"), durable=True)
        store.record_order("s", TradingMode.TESTNET, order(OrderStatus.FILLED, "1", cid="c1"))
        store.flush()
        assert Path(f"{path}.journal").stat().st_size == 0  # every journaled row is committed
    line = json.dumps(
        {"table": "real_orders", "columns": ["session_id", "client_order_id", "mode", "status", "status_rank"],
         "values": ["s", "c1", "testnet", "NEW", 1]}
    )  # fmt: skip
    Path(f"{path}.journal").write_text(line + "\n" + line[:40])  # a stale line, then one torn mid-write
    with Store(path) as store:
        assert store.sql("SELECT status, filled FROM real_orders") == [("FILLED", D(1))]


def test_a_journal_naming_another_table_is_refused(tmp_path):
    path = tmp_path / "odd.duckdb"
    Path(f"{path}.journal").write_text(json.dumps({"table": "audit_log", "columns": [], "values": []}) + "\n")
    with pytest.raises(StoreError, match="names the table 'audit_log'; move it aside"):
        Store(path)


FULL_DISK = textwrap.dedent(
    """
    import json, os, sys
    from workbench.config import TradingMode
    from workbench.store import Store, StoreError
    folder = sys.argv[1]
    store = Store(f"{folder}/s.duckdb")
    store.audit("before", {})
    store.flush()
    with open(f"{folder}/filler", "wb") as filler:  # the disk fills up
        try:
            while True:
                filler.write(b"x" * 65536)
                filler.flush()
        except OSError:
            pass
    for n in range(300):
        store.audit("while full", {"n": n, "pad": "y" * 200})
    try:
        store.flush()
        error = ""
    except StoreError as e:
        error = str(e)
    os.unlink(f"{folder}/filler")  # space returns
    store.audit("after", {})
    store.flush()
    kinds = dict(store.sql("SELECT kind, count(*) FROM audit_log GROUP BY kind"))
    store.close()
    print(json.dumps({"error": error, "kinds": kinds}))
    """
)


@pytest.mark.skipif(
    subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs unshare (a user and mount namespace) for a small tmpfs to fill",
)
def test_a_full_disk_is_retried_reported_as_enospc_and_loses_nothing(tmp_path):
    """A real full disk (a 2 MB tmpfs): the commit fails, is retried, is reported naming ENOSPC; the
    writer lives on, and once space returns the rows it kept are committed."""
    (tmp_path / "FULL_DISK.py").write_text(FULL_DISK)
    mnt = tmp_path / "mnt"
    script = f"mount -t tmpfs -o size=2m tmpfs {mnt} && exec {sys.executable} {tmp_path}/FULL_DISK.py {mnt}"
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "the disk is full (ENOSPC)" in result["error"] and "tried 5 times" in result["error"], result
    assert result["kinds"] == {"before": 1, "while full": 300, "after": 1}
