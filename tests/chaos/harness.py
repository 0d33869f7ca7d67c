"""The chaos harness: a testnet :class:`TradingSession` on a :class:`BinanceExecutor` (real ccxt over
HTTP and WebSocket) trades a seeded random mix of market, quote and limit orders, cancels and price
moves against a fresh :class:`LocalExchange`, while a scenario injects its faults through the
exchange (or the disk, or a SIGKILL of the session's process). Then the faults are switched off,
the session reconciles (as its periodic reconciliation would), and the run is checked against the
exchange's own records:

* no client order id placed twice on the exchange;
* no fill lost or doubled: the store's ``real_fills`` of the session equal the exchange's trades;
* balances equal: the executor's ``fetch_balance`` and the store's last snapshot (written by
  ``session.stop()``) equal the matching engine's balances, and so does the ledger of the store's
  fills (each asset's starting balance plus what the store's fills bought, sold and paid in fees);
* every order in the store is where the exchange says it is (same status and filled amount; an
  order the exchange never had is REJECTED): no PENDING_NEW left;
* where a scenario trips the kill switch, no new order reaches the exchange afterwards;
* every order list in the store (OCO, OTO, OTOCO) is where the exchange says it is (same list id
  and status; one the exchange never had is REJECT), and no list client order id is placed twice.

Nothing waits by sleeping: conditions are polled with deadlines. The only sleeps are faults (a
slow disk) and the executor's own back-offs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async

from workbench.config import Credentials, RiskLimits, Secret, TradingMode
from workbench.data import load_rules
from workbench.errors import ExchangeError, KillSwitchActive, OrderNotFound, OrderRejected
from workbench.exchange import Faults, Limits, LocalExchange
from workbench.executors.binance import BinanceExecutor
from workbench.killswitch import KillSwitch, trip_flag
from workbench.matching import BookConfig, Execution
from workbench.model import OrderListRequest, OrderRequest, OrderStatus, OrderType
from workbench.session import TradingSession
from workbench.store import Store

from ..polling import holds_within, until

BTC, ETH = "BTC/USDT", "ETH/USDT"
SYMBOLS = (BTC, ETH)
RISK = RiskLimits(max_order_notional=Decimal(200_000), max_position_notional=None, max_orders_per_minute=None)
BOOK = BookConfig(level_notional=Decimal(20_000))  # a thin book: big limit orders fill in parts
STEPS = 18  # actions per run, the first WARMUP without faults
WARMUP = 2  # a market buy of each symbol: the session learns both prices before the faults start
RECONCILE_EVERY = 30.0  # the executor's default: runs are short, so no periodic reconcile interleaves
SETTLE_TIMEOUT = 10.0
RUN_TIMEOUT = 150.0
ROOT = Path(__file__).resolve().parents[2]
ORDER_KINDS = ("market", "quote", "limit")
VENUE_REJECTIONS = (ccxt_async.InvalidOrder, ccxt_async.InsufficientFunds, ccxt_async.BadRequest)

# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One step of a run. ``factor``: a limit price's distance from the last price, or a price
    move; ``pick``: which of the session's open orders a cancel takes (a fraction of the list)."""

    kind: str  # market, quote, limit, cancel, price; oco, oto, otoco or cancel_list (LIST_MIX)
    symbol: str
    side: str = "buy"
    amount: Decimal | None = None
    factor: float = 0.0
    pick: float = 0.0


MIX = {"market": 25, "quote": 5, "limit": 30, "cancel": 10, "price": 30}
LIST_MIX = {"market": 10, "limit": 10, "oco": 20, "oto": 10, "otoco": 15, "cancel_list": 5, "price": 30}
LIST_KINDS = ("oco", "oto", "otoco")


def make_plan(rng: random.Random, steps: int = STEPS, mix: dict[str, int] = MIX) -> list[Action]:
    """A market buy of each symbol, then a seeded random mix of market, quote-amount and limit
    orders (some big enough to fill in parts), cancels and price moves that walk the market through
    the limits."""
    plan = [Action("market", BTC, "buy", Decimal("0.002")), Action("market", ETH, "buy", Decimal("0.02"))]
    for _ in range(steps - WARMUP):
        kind = rng.choices(list(mix), list(mix.values()))[0]
        symbol = BTC if rng.random() < 0.7 else ETH
        side = rng.choice(("buy", "sell"))
        unit = Decimal("0.001") if symbol == BTC else Decimal("0.01")
        amount = unit * rng.randint(1, 20)
        if kind == "limit" and rng.random() < 0.15:
            amount = unit * (600 if symbol == BTC else 1000)  # about 25k USDT: more than a book level
        if kind == "quote":
            amount = Decimal(rng.randint(20, 400))
        resting = kind == "limit" or kind in LIST_KINDS
        factor = rng.uniform(0.0005, 0.005) if resting else rng.uniform(0.001, 0.007) * rng.choice((-1, 1))
        plan.append(Action(kind, symbol, side, amount, factor, rng.random()))
    return plan


def cents(price: Decimal) -> Decimal:
    return price.quantize(Decimal("0.01"))


