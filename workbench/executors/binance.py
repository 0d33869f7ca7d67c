"""The Binance executor: real orders on Binance Spot through ccxt's async client and ccxt.pro.

A thin adapter: it translates between ccxt and the workbench's model and does the reliability
work, nothing else.

* URLs come from the mode alone (:func:`make_client`): Binance Spot Testnet by default, a local
  exchange when ``venue_url`` is given, mainnet only for ``TradingMode.MAINNET``, which needs the
  :class:`~workbench.config.MainnetGuard` that exists only past :func:`~workbench.config.resolve_mode`.
  A testnet client reaches the testnets and loopback only: every URL's parsed host is checked when
  the client is built and again at every request and WebSocket connection (:class:`BinanceClient`).
* Every order carries the workbench's client order id. When an answer is lost (timeout, 5xx,
  -1007) the order is looked up by that id before anything is retried, so it is never placed twice.
* The user data stream (``watch_orders``, ``watch_my_trades``) reports orders and fills as they
  happen; a fill is reported once per trade id and an order only ever moves forward.
* :meth:`BinanceExecutor.reconcile` merges open orders, recent trades and balances from REST, at
  start, after every reconnect and periodically; what disagreed is listed in ``discrepancies``.
* Rate limits: the used weight from the response headers is tracked and requests slow down
  before the limit; 429 waits ``Retry-After`` once; 418 stops every request until the ban ends.
  -1021 (clock skew) resyncs with the server time and retries once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pandas as pd

from workbench.config import MAINNET_CONSENT, MAINNET_ENV, Credentials, MainnetGuard, TradingMode
from workbench.errors import (
    ConfigError,
    ExchangeError,
    FilterError,
    InsufficientBalance,
    MainnetGuardError,
    MalformedMessage,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
    VenueUnavailable,
    WorkbenchError,
)
from workbench.executors.base import Listener
from workbench.filters import SymbolRules
from workbench.matching import Execution
from workbench.model import (
    ZERO,
    Balance,
    ContingencyType,
    Fill,
    ListOrderStatus,
    ListStatusType,
    Order,
    OrderList,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# ccxt's errors after which a request may or may not have taken effect (VenueUnavailable to callers).
AMBIGUOUS = (
    ccxt_async.RequestTimeout,
    ccxt_async.ExchangeNotAvailable,
    ccxt_async.BadResponse,
    ccxt_async.NetworkError,
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every (non-empty) secret in it replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Redacted(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ccxt's logger with the client's API key and secret blanked out: ccxt logs every request's
    headers (``X-MBX-APIKEY`` among them) at DEBUG."""

    def __init__(self, logger: logging.Logger, *secrets: str) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, "%s", redact(str(msg) % args if args else str(msg), *self._secrets), **kwargs)


# Binance's production domains (real money) and the testnets' (spot; futures in ccxt's sandbox URLs).
# A domain stands for itself and every host under it.
PRODUCTION_DOMAINS = ("binance.com", "binance.us")
TESTNET_DOMAINS = ("testnet.binance.vision", "binancefuture.com")
GUARD_NEEDED = (
    f"Mainnet trades real money: set `mode = \"mainnet\"` and `mainnet = true` in the config and "
    f"{MAINNET_ENV}={MAINNET_CONSENT}, then build the session with TradingSession.from_config(config) "
    "or build_executor(config), which pass the MainnetGuard."
)


def host_of(url: str) -> str:
    """The host ``url`` reaches, as a resolver sees it: percent-decoded, IDNA-encoded, lowercased,
    without trailing dots; ``""`` when it has none or it cannot be encoded."""
    try:
        host = unquote(urlsplit(url).hostname or "").rstrip(".")
        return host.encode("idna").decode("ascii").lower().rstrip(".")
    except ValueError:  # UnicodeError among them
        return ""


def _within(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, mode: TradingMode) -> None:
    """Refuse ``url`` unless a ``mode`` client may reach it. A testnet client reaches the testnets
    and loopback only, never a Binance production host (:class:`MainnetGuardError`); a mainnet
    client, which exists only with a :class:`~workbench.config.MainnetGuard`, reaches any."""
    if mode is TradingMode.MAINNET:
        return
    host, where = host_of(url), url.split("?")[0]
    if _within(host, PRODUCTION_DOMAINS):
        raise MainnetGuardError(f"Refused {where}: {host} is a Binance production host. {GUARD_NEEDED}")
    if not (_within(host, TESTNET_DOMAINS) or _loopback(host)):
        raise ConfigError(
            f"Refused {where}: a {mode} client reaches only {' and '.join(TESTNET_DOMAINS)} or a local "
            "exchange on loopback (localhost, 127.0.0.1, ::1); set venue_url to one of those."
        )


class BinanceClient(ccxtpro.binance):  # type: ignore[misc]
    """ccxt.pro's Binance client held to its mode: every REST request (``fetch``) and WebSocket
    connection (``client``) passes :func:`check_url` at the moment it is made, a mainnet one cannot
    be built without a :class:`~workbench.config.MainnetGuard`, and ``verbose`` output never shows
    the API key or secret."""

    def __init__(self, config: dict[str, Any], mode: TradingMode, guard: MainnetGuard | None = None) -> None:
        if mode is TradingMode.MAINNET and not isinstance(guard, MainnetGuard):
            raise MainnetGuardError(GUARD_NEEDED)
        self._mode = mode
        self.list_status_handlers: list[Callable[[dict[str, Any]], None]] = []
        super().__init__(config)

    @property
    def mode(self) -> TradingMode:
        return self._mode

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        check_url(url, self._mode)
        return await super().fetch(url, method, headers, body)

    def client(self, url: str) -> Any:
        check_url(url, self._mode)
        return super().client(url)

    def handle_message(self, client: Any, message: Any) -> None:
        """ccxt.pro drops the user data stream's ``listStatus`` events: pass them to
        ``list_status_handlers`` (the other messages go to ccxt as before)."""
        event = message.get("event", message) if isinstance(message, dict) else None
        if isinstance(event, dict) and event.get("e") == "listStatus":
            for handler in self.list_status_handlers:
                handler(event)
            return
        super().handle_message(client, message)

    def log(self, *args: Any) -> None:
        """ccxt's ``verbose`` output (REST and WebSocket), with the API key and secret blanked out."""
        print(redact(" ".join(map(str, args)), self.apiKey, self.secret))


