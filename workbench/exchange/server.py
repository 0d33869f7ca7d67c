"""The local exchange's server: Binance's Spot REST API under ``/api/v3``, the WebSocket API at
``/ws-api/v3`` (user data stream by ``userDataStream.subscribe.signature``), market streams at
``/ws`` and ``/stream``, and a small admin API at ``/admin`` for fault injection and replay.

Requests are signed and timed, weighed and rate limited as Binance does it; errors carry
Binance's HTTP status, code and message. See docs/binance-spot-api.md for the facts followed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import WSMsgType, web

from workbench.data import load_klines, load_rules
from workbench.exchange.order_lists import PLACING_LISTS, WS_METHODS, OrderLists
from workbench.exchange.venue import DAY, BinanceError, Venue, bad_request, integer
from workbench.matching import BookConfig, Fees
from workbench.model import OrderType

log = logging.getLogger(__name__)

Handler = Callable[["Call"], Awaitable[Any]]
WEIGHT_LIMIT_MSG = (
    "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
BANNED_MSG = (
    "Way too much request weight used; IP banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
LOST_MSG = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
DEFAULT_BALANCES = {"USDT": "100000", "BTC": "1", "ETH": "10", "BNB": "50", "SOL": "100", "XRP": "10000"}


@dataclass
class Limits:
    """Binance's rate limits (per IP for weight, per account for orders) and its ban policy."""

    weight_per_minute: int = 6000
    orders_per_10s: int = 50
    orders_per_day: int = 160_000
    strikes_before_ban: int = 3  # requests sent after a 429, in the same window, before a 418
    maker_fill_credit: int = 5  # unfilled orders forgiven by a first fill as maker (the FAQ's example; taker: 1)
    ban_seconds: float = 120.0


@dataclass
class Faults:
    """Faults to inject, switchable at run time (:meth:`LocalExchange.set_faults` or
    ``POST /admin/faults``). Counts are used up one request (or event) at a time."""

    latency_ms: float = 0.0  # added to every REST answer
    errors_5xx: int = 0  # the next N REST requests answer 503 without doing anything
    lost_answers: int = 0  # the next N orders are placed but answered 503 -1007 (status unknown)
    refused_orders: int = 0  # the next N order placements answer 503 without reaching the matching engine
    malformed_events: int = 0  # the next N fills' execution reports carry an order status Binance never sends
    too_many_requests: int = 0  # the next N REST requests answer 429
    retry_after: float = 1.0  # the Retry-After of forced 429s
    ban_seconds: float = 0.0  # when set: ban the IP now for this long (418), then reset to 0
    clock_skew_ms: int = 0  # the server's clock runs this far ahead of the wall clock
    ws_delay_ms: float = 0.0  # delay before each user data event
    ws_drop_after: int | None = None  # drop user data connections after N more events
    duplicate_events: float = 0.0  # probability that a user data event is sent twice
    reorder_events: float = 0.0  # probability that a user data event is held back behind the next
    reject_ws_connections: int = 0  # refuse the next N WebSocket connections
    seed: int = 0


_FAULT_MAXIMA = {"latency_ms": 600_000, "ws_delay_ms": 600_000, "retry_after": 3600, "ban_seconds": 86_400,
                 "duplicate_events": 1, "reorder_events": 1}  # fmt: skip