class Driver:
    """Carries out a plan's actions through a session; the market moves through ``move``. Every
    outcome is kept: (step, kind, outcome, the client order id the session gave the order or "")."""

    def __init__(
        self,
        session: TradingSession,
        price_of: Callable[[str], Decimal],
        move: Callable[[str, Decimal], Awaitable[None]],
    ) -> None:
        self.session, self.price_of, self.move = session, price_of, move
        self.outcomes: list[tuple[int, str, str, str]] = []

    async def do(self, step: int, action: Action) -> str:
        before = self.session._seq
        outcome = await self._do(action)
        given = self.session._seq > before  # the session numbers its orders: "<session id>-<n>"
        cid = f"{self.session.session_id[:24]}-{self.session._seq}" if given else ""
        self.outcomes.append((step, action.kind, outcome, cid))
        return outcome

    async def _do(self, a: Action) -> str:
        session = self.session
        try:
            if a.kind == "price":
                await self.move(a.symbol, cents(self.price_of(a.symbol) * Decimal(1 + a.factor)))
                return "moved"
            if a.kind in ("cancel", "cancel_list"):
                known = session.orders if a.kind == "cancel" else session.order_lists
                cancel = session.cancel_order if a.kind == "cancel" else session.cancel_order_list
                open_ids = sorted(cid for cid, o in known.items() if o.is_open)
                if not open_ids:
                    return "nothing to cancel"
                cid = open_ids[int(a.pick * len(open_ids))]
                await cancel(cid, known[cid].symbol)
                return "canceled"
            if a.kind in LIST_KINDS:
                await session.create_order_list(order_list_request(a, self.price_of(a.symbol)))
            elif a.kind == "market":
                await session.create_order(a.symbol, "market", a.side, a.amount)
            elif a.kind == "quote":
                await session.create_order(a.symbol, "market", a.side, quote_amount=a.amount)
            else:
                last = self.price_of(a.symbol)
                away = Decimal(1 - a.factor) if a.side == "buy" else Decimal(1 + a.factor)
                await session.create_order(a.symbol, "limit", a.side, a.amount, cents(last * away), time_in_force="GTC")
            return "placed"
        except KillSwitchActive:
            return "halted"
        except OrderRejected as e:
            return f"rejected {e.rule or e.code}"
        except OrderNotFound:
            return "not found"
        except ExchangeError:
            return "unresolved"
        except VENUE_REJECTIONS as e:  # a venue's rejection the executor passed on as ccxt raised it
            return f"raw rejection {type(e).__name__}"
        except ccxt_async.BaseError as e:  # another raw ccxt error (e.g. a 503 on a cancel or a ticker)
            return f"raw {type(e).__name__}"


def order_list_request(a: Action, last: Decimal) -> OrderListRequest:
    """An OCO, OTO or OTOCO around ``last``: the limit legs ``a.factor`` away, the stop-losses twice as
    far (an OTO(CO)'s working order half as far, on ``a.side``; its pending orders on the other side)."""
    f = Decimal(a.factor)
    other = "sell" if a.side == "buy" else "buy"

    def leg(side: str, type_: str, price: Decimal, stop: Decimal | None = None) -> OrderRequest:
        tif = None if type_ == "LIMIT_MAKER" else "GTC"
        return OrderRequest(a.symbol, side, type_, amount=a.amount, price=cents(price),
                            stop_price=stop and cents(stop), time_in_force=tif)  # fmt: skip

    def up(side: str) -> int:
        return 1 if side == "sell" else -1  # where a take-profit is: above a sell's price, below a buy's

    def pair(side: str, around: Decimal) -> tuple[OrderRequest, OrderRequest]:
        """An OCO ``(above, below)``: take the profit with a limit maker, cut the loss with a stop."""
        limit = leg(side, "LIMIT_MAKER", around * (1 + up(side) * f))
        stop_at = around * (1 - up(side) * 2 * f)
        stop = leg(side, "STOP_LOSS_LIMIT", stop_at * (1 - up(side) * Decimal("0.001")), stop_at)
        return (limit, stop) if side == "sell" else (stop, limit)

    working = leg(a.side, "LIMIT", last * (1 + up(a.side) * f / 2))
    if a.kind == "oco":
        return OrderListRequest("OCO", pair(a.side, last))
    if a.kind == "oto":
        return OrderListRequest("OTO", (working, leg(other, "LIMIT_MAKER", last * (1 + up(other) * f))))
    return OrderListRequest("OTOCO", (working, *pair(other, last)))


# -- sessions and stores ------------------------------------------------------------------------


class SlowStore(Store):
    """A store on a slow disk: every batch commit, and every journal append, takes a few ms more
    (the sleeps are the injected fault)."""

    def __init__(self, path: str | Path, *, commit_delay: float = 0.005, journal_delay: float = 0.0) -> None:
        self.commit_delay, self.journal_delay = commit_delay, journal_delay
        super().__init__(path)

    def _commit(self, cursor: Any, batch: list[Any]) -> None:
        time.sleep(self.commit_delay)
        super()._commit(cursor, batch)

    def _journal(self, row: Any) -> None:
        time.sleep(self.journal_delay)
        super()._journal(row)


def make_session(url: str, api_key: str, secret: str, store: Store, session_id: str) -> TradingSession:
    credentials = Credentials(Secret(api_key), Secret(secret))
    rules = load_rules(SYMBOLS)
    executor = BinanceExecutor(TradingMode.TESTNET, rules, credentials, venue_url=url, reconcile_every=RECONCILE_EVERY)
    return TradingSession(executor, store, rules=rules, risk=RISK, session_id=session_id)


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Problem:
    """An invariant that does not hold."""

    text: str
    order: str | None = None  # the client order id it is about