def make_client(
    mode: TradingMode,
    credentials: Credentials | None,
    venue_url: str | None = None,
    *,
    guard: MainnetGuard | None = None,
) -> BinanceClient:
    """The ccxt.pro client for ``mode``. The one place URLs are chosen: testnet (sandbox) URLs for
    TESTNET, ``venue_url`` (a local exchange) when given, Binance's own only for MAINNET, which
    needs the ``guard`` that :class:`~workbench.config.MainnetGuard` issues past :func:`resolve_mode`."""
    if mode is TradingMode.PAPER:
        raise ConfigError("Paper mode has no venue: use PaperExecutor.")
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            "fetchMargins": False,  # spot only: no /sapi margin lookups (the local exchange has none)
        },
    }
    if credentials is not None:
        key, secret = credentials.api_key.reveal(), credentials.secret.reveal()
        config |= {
            "apiKey": key,
            "secret": secret,
            "logger": Redacted(logging.getLogger("ccxt.base.exchange"), key, secret),
        }
    client = BinanceClient(config, mode, guard)
    if mode is TradingMode.TESTNET:
        client.set_sandbox_mode(True)
    if venue_url is not None:
        point_at(client, venue_url)
    check_hosts(client)
    return client


def point_at(client: ccxtpro.binance, venue_url: str) -> None:
    """Point every spot REST and WebSocket URL of ``client`` at a local exchange."""
    http = venue_url.rstrip("/")
    ws = http.replace("http://", "ws://").replace("https://", "wss://")
    api = client.urls["api"]
    for key in ("public", "private", "v3"):
        api[key] = f"{http}/api/v3"
    api["v1"] = f"{http}/api/v1"
    api["sapi"] = f"{http}/sapi/v1"
    api.setdefault("ws", {})
    api["ws"]["spot"] = f"{ws}/ws"
    api["ws"].setdefault("ws-api", {})
    api["ws"]["ws-api"]["spot"] = f"{ws}/ws-api/v3"


def check_hosts(client: BinanceClient) -> None:
    """Refuse, before anything is sent, a client whose URLs name a host its mode may not reach."""
    for url in _urls(client.urls["api"]):
        check_url(url, client.mode)


def _urls(tree: Any) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    return [url for value in tree.values() for url in _urls(value)]


def _bar(candle: list[float], close_time: int) -> pd.Series:
    opened = pd.Timestamp(int(candle[0]), unit="ms", tz="UTC")
    values = dict(zip(("open", "high", "low", "close", "volume"), candle[1:6], strict=True))
    return pd.Series({**values, "close_time": pd.Timestamp(close_time, unit="ms", tz="UTC")}, name=opened)


def closed_bars(last: list[float] | None, candles: list[list[float]]) -> tuple[list[pd.Series], list[float] | None]:
    """The bars that ``candles`` (ccxt OHLCV rows, oldest first) close after ``last``, the latest
    candle seen before, and the latest candle now. A candle older than ``last`` is stale: skipped."""
    bars = []
    for candle in candles:
        if last is not None and candle[0] > last[0]:
            bars.append(_bar(last, candle[0] - 1))
        if last is None or candle[0] >= last[0]:
            last = candle
    return bars, last


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def parsed(parse: Callable[..., T]) -> Callable[..., T]:
    """Turn any failure of ``parse`` on a venue's message into :class:`MalformedMessage`."""

    def wrapper(*args: Any) -> T:
        try:
            return parse(*args)
        except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as e:
            raise MalformedMessage(
                f"Could not read the venue's {parse.__name__.split('_')[0]}: {e!r} in {args[0]!r:.300}"
            ) from None

    wrapper.__name__ = parse.__name__
    wrapper.__doc__ = parse.__doc__
    return wrapper


def _required_client_id(request: OrderRequest) -> str:
    if not request.client_order_id:
        raise OrderRejected("Every real order needs a client_order_id; TradingSession assigns one.", rule="required")
    return request.client_order_id


def _cancel_replace_data(body: str | None) -> dict[str, Any] | None:
    """The ``data`` of a cancel-replace answer that failed in part or whole (-2021/-2022), if
    ``body`` is one."""
    data = _json_answer(body).get("data")
    return data if isinstance(data, dict) and "cancelResult" in data else None


def _json_answer(body: str | None) -> dict[str, Any]:
    """A JSON object answer, or ``{}`` when ``body`` is not one."""
    try:
        answer = json.loads(body or "")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _first_time(*times: Any) -> int:
    """The first real time of ``times``: ccxt reads a stop's ``workingTime`` -1 (Binance's "not
    working yet", in an order list's answer) as the order's timestamp."""
    return next((int(t) for t in times if t and int(t) > 0), 0)


@parsed
def order_from_ccxt(o: Mapping[str, Any]) -> Order:
    """A ccxt order (from REST or the user data stream) as the workbench's Order."""
    info = o.get("info") or {}
    status = (
        info.get("status")
        or info.get("X")
        or {"open": "NEW", "closed": "FILLED", "canceled": "CANCELED"}.get(o.get("status"), "NEW")
    )
    raw_type = info.get("type") or info.get("o") or str(o.get("type", "")).upper()
    tif = o.get("timeInForce") or info.get("timeInForce") or info.get("f")
    order_type = OrderType(raw_type)
    amount = _d(o.get("amount"))
    quote = _d(info.get("origQuoteOrderQty") or info.get("Q"))
    if order_type is OrderType.MARKET and (amount is None or amount == 0) and quote:
        amount = None
    order = Order(
        symbol=o["symbol"],
        side=Side(o["side"]),
        type=order_type,
        amount=amount,
        price=_d(o.get("price")) if order_type is not OrderType.MARKET else None,
        stop_price=_d(o.get("triggerPrice") or o.get("stopPrice")) if order_type.is_stop else None,
        time_in_force=TimeInForce(tif) if tif and order_type not in (OrderType.MARKET, OrderType.LIMIT_MAKER) else None,
        # a cancel's answer and event name the order's own id origClientOrderId / C; clientOrderId is the cancel's
        client_order_id=info.get("origClientOrderId") or info.get("C") or o.get("clientOrderId") or info.get("c"),
        id=str(o["id"]),
        quote_amount=quote if quote else None,
        status=OrderStatus(status),
        filled=_d(o.get("filled")) or ZERO,
        cost=_d(o.get("cost")) or ZERO,
        timestamp=_first_time(o.get("timestamp"), info.get("transactTime"), info.get("O")),
        last_update=_first_time(o.get("lastUpdateTimestamp"), o.get("timestamp"), info.get("transactTime")),
    )
    if order.type is OrderType.MARKET and order.status.is_final and order.amount is None:
        order.amount = order.filled
    return order