def checked_faults(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` to :class:`Faults` checked field by field (name, type, range); ValueError names
    the first bad one, so that nothing is changed by a bad request."""
    kinds = {f.name: str(f.type) for f in fields(Faults)}
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in kinds:
            raise ValueError(f"Unknown fault {name!r}; known: {', '.join(sorted(kinds))}.")
        kind = kinds[name]
        if value is None and kind.endswith("None"):
            checked[name] = None
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind.startswith("int") and not isinstance(value, int)) or not math.isfinite(value):
            raise ValueError(f"Fault {name!r} takes {kind.replace(' | None', ' or null')}, not {value!r}.")
        if (value < 0 and name != "clock_skew_ms") or value > _FAULT_MAXIMA.get(name, math.inf):
            raise ValueError(f"Fault {name!r} is out of range (0 to {_FAULT_MAXIMA.get(name, 'any')}): {value!r}.")
        checked[name] = value if kind.startswith("int") else float(value)
    return checked


@dataclass
class Call:
    """One REST or WebSocket API request: its parameters and what the router worked out."""

    params: dict[str, str]
    api_key: str | None = None
    counted: list[dict[str, Any]] = field(default_factory=list)  # the ORDERS windows as its orders were counted


@dataclass
class _Window:
    start: float = 0.0
    used: int = 0


@dataclass
class _Counters:
    weight: _Window = field(default_factory=_Window)
    orders_10s: _Window = field(default_factory=_Window)
    orders_day: _Window = field(default_factory=_Window)
    strikes: int = 0  # requests refused with 429 in the window ``strike_window``
    strike_window: float = -1.0
    banned_until: float = 0.0

    @staticmethod
    def tick(window: _Window, length: float, now: float) -> _Window:
        start = now - now % length
        if window.start != start:
            window.start, window.used = start, 0
        return window


class _Route:
    def __init__(self, handler: Handler, signed: bool, weight: Callable[[Mapping[str, str]], int]) -> None:
        self.handler, self.signed, self.weight = handler, signed, weight


def _fixed(n: int) -> Callable[[Mapping[str, str]], int]:
    return lambda params: n


def _depth_weight(params: Mapping[str, str]) -> int:
    limit = integer(params, "limit", 100) or 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _commission_weight(params: Mapping[str, str]) -> int:
    """``order/test``: 20 with ``computeCommissionRates=true``, else 1."""
    return 20 if params.get("computeCommissionRates") == "true" else 1


def _ticker_weight(one: int, many: int, key: str = "symbol") -> Callable[[Mapping[str, str]], int]:
    """Weight ``one`` when ``key`` is given, else ``many``."""
    return lambda params: one if params.get(key) else many


def _per_symbol_weight(each: int, most: int) -> Callable[[Mapping[str, str]], int]:
    """``each`` per symbol asked for, at most ``most``."""
    return lambda params: each if params.get("symbol") else min(most, each * len(_symbol_list(params) or [1]))


MINI_TICKER = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "openTime",
               "closeTime", "firstId", "lastId", "count")  # fmt: skip


def _typed(ticker: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """A ticker in the ``type`` asked for: FULL (the default) or MINI."""
    kind = params.get("type") or "FULL"
    if kind not in ("FULL", "MINI"):
        raise bad_request(-1100, "Illegal characters found in parameter 'type'; legal range is 'FULL, MINI'.")
    return ticker if kind == "FULL" else {k: ticker[k] for k in MINI_TICKER}


_TIME_ZONE = re.compile(r"([+-]?)([0-9]{1,2})(?::([0-9]{2}))?")


def _time_zone(raw: str) -> int:
    """``timeZone`` (``-1:00``, ``05:45``, ``8``) in ms east of UTC, -12:00 to +14:00."""
    match = _TIME_ZONE.fullmatch(raw)
    sign = -1 if match and match.group(1) == "-" else 1
    minutes = sign * (int(match.group(2)) * 60 + int(match.group(3) or 0)) if match else None
    if minutes is None or not -720 <= minutes <= 840:
        raise bad_request(-1100, "Invalid timeZone: give hours, or hours and minutes, from -12:00 to +14:00.")
    return minutes * 60_000


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    return integer(params, name, default)  # type: ignore[return-value]


_SYMBOLS = re.compile(r'\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]')
_RECV_WINDOW = re.compile(r"[0-9]{1,20}(\.[0-9]{1,3})?")
_HOSTS = ("127.0.0.1", "localhost", "[::1]")


_WINDOW_SIZE = re.compile(r"([1-9][0-9]?)([mhd])")
_WINDOW_UNITS = {"m": (60_000, 59), "h": (3_600_000, 23), "d": (86_400_000, 7)}


def _window_size(raw: str) -> int:
    """The rolling ticker's ``windowSize`` in ms: 1m..59m, 1h..23h or 1d..7d."""
    match = _WINDOW_SIZE.fullmatch(raw)
    unit, most = _WINDOW_UNITS[match.group(2)] if match else (0, 0)
    if not match or int(match.group(1)) > most:
        raise bad_request(-1100, "Invalid windowSize: give 1m..59m, 1h..23h or 1d..7d.")
    return int(match.group(1)) * unit


WS_PUBLIC = {"ping": ("GET", "ping"), "time": ("GET", "time"), "exchangeInfo": ("GET", "exchangeInfo"),
             "depth": ("GET", "depth"), "klines": ("GET", "klines"), "uiKlines": ("GET", "uiKlines"),
             "trades.recent": ("GET", "trades"), "trades.historical": ("GET", "historicalTrades"),
             "trades.aggregate": ("GET", "aggTrades"), "ticker": ("GET", "ticker"),
             "ticker.24hr": ("GET", "ticker/24hr"),
             "ticker.tradingDay": ("GET", "ticker/tradingDay"), "ticker.price": ("GET", "ticker/price"),
             "ticker.book": ("GET", "ticker/bookTicker"), "avgPrice": ("GET", "avgPrice")}  # fmt: skip
WS_SIGNED = {"order.place": ("POST", "order"), "order.test": ("POST", "order/test"), "order.status": ("GET", "order"),
             "order.cancel": ("DELETE", "order"), "order.cancelReplace": ("POST", "order/cancelReplace"),
             "openOrders.status": ("GET", "openOrders"), "openOrders.cancelAll": ("DELETE", "openOrders"),
             "allOrders": ("GET", "allOrders"), "myTrades": ("GET", "myTrades"), "account.status": ("GET", "account"),
             "account.commission": ("GET", "account/commission"),
             "order.amend.keepPriority": ("PUT", "order/amend/keepPriority"),
             "order.amendments": ("GET", "order/amendments"),
             "account.rateLimits.orders": ("GET", "rateLimit/order"), **WS_METHODS}  # fmt: skip


_TIME_KEYS = {"serverTime", "transactTime", "transactionTime", "time", "updateTime", "workingTime", "openTime",
              "closeTime", "authorizedSince", "connectedSince", "retryAfter", "E", "T", "O", "W", "C"}  # fmt: skip
_PARAM_TIMES = ("startTime", "endTime")


def _micro(unit: str | None) -> bool:
    """Whether ``X-MBX-TIME-UNIT`` (or ``timeUnit``) asks for microseconds (either case)."""
    return (unit or "").upper() == "MICROSECOND"


def _timed(value: Any, micro: bool, endpoint: str = "") -> Any:
    """``value`` with every time field in µs when ``micro`` (Binance's ``X-MBX-TIME-UNIT`` /
    ``timeUnit``): the time keys of answers and events (an event's ``C`` only where it is a time,
    ``u`` in ``outboundAccountPosition``), ``t``/``T`` of a kline event's ``k``, and the open and
    close times (0 and 6) of ``klines``/``uiKlines`` rows. -1 (no time) stays -1."""
    if not micro:
        return value
    if isinstance(value, list):
        if endpoint in ("klines", "uiKlines"):
            return [[v * 1000 if i in (0, 6) else v for i, v in enumerate(row)] for row in value]
        return [_timed(v, micro) for v in value]
    if not isinstance(value, dict):
        return value
    keys = _TIME_KEYS | ({"u"} if value.get("e") == "outboundAccountPosition" else set())
    out = {}
    for k, v in value.items():
        if k == "k" and isinstance(v, dict):
            v = {**v, **{t: v[t] * 1000 for t in ("t", "T") if isinstance(v.get(t), int)}}
        elif k in keys and isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            v = v * 1000
        elif isinstance(v, (dict, list)):
            v = _timed(v, micro)
        out[k] = v
    return out


def _ms_params(params: dict[str, str]) -> dict[str, str]:
    """``startTime``/``endTime`` given in µs (above 10^14) as ms: Binance takes either."""
    for name in _PARAM_TIMES:
        raw = params.get(name, "")
        if raw.isdigit() and raw.isascii() and 10**14 < int(raw) < 2**63:  # larger is -1100 later, as Binance
            params[name] = str(int(raw) // 1000)
    return params


def _ws_value(value: Any) -> str:
    """A WebSocket API parameter as its REST spelling: booleans lower case, lists as JSON."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def _symbol_list(params: Mapping[str, str]) -> list[str] | None:
    """The ``symbols`` parameter, a JSON list of Binance symbol ids (None when absent)."""
    raw = params.get("symbols")
    if not raw:
        return None
    if not _SYMBOLS.fullmatch(raw):
        raise bad_request(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                 f"'^{_SYMBOLS.pattern}$'.")  # fmt: skip
    return json.loads(raw)  # type: ignore[no-any-return]


class LocalExchange:
    """A local Binance Spot exchange on ``host:port`` (port 0 picks a free one).

    Use it as an async context manager (``async with LocalExchange() as ex: ex.url``) or from the
    command line (``workbench exchange``). ``speed`` replays that many market minutes per wall
    minute (0: the market moves only by :meth:`step` and :meth:`set_price`). ``order_types``
    replaces every symbol's ``orderTypes`` (by default Binance's own: BTCUSDT and ETHUSDT list no
    market-type ``STOP_LOSS`` or ``TAKE_PROFIT``).
    """

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...] = ("BTC/USDT", "ETH/USDT"),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        secret: str | None = None,
        ed25519_public_key: str | None = None,
        balances: Mapping[str, str | int | Decimal] | None = None,
        speed: float = 0.0,
        start: str | None = None,
        warmup: int = 500,
        state_file: str | Path | None = None,
        limits: Limits | None = None,
        faults: Faults | None = None,
        fees: Fees = Fees(),
        book: BookConfig = BookConfig(),
        ws_lifetime: float = 24 * 3600.0,
        heartbeat: float = 20.0,
        order_types: Sequence[str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key or secrets.token_hex(32)
        self.secret = secret or secrets.token_hex(32)
        self.ed25519_public_key = ed25519_public_key
        self.speed = speed
        self.limits = limits or Limits()
        self.faults = faults or Faults()
        self.ws_lifetime, self.heartbeat = ws_lifetime, heartbeat
        self._random = random.Random(self.faults.seed)
        klines = {s: load_klines(s, allow_sample=True, start=start) for s in symbols}
        self.sources = {s: frame.attrs.get("source", "") for s, frame in klines.items()}
        rules = load_rules(symbols)
        if order_types is not None:  # every symbol lists these (Binance's BTCUSDT lists no STOP_LOSS or TAKE_PROFIT)
            unknown = sorted(set(order_types) - set(OrderType))
            if unknown:
                raise ValueError(f"Unknown order types {unknown}; known: {', '.join(OrderType)}.")
            rules = {s: replace(r, order_types=tuple(order_types)) for s, r in rules.items()}
        self.venue = Venue(
            rules,
            klines,
            balances or DEFAULT_BALANCES,
            clock=self.now,
            fees=fees,
            book=book,
            warmup=warmup,
            state_path=state_file,
        )
        self.venue.events.user.append(self._on_user_event)
        self.venue.events.market.append(self._on_market_event)
        self.venue.events.wanted = self._wanted
        self._counters = _Counters()
        self._subscriptions: dict[web.WebSocketResponse, _Connection] = {}
        self._market_conns: dict[web.WebSocketResponse, _Connection] = {}
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_subscription = 0
        self.routes = self._routes()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def now(self) -> int:
        """The server's clock in ms (the wall clock plus any injected skew)."""
        return int(time.time() * 1000) + self.faults.clock_skew_ms

    async def start(self) -> LocalExchange:
        app = web.Application(middlewares=[self._errors])
        app.router.add_route("*", "/api/v3/{endpoint:.+}", self._rest)
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_get("/ws", self._market_ws)
        app.router.add_get("/ws/{streams:.*}", self._market_ws)
        app.router.add_get("/stream", self._market_ws)
        app.router.add_route("*", "/admin/{action}", self._admin)
        app.router.add_route("*", "/{path:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.speed > 0:
            self._tasks.append(asyncio.create_task(self._replay(), name="replay"))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in [*self._subscriptions.values(), *self._market_conns.values()]:
            await conn.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.venue.save()

    async def __aenter__(self) -> LocalExchange:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _replay(self) -> None:
        """Step once every 60/speed s on a fixed schedule (no drift: at speed 60 each step lands
        in the next wall minute, so the newest bar stays the current minute)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        step = 0
        while True:
            step += 1
            await asyncio.sleep(max(0.0, started + step * 60.0 / self.speed - loop.time()))
            if not self.venue.step(1):
                break
        log.warning("The local exchange has replayed all its klines: the market stands still from here.")

    # -- the Python admin API ---------------------------------------------------------------

    @property
    def user_data_subscriptions(self) -> int:
        """How many user data stream subscriptions are live (ccxt subscribes on its first watch)."""
        return sum(len(conn.subscriptions) for conn in self._subscriptions.values())

    def set_faults(self, **changes: Any) -> Faults:
        """Switch faults on or off at run time, e.g. ``set_faults(lost_answers=1)``; ValueError
        (and nothing changed) for an unknown fault or a bad value."""
        for name, value in checked_faults(changes).items():
            setattr(self.faults, name, value)
        if self.faults.ban_seconds:
            self._counters.banned_until = time.time() + self.faults.ban_seconds
            self.faults.ban_seconds = 0.0
        if "seed" in changes:
            self._random.seed(self.faults.seed)
        return self.faults

    def step(self, bars: int = 1) -> int:
        """Replay the next ``bars`` bars now."""
        return self.venue.step(bars)

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """Trade the market of ``symbol`` at ``price`` now."""
        self.venue.set_price(self.venue.rules_for(symbol).id, Decimal(str(price)))

    async def drop_connections(self) -> int:
        """Drop every WebSocket connection (user data and market); returns how many."""
        conns = [*self._subscriptions.values(), *self._market_conns.values()]
        for conn in conns:
            await conn.close()
        return len(conns)

    # -- REST -------------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            self._check_host(request.headers.get("Host", ""))
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            e = BinanceError(405, -1000, f"Unknown endpoint {request.method} {request.path}.")
            return _json({"code": e.code, "msg": e.msg}, e.status, self._weight_headers())
        except BinanceError as e:
            headers = {**self._weight_headers(), **e.headers}
            return _json(_timed(e.body(), _micro(request.headers.get("X-MBX-TIME-UNIT"))), e.status, headers)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        route = self.routes.get((request.method, endpoint))
        if route is None:
            raise BinanceError(404, -1000, f"Unknown endpoint {request.method} /api/v3/{endpoint}.")
        query = request.raw_path.partition("?")[2]
        body = await _body(request)
        params = _parse(query, body)
        self._admit(route.weight(params))
        faults = self.faults
        if faults.too_many_requests:
            faults.too_many_requests -= 1
            self._strike(time.time())
            raise self._too_many(
                WEIGHT_LIMIT_MSG.format(limit=self.limits.weight_per_minute), -1003, faults.retry_after
            )
        if faults.errors_5xx:
            faults.errors_5xx -= 1
            raise web.HTTPServiceUnavailable(text="Service Unavailable")
        placing = (request.method, endpoint) == ("POST", "order") or (request.method, endpoint) in PLACING_LISTS
        if placing and faults.refused_orders:
            faults.refused_orders -= 1
            raise web.HTTPServiceUnavailable(text="Service Unavailable")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        call = Call(_ms_params(params))
        if route.signed:
            call.api_key = self._authenticate(request.headers.get("X-MBX-APIKEY"), params, _payload(query, body))
        if placing:
            self._count_order(call, PLACING_LISTS.get((request.method, endpoint), 1))
        try:
            result = await route.handler(call)
        except BinanceError:
            if placing or request.method == "DELETE":
                self._counters.weight.used += 1  # failed orders and cancels pay their weight
            raise
        headers = self._weight_headers() | {  # X-MBX-ORDER-COUNT-10S / -1D when the request placed orders
            f"X-MBX-ORDER-COUNT-{w['intervalNum']}{w['interval'][0]}": str(w["count"]) for w in call.counted
        }
        if placing and faults.lost_answers:
            faults.lost_answers -= 1
            raise BinanceError(503, -1007, LOST_MSG, headers)
        return _json(_timed(result, _micro(request.headers.get("X-MBX-TIME-UNIT")), endpoint), 200, headers)

    def _check_host(self, host: str) -> None:
        """Answer only requests addressed to this exchange by a loopback name (no DNS rebinding)."""
        names = {*_HOSTS, self.host.lower(), f"[{self.host.lower()}]"}
        name, _, port = host.lower().rpartition(":")
        if name not in names or port != str(self.port):
            raise BinanceError(421, -1000, f"This exchange answers only to Host 127.0.0.1:{self.port} or "
                                           f"localhost:{self.port}.")  # fmt: skip

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        raise BinanceError(404, -1000, f"Unknown endpoint {request.method} {request.path}.")

    def _admit(self, weight: int) -> None:
        """Charge ``weight`` to the IP; 429 over the limit, 418 for those who keep going."""
        now = time.time()
        counters = self._counters
        if now < counters.banned_until:
            raise self._banned(now)
        window = counters.tick(counters.weight, 60.0, now)
        window.used += weight
        if window.used > self.limits.weight_per_minute:
            self._strike(now)
            raise self._too_many(
                WEIGHT_LIMIT_MSG.format(limit=self.limits.weight_per_minute), -1003, window.start + 60 - now
            )

    def _strike(self, now: float) -> None:
        """One more request refused with 429 this minute; past the allowance, the IP is banned (418)."""
        counters = self._counters
        minute = now - now % 60
        if counters.strike_window != minute:
            counters.strike_window, counters.strikes = minute, 0
        counters.strikes += 1
        if counters.strikes > self.limits.strikes_before_ban:
            counters.banned_until = now + self.limits.ban_seconds
            raise self._banned(now)

    def _count_order(self, call: Call, orders: int = 1) -> None:
        """Add ``orders`` to the unfilled order count (an order list adds each of its orders) and
        note the windows in ``call.counted`` (its answer shows them as placed: a fill's decrement
        shows from the next request on); 429 -1015 when that would exceed a window's limit."""
        now = time.time()
        for window, length, limit, label in (
            (self._counters.orders_10s, 10.0, self.limits.orders_per_10s, "10 SECOND"),
            (self._counters.orders_day, 86_400.0, self.limits.orders_per_day, "1 DAY"),
        ):
            self._counters.tick(window, length, now)
            if window.used + orders > limit:
                raise self._too_many(f"Too many new orders; current limit is {limit} orders per {label}.", -1015,
                                     window.start + length - now)  # fmt: skip
        self._counters.orders_10s.used += orders
        self._counters.orders_day.used += orders
        call.counted[:] = self._order_counts()

    def _credit_fill(self, event: Mapping[str, Any]) -> None:
        """An order's first fill takes it off the unfilled order count of every ``ORDERS``
        window (faqs/order_count_decrement.md): by 1 as taker, by ``maker_fill_credit`` as maker,
        never below 0; later fills, cancels and expiries change nothing."""
        if event.get("e") != "executionReport" or event["x"] != "TRADE" or Decimal(event["z"]) != Decimal(event["l"]):
            return
        credit = self.limits.maker_fill_credit if event["m"] else 1
        now = time.time()
        for window, length in ((self._counters.orders_10s, 10.0), (self._counters.orders_day, 86_400.0)):
            self._counters.tick(window, length, now)  # the current window, whenever the order was placed
            window.used = max(0, window.used - credit)

    def _too_many(self, msg: str, code: int, retry_after: float) -> BinanceError:
        return BinanceError(429, code, msg, {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def _banned(self, now: float) -> BinanceError:
        until = self._counters.banned_until
        return BinanceError(
            418, -1003, BANNED_MSG.format(until=int(until * 1000)), {"Retry-After": str(max(1, math.ceil(until - now)))}
        )

    def _weight_headers(self) -> dict[str, str]:
        used = str(self._counters.tick(self._counters.weight, 60.0, time.time()).used)
        return {"X-MBX-USED-WEIGHT": used, "X-MBX-USED-WEIGHT-1M": used}

    def _order_counts(self) -> list[dict[str, Any]]:
        """The ``ORDERS`` windows with their current counts (``rateLimit/order``, WebSocket API answers)."""
        now = time.time()
        counts = (self._counters.tick(self._counters.orders_10s, 10.0, now).used,
                  self._counters.tick(self._counters.orders_day, 86_400.0, now).used)  # fmt: skip
        return [limit | {"count": count} for limit, count in zip(self.rate_limits()[1:3], counts, strict=True)]

    def rate_limits(self) -> list[dict[str, Any]]:
        """The limits as ``exchangeInfo`` lists them."""
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": self.limits.weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.limits.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.limits.orders_per_day},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300_000},
        ]  # fmt: skip

    # -- signing ----------------------------------------------------------------------------

    def _authenticate(
        self, api_key: str | None, params: Mapping[str, str], payload: str, server: int | None = None
    ) -> str:
        """Check the API key, signature, timestamp and recvWindow as Binance does (against
        ``server`` ms, by default the server's clock)."""
        if not api_key or not api_key.isascii() or not api_key.isprintable():
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(api_key, self.api_key):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        for name in ("timestamp", "signature"):
            if not params.get(name):
                raise bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if not self._signature_ok(payload, params["signature"]):
            raise bad_request(-1022, "Signature for this request is not valid.")
        self._check_time(params, self.now() if server is None else server)
        return api_key

    def _signature_ok(self, payload: str, signature: str) -> bool:
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        hmac_ok = hmac.compare_digest(expected.encode(), signature.lower().encode())
        return hmac_ok or self._ed25519_ok(payload, signature)

    def _ed25519_ok(self, payload: str, signature: str) -> bool:
        """Whether ``signature`` is this account's Ed25519 signature of ``payload``."""
        if self.ed25519_public_key:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            key = load_pem_public_key(self.ed25519_public_key.encode())
            try:
                key.verify(base64.b64decode(signature), payload.encode())  # type: ignore[call-arg, union-attr]
                return True
            except (InvalidSignature, ValueError):
                return False
        return False

    @staticmethod
    def _check_time(params: Mapping[str, str], server: int) -> None:
        """``timestamp`` (integer ms or µs) within ``recvWindow`` (0 < ms <= 60000, 3 decimals)."""
        timestamp = integer(params, "timestamp")
        raw_window = params.get("recvWindow") or "5000"
        if not _RECV_WINDOW.fullmatch(raw_window):
            raise bad_request(-1100, "Illegal characters found in parameter 'recvWindow'; legal range is "
                                     f"'^{_RECV_WINDOW.pattern}$'.")  # fmt: skip
        window = Decimal(raw_window)
        if not 0 < window <= 60_000:
            raise bad_request(-1131, "recvWindow must be less than 60000")
        assert timestamp is not None  # checked present by the caller
        if timestamp > 10**14:  # microseconds
            timestamp //= 1000
        if timestamp >= server + 1000:
            raise bad_request(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - timestamp > window:
            raise bad_request(-1021, "Timestamp for this request is outside of the recvWindow.")

    # -- endpoints --------------------------------------------------------------------------

    def _routes(self) -> dict[tuple[str, str], _Route]:
        v = self.venue

        def public(fn: Callable[[Mapping[str, str]], Any], weight: Callable[[Mapping[str, str]], int]) -> _Route:
            async def handler(call: Call) -> Any:
                return fn(call.params)

            return _Route(handler, False, weight)

        def signed(fn: Callable[[Mapping[str, str]], Any], weight: Callable[[Mapping[str, str]], int]) -> _Route:
            route = public(fn, weight)
            route.signed = True
            return route

        def need(params: Mapping[str, str], name: str) -> str:
            if not params.get(name):
                raise bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
            return params[name]

        def per_symbol(fn: Callable[[str], Any]) -> Callable[[Mapping[str, str]], Any]:
            def answer(params: Mapping[str, str]) -> Any:
                if params.get("symbol"):
                    return fn(params["symbol"])
                return [fn(s) for s in _symbol_list(params) or list(v.market.klines)]

            return answer

        def price(symbol: str) -> dict[str, str]:
            rules = v.rules_for(symbol)
            return {"symbol": rules.id, "price": f"{v.engine.last_price[rules.symbol]:.8f}"}

        def book_ticker(symbol: str) -> dict[str, str]:
            book = v.depth(symbol, 1)
            return {"symbol": v.rules_for(symbol).id, "bidPrice": book["bids"][0][0], "bidQty": book["bids"][0][1],
                    "askPrice": book["asks"][0][0], "askQty": book["asks"][0][1]}  # fmt: skip

        def exchange_info(params: Mapping[str, str]) -> dict[str, Any]:
            symbols = [params["symbol"]] if params.get("symbol") else _symbol_list(params)
            return v.exchange_info(symbols) | {"rateLimits": self.rate_limits()}

        def rolling(params: Mapping[str, str]) -> Any:
            window = _window_size(params.get("windowSize") or "1d")
            if not params.get("symbol") and not params.get("symbols"):
                raise bad_request(-1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!")
            return per_symbol(lambda symbol: _typed(v.ticker(symbol, window, full=False), params))(params)

        def trading_day(params: Mapping[str, str]) -> Any:
            now, shift = self.now(), _time_zone(params.get("timeZone") or "0")
            window = max(1, (now + shift) % DAY)  # since the day's midnight in that time zone
            if not params.get("symbol") and not params.get("symbols"):
                raise bad_request(-1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!")
            return per_symbol(lambda symbol: _typed(v.ticker(symbol, window, full=False), params))(params)

        def order_id(params: Mapping[str, str]) -> tuple[str, str | None, str | None]:
            number = integer(params, "orderId")
            return need(params, "symbol"), None if number is None else str(number), params.get("origClientOrderId")

        return {
            ("GET", "ping"): public(lambda p: {}, _fixed(1)),
            ("GET", "time"): public(lambda p: {"serverTime": self.now()}, _fixed(1)),
            ("GET", "exchangeInfo"): public(exchange_info, _fixed(20)),
            ("GET", "depth"): public(lambda p: v.depth(need(p, "symbol"), _int(p, "limit", 100)), _depth_weight),
            ("GET", "trades"): public(lambda p: v.recent_trades(need(p, "symbol"), _int(p, "limit", 500)), _fixed(25)),
            ("GET", "aggTrades"): public(lambda p: v.agg_trades(need(p, "symbol"), _int(p, "limit", 500)), _fixed(4)),
            ("GET", "klines"): public(lambda p: v.klines(need(p, "symbol"), p), _fixed(2)),
            ("GET", "ticker/price"): public(per_symbol(price), _ticker_weight(2, 4)),
            ("GET", "ticker/bookTicker"): public(per_symbol(book_ticker), _ticker_weight(2, 4)),
            ("GET", "ticker/24hr"): public(lambda p: per_symbol(lambda s: _typed(v.ticker(s), p))(p),
                                           _ticker_weight(2, 80)),
            ("GET", "ticker"): public(rolling, _ticker_weight(4, 200)),
            ("GET", "ticker/tradingDay"): public(trading_day, _per_symbol_weight(4, 200)),
            ("GET", "uiKlines"): public(lambda p: v.klines(need(p, "symbol"), p), _fixed(2)),
            ("GET", "historicalTrades"): public(lambda p: v.historical_trades(need(p, "symbol"), p), _fixed(25)),
            ("GET", "avgPrice"): public(lambda p: v.avg_price(need(p, "symbol")), _fixed(2)),
            ("POST", "order"): signed(lambda p: v.create_order(p), _fixed(0)),
            ("POST", "order/test"): signed(lambda p: v.create_order(p, test=True), _commission_weight),
            ("GET", "order"): signed(lambda p: v.fetch_order(*order_id(p)), _fixed(4)),
            ("DELETE", "order"): signed(lambda p: v.cancel_order(*order_id(p), p.get("newClientOrderId")), _fixed(0)),
            ("GET", "openOrders"): signed(lambda p: v.open_orders(p.get("symbol")), _ticker_weight(6, 80)),
            ("DELETE", "openOrders"): signed(lambda p: v.cancel_all_orders(need(p, "symbol")), _fixed(0)),
            ("GET", "allOrders"): signed(lambda p: v.all_orders(need(p, "symbol"), p), _fixed(20)),
            ("GET", "myTrades"): signed(lambda p: v.my_trades(need(p, "symbol"), p), _ticker_weight(5, 20, "orderId")),
            ("GET", "account"): signed(lambda p: v.account(p.get("omitZeroBalances") == "true"), _fixed(20)),
            ("GET", "rateLimit/order"): signed(lambda p: self._order_counts(), _fixed(40)),
            ("POST", "order/cancelReplace"): _Route(self._cancel_replace, True, _fixed(1)),
            ("GET", "account/commission"): signed(lambda p: v.commission(need(p, "symbol")), _fixed(20)),
            ("PUT", "order/amend/keepPriority"): _Route(self._amend, True, _fixed(4)),
            ("GET", "order/amendments"): signed(lambda p: v.amendments(need(p, "symbol"), need(p, "orderId"), p),
                                                _fixed(4)),
        } | {key: signed(fn, weight) for key, (fn, weight) in OrderLists(v).routes().items()}  # fmt: skip

    async def _cancel_replace(self, call: Call) -> dict[str, Any]:
        """Count the new order first (Binance does): over the unfilled order count, ``DO_NOTHING``
        (the default) refuses the whole request, ``CANCEL_ONLY`` still cancels."""
        refused = None
        try:
            self._count_order(call)
        except BinanceError as e:
            if call.params.get("orderRateLimitExceededMode") != "CANCEL_ONLY":
                raise
            refused = e
        return self.venue.cancel_replace(call.params, refused)

    async def _amend(self, call: Call) -> dict[str, Any]:
        """``order/amend/keepPriority``: weight 4, but 0 when the amendment expires the order
        (CHANGELOG 2026-04-02); it adds nothing to the unfilled order count."""
        answer = self.venue.amend(call.params)
        if answer["amendedOrder"]["status"] == "EXPIRED":
            self._counters.weight.used = max(0, self._counters.weight.used - 4)
        return answer

    # -- WebSocket API: the user data stream ------------------------------------------------

    async def _accept(self, request: web.Request, market: bool = False) -> _Connection:
        """Upgrade ``request`` to a WebSocket connection, unless refusing connections is injected."""
        if self.faults.reject_ws_connections:
            self.faults.reject_ws_connections -= 1
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=self.heartbeat)
        await ws.prepare(request)
        return _Connection(ws, self, market=market)

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        conn = await self._accept(request)
        conn.micro = _micro(request.query.get("timeUnit"))
        ws = conn.ws
        self._subscriptions[ws] = conn
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                await conn.send(await self._ws_request(conn, message.data), now=True)
        finally:
            self._subscriptions.pop(ws, None)
            await conn.close()
        return ws

    async def _ws_request(self, conn: _Connection, text: str) -> dict[str, Any]:
        message = _json_object(text)
        id_, method, params = message.get("id"), message.get("method"), message.get("params", {})
        if not isinstance(id_, (str, int, type(None))) or isinstance(id_, bool):
            return {"id": None, "status": 400, "error": {"code": -1000, "msg": "Malformed request: a bad 'id'."}}
        if not isinstance(method, str) or not isinstance(params, dict):
            return {"id": id_, "status": 400, "error": {"code": -1000, "msg": "Malformed request."}}
        method = method.removeprefix("v3/")
        limits = str(params.get("returnRateLimits", True)).lower() != "false"  # a general parameter of every method
        counted: list[dict[str, Any]] = []  # a placement's ORDERS windows, as placed
        try:
            strings = {k: _ws_value(v) for k, v in params.items()}
            route = WS_PUBLIC.get(method) or WS_SIGNED.get(method)
            self._admit(max(1, self.routes[route].weight(strings)) if route else 2)  # session.*, userDataStream.*: 2
            result = await self._ws_method(conn, method, strings, counted)
            answer = {"id": id_, "status": 200, "result": _timed(result, conn.micro, route[1] if route else "")}
            return answer | ({"rateLimits": self._ws_rate_limits(counted)} if limits else {})
        except BinanceError as e:
            error: dict[str, Any] = e.body()
            if e.status in (418, 429):
                error["data"] = {
                    "serverTime": self.now(),
                    "retryAfter": self.now() + int(e.headers.get("Retry-After", "1")) * 1000,
                }
            answer = {"id": id_, "status": e.status, "error": _timed(error, conn.micro)}
            return answer | ({"rateLimits": self._ws_rate_limits(counted)} if limits else {})

    async def _ws_method(
        self, conn: _Connection, method: str, params: dict[str, str], counted: list[dict[str, Any]]
    ) -> Any:
        if method in WS_PUBLIC:
            params.pop("returnRateLimits", None)
            return await self.routes[WS_PUBLIC[method]].handler(Call(_ms_params(params)))
        if method == "userDataStream.unsubscribe":
            wanted = params.get("subscriptionId")
            conn.subscriptions = {s for s in conn.subscriptions if wanted is not None and str(s) != wanted}
            return {}
        if method in ("session.status", "session.logout"):
            if method == "session.logout":
                conn.api_key, conn.authorized_since = None, None
            return self._session(conn)
        if method not in WS_SIGNED and method not in ("userDataStream.subscribe.signature", "session.logon"):
            raise bad_request(-1020, "This operation is not supported.")
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        if conn.api_key and "signature" not in params and method != "session.logon":
            if not params.get("timestamp"):  # a logged-on session signs nothing more, but keeps time
                raise bad_request(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
            self._check_time(params, self.now())
        else:
            self._authenticate(params.get("apiKey"), params, payload)
        params.pop("apiKey", None)
        params.pop("returnRateLimits", None)
        if method == "session.logon":
            if not self._ed25519_ok(payload, params["signature"]):
                raise bad_request(-4056, "HMAC_SHA256 API key is not supported.")
            conn.api_key, conn.authorized_since = self.api_key, self.now()
            return self._session(conn)
        if method == "userDataStream.subscribe.signature":
            if conn.subscriptions:
                raise bad_request(-2035, "User Data Stream subscription already active.")
            subscription = self._next_subscription
            self._next_subscription += 1
            conn.subscriptions.add(subscription)
            return {"subscriptionId": subscription}
        params.pop("signature", None)
        route = WS_SIGNED[method]
        call = Call(_ms_params(params), self.api_key, counted)
        if route == ("POST", "order") or route in PLACING_LISTS:
            self._count_order(call, PLACING_LISTS.get(route, 1))
        return await self.routes[route].handler(call)

    def _session(self, conn: _Connection) -> dict[str, Any]:
        """``session.status``: who is logged on to this WebSocket API connection, since when."""
        return {"apiKey": conn.api_key, "authorizedSince": conn.authorized_since, "connectedSince": conn.connected,
                "returnRateLimits": True, "serverTime": self.now(),
                "userDataStream": bool(conn.subscriptions)}  # fmt: skip

    def _ws_rate_limits(self, counted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An answer's ``rateLimits``: a placement's ``ORDERS`` windows (``counted``), then the weight."""
        used = self._counters.tick(self._counters.weight, 60.0, time.time()).used
        return [*counted, self.rate_limits()[0] | {"count": used}]

    def _on_user_event(self, event: dict[str, Any]) -> None:
        self._credit_fill(event)
        if self.faults.malformed_events and event.get("x") == "TRADE":
            self.faults.malformed_events -= 1
            event = {**event, "X": "MISPLACED"}
        for conn in list(self._subscriptions.values()):
            for subscription in conn.subscriptions:
                conn.push({"subscriptionId": subscription, "event": _timed(event, conn.micro)})

    # -- market streams ---------------------------------------------------------------------

    async def _market_ws(self, request: web.Request) -> web.StreamResponse:
        conn = await self._accept(request, market=True)
        conn.micro = _micro(request.query.get("timeUnit"))
        ws = conn.ws
        conn.combined = request.path == "/stream"
        named = request.query.get("streams", "") if conn.combined else request.match_info.get("streams", "")
        conn.streams = {s for s in named.split("/") if "@" in s}
        self._market_conns[ws] = conn
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await conn.send(_control(conn, message.data), now=True)
        finally:
            self._market_conns.pop(ws, None)
            await conn.close()
        return ws

    def _wanted(self, stream: str) -> bool:
        return any(stream in conn.streams for conn in self._market_conns.values())

    def _on_market_event(self, stream: str, payload: Any) -> None:
        micro = None
        for conn in list(self._market_conns.values()):
            if stream in conn.streams:
                if conn.micro:
                    micro = micro or _timed(payload, True)
                data = micro if conn.micro else payload
                conn.push({"stream": stream, "data": data} if conn.combined else data)

    # -- admin ------------------------------------------------------------------------------

    async def _admin(self, request: web.Request) -> web.StreamResponse:
        """``/admin/<action>``: signed like a SIGNED Binance request with this exchange's own key
        (see :func:`admin_call`), from loopback only, with a JSON body."""
        if request.remote not in ("127.0.0.1", "::1"):
            raise BinanceError(403, -1000, "The admin API answers only on loopback.")
        action, method = request.match_info["action"], request.method
        allowed = {"faults": ("GET", "POST"), "state": ("GET",), "step": ("POST",), "price": ("POST",),
                   "drop": ("POST",)}.get(action)  # fmt: skip
        if allowed is None:
            raise BinanceError(404, -1000, f"Unknown admin action {action!r}.")
        if method not in allowed:
            raise BinanceError(405, -1000, f"/admin/{action} takes {' or '.join(allowed)}.")
        if method == "POST" and request.content_type != "application/json":
            raise BinanceError(415, -1000, "Admin requests take a JSON body (Content-Type: application/json).")
        query, text = request.raw_path.partition("?")[2], await _body(request)
        self._authenticate(
            request.headers.get("X-MBX-APIKEY"), _parse(query, ""), _payload(query, "") + text, int(time.time() * 1000)
        )
        body = _json_object(text or "{}")
        if text and not body and text.strip() != "{}":
            raise bad_request(-1130, "The admin body must be a JSON object.")
        try:
            return web.json_response(await self._admin_action(action, method, body))
        except (ValueError, ArithmeticError) as e:
            raise bad_request(-1130, str(e)) from None

    async def _admin_action(self, action: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if action == "faults":
            if method == "POST":
                self.set_faults(**body)
            return asdict(self.faults)
        if action == "step":
            bars = body.get("bars", 1)
            if not isinstance(bars, int) or isinstance(bars, bool) or not 1 <= bars <= 1_000_000:
                raise ValueError(f"'bars' takes an integer from 1 to 1000000, not {bars!r}.")
            return {"bars": self.step(bars)}
        if action == "price":
            price = Decimal(str(body.get("price"))) if isinstance(body.get("price"), (str, int, float)) else None
            if price is None or not price.is_finite() or price <= 0:
                raise ValueError(f"'price' takes a positive number, not {body.get('price')!r}.")
            self.set_price(str(body.get("symbol")), price)
            return {}
        if action == "drop":
            return {"dropped": await self.drop_connections()}
        venue = self.venue
        state = {"account": venue.account(), "open_orders": venue.open_orders(None), "trades": len(venue.trades)}
        return state | {"cursor": venue.market.cursor}

    async def admin(self, action: str, body: Mapping[str, Any] | None = None) -> Any:
        """One authenticated call of this exchange's admin API over HTTP (see :func:`admin_call`)."""
        async with aiohttp.ClientSession() as http:
            return await admin_call(http, self.url, self.api_key, self.secret, action, body)


async def admin_call(
    http: aiohttp.ClientSession,
    url: str,
    api_key: str,
    secret: str,
    action: str,
    body: Mapping[str, Any] | None = None,
) -> Any:
    """Call ``/admin/<action>`` of the exchange at ``url`` with its API key and secret: GET without
    a body, else POST of ``body`` as JSON. The signature is HMAC-SHA256 of ``timestamp=<ms>``
    followed by the body. Raises :class:`BinanceError` with the exchange's answer."""
    text = "" if body is None else json.dumps(body)
    query = f"timestamp={int(time.time() * 1000)}"
    signature = hmac.new(secret.encode(), (query + text).encode(), hashlib.sha256).hexdigest()
    async with http.request(
        "GET" if body is None else "POST",
        f"{url}/admin/{action}?{query}&signature={signature}",
        data=text or None,
        headers={"X-MBX-APIKEY": api_key, "Content-Type": "application/json"},
    ) as answer:
        result = await answer.json(content_type=None)
        if answer.status != 200:
            raise BinanceError(answer.status, result.get("code", -1000), result.get("msg", ""))
        return result


class _Connection:
    """One WebSocket connection and the queue that feeds it, with the injected stream faults."""

    def __init__(self, ws: web.WebSocketResponse, exchange: LocalExchange, market: bool = False) -> None:
        self.ws, self.exchange, self.market = ws, exchange, market
        self.subscriptions: set[int] = set()
        self.api_key: str | None = None  # the WebSocket API session's key once ``session.logon`` succeeded
        self.authorized_since: int | None = None
        self.connected = exchange.now()
        self.micro = False  # ``timeUnit=MICROSECOND`` in the connection URL: every time field in µs
        self.streams: set[str] = set()
        self.combined = False
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._held: dict[str, Any] | None = None
        self._sender = asyncio.create_task(self._send_forever())
        self._lifetime = asyncio.get_running_loop().call_later(
            exchange.ws_lifetime, lambda: asyncio.ensure_future(self.close())
        )

    def push(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)

    async def send(self, message: dict[str, Any], now: bool = False) -> None:
        if not self.ws.closed:
            with suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def _send_forever(self) -> None:
        faults, rng = self.exchange.faults, self.exchange._random
        while True:
            message = await self.queue.get()
            if self.market:
                await self.send(message)
                continue
            if faults.ws_delay_ms:
                await asyncio.sleep(faults.ws_delay_ms / 1000)
            if faults.ws_drop_after is not None:
                if faults.ws_drop_after <= 0:
                    faults.ws_drop_after = None
                    await self.ws.close(code=1006)
                    return
                faults.ws_drop_after -= 1
            if self._held is None and faults.reorder_events and rng.random() < faults.reorder_events:
                self._held = message
                if self.queue.empty():  # nothing to overtake it: send it after all
                    await self.send(message)
                    self._held = None
                continue
            await self.send(message)
            if faults.duplicate_events and rng.random() < faults.duplicate_events:
                await self.send(message)
            if self._held is not None:
                await self.send(self._held)
                self._held = None

    async def close(self) -> None:
        self._lifetime.cancel()
        self._sender.cancel()
        with suppress(asyncio.CancelledError):
            await self._sender
        if not self.ws.closed:
            await self.ws.close()


def _json_object(text: str) -> dict[str, Any]:
    """``text`` as a JSON object, or ``{}`` when it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}


def _control(conn: _Connection, text: str) -> dict[str, Any]:
    """Answer a market-stream control message (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, ...)."""
    message = _json_object(text)
    method, params, id_ = message.get("method"), message.get("params", []), message.get("id")
    if not isinstance(id_, (int, str, type(None))) or isinstance(id_, bool):
        id_ = None
    if not isinstance(method, str):
        return {"code": 3, "msg": "Invalid JSON: expected a JSON object with a method", "id": id_}
    if not isinstance(params, list) or not all(isinstance(p, (str, bool)) for p in params):
        return {"code": 2, "msg": "Invalid request: 'params' must be an array of strings", "id": id_}
    names = {p for p in params if isinstance(p, str)}
    if method == "SUBSCRIBE":
        conn.streams |= names
        return {"result": None, "id": id_}
    if method == "UNSUBSCRIBE":
        conn.streams -= names
        return {"result": None, "id": id_}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": sorted(conn.streams), "id": id_}
    if method == "SET_PROPERTY" and len(params) == 2 and params[0] == "combined":
        conn.combined = bool(params[1])
        return {"result": None, "id": id_}
    if method == "GET_PROPERTY" and params[:1] == ["combined"]:
        return {"result": conn.combined, "id": id_}
    return {"code": 2, "msg": f"Invalid request: unknown method {method!r}", "id": id_}


def _json(body: Any, status: int, headers: Mapping[str, str]) -> web.Response:
    """A JSON answer written compactly, as Binance writes it."""
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=status, content_type="application/json", headers=headers
    )


async def _body(request: web.Request) -> str:
    """The request body as text; a body that is not UTF-8 is -1100."""
    try:
        return (await request.read()).decode() if request.can_read_body else ""
    except UnicodeDecodeError:
        raise bad_request(-1100, "Illegal characters found in a parameter.") from None


def _parse(query: str, body: str) -> dict[str, str]:
    """Query and body parameters; the query wins on a clash; a repeated name is -1101."""
    params: dict[str, str] = {}
    for source in (body, query):
        seen: set[str] = set()
        for key, value in parse_qsl(source, keep_blank_values=True):
            if key in seen:
                raise bad_request(-1101, "Duplicate values for a parameter detected.")
            seen.add(key)
            params[key] = value
    return params


def _payload(query: str, body: str) -> str:
    """What Binance signs: the query string then the body, as sent, without the signature."""

    def strip(raw: str) -> str:
        return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))

    return strip(query) + strip(body)