@dataclass
class Chaos:
    """One run in progress: the scenario, its seed and random source, the exchange, the session."""

    scenario: Scenario
    seed: int
    rng: random.Random
    exchange: LocalExchange
    folder: Path
    store: Store | None = None
    session: TradingSession | None = None
    driver: Driver | None = None
    initial: dict[str, Decimal] = field(default_factory=dict)  # the account's balances before the run
    problems: list[Problem] = field(default_factory=list)  # what a scenario's own checks found

    @property
    def session_id(self) -> str:
        return f"chaos-{self.seed}"

    @property
    def store_path(self) -> Path:
        return self.folder / "chaos.duckdb"

    def price_of(self, symbol: str) -> Decimal:
        return self.exchange.venue.engine.last_price[symbol]

    async def move(self, symbol: str, price: Decimal) -> None:
        self.exchange.set_price(symbol, price)

    async def open_session(self, store: Store) -> None:
        ex = self.exchange
        self.store = store
        self.session = make_session(ex.url, ex.api_key, ex.secret, store, self.session_id)
        await self.session.start()
        self.driver = Driver(self.session, self.price_of, self.move)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.executor.close()
        if self.store is not None:
            self.store.close()


@dataclass
class Report:
    """What one run placed and what its checks found."""

    scenario: str
    seed: int
    orders: int = 0  # orders that reached the exchange
    fills: int = 0  # the exchange's trades
    lists: int = 0  # order lists that reached the exchange
    duplicates: int = 0  # client order ids placed more than once
    lost: int = 0  # exchange trades the store lacks (or has with other values)
    doubled: int = 0  # store fills beyond the exchange's (a trade twice, or one the exchange never made)
    balance_mismatches: int = 0  # assets whose balance differs (executor view, store snapshot, fills' ledger)
    problems: list[Problem] = field(default_factory=list)
    outcomes: list[tuple[int, str, str, str]] = field(default_factory=list)
    path: str = "python"  # how the session was driven: the Python API, or the `workbench` CLI (cli.py)

    @property
    def clean(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        lines = [
            f"{self.scenario} seed {self.seed}: {self.orders} orders, {self.lists} order lists, {self.fills} fills, "
            f"{self.duplicates} duplicate "
            f"orders, {self.lost} lost fills, {self.doubled} doubled fills, {self.balance_mismatches} balance "
            "mismatches",
            *(f"  {p.text}" for p in self.problems),
            "  outcomes: " + ", ".join(f"{step}:{kind}:{outcome}" for step, kind, outcome, _ in self.outcomes),
        ]
        return "\n".join(lines)


def _fill_key(symbol: str, trade_id: Any, price: Any, amount: Any, fee: Any, currency: str) -> tuple:
    return symbol, str(trade_id), *(Decimal(str(v)).normalize() for v in (price, amount, fee)), currency


async def inspect(run: Chaos, *, balances: bool = True) -> Report:
    """Compare the store and the executor with the exchange's records (``balances``: the
    executor's view too, for a run whose session is in this process)."""
    assert run.store is not None and (run.session is not None or not balances)
    ex, store = run.exchange, run.store
    report = Report(run.scenario.name, run.seed)
    problems = report.problems
    prefix = f"{run.session_id[:24]}-"  # the session's orders (another client may trade the account too)
    placed = [o for o in ex.venue.engine.orders.values() if o.client_order_id.startswith(prefix)]
    cids = [o.client_order_id for o in placed]
    cid_of = {o.id: o.client_order_id for o in placed}
    trades = [t for t in ex.venue.trades if t.order_id in cid_of]
    report.orders, report.fills = len(placed), len(trades)
    twice = sorted(c for c in set(cids) if cids.count(c) > 1)
    report.duplicates = len(cids) - len(set(cids))
    problems += [Problem(f"{cid}: placed {cids.count(cid)} times on the exchange", order=cid) for cid in twice]

    store.flush()
    theirs = {
        _fill_key(t.symbol, t.trade_id, t.price, t.amount, t.fee, t.fee_currency): cid_of[t.order_id] for t in trades
    }
    rows = [
        _fill_key(*row)
        for row in store.sql(
            "SELECT symbol, trade_id, price, amount, fee, fee_currency FROM real_fills WHERE session_id = ?",
            [run.session_id],
        )
    ]
    ours = set(rows)
    lost = sorted(set(theirs) - ours)
    report.lost = len(lost)
    report.doubled = len(rows) - len(ours) + len(ours - set(theirs))
    problems += [Problem(f"fill {k[1]} of {theirs[k]} ({k}) is on the exchange, not in the store", order=theirs[k])
                 for k in lost]  # fmt: skip
    problems += [Problem(f"fill {k} is in the store, not on the exchange") for k in sorted(ours - set(theirs))]
    if len(rows) > len(ours):
        problems.append(Problem(f"{len(rows) - len(ours)} fill(s) twice in the store"))

    by_cid = {o.client_order_id: o for o in placed}
    recorded = store.sql(
        "SELECT client_order_id, status, filled FROM real_orders WHERE session_id = ?", [run.session_id]
    )
    for cid, status, filled in recorded:
        venue = by_cid.get(cid)
        if venue is None:
            if status != "REJECTED":
                problems.append(Problem(f"{cid}: {status} in the store but never on the exchange", order=cid))
        elif (status, Decimal(filled)) != (venue.status.value, venue.filled):
            problems.append(
                Problem(
                    f"{cid}: {status} filled {Decimal(filled).normalize()} in the store, "
                    f"{venue.status.value} filled {venue.filled.normalize()} on the exchange",
                    order=cid,
                )
            )
    problems += [Problem(f"{cid}: on the exchange, not in the store", order=cid)
                 for cid in sorted(set(by_cid) - {cid for cid, _, _ in recorded})]  # fmt: skip

    _check_lists(run, report)

    ledger = dict(run.initial)  # every session trading the account (a sweep's runs share one)
    sessions = list(getattr(run, "account_sessions", None) or [run.session_id])
    for symbol, side, amount, cost, fee, currency in store.sql(
        "SELECT symbol, side, amount, cost, fee, fee_currency FROM real_fills WHERE list_contains(?, session_id)",
        [sessions],
    ):
        base, quote = symbol.split("/")
        sign = 1 if side == "buy" else -1
        ledger[base] = ledger.get(base, Decimal(0)) + sign * amount
        ledger[quote] = ledger.get(quote, Decimal(0)) - sign * cost
        ledger[currency] = ledger.get(currency, Decimal(0)) - fee
    totals = {b.asset: b.total for b in ex.venue.engine.balances().values()}
    wrong = sorted(a for a in set(ledger) | set(totals) if ledger.get(a, 0) != totals.get(a, 0))
    report.balance_mismatches += len(wrong)
    problems += [Problem(f"ledger: {a} is {ledger.get(a, 0).normalize()} by the starting balance and the store's "
                         f"fills, {totals.get(a, Decimal(0)).normalize()} on the exchange") for a in wrong]  # fmt: skip

    if balances and run.session is not None:
        mine = await run.session.executor.fetch_balance()
        report.balance_mismatches += _balance_mismatches(
            "the executor's", {a: (b.free, b.locked) for a, b in mine.items()}, ex, problems
        )
    return report


def _check_lists(run: Chaos, report: Report) -> None:
    """Every order list of the session in the store is where the exchange says it is, and no list
    client order id was placed twice."""
    assert run.store is not None
    prefix = f"{run.session_id[:24]}-"
    venue = [lst for lst in run.exchange.venue.engine.order_lists_of() if lst.list_client_order_id.startswith(prefix)]
    ids = [lst.list_client_order_id for lst in venue]
    report.lists = len(venue)
    report.duplicates += len(ids) - len(set(ids))
    problems = report.problems
    problems += [Problem(f"order list {i}: placed {ids.count(i)} times on the exchange") for i in sorted(set(ids))
                 if ids.count(i) > 1]  # fmt: skip
    by_id = {lst.list_client_order_id: lst for lst in venue}
    recorded = run.store.sql(
        "SELECT list_client_order_id, order_list_id, list_order_status FROM real_order_lists WHERE session_id = ?",
        [run.session_id],
    )
    for list_id, number, status in recorded:
        theirs = by_id.get(list_id)
        if theirs is None:
            if status != "REJECT":
                problems.append(Problem(f"order list {list_id}: {status} in the store but never on the exchange"))
        elif (number, status) != (theirs.id, theirs.list_order_status.value):
            problems.append(Problem(f"order list {list_id}: {number} {status} in the store, {theirs.id} "
                                    f"{theirs.list_order_status.value} on the exchange"))  # fmt: skip
    problems += [Problem(f"order list {i}: on the exchange, not in the store")
                 for i in sorted(set(by_id) - {i for i, _, _ in recorded})]  # fmt: skip


def _balance_mismatches(
    what: str, mine: dict[str, tuple[Decimal, Decimal]], ex: LocalExchange, problems: list[Problem]
) -> int:
    theirs = {b.asset: (b.free, b.locked) for b in ex.venue.engine.balances().values() if b.total}
    wrong = sorted(a for a in set(mine) | set(theirs) if mine.get(a) != theirs.get(a))
    problems += [Problem(f"{what} balance of {a} (free, locked) {mine.get(a)}, the exchange's {theirs.get(a)}")
                 for a in wrong]  # fmt: skip
    return len(wrong)


async def finish(run: Chaos) -> Report:
    """Switch every fault off, reconcile (what the periodic reconciliation would do next), let the
    session settle (polling, with a deadline), stop it, and check everything."""
    assert run.session is not None and run.store is not None and run.driver is not None
    ex, session = run.exchange, run.session
    ex.set_faults(**asdict(Faults(seed=run.seed)))
    limiter = session.executor.limiter
    await until(lambda: time.time() >= limiter.banned_until, 15, "the ban ends")
    await session.executor.reconcile()

    async def consistent() -> bool:
        return (await inspect(run, balances=False)).clean and (await inspect(run)).clean

    await holds_within(consistent, SETTLE_TIMEOUT, every=0.1)
    report = await inspect(run)
    await session.stop()
    snapshot = run.store.sql(
        "SELECT asset, free, locked FROM real_balances WHERE session_id = ? AND timestamp = "
        "(SELECT max(timestamp) FROM real_balances WHERE session_id = ?)",
        [run.session_id, run.session_id],
    )
    stored = {a: (Decimal(f), Decimal(lk)) for a, f, lk in snapshot if Decimal(f) or Decimal(lk)}
    report.balance_mismatches += _balance_mismatches("the stored snapshot's", stored, ex, report.problems)
    seen = {p.text for p in report.problems}
    after = await inspect(run, balances=False)  # the store as session.stop() left it
    report.problems += [Problem(f"after stop: {p.text}", order=p.order) for p in after.problems if p.text not in seen]
    report.problems += run.problems
    report.outcomes = list(run.driver.outcomes)
    return report


async def run_chaos(scenario: Scenario, seed: int, folder: Path) -> Report:
    """One run of ``scenario`` with ``seed``: place the plan's orders under its faults, then check."""
    rng = random.Random(f"{scenario.name}:{seed}")
    plan = scenario.plan(rng)
    limits = scenario.limits(rng)
    async with LocalExchange(SYMBOLS, book=BOOK, limits=limits, faults=Faults(seed=seed)) as exchange:
        run = Chaos(scenario, seed, rng, exchange, folder)
        run.initial = {a: b.total for a, b in exchange.venue.engine.balances().items()}
        try:
            first = await scenario.begin(run, plan)
            assert run.driver is not None
            for step in range(first, len(plan)):
                if step >= WARMUP:
                    await scenario.before(run, step, plan[step])
                await run.driver.do(step, plan[step])
                if step >= WARMUP:
                    await scenario.after(run, step, plan[step])
            await scenario.end(run)
            return await finish(run)
        finally:
            await run.close()


# -- scenarios ----------------------------------------------------------------------------------


class Scenario:
    """Faults to inject into a run. ``begin`` opens the session (and may run steps itself: the
    killed-session scenarios run the first steps in a child process); ``before``/``after`` wrap
    each step after the warm-up; ``end`` checks what is particular to the scenario."""

    name = ""

    def plan(self, rng: random.Random) -> list[Action]:
        return make_plan(rng)

    def limits(self, rng: random.Random) -> Limits | None:
        return None

    async def begin(self, run: Chaos, plan: list[Action]) -> int:
        await run.open_session(Store(run.store_path))
        return 0

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        """Inject faults before ``action``."""

    async def after(self, run: Chaos, step: int, action: Action) -> None:
        """Inject faults after ``action``."""

    async def end(self, run: Chaos) -> None:
        """The scenario's own checks, appended to ``run.problems``."""


class WsDrops(Scenario):
    """The user data stream drops during fills (on the Nth next event, or all connections at once
    right after a price move), sometimes with the reconnections refused a few times."""

    name = "ws_drops_during_fills"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if action.kind in ("price", "market") and run.rng.random() < 0.6:
            run.exchange.set_faults(ws_drop_after=run.rng.randint(0, 2))

    async def after(self, run: Chaos, step: int, action: Action) -> None:
        if action.kind == "price" and run.rng.random() < 0.4:
            if run.rng.random() < 0.5:
                run.exchange.set_faults(reject_ws_connections=run.rng.randint(1, 3))
            await run.exchange.drop_connections()


class LostAnswers(Scenario):
    """Orders placed but answered 503 -1007 (status unknown), and orders refused before the engine
    (the executor looks each up by client order id and sends it again only if it was never placed)."""

    name = "lost_answers"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if action.kind in ORDER_KINDS:
            draw = run.rng.random()
            if draw < 0.5:
                run.exchange.set_faults(lost_answers=1)
            elif draw < 0.65:
                run.exchange.set_faults(refused_orders=1)


class ServerErrors(Scenario):
    """Bursts of 1 to 3 REST requests answered 503 (orders, look-ups, cancels, balances): at most
    what the executor's look-up by client order id is built to ride out."""

    name = "5xx_bursts"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if run.rng.random() < 0.45:
            run.exchange.set_faults(errors_5xx=run.rng.randint(1, 3))


class ServerOutage(Scenario):
    """Outages of 5 or 6 REST requests right before an order: the order and every look-up of it
    fail, so the executor gives up on it (ExchangeError) and the run goes on."""

    name = "5xx_outage"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if action.kind in ORDER_KINDS and (step == WARMUP or run.rng.random() < 0.3):
            run.exchange.set_faults(errors_5xx=run.rng.randint(5, 6))


class ResentRejection(Scenario):
    """A 503 answers an order the venue will refuse (a limit buy of 4 BTC, about 168k USDT, on an
    account of about 100k): the executor looks the order up, finds nothing, sends it once more, and
    the venue rejects the resend (-2010)."""

    name = "5xx_then_rejection"

    def plan(self, rng: random.Random) -> list[Action]:
        plan = make_plan(rng)
        for step in rng.sample(range(WARMUP, len(plan)), 3):
            plan[step] = Action("limit", BTC, "buy", Decimal(4), rng.uniform(0.0005, 0.005))
        return plan

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if action.amount == 4 and action.symbol == BTC:
            run.exchange.set_faults(errors_5xx=run.rng.randint(1, 2))


class RateLimitStorm(Scenario):
    """A storm of four 429s: the executor waits Retry-After once per request, and the requests sent
    on after them earn a 418 ban (three strikes a minute), during which it sends nothing (orders are
    refused at once); from a later step on the run waits each ban out (polling) and goes on. Some runs
    have a second storm, banned at once."""

    name = "429_storm_into_418"

    def __init__(self) -> None:
        self.storms: dict[int, int] = {}
        self.wait_from = 0

    def limits(self, rng: random.Random) -> Limits | None:
        return Limits(strikes_before_ban=3, ban_seconds=1.0 + rng.random())

    async def begin(self, run: Chaos, plan: list[Action]) -> int:
        first = WARMUP + run.rng.randint(0, 3)
        self.storms = {first: 4}
        self.wait_from = first + run.rng.randint(3, 5)
        if run.rng.random() < 0.5:
            self.storms[self.wait_from + 2] = 1  # the strikes of this minute are spent: banned at once
        return await super().begin(run, plan)

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        assert run.session is not None
        limiter = run.session.executor.limiter
        if step >= self.wait_from and time.time() < limiter.banned_until:
            await until(lambda: time.time() >= limiter.banned_until, 15, "the ban ends")
        if step in self.storms:
            run.exchange.set_faults(too_many_requests=self.storms[step], retry_after=1)

    async def end(self, run: Chaos) -> None:
        assert run.driver is not None
        outcomes = run.driver.outcomes
        if not any(o == "rejected rate_limit" for _, _, o, _ in outcomes):
            run.problems.append(Problem("the storm refused no order: the scenario injected nothing"))
        if not any(s >= self.wait_from and o == "placed" for s, _, o, _ in outcomes):
            run.problems.append(Problem("no order got through after the ban ended"))


class ClockSkew(Scenario):
    """The server's clock jumps ahead of or behind the client's, by up to two minutes."""

    name = "clock_skew"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if step == WARMUP or run.rng.random() < 0.3:
            skew = run.rng.choice((0, 1_500, 7_000, 30_000, 120_000)) * run.rng.choice((-1, 1))
            run.exchange.set_faults(clock_skew_ms=skew)


class DuplicatedEvents(Scenario):
    """User data events sent twice, with a probability that changes during the run."""

    name = "duplicated_events"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if step == WARMUP or run.rng.random() < 0.2:
            run.exchange.set_faults(duplicate_events=run.rng.uniform(0.3, 1.0))


class ReorderedEvents(Scenario):
    """User data events held back behind the next one (events queued by a small delay), some twice."""

    name = "reordered_events"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if step == WARMUP or run.rng.random() < 0.2:
            run.exchange.set_faults(
                reorder_events=run.rng.uniform(0.3, 0.9),
                ws_delay_ms=run.rng.choice((0, 2, 5)),
                duplicate_events=run.rng.choice((0.0, 0.3)),
            )


class MalformedEvents(Scenario):
    """Fills whose execution reports carry an order status Binance never sends."""

    name = "malformed_events"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        if action.kind in ("price", "market", "limit") and run.rng.random() < 0.5:
            run.exchange.set_faults(malformed_events=run.rng.randint(1, 2))


class SlowDisk(Scenario):
    """The store's disk is slow: each commit 2-30 ms, each journal append (fsync) 0.5-5 ms more."""

    name = "slow_disk"

    async def begin(self, run: Chaos, plan: list[Action]) -> int:
        delays = {"commit_delay": run.rng.uniform(0.002, 0.03), "journal_delay": run.rng.uniform(0.0005, 0.005)}
        await run.open_session(SlowStore(run.store_path, **delays))
        return 0


class KillSwitchTrip(Scenario):
    """The kill switch trips mid-run, by ``emergency_stop`` or by the flag file another process
    writes; the plan goes on, and no new order may reach the exchange. Some answers are lost too."""

    name = "kill_switch"

    def __init__(self) -> None:
        self.trip_at, self.how = 0, ""
        self.before_trip: set[str] = set()

    async def begin(self, run: Chaos, plan: list[Action]) -> int:
        self.trip_at = run.rng.randint(6, 11)
        self.how = run.rng.choice(("emergency_stop", "flag_file"))
        return await super().begin(run, plan)

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        assert run.session is not None and run.store is not None
        if action.kind in ORDER_KINDS and run.rng.random() < 0.3:
            run.exchange.set_faults(lost_answers=1)
        if step == self.trip_at:
            self.before_trip = {o.client_order_id for o in run.exchange.venue.engine.orders.values()}
            if self.how == "emergency_stop":
                await run.session.emergency_stop("chaos drill")
            else:
                trip_flag(run.store.path, "chaos drill", "another process")

    async def end(self, run: Chaos) -> None:
        assert run.driver is not None and run.store is not None
        problems = run.problems
        placing = (*ORDER_KINDS, *LIST_KINDS)
        tried = [(s, k, o) for s, k, o, _ in run.driver.outcomes if s >= self.trip_at and k in placing]
        if not tried:
            problems.append(Problem("no order was tried after the kill switch tripped: nothing was checked"))
        problems += [Problem(f"step {s}: a {k} order {o} after the kill switch tripped ({self.how})")
                     for s, k, o in tried if o != "halted"]  # fmt: skip
        if not KillSwitch(run.store).tripped:
            problems.append(Problem("the kill switch is not tripped in the store"))
        noticed = tried or self.how == "emergency_stop"  # the flag file is noticed at the next order
        if noticed and not await holds_within(lambda: not run.exchange.venue.engine.open_orders(), 10):
            problems.append(Problem(f"open orders left on the exchange after the kill switch ({self.how})"))
        new = {o.client_order_id for o in run.exchange.venue.engine.orders.values()} - self.before_trip
        problems += [Problem(f"{cid} reached the exchange after the kill switch ({self.how})", order=cid)
                     for cid in sorted(new)]  # fmt: skip


class SigKill(Scenario):
    """The session's process is killed with SIGKILL at a random step (as it starts, or once it is
    done, so at any point of an order's life: journaled, in flight, answered, its events half
    recorded), on a slow disk for some seeds; a new session with the same id and store resumes."""

    name = "sigkill_restart"
    mode = "random"
    last_arm = 4  # the kill is armed at a step no later than this many from the end

    async def begin(self, run: Chaos, plan: list[Action]) -> int:
        ex, rng = run.exchange, run.rng
        kill_at, phase = rng.randint(WARMUP + 1, len(plan) - self.last_arm), rng.choice(("start", "done"))
        ex.set_faults(latency_ms=rng.choice((0, 5, 20)))
        spec = {
            "url": ex.url,
            "api_key": ex.api_key,
            "secret": ex.secret,
            "path": str(run.store_path),
            "scenario": self.name,
            "seed": run.seed,
            "session_id": run.session_id,
            "prices": {s: str(p) for s, p in ex.venue.engine.last_price.items()},
            "commit_delay": rng.choice((0.0, 0.005, 0.02)),
            "mode": self.mode,
            "arm_at": kill_at,
        }
        log = run.folder / "child.log"
        with log.open("wb") as stderr:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "from tests.chaos.harness import child_main; child_main()",
                stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=ROOT,
                env={**os.environ, "CHAOS_CHILD": json.dumps(spec)},
            )  # fmt: skip
        assert child.stdout is not None
        marker = f"{phase} {kill_at}".encode() if self.mode == "random" else None
        last_started = -1
        try:
            while True:
                line = (await asyncio.wait_for(child.stdout.readline(), 60)).strip()
                assert line, f"the child session ended before it was killed: {log.read_text()[-3000:]}"
                assert line != b"finished", "the child session finished: the kill point never came"
                if line.startswith(b"start "):
                    last_started = int(line.split()[1])
                if line == marker or line == b"killing":
                    break
        finally:  # the kill (random mode), or a child that is killing itself or went wrong
            with suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 30)
        # 255 is asyncio's "unknown child process": another waiter in this process reaped it first, so
        # its status is lost (the kill point above was reached; the child itself never exits with 255)
        assert child.returncode in (-signal.SIGKILL, 255), f"the child exited with {child.returncode}"
        store = Store(run.store_path)  # the restart: the journal is replayed, then the session resumes
        await run.open_session(store)
        return (kill_at if self.mode == "random" else last_started) + 1