@parsed
def fill_from_ccxt(t: Mapping[str, Any], client_order_id: str) -> Fill:
    """A ccxt trade as the workbench's Fill."""
    fee = t.get("fee") or {}
    return Fill(
        trade_id=str(t["id"]),
        order_id=str(t["order"]),
        client_order_id=client_order_id,
        symbol=t["symbol"],
        side=Side(t["side"]),
        price=_d(t["price"]),  # type: ignore[arg-type]
        amount=_d(t["amount"]),  # type: ignore[arg-type]
        cost=_d(t["cost"]),  # type: ignore[arg-type]
        fee=_d(fee.get("cost")) or ZERO,
        fee_currency=fee.get("currency") or "",
        is_maker=t.get("takerOrMaker") == "maker",
        timestamp=int(t["timestamp"]),
    )


@parsed
def order_list_from_binance(raw: Mapping[str, Any], symbol: str) -> tuple[OrderList, tuple[str, ...]]:
    """A Binance order list (a REST answer, or a ``listStatus`` event read as one by
    :func:`list_status_as_answer`) as the workbench's OrderList, and its orders' client order ids.
    Binance names an OTOCO ``OTO``: it is the OTO with three orders."""
    orders = raw["orders"]
    kind = ContingencyType(raw["contingencyType"])
    kind = ContingencyType.OTOCO if kind is ContingencyType.OTO and len(orders) == 3 else kind
    at = int(raw.get("transactionTime") or 0)
    order_list = OrderList(
        int(raw["orderListId"]),
        raw["listClientOrderId"],
        symbol,
        kind,
        tuple(str(o["orderId"]) for o in orders),
        ListStatusType(raw["listStatusType"]),
        ListOrderStatus(raw["listOrderStatus"]),
        at,
        at,
    )
    return order_list, tuple(str(o["clientOrderId"]) for o in orders)


def list_status_as_answer(event: Mapping[str, Any]) -> dict[str, Any]:
    """A user data stream ``listStatus`` event in the shape of a REST order list answer."""
    names = {"g": "orderListId", "c": "contingencyType", "l": "listStatusType", "L": "listOrderStatus",
             "C": "listClientOrderId", "T": "transactionTime", "s": "symbol"}  # fmt: skip
    answer: dict[str, Any] = {names[k]: v for k, v in event.items() if k in names}
    answer["orders"] = [{"orderId": o.get("i"), "clientOrderId": o.get("c")} for o in event.get("O") or []]
    return answer


# Binance's order-list endpoints (ccxt's implicit methods) and each leg's parameter prefix
_LIST_PLACEMENT = {
    ContingencyType.OCO: ("privatePostOrderListOco", ("above", "below")),
    ContingencyType.OTO: ("privatePostOrderListOto", ("working", "pending")),
    ContingencyType.OTOCO: ("privatePostOrderListOtoco", ("working", "pendingAbove", "pendingBelow")),
}