class SigKillMidFill(SigKill):
    """The session's process is killed with SIGKILL right after a market order's FILLED state is
    committed to the store and before its trade is recorded (from a seeded step on, at the first
    market order of a symbol with no resting order); a new session resumes. Its plan has no limit
    orders, so nothing else of that symbol is open at the restart."""

    name = "sigkill_mid_fill"
    mode = "mid_fill"

    def plan(self, rng: random.Random) -> list[Action]:
        return make_plan(rng, mix={"market": 45, "quote": 10, "price": 45})


class ListWsDrops(WsDrops):
    """Order lists (OCO, OTO, OTOCO) while the user data stream drops during fills: a leg's fill, its
    sibling's expiry and the list's listStatus may each be missed, and must come from REST."""

    name = "order_lists_ws_drops"

    def plan(self, rng: random.Random) -> list[Action]:
        return make_plan(rng, mix=LIST_MIX)


class ListKillSwitch(KillSwitchTrip):
    """Order lists, and the kill switch tripped mid-run: the emergency stop cancels open lists with
    their orders, and no list (nor order) reaches the exchange afterwards."""

    name = "order_lists_kill_switch"

    def plan(self, rng: random.Random) -> list[Action]:
        return make_plan(rng, mix=LIST_MIX)


class ListSigKill(SigKill):
    """Order lists, and the session's process killed at a random step (as it starts, or once it is
    done); a new session with the same id and store resumes and reconciles the lists."""

    name = "order_lists_sigkill_restart"

    def plan(self, rng: random.Random) -> list[Action]:
        return make_plan(rng, mix=LIST_MIX)