def _plain(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def list_params(request: OrderListRequest, market_id: str) -> dict[str, str]:
    """The parameters of Binance's ``POST orderList/oco|oto|otoco`` for ``request``: each leg's
    under its prefix; side and quantity shared by an OCO and by an OTOCO's pending pair."""
    kind = request.contingency_type
    params: dict[str, Any] = {
        "symbol": market_id,
        "listClientOrderId": request.list_client_order_id,
        "newOrderRespType": "FULL",
        "selfTradePreventionMode": request.orders[0].self_trade_prevention.value,
    }
    for prefix, leg in zip(_LIST_PLACEMENT[kind][1], request.orders, strict=True):
        # where side and quantity go: the list's (OCO), the pending pair's (OTOCO) or the leg's own
        owner = "pending" if kind is ContingencyType.OTOCO and prefix != "working" else prefix
        side, quantity = ("side", "quantity") if kind is ContingencyType.OCO else (f"{owner}Side", f"{owner}Quantity")
        params |= {side: leg.side.value.upper(), quantity: leg.amount}
        fields = {
            "Type": leg.type.value,
            "ClientOrderId": leg.client_order_id,
            "Price": leg.price,
            "StopPrice": leg.stop_price,
            "TrailingDelta": leg.trailing_delta,
            "IcebergQty": leg.iceberg_amount,
            "TimeInForce": leg.time_in_force and leg.time_in_force.value,
        }
        params |= {prefix + name: value for name, value in fields.items() if value is not None}
    return {name: _plain(value) for name, value in params.items()}


def binance_error(error: ccxt_async.BaseError, last_body: str | None = None) -> tuple[int | None, str]:
    """Binance's ``code`` and ``msg`` from a ccxt exception. ccxt puts the JSON body in the text,
    except where it matched the message alone; then the body is ``last_body`` (the client's last
    response) if its message is the one in the exception."""
    text = str(error)
    for candidate in (text[text.find("{") :] if "{" in text else None, last_body):
        try:
            body = json.loads(candidate or "")
        except ValueError:
            continue
        if isinstance(body, dict) and "code" in body and (candidate != last_body or str(body.get("msg")) in text):
            return body.get("code"), body.get("msg", text)
    return None, text


def rejection(error: ccxt_async.BaseError, field: str = "order", last_body: str | None = None) -> OrderRejected:
    """The workbench error for a venue's rejection, with Binance's code and message."""
    code, msg = binance_error(error, last_body)
    text = f"The venue rejected the order: {msg} (Binance code {code})."
    if code == -1013 and msg.startswith("Filter failure: "):
        rule = msg.removeprefix("Filter failure: ")
        return FilterError(text, code=code, msg=msg, field=field, rule=rule)
    if code == -1121:
        return UnknownSymbol(text, code=code, msg=msg, field="symbol", rule="listed")
    if isinstance(error, ccxt_async.InsufficientFunds) or "insufficient balance" in msg:
        return InsufficientBalance(text, code=code, msg=msg, field="amount", rule="balance")
    return OrderRejected(text, code=code, msg=msg, field=field, rule="venue")


class RateLimiter:
    """Tracks Binance's used request weight and bans; decides how long to wait before a request."""

    def __init__(self, weight_limit: int = 6000, slow_down_at: float = 0.9) -> None:
        self.weight_limit = weight_limit
        self.slow_down_at = slow_down_at
        self.used_weight = 0
        self.banned_until = 0.0
        self.waited = 0.0

    def observe(self, headers: Mapping[str, str] | None) -> None:
        for key, value in (headers or {}).items():
            if key.lower() == "x-mbx-used-weight-1m":
                self.used_weight = int(value)

    def retry_after(self, headers: Mapping[str, str] | None, default: float = 1.0) -> float:
        for key, value in (headers or {}).items():
            if key.lower() == "retry-after":
                return float(value)
        return default

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request: until the ban ends, or until the next minute
        when the weight used is near the limit."""
        if now < self.banned_until:
            raise ExchangeError(
                f"Binance banned this IP for sending on after rate limits (HTTP 418) until "
                f"{time.strftime('%H:%M:%S', time.gmtime(self.banned_until))} UTC; the workbench waits until then.",
                code=-1003,
            )
        if self.used_weight >= self.weight_limit * self.slow_down_at:
            return 60.0 - now % 60.0
        return 0.0


class BinanceExecutor:
    """Real orders on one Binance Spot account (or a local exchange speaking its API)."""

    def __init__(
        self,
        mode: TradingMode,
        rules: Mapping[str, SymbolRules],
        credentials: Credentials | None,
        *,
        venue_url: str | None = None,
        reconcile_every: float = 30.0,
        limiter: RateLimiter | None = None,
        client: BinanceClient | None = None,
        guard: MainnetGuard | None = None,
    ) -> None:
        """For MAINNET, ``guard`` is the :class:`~workbench.config.MainnetGuard` (else
        :class:`MainnetGuardError`); a ``client`` given must be a :class:`BinanceClient` of ``mode``."""
        self.mode = mode
        self.rules = dict(rules)
        self.client = client or make_client(mode, credentials, venue_url, guard=guard)
        if not (isinstance(self.client, BinanceClient) and self.client.mode is mode):
            raise ConfigError(f"A {mode} executor needs a {mode} client from make_client().")
        self.venue = venue_url or self.client.urls["api"]["public"]
        self.account = "testnet account" if mode is TradingMode.TESTNET else "mainnet account"
        self.limiter = limiter or RateLimiter()
        self.reconcile_every = reconcile_every
        self.discrepancies: list[str] = []
        self._listeners: list[Listener] = []
        self._orders: dict[str, Order] = {}  # client order id -> latest state
        self._client_ids: dict[str, str] = {}  # venue order id -> client order id
        self._trades: dict[tuple[str, str], Fill] = {}  # (symbol, trade id) -> fill
        self._filled: dict[str, Decimal] = {}  # client order id -> the amount its known trades add up to
        self._trades_from: dict[str, int] = {}  # symbol -> first trade id reconcile has not yet merged
        self._lists: dict[str, OrderList] = {}  # list client order id -> latest state
        self._list_legs: dict[str, tuple[str, ...]] = {}  # list client order id -> its orders' client order ids
        self._list_of: dict[str, str] = {}  # client order id of an order of a list -> the list's
        self.trades_page = 1000  # trades a myTrades request returns at most
        self._tasks: list[asyncio.Task[None]] = []
        self._gaps: set[str] = set()  # client order ids whose missing fills are being fetched
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self._stream_errors = 0
        self._started = False
        self.market_prices: dict[str, Decimal] = {}  # the latest trade price each bar stream showed
        self.client.list_status_handlers.append(self._on_list_status)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, known: Mapping[str, Order] | None = None) -> None:
        """Load markets, sync the clock, reconcile with what the store ``known``, and start the user
        data stream and the periodic reconciliation."""
        if self._started:
            return
        self._started = True
        for order in (known or {}).values():
            self._orders[order.client_order_id] = order
            if order.id:
                self._client_ids[order.id] = order.client_order_id
        await self._call(self.client.load_markets)
        await self._sync_time()
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(self._stream(self.client.watch_orders, self._on_stream_orders), name="watch_orders"),
            asyncio.create_task(
                self._stream(self.client.watch_my_trades, self._on_stream_trades), name="watch_my_trades"
            ),
            asyncio.create_task(self._reconcile_forever(), name="reconcile"),
        ]

    async def close(self) -> None:
        tasks = [*self._tasks, *self._gap_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        await self.client.close()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update_price(self, symbol: str, price: Decimal, timestamp: int) -> None:
        """The venue has its own market: nothing to do."""

    def now(self) -> int:
        return int(self.client.milliseconds())

    async def watch_bars(self, symbol: str, timeframe: str = "1m") -> AsyncIterator[pd.Series]:
        """The venue's closed bars of ``symbol`` as they close (a bar is closed once the next opens),
        each a Series named by its open time with open, high, low, close, volume and close_time."""
        last: list[float] | None = None
        drops = 0
        while True:
            try:
                candles = await self.client.watch_ohlcv(symbol, timeframe)
            except ccxt_async.NetworkError as e:  # the venue restarted or the connection dropped (1006)
                drops += 1
                log.warning("bar stream %s dropped: %s; reconnecting", symbol, e)
                await asyncio.sleep(min(0.1 * 2**drops, 5.0))
                continue
            if drops:
                drops = 0
                await self._reconcile_quietly("after the bar stream reconnected")
            bars, last = closed_bars(last, candles)
            # the forming candle's close: the price now, for an order's arrival price
            self.market_prices.update({symbol: Decimal(str(last[4]))} if last else {})
            for bar in bars:
                yield bar

    async def _reconcile_quietly(self, when: str) -> None:
        """Reconcile, logging (not raising) a failure: the next reconcile settles what this missed."""
        try:
            await self.reconcile()
        except (ccxt_async.BaseError, ExchangeError) as e:
            log.warning("reconcile %s failed: %s", when, e)

    # -- orders -----------------------------------------------------------------------------

    async def create_order(self, request: OrderRequest) -> Order:
        cid = _required_client_id(request)
        try:
            raw = await self._place(request)
        except VenueUnavailable as e:
            log.warning("create_order %s: answer lost (%s); looking it up by client order id", cid, e.__cause__)
            try:
                raw = await self._resolve_lost(request, e)
            except ExchangeError:
                unresolved = Order.from_request(request, cid, self.now())
                unresolved.status = OrderStatus.PENDING_NEW
                self._accept(unresolved)  # known now: reconcile() settles it with the venue
                raise
        return self._accept_placed(request, raw)

    def _accept_placed(self, request: OrderRequest, raw: dict[str, Any]) -> Order:
        """Record a placed order and the trades its answer carries."""
        self._accept_reported(raw)
        return self._orders[request.client_order_id].snapshot()

    async def edit_order(self, client_order_id: str, request: OrderRequest) -> Order:
        """Cancel the open order ``client_order_id`` and place ``request`` (same symbol, its own
        client order id) in one request: ccxt's ``edit_order``, Binance's ``order/cancelReplace``
        with STOP_ON_FAILURE (if the cancel fails nothing is placed). Both orders are recorded;
        returns the new one. A lost answer leaves the new order PENDING_NEW for reconcile()."""
        cid = _required_client_id(request)
        type_, params = self._ccxt_type_and_params(request)
        params["cancelOrigClientOrderId"] = client_order_id
        amount = float(request.amount) if request.amount is not None else None
        price = float(request.price) if request.price is not None else None
        edit = self.client.edit_order
        try:
            raw = await self._call(edit, None, request.symbol, type_, request.side.value, amount, price, params)
        except VenueUnavailable:
            unresolved = Order.from_request(request, cid, self.now())
            unresolved.status = OrderStatus.PENDING_NEW
            self._accept(unresolved)  # known now: reconcile() settles it (and the old one) with the venue
            raise
        except ccxt_async.ExchangeError as e:
            data = _cancel_replace_data(self.client.last_http_response)
            if data is None:  # refused before anything was done
                raise rejection(e, last_body=self.client.last_http_response) from None
            self._accept_cancel(client_order_id, data["cancelResponse"], request.symbol)
            if data["cancelResult"] == "FAILURE":
                code, msg = data["cancelResponse"].get("code"), data["cancelResponse"].get("msg")
                raise OrderNotFound(f"Cannot edit {client_order_id} on {request.symbol}: {msg} (Binance code {code}); "
                                    "nothing was placed.") from None  # fmt: skip
            code, msg = data["newOrderResponse"].get("code"), data["newOrderResponse"].get("msg")
            raise OrderRejected(f"The venue canceled {client_order_id} but rejected its replacement: {msg} (Binance "
                                f"code {code}).", code=code, msg=msg, rule="venue") from None  # fmt: skip
        answer = _json_answer(self.client.last_http_response)
        self._accept_cancel(client_order_id, answer.get("cancelResponse"), request.symbol)
        return self._accept_placed(request, raw)

    def _accept_cancel(self, client_order_id: str, response: Any, symbol: str) -> None:
        """Record the cancel half of a cancel-replace answer, when it is this order's cancel."""
        if isinstance(response, dict) and response.get("origClientOrderId") == client_order_id:
            self._accept(order_from_ccxt(self.client.parse_order(response, self.client.market(symbol))))

    async def _place(self, request: OrderRequest) -> dict[str, Any]:
        """Send ``request`` once. The venue's refusals become :class:`OrderRejected`; an answer that
        never came is :class:`VenueUnavailable` (the order may exist)."""
        type_, params = self._ccxt_type_and_params(request)
        amount = float(request.amount) if request.amount is not None else None
        price = float(request.price) if request.price is not None else None
        side = request.side.value
        create = self.client.create_order
        return await self._refusals_rejected(
            lambda: self._call(create, request.symbol, type_, side, amount, price, params)
        )

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        try:
            raw = await self._call(self.client.cancel_order, None, symbol, {"origClientOrderId": client_order_id})
        except (ccxt_async.OrderNotFound, ccxt_async.InvalidOrder, ccxt_async.OperationRejected) as e:
            code, msg = binance_error(e)
            raise OrderNotFound(f"Cannot cancel {client_order_id} on {symbol}: {msg} (Binance code {code}).") from None
        return self._accept(order_from_ccxt(raw)).snapshot()

    async def cancel_all_orders(self, symbol: str) -> list[Order]:
        """Cancel every open order of ``symbol`` on the account (not only this session's); Binance
        answers an order list's cancel as the list, with its orders' cancels in ``orderReports``."""
        if not await self.fetch_open_orders(symbol):
            return []
        raws = await self._call(self.client.cancel_all_orders, symbol)
        canceled = []
        for raw in raws:
            info = raw.get("info") or {}
            if "contingencyType" not in info:
                canceled.append(self._accept(order_from_ccxt(raw)).snapshot())
                continue
            order_list = await self._accept_list_answer(info, symbol)
            legs = self._list_legs[order_list.list_client_order_id]
            canceled += [self._orders[c].snapshot() for c in legs if self._orders[c].status is OrderStatus.CANCELED]
        return canceled

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        try:
            raw = await self._call(self.client.fetch_order, None, symbol, {"origClientOrderId": client_order_id})
        except ccxt_async.OrderNotFound:
            raise OrderNotFound(f"The venue has no order {client_order_id} on {symbol}.") from None
        return self._accept(order_from_ccxt(raw)).snapshot()

    # -- order lists ------------------------------------------------------------------------

    async def create_order_list(self, request: OrderListRequest) -> OrderList:
        """Place an OCO, OTO or OTOCO through Binance's ``orderList/*`` endpoints (ccxt's implicit
        methods), every leg with its client order id. A lost answer is settled by looking the list up
        by ``list_client_order_id`` (sent again only if the venue never saw it); when that fails too,
        the list and its legs wait, unacknowledged, for reconcile() and :class:`ExchangeError` is raised."""
        list_id = request.list_client_order_id
        if not list_id:
            raise OrderRejected("Every real order list needs a list_client_order_id; TradingSession assigns one.",
                                rule="required")  # fmt: skip
        for leg in request.orders:
            _required_client_id(leg)
        try:
            raw = await self._place_list(request)
        except VenueUnavailable as e:
            log.warning("create_order_list %s: answer lost (%s); looking it up by list client order id", list_id,
                        e.__cause__)  # fmt: skip
            try:
                raw = await self._find_or_resend(
                    lambda: self._call(self.client.privateGetOrderList, {"origClientOrderId": list_id}),
                    lambda: self._place_list(request),
                    f"Order list {list_id} on {request.symbol}",
                    e,
                )
            except ExchangeError:
                now = self.now()
                for leg in request.orders:
                    unresolved = Order.from_request(leg, leg.client_order_id, now)  # type: ignore[arg-type]
                    unresolved.status = OrderStatus.PENDING_NEW
                    self._accept(unresolved)
                legs = tuple(leg.client_order_id for leg in request.orders)  # type: ignore[misc]
                unsent = OrderList(-1, list_id, request.symbol, request.contingency_type, (), timestamp=now)
                self._track_list(unsent, legs)  # reconcile() settles it
                raise
        return await self._accept_list_answer(raw, request.symbol)

    async def _place_list(self, request: OrderListRequest) -> dict[str, Any]:
        """Send ``request`` once; refusals become :class:`OrderRejected`, a lost answer :class:`VenueUnavailable`."""
        method = getattr(self.client, _LIST_PLACEMENT[request.contingency_type][0])
        params = list_params(request, self.client.market_id(request.symbol))
        return await self._refusals_rejected(lambda: self._call(method, params))

    async def _refusals_rejected(self, send: Callable[[], Awaitable[T]]) -> T:
        """``send()``, with the venue's refusals as :class:`OrderRejected`."""
        try:
            return await send()
        except VenueUnavailable:
            raise
        except ExchangeError as e:  # banned, rate limited or the clock off: the venue processed nothing
            raise OrderRejected(str(e), code=e.code, msg="Not processed.", rule="rate_limit") from None
        except (
            ccxt_async.InvalidOrder,
            ccxt_async.BadRequest,
            ccxt_async.BadSymbol,
            ccxt_async.InsufficientFunds,
        ) as e:
            raise rejection(e, last_body=self.client.last_http_response) from None

    async def _accept_list_answer(self, raw: dict[str, Any], symbol: str) -> OrderList:
        """Record an order list answer: its orders (with the fills a FULL answer carries; the legs a
        status answer only names are fetched), then the list."""
        order_list, legs = order_list_from_binance(raw, symbol)
        market = self.client.market(symbol)
        for report in raw.get("orderReports") or []:
            order = self.client.parse_order(report, market)
            self._accept_reported(order)
        for cid in legs:
            if cid not in self._orders:
                await self.fetch_order(cid, symbol)
        return self._accept_list(order_list, legs).snapshot()

    def _accept_reported(self, raw: dict[str, Any]) -> Order:
        """Record an order a venue's answer reports, and the trades it carries."""
        order = self._accept(order_from_ccxt(raw))
        for trade in raw.get("trades") or []:
            placed = {"symbol": order.symbol, "side": order.side.value, "order": order.id}
            trade = {**trade, **placed, "timestamp": trade.get("timestamp") or order.last_update or order.timestamp}
            self._accept_fill(fill_from_ccxt(trade, order.client_order_id))
        return self._orders[order.client_order_id]

    async def cancel_order_list(self, list_client_order_id: str, symbol: str) -> OrderList:
        """Cancel every open order of a list (``DELETE orderList``); :class:`OrderNotFound` if it is not open."""
        params = {"symbol": self.client.market_id(symbol), "listClientOrderId": list_client_order_id}
        try:
            raw = await self._call(self.client.privateDeleteOrderList, params)
        except (ccxt_async.OrderNotFound, ccxt_async.InvalidOrder, ccxt_async.OperationRejected) as e:
            code, msg = binance_error(e)
            raise OrderNotFound(f"Cannot cancel the order list {list_client_order_id} on {symbol}: {msg} (Binance "
                                f"code {code}).") from None  # fmt: skip
        return await self._accept_list_answer(raw, symbol)

    async def fetch_order_list(self, list_client_order_id: str, symbol: str) -> OrderList:
        """The list with ``list_client_order_id`` (``GET orderList``), its orders fetched if unknown."""
        try:
            raw = await self._call(self.client.privateGetOrderList, {"origClientOrderId": list_client_order_id})
        except ccxt_async.OrderNotFound:
            raise OrderNotFound(f"The venue has no order list {list_client_order_id} on {symbol}.") from None
        return await self._accept_list_answer(raw, symbol)

    async def fetch_open_order_lists(self, symbol: str | None = None) -> list[OrderList]:
        """The account's open order lists (``GET openOrderList``), of ``symbol`` if given."""
        raws = await self._call(self.client.privateGetOpenOrderList, {})
        lists = []
        for raw in raws:
            listed = self.client.safe_symbol(raw.get("symbol"))
            if listed in self.rules and symbol in (None, listed):
                lists.append(await self._accept_list_answer(raw, listed))
        return lists

    def _on_list_status(self, event: dict[str, Any]) -> None:
        """A ``listStatus`` event of the user data stream (called by the client as it arrives)."""
        symbol = self.client.safe_symbol(event.get("s"))
        if symbol not in self.rules:
            return
        try:
            order_list, legs = order_list_from_binance(list_status_as_answer(event), symbol)
        except MalformedMessage as e:
            self.discrepancies.append(str(e))
            log.warning("user data stream: %s; reconcile() settles the list", e)
            return
        self._accept_list(order_list, legs)

    def _accept_list(self, order_list: OrderList, legs: tuple[str, ...]) -> OrderList:
        """Record a list update unless it moves the list backwards; tell the listeners (the event
        names one of its orders the executor knows; a list of no known order is only kept)."""
        list_id = order_list.list_client_order_id
        known = self._lists.get(list_id)
        if known is not None:
            if (not order_list.is_open, order_list.id >= 0) < (not known.is_open, known.id >= 0):
                return known
            order_list.timestamp = known.timestamp or order_list.timestamp
        self._track_list(order_list, legs)
        leg = next((self._orders[cid] for cid in legs if cid in self._orders), None)
        if leg is not None:
            self._emit(Execution("LIST_STATUS", leg.snapshot(), order_list=order_list.snapshot()))
        if not order_list.is_open:
            self._settle_later(order_list.symbol, legs)
        return order_list

    def _track_list(self, order_list: OrderList, legs: tuple[str, ...]) -> None:
        list_id = order_list.list_client_order_id
        self._lists[list_id], self._list_legs[list_id] = order_list, legs
        self._list_of.update(dict.fromkeys(legs, list_id))

    def _settle_later(self, symbol: str, cids: tuple[str, ...]) -> None:
        """Orders of a list that the venue has just changed (one leg ended, so the others expire or
        go on the book; or the list ended) and that read open here: the stream reports them, else
        REST does, after a grace."""
        waiting = {cid: self._orders[cid].status for cid in cids if cid in self._orders and self._orders[cid].is_open}
        if waiting:
            task = asyncio.create_task(self._settle(symbol, waiting), name=f"settle {', '.join(waiting)}")
            self._gap_tasks.add(task)
            task.add_done_callback(self._gap_tasks.discard)

    async def _settle(self, symbol: str, waiting: dict[str, OrderStatus], grace: float = 0.5) -> None:
        """Give the stream ``grace`` seconds to report the ``waiting`` orders (ccxt hands over a
        stream's last update only when another message arrives), then fetch those it did not."""
        await asyncio.sleep(grace)
        try:
            for cid, status in waiting.items():
                if self._orders[cid].status is status:
                    await self.fetch_order(cid, symbol)
        except (ccxt_async.BaseError, WorkbenchError) as e:
            log.warning("fetching the state of %s failed: %s; reconcile() will", list(waiting), e)

    async def _reconcile_lists(self) -> list[str]:
        """Settle the lists the workbench holds open: from the open lists, else one by one; a list the
        venue has never seen (a lost placement) is recorded REJECT."""
        if not any(lst.is_open for lst in self._lists.values()):
            return []
        found = []
        open_now = {lst.list_client_order_id for lst in await self.fetch_open_order_lists()}
        for list_id, known in list(self._lists.items()):
            if not known.is_open or list_id in open_now:
                continue
            try:
                latest = await self.fetch_order_list(list_id, known.symbol)
            except OrderNotFound:
                rejected = replace(known, list_status_type=ListStatusType.ALL_DONE,
                                   list_order_status=ListOrderStatus.REJECT)  # fmt: skip
                self._accept_list(rejected, self._list_legs[list_id])
                found.append(f"{list_id}: the order list never reached the venue; marked REJECT")
                continue
            found.append(f"{list_id}: order list {known.list_order_status} in the workbench, "
                         f"{latest.list_order_status} on the venue")  # fmt: skip
        return found

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        raws = await self._call(self.client.fetch_open_orders, symbol)
        return [self._accept(order_from_ccxt(raw)).snapshot() for raw in raws]

    async def fetch_balance(self) -> dict[str, Balance]:
        raw = await self._call(self.client.fetch_balance)
        return {
            b["asset"]: Balance(b["asset"], Decimal(b["free"]), Decimal(b["locked"]))
            for b in raw["info"].get("balances", [])
            if Decimal(b["free"]) or Decimal(b["locked"])
        }

    async def fetch_my_trades(self, symbol: str, since: int | None = None) -> list[Fill]:
        """The account's trades of ``symbol`` from ``since`` (one page; the latest without it)."""
        raws = await self._call(self.client.fetch_my_trades, symbol, since, self.trades_page)
        return await self._merge_trades(symbol, raws)

    async def _merge_trades(self, symbol: str, raws: list[dict[str, Any]]) -> list[Fill]:
        fills = []
        for raw in raws:
            cid = self._client_ids.get(str(raw["order"]))
            if cid is None:
                cid = (await self._order_by_id(str(raw["order"]), symbol)).client_order_id
            fills.append(self._accept_fill(fill_from_ccxt(raw, cid)) or self._trades[(symbol, str(raw["id"]))])
        return fills

    async def fetch_price(self, symbol: str) -> Decimal | None:
        ticker = await self._call(self.client.fetch_ticker, symbol)
        return _d(ticker.get("last"))

    # -- reconciliation ---------------------------------------------------------------------

    async def reconcile(self) -> list[str]:
        """Merge open orders, trades and the final state of orders that left the open list from
        REST; returns (and records in ``discrepancies``) what the stream had missed."""
        found: list[str] = []
        open_now = {o.client_order_id for o in await self.fetch_open_orders()}
        for cid, order in list(self._orders.items()):
            if order.is_open and cid not in open_now:
                try:
                    latest = await self.fetch_order(cid, order.symbol)
                except OrderNotFound:
                    latest = order.snapshot()
                    latest.status = OrderStatus.REJECTED
                    self._accept(latest)
                    found.append(f"{cid}: never reached the venue; marked REJECTED")
                    continue
                found.append(f"{cid}: {order.status} in the workbench, {latest.status} on the venue")
        found += await self._reconcile_lists()
        for symbol in sorted({o.symbol for o in self._orders.values()}):
            before = len(self._trades)
            await self._reconcile_trades(symbol)
            if len(self._trades) > before:
                found.append(f"{symbol}: {len(self._trades) - before} fill(s) recovered from REST")
        self.discrepancies.extend(found)
        for text in found:
            log.warning("reconcile: %s", text)
        return found

    async def _reconcile_trades(self, symbol: str) -> None:
        """Merge every trade of ``symbol`` reconcile has not merged yet: from the first order's time
        the first time, then onwards by trade id, a page at a time."""
        while True:
            if symbol in self._trades_from:
                since, params = None, {"fromId": self._trades_from[symbol]}
            else:
                since, params = min(o.timestamp for o in self._orders.values() if o.symbol == symbol), {}
            raws = await self._call(self.client.fetch_my_trades, symbol, since, self.trades_page, params)
            await self._merge_trades(symbol, raws)
            if raws:
                self._trades_from[symbol] = max(int(raw["id"]) for raw in raws) + 1
            if len(raws) < self.trades_page:
                return

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_every)
            try:
                await self.reconcile()
            except (ccxt_async.BaseError, ExchangeError) as e:
                log.warning("periodic reconcile failed: %s", e)

    async def _resolve_lost(self, request: OrderRequest, error: Exception) -> dict[str, Any]:
        """The answer to create_order was lost: find the order by client order id (see :meth:`_find_or_resend`)."""
        cid, symbol = request.client_order_id, request.symbol
        return await self._find_or_resend(
            lambda: self._call(self.client.fetch_order, None, symbol, {"origClientOrderId": cid}),
            lambda: self._place(request),
            f"Order {cid} on {symbol}",
            error,
        )

    async def _find_or_resend(
        self,
        find: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[], Awaitable[dict[str, Any]]],
        what: str,
        error: Exception,
    ) -> dict[str, Any]:
        """An answer was lost: ``find`` what was sent by its client id; only if the venue has never
        seen it, ``send`` it once more (the same id cannot be placed twice). A refusal of the resend
        is an :class:`OrderRejected`; when the venue cannot be asked, :class:`ExchangeError`."""
        resent = False
        for _ in range(3):
            try:
                return await find()
            except ccxt_async.OrderNotFound:
                if resent:
                    break
            except VenueUnavailable:
                continue
            resent = True
            try:
                return await send()
            except VenueUnavailable:
                continue
        raise ExchangeError(
            f"{what}: the venue's answer was lost ({type(error).__name__}) and it could not be "
            "found; reconcile() will settle it. Nothing was sent twice.",
            code=-1007,
        )

    async def _order_by_id(self, order_id: str, symbol: str) -> Order:
        raw = await self._call(self.client.fetch_order, order_id, symbol)
        return self._accept(order_from_ccxt(raw))

    # -- the user data stream ---------------------------------------------------------------

    async def _stream(
        self, watch: Callable[[], Awaitable[list[dict[str, Any]]]], handle: Callable[[list], None]
    ) -> None:
        """Watch one user data stream forever. After a drop (or a message that could not be read)
        it resubscribes, then reconciles with REST what it may have missed meanwhile."""
        reconnected = False
        while True:
            updates = asyncio.ensure_future(watch())
            if reconnected:
                reconnected = False
                await asyncio.sleep(0)  # let the new subscription go out before asking REST
                await self._reconcile_quietly("after reconnect")
            try:
                batch = await updates
            except (ccxt_async.NetworkError, ccxt_async.ExchangeError) as e:
                self._stream_errors += 1
                log.warning("user data stream %s dropped: %s; reconnecting", watch.__name__, e)
                await asyncio.sleep(min(0.1 * self._stream_errors, 2.0))
                reconnected = True
                continue
            try:
                handle(batch)
            except MalformedMessage as e:
                self.discrepancies.append(str(e))
                log.warning("user data stream: %s; reconciling", e)
                reconnected = True  # settle what the message meant from REST

    def _on_stream_orders(self, updates: list[dict[str, Any]]) -> None:
        for raw in updates:
            if raw.get("symbol") in self.rules:
                self._watch_gap(self._accept(order_from_ccxt(raw)))

    def _filled_by_trades(self, order: Order) -> Decimal:
        return self._filled.get(order.client_order_id, ZERO)

    def _watch_gap(self, order: Order) -> None:
        """If ``order`` and its trades disagree on how much it filled, close the gap soon."""
        if order.filled != self._filled_by_trades(order) and order.client_order_id not in self._gaps:
            self._gaps.add(order.client_order_id)
            task = asyncio.create_task(self._close_gap(order), name=f"gap {order.id}")
            self._gap_tasks.add(task)
            task.add_done_callback(self._gap_tasks.discard)

    async def _close_gap(self, order: Order, grace: float = 0.5) -> None:
        """An order and its trades disagree on how much it filled: give the streams ``grace`` seconds
        to catch up, then ask REST for what lags. (ccxt hands a stream's update to the next watch
        call only when another message arrives, so the last update of a burst can wait.)"""
        await asyncio.sleep(grace)
        try:
            latest = self._orders[order.client_order_id]
            if self._filled_by_trades(latest) > latest.filled:
                params = {"origClientOrderId": latest.client_order_id}  # its own update lags
                self._accept(order_from_ccxt(await self._call(self.client.fetch_order, None, latest.symbol, params)))
            elif latest.filled > self._filled_by_trades(latest):
                params = {"orderId": latest.id}
                raws = await self._call(self.client.fetch_my_trades, latest.symbol, None, None, params)
                recovered = [f for raw in raws if (f := self._accept_fill(fill_from_ccxt(raw, latest.client_order_id)))]
                self.discrepancies.append(
                    f"{latest.client_order_id}: filled {latest.filled} but its trades lagged; "
                    f"{len(recovered)} fill(s) fetched from REST"
                )
        except (ccxt_async.BaseError, ExchangeError) as e:
            log.warning("fetching the missing fills of %s failed: %s; reconcile() will", order.client_order_id, e)
        finally:
            self._gaps.discard(order.client_order_id)

    def _on_stream_trades(self, updates: list[dict[str, Any]]) -> None:
        for raw in updates:
            info = raw.get("info") or {}
            cid = info.get("c") or self._client_ids.get(str(raw.get("order")))
            if cid and raw.get("symbol") in self.rules:
                self._accept_fill(fill_from_ccxt(raw, cid))
                if cid in self._orders:
                    self._watch_gap(self._orders[cid])

    # -- state ------------------------------------------------------------------------------

    def _accept(self, order: Order) -> Order:
        """Record an order update if it moves the order forward; tell the listeners."""
        if order.id:
            self._client_ids[order.id] = order.client_order_id
        known = self._orders.get(order.client_order_id)
        forward = known is None or (order.status.rank, order.filled) > (known.status.rank, known.filled)
        if known is not None and not forward:
            return known
        if known is not None:
            order.fees = known.fees
        self._orders[order.client_order_id] = order
        self._emit(Execution(order.status.value, order.snapshot()))
        list_id = self._list_of.get(order.client_order_id)
        if list_id is not None and order.status.is_final:  # the list's other orders change now
            self._settle_later(order.symbol, self._list_legs[list_id])
        return order

    def _accept_fill(self, fill: Fill) -> Fill | None:
        """Record a fill once per trade id; tell the listeners."""
        key = (fill.symbol, fill.trade_id)
        if key in self._trades:
            return None
        self._trades[key] = fill
        self._filled[fill.client_order_id] = self._filled.get(fill.client_order_id, ZERO) + fill.amount
        order = self._orders.get(fill.client_order_id)
        if order is not None:
            order.fees[fill.fee_currency] = order.fees.get(fill.fee_currency, ZERO) + fill.fee
            snapshot = order.snapshot()
        else:
            snapshot = Order(
                fill.symbol, fill.side, OrderType.MARKET, None, None, None, None, fill.client_order_id, id=fill.order_id
            )
        self._emit(Execution("TRADE", snapshot, fill))
        return fill

    def _emit(self, event: Execution) -> None:
        for listener in self._listeners:
            listener(event)

    # -- requests ---------------------------------------------------------------------------

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One request with Binance's rate-limit and clock rules: wait for the limiter, stop on 418,
        honour Retry-After once on 429, resync the clock once on -1021; never loop on errors."""
        try:
            return await self._send(method, *args)
        except ccxt_async.InvalidNonce:
            await self._sync_time()
        except ccxt_async.DDoSProtection:  # 429 (a 418 is an ExchangeError already)
            await asyncio.sleep(self.limiter.retry_after(self.client.last_response_headers))
        try:
            return await self._send(method, *args)
        except (ccxt_async.DDoSProtection, ccxt_async.InvalidNonce) as e:  # twice: give up, never loop
            limited = isinstance(e, ccxt_async.DDoSProtection)
            raise ExchangeError(
                f"{'Rate limited' if limited else 'Refused for the clock'} twice in a row ({e}); giving up on "
                "this request.",
                code=-1003 if limited else -1021,
            ) from None

    async def _send(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        delay = self.limiter.delay(time.time())
        if delay:
            self.limiter.waited += delay
            await asyncio.sleep(delay)
        try:
            result = await method(*args)
        except ccxt_async.DDoSProtection as e:  # ccxt: 429 RateLimitExceeded, 418 DDoSProtection
            self.limiter.observe(self.client.last_response_headers)
            if "418" in str(e) or "banned" in str(e).lower():
                wait = self.limiter.retry_after(self.client.last_response_headers, 120.0)
                self.limiter.banned_until = time.time() + wait
                raise ExchangeError(
                    f"Binance banned this IP for {wait:.0f}s (HTTP 418); stopping until then.", code=-1003
                ) from None
            raise
        except ccxt_async.InvalidNonce:
            raise
        except AMBIGUOUS as e:
            raise VenueUnavailable(
                f"The venue did not answer {getattr(method, '__name__', 'a request')} ({type(e).__name__}): "
                "it may or may not have taken effect."
            ) from e
        self.limiter.observe(self.client.last_response_headers)
        return result

    async def _sync_time(self) -> None:
        """Correct the local clock against the venue's (Binance -1021)."""
        self.client.options["adjustForTimeDifference"] = True
        await self.client.load_time_difference()

    @staticmethod
    def _ccxt_type_and_params(request: OrderRequest) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"newClientOrderId": request.client_order_id}
        if request.time_in_force is not None:
            params["timeInForce"] = request.time_in_force.value
        if request.stop_price is not None:
            params["stopPrice"] = float(request.stop_price)
        if request.quote_amount is not None:
            params["quoteOrderQty"] = float(request.quote_amount)
        if request.trailing_delta is not None:  # ccxt sends trailingPercent * 100 as trailingDelta (BIPS)
            params["trailingPercent"] = str(Decimal(request.trailing_delta) / 100)
        if request.type is OrderType.MARKET:
            return "market", params
        if request.type is OrderType.LIMIT:
            return "limit", params
        return request.type.value, params