class ListSigKillMidList(ListSigKill):
    """The session's process is killed with SIGKILL between a list's orders: right after the session
    recorded an event of one order of a list (the first leg of a placement's answer, before the other
    legs and the list are; or a leg's fill, before its sibling's expiry), from a seeded early step on."""

    name = "order_lists_sigkill_mid_list"
    mode = "mid_list"
    last_arm = 14


def child_main() -> None:
    """The killed session's process: runs the plan from the start, telling each step on stdout."""
    spec = json.loads(os.environ["CHAOS_CHILD"])
    asyncio.run(_child(spec))


async def _child(spec: dict[str, Any]) -> None:
    import aiohttp

    scenario = SCENARIOS[spec["scenario"]]()
    plan = scenario.plan(random.Random(f"{spec['scenario']}:{spec['seed']}"))
    prices = {s: Decimal(p) for s, p in spec["prices"].items()}
    delay = spec["commit_delay"]
    store = SlowStore(spec["path"], commit_delay=delay) if delay else Store(spec["path"])
    session = make_session(spec["url"], spec["api_key"], spec["secret"], store, spec["session_id"])
    step = -1
    traded: set[str] = set()

    def kill_mid_fill(event: Execution) -> None:
        """After the session recorded an order's FILLED state, before its trade is recorded."""
        order = event.order
        if event.fill is not None:
            traded.add(order.client_order_id)
            return
        others_open = any(o.is_open and o.symbol == order.symbol for o in session.orders.values())
        if (
            step >= spec["arm_at"]
            and order.type is OrderType.MARKET
            and order.status is OrderStatus.FILLED
            and order.client_order_id not in traded
            and not others_open
        ):
            store.flush()
            print("killing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def kill_mid_list(event: Execution) -> None:
        """After the session recorded a new or filled order of a list, before its siblings' events."""
        order = event.order
        in_list = any(order.client_order_id in legs for legs in session.list_legs.values())
        if step >= spec["arm_at"] and event.order_list is None and in_list and order.status.value in ("NEW", "FILLED"):
            store.flush()
            print("killing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    kill = {"mid_fill": kill_mid_fill, "mid_list": kill_mid_list}.get(spec["mode"])
    if kill is not None:
        session.executor.subscribe(kill)  # after the session's own listener: it records first
    async with aiohttp.ClientSession() as http:

        async def move(symbol: str, price: Decimal) -> None:
            from workbench.exchange import admin_call

            await admin_call(http, spec["url"], spec["api_key"], spec["secret"], "price",
                             {"symbol": symbol, "price": str(price)})  # fmt: skip
            prices[symbol] = price

        await session.start()
        driver = Driver(session, prices.__getitem__, move)
        for step, action in enumerate(plan):
            print(f"start {step}", flush=True)
            await driver.do(step, action)
            print(f"done {step}", flush=True)
        print("finished", flush=True)


class Mixed(Scenario):
    """Everything at once: each step may bring any of the exchange's faults."""

    name = "mixed"

    async def before(self, run: Chaos, step: int, action: Action) -> None:
        ex, rng = run.exchange, run.rng
        if rng.random() >= 0.5:
            return
        fault = rng.choice(
            ("lost", "5xx", "malformed", "drop_after", "duplicate", "reorder", "skew", "latency", "drop")
        )
        if fault == "lost":
            ex.set_faults(lost_answers=1)
        elif fault == "5xx":
            ex.set_faults(errors_5xx=rng.randint(1, 3))
        elif fault == "malformed":
            ex.set_faults(malformed_events=1)
        elif fault == "drop_after":
            ex.set_faults(ws_drop_after=rng.randint(0, 3))
        elif fault == "duplicate":
            ex.set_faults(duplicate_events=rng.choice((0.0, 0.5)))
        elif fault == "reorder":
            ex.set_faults(reorder_events=rng.choice((0.0, 0.5)), ws_delay_ms=rng.choice((0, 3)))
        elif fault == "skew":
            ex.set_faults(clock_skew_ms=rng.choice((0, -3_000, 8_000)))
        elif fault == "latency":
            ex.set_faults(latency_ms=rng.choice((0, 10, 40)))
        else:
            await ex.drop_connections()


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s
    for s in (
        WsDrops,
        LostAnswers,
        ServerErrors,
        ServerOutage,
        ResentRejection,
        RateLimitStorm,
        ClockSkew,
        DuplicatedEvents,
        ReorderedEvents,
        MalformedEvents,
        SlowDisk,
        SigKill,
        SigKillMidFill,
        KillSwitchTrip,
        Mixed,
        ListWsDrops,
        ListKillSwitch,
        ListSigKill,
        ListSigKillMidList,
    )
}


# -- running many at once -----------------------------------------------------------------------


class Runner:
    """Runs chaos runs on an event loop of its own thread, ``concurrency`` at a time, in the order
    they were submitted (each run has its own exchange, port, session and store; runs spend most
    of their time waiting, so a 2-core machine runs several at once)."""

    def __init__(self, folder: Path, concurrency: int) -> None:
        self.folder, self.concurrency = folder, concurrency
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chaos-runs", daemon=True)
        self.thread.start()
        self.futures: dict[tuple[str, int], Future[Report]] = {}
        self._slots: asyncio.Semaphore | None = None

    def submit(self, runs: Iterable[tuple[str, int]]) -> None:
        for name, seed in runs:
            if (name, seed) not in self.futures:
                self.futures[(name, seed)] = asyncio.run_coroutine_threadsafe(self._run(name, seed), self.loop)

    async def _run(self, name: str, seed: int) -> Report:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        from .cli import CLI_SCENARIOS, CLI_TIMEOUT, run_cli_chaos

        async with self._slots:
            folder = self.folder / f"{name}-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            if name in CLI_SCENARIOS:
                return await asyncio.wait_for(run_cli_chaos(name, seed, folder), CLI_TIMEOUT)
            return await asyncio.wait_for(run_chaos(SCENARIOS[name](), seed, folder), RUN_TIMEOUT)

    def result(self, name: str, seed: int) -> Report:
        from .cli import CLI_TIMEOUT

        self.submit([(name, seed)])
        return self.futures[(name, seed)].result(timeout=max(RUN_TIMEOUT, CLI_TIMEOUT) * (1 + len(self.futures)))

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        asyncio.run_coroutine_threadsafe(self._drain(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    async def _drain(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- totals for the summary line ----------------------------------------------------------------


@dataclass
class Totals:
    path: str = "python"
    scenarios: set[str] = field(default_factory=set)
    seeds: set[int] = field(default_factory=set)
    duplicates: int = 0
    lost: int = 0
    doubled: int = 0
    balance_mismatches: int = 0
    orders: int = 0
    fills: int = 0
    lists: int = 0

    def add(self, report: Report) -> None:
        self.scenarios.add(report.scenario)
        self.seeds.add(report.seed)
        self.duplicates += report.duplicates
        self.lost += report.lost
        self.doubled += report.doubled
        self.balance_mismatches += report.balance_mismatches
        self.orders += report.orders
        self.fills += report.fills
        self.lists += report.lists

    def line(self) -> str:
        return (
            f"chaos ({self.path} path): {len(self.scenarios)} scenarios x {len(self.seeds)} seeds, "
            f"{self.duplicates} duplicate orders, "
            f"{self.lost} lost fills, {self.doubled} doubled fills, {self.balance_mismatches} balance mismatches, "
            f"{self.orders} orders, {self.lists} order lists, {self.fills} fills"
        )


TOTALS = Totals()
CLI_TOTALS = Totals("cli")  # the `workbench run`/`sweep` scenarios (cli.py)
