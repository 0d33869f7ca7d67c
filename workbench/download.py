"""Download Binance's public kline archives (data.binance.vision) into the catalog, and ``workbench data``.

The archive layout is Binance's: ``data/spot/monthly/klines/<SYM>/<interval>/<SYM>-<interval>-YYYY-MM.zip``
for whole months and ``data/spot/daily/klines/...-YYYY-MM-DD.zip`` for the days around them, each
beside a ``.CHECKSUM`` file with its sha256. Every file is checked against it before a row of it is
kept; a month whose monthly file is missing is fetched day by day; transient failures are retried
with backoff, and a transfer cut short resumes where it stopped (HTTP ``Range``) from its
``.download/*.part`` file, also in the next run. Files already in the catalog are skipped. Then
:func:`workbench.loader.fetch_klines` tops up the newest bars through ``GET /api/v3/klines``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pandas as pd
from tqdm.auto import tqdm

from workbench.catalog import INTERVAL_MS, Catalog
from workbench.data import catalogs, data_dir, find_gaps, load_klines, symbol_id
from workbench.errors import ConfigError, DataError
from workbench.loader import FetchReport, fetch_klines

ARCHIVE_URL = "https://data.binance.vision"
REST_URL = "https://api.binance.com"


@dataclass(frozen=True)
class ArchiveFile:
    """One archive file: a whole month (``period="2023-06"``) or one day (``"2023-06-26"``)."""

    symbol: str
    interval: str
    period: str

    @property
    def monthly(self) -> bool:
        return len(self.period) == 7

    @property
    def name(self) -> str:
        return f"{self.symbol}-{self.interval}-{self.period}.zip"

    @property
    def path(self) -> str:
        kind = "monthly" if self.monthly else "daily"
        return f"data/spot/{kind}/klines/{self.symbol}/{self.interval}/{self.name}"

    @property
    def month(self) -> str:
        return self.period[:7]

    def days(self) -> list[ArchiveFile]:
        """The daily files of a monthly file."""
        first = dt.date.fromisoformat(self.period + "-01")
        last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
        return [ArchiveFile(self.symbol, self.interval, str(d.date())) for d in pd.date_range(first, last)]

    def held_by(self, sources: set[str]) -> bool:
        """Whether a month partition built from ``sources`` already holds this file's rows."""
        if self.name in sources:
            return True
        if self.monthly:
            return all(day.name in sources for day in self.days())
        return ArchiveFile(self.symbol, self.interval, self.month).name in sources


def plan(symbol: str, interval: str, start: dt.date, end: dt.date) -> list[ArchiveFile]:
    """The files covering ``start``..``end`` (inclusive): monthly files for whole months, daily ones else."""
    files: list[ArchiveFile] = []
    day = start
    while day <= end:
        month_end = (pd.Timestamp(day) + pd.offsets.MonthEnd(0)).date()
        if day.day == 1 and month_end <= end:
            files.append(ArchiveFile(symbol, interval, day.strftime("%Y-%m")))
            day = month_end + dt.timedelta(days=1)
        else:
            files.append(ArchiveFile(symbol, interval, str(day)))
            day += dt.timedelta(days=1)
    return files


@dataclass
class DownloadReport:
    """What a download did for one symbol: archive files ``fetched``, ``skipped`` (already in the
    catalog) and ``missing`` (not published), rows added from the archives, and the REST top-up."""

    symbol: str
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rows: int = 0
    rest: FetchReport | None = None


async def download(
    symbols: Sequence[str],
    *,
    start: str | dt.date,
    end: str | dt.date | None = None,
    interval: str = "1m",
    archive_url: str = ARCHIVE_URL,
    rest_url: str | None = REST_URL,
    folder: str | Path | None = None,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 0.5,
    concurrency: int = 4,
) -> list[DownloadReport]:
    """Fetch ``symbols``' ``interval`` klines from ``start`` to ``end`` (default: yesterday, the newest
    archive; the REST top-up then reaches now) into the catalog of ``folder`` (default: the data folder).

    Raises :class:`ConfigError` for a malformed or unknown symbol or a start after the end, and
    :class:`DataError` for a checksum mismatch or a corrupt archive (the file is refused, nothing of
    it kept) or a server that keeps failing."""
    first, last = _dates(start, end)
    if interval not in INTERVAL_MS:
        raise ConfigError(f"Unknown interval {interval!r}; use one of {', '.join(INTERVAL_MS)}.")
    ids = [_valid(s) for s in symbols]
    catalog = Catalog(Path(folder or data_dir()) / "binance")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    reports = []
    async with aiohttp.ClientSession(timeout=timeout) as http:
        fetcher = _Fetcher(http, catalog, archive_url.rstrip("/"), retries, backoff, concurrency)
        for sid in ids:
            files = plan(sid, interval, first, last)
            report = DownloadReport(sid)
            with tqdm(total=len(files), unit="file", desc=sid, disable=not progress) as bar:
                try:
                    async with asyncio.TaskGroup() as group:
                        for file in files:
                            group.create_task(fetcher.fetch(file, report, bar))
                except ExceptionGroup as failed:  # the first error stops the download; it says what to do
                    raise failed.exceptions[0] from None
            if not report.fetched and not report.skipped:
                raise ConfigError(
                    f"Unknown symbol {sid}: {archive_url} has no {interval} klines of it from {first} to {last}; "
                    "check the symbol (e.g. BTCUSDT) and the dates."
                )
            if rest_url:
                until = None if end is None else _ms(last + dt.timedelta(days=1)) - 1
                report.rest = await fetch_klines(
                    http, rest_url.rstrip("/"), sid, catalog, interval=interval, since=_ms(first), until=until
                )
            reports.append(report)
    return reports


class _Fetcher:
    """Fetches, verifies and ingests archive files; keeps partial transfers in ``.download/``."""

    def __init__(
        self, http: aiohttp.ClientSession, catalog: Catalog, url: str, retries: int, backoff: float, concurrency: int
    ) -> None:
        self.http, self.catalog, self.url, self.retries, self.backoff = http, catalog, url, retries, backoff
        self.parts = catalog.root / ".download"
        self.gate = asyncio.Semaphore(concurrency)

    async def fetch(self, file: ArchiveFile, report: DownloadReport, bar: Any) -> None:
        if file.held_by(self.catalog.sources(file.symbol, file.interval, file.month)):
            report.skipped.append(file.name)
            bar.update(1)
            return
        checksum = await self._get(f"{self.url}/{file.path}.CHECKSUM")
        part = self.parts / f"{file.name}.part"
        if checksum is None or await self._get(f"{self.url}/{file.path}", part) is None:
            if file.monthly:  # not published (yet): fetch the month day by day
                bar.total += len(file.days()) - 1
                bar.refresh()
                for day in file.days():
                    await self.fetch(day, report, bar)
            else:
                report.missing.append(file.name)
                bar.update(1)
            return
        report.rows += self._ingest(file, part, checksum.decode().split()[0].lower())
        report.fetched.append(file.name)
        bar.update(1)
        bar.set_postfix(rows=f"{report.rows:,}")

    def _ingest(self, file: ArchiveFile, part: Path, expected: str) -> int:
        """Verify ``part`` against its sha256 and ingest its CSV; refuse (and delete) it otherwise."""
        digest = hashlib.sha256()
        with part.open("rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                digest.update(chunk)
        csv = part.with_suffix(".csv")
        try:
            if digest.hexdigest() != expected:
                raise DataError(
                    f"Checksum mismatch for {file.name}: its sha256 is {digest.hexdigest()}, {file.name}.CHECKSUM "
                    f"says {expected}; the file was refused and nothing of it kept. Run again to fetch it anew."
                )
            with zipfile.ZipFile(part) as archive:
                members = archive.namelist()
                if len(members) != 1 or archive.testzip() is not None:
                    raise zipfile.BadZipFile(f"members {members}")
                csv.write_bytes(archive.read(members[0]))
            return self.catalog.ingest(file.symbol, file.interval, csv, file.name)
        except (zipfile.BadZipFile, zlib.error, duckdb.Error) as e:
            raise DataError(
                f"Corrupt archive {file.name} ({type(e).__name__}: {str(e).splitlines()[0]}); the file was refused "
                "and nothing of it kept. Run again to fetch it anew."
            ) from None
        finally:
            part.unlink(missing_ok=True)
            csv.unlink(missing_ok=True)

    async def _get(self, url: str, part: Path | None = None) -> bytes | None:
        """GET ``url`` (into ``part``, resuming it, when given); ``None`` if it is not there (404).
        Retries connection errors, cut transfers and 5xx answers with exponential backoff."""
        for attempt in range(self.retries + 1):
            try:
                async with self.gate:
                    return await self._get_once(url, part)
            except (TimeoutError, aiohttp.ClientError) as e:
                if attempt == self.retries:
                    raise DataError(
                        f"{url} failed {attempt + 1} times ({type(e).__name__}); check --archive-url and the "
                        "network, then run again: the download resumes where it stopped."
                    ) from None
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self, url: str, part: Path | None) -> bytes | None:
        have = part.stat().st_size if part is not None and part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        async with self.http.get(url, headers=headers) as answer:
            if answer.status == 404:
                return None
            if answer.status == 416 and have:  # the part is complete already
                return b""
            answer.raise_for_status()
            if part is None:
                return await answer.read()
            part.parent.mkdir(parents=True, exist_ok=True)
            with part.open("ab" if answer.status == 206 else "wb") as out:
                async for chunk in answer.content.iter_chunked(1 << 16):
                    out.write(chunk)
            return b""


def _valid(symbol: str) -> str:
    sid = symbol_id(symbol)
    if not re.fullmatch(r"[A-Z0-9]{2,20}", sid):
        raise ConfigError(f"Unknown symbol {symbol!r}: use Binance's spelling, e.g. BTCUSDT or BTC/USDT.")
    return sid


def _dates(start: str | dt.date, end: str | dt.date | None) -> tuple[dt.date, dt.date]:
    try:
        first = start if isinstance(start, dt.date) else dt.date.fromisoformat(start)
        last = end if isinstance(end, dt.date) else dt.date.fromisoformat(end) if end else None
    except ValueError as e:
        raise ConfigError(f"Bad date ({e}); write dates as YYYY-MM-DD.") from None
    last = last or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    if first > last:
        raise ConfigError(f"The start {first} is after the end {last}: give --start on or before --end.")
    return first, last


def _ms(day: dt.date) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 10**6)


# -- workbench data ---------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``workbench data download|list|gaps`` to the command line."""
    p = subparsers.add_parser("data", help="download Binance kline archives into the catalog, list it, find gaps")
    verbs = p.add_subparsers(dest="data_command", required=True, help="see workbench data VERB --help")
    get = verbs.add_parser("download", help="fetch klines from data.binance.vision, then top up through REST")
    get.add_argument("symbols", nargs="+", metavar="SYMBOL", help="e.g. BTCUSDT ETHUSDT")
    get.add_argument("--interval", default="1m", help="kline interval (default 1m)")
    get.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    get.add_argument("--end", help="last day, YYYY-MM-DD (default: yesterday, then REST up to now)")
    get.add_argument("--archive-url", default=ARCHIVE_URL, help=f"the archive's base URL (default {ARCHIVE_URL})")
    get.add_argument("--rest-url", default=REST_URL, help="'' for no REST top-up")
    get.add_argument("--dir", help="data folder holding binance/ (default: the repository's data/)")
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    get.set_defaults(func=_download_command)
    listing = verbs.add_parser("list", help="show what the catalog holds")
    listing.add_argument("--interval", default="1m", help="kline interval (default 1m)")
    listing.add_argument("--dir", help="data folder holding binance/ (default: every catalog load_klines reads)")
    listing.set_defaults(func=_list_command)
    gaps = verbs.add_parser("gaps", help="list the missing bars of a symbol (they are never filled)")
    gaps.add_argument("symbol", metavar="SYMBOL", help="e.g. BTCUSDT")
    gaps.add_argument("--interval", default="1m", help="kline interval (default 1m)")
    gaps.add_argument("--dir", help="data folder holding binance/ (default: every catalog load_klines reads)")
    gaps.set_defaults(func=_gaps_command)


def _download_command(args: argparse.Namespace) -> int:
    reports = asyncio.run(
        download(
            args.symbols,
            start=args.start,
            end=args.end,
            interval=args.interval,
            archive_url=args.archive_url,
            rest_url=args.rest_url or None,
            folder=args.dir,
            progress=not args.quiet,
        )
    )
    for r in reports:
        rest = f", {r.rest.inserted:,} rows through REST ({r.rest.requests} requests)" if r.rest else ""
        missing = f", missing: {' '.join(r.missing)}" if r.missing else ""
        fetched = f"{len(r.fetched)} files fetched ({r.rows:,} rows), {len(r.skipped)} already there"
        print(f"{r.symbol}: {fetched}{rest}{missing}")
    print(f"Catalog: {Catalog(Path(args.dir or data_dir()) / 'binance').root}")
    return 0


def _list_command(args: argparse.Namespace) -> int:
    rows = [
        {"symbol": s, "interval": args.interval, "catalog": str(c.root), **c.summary(s, args.interval)}
        for c in catalogs(args.dir)
        for s in c.symbols(args.interval)
    ]
    if not rows:
        print(f"No {args.interval} klines in {', '.join(str(c.root) for c in catalogs(args.dir))}.")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _gaps_command(args: argparse.Namespace) -> int:
    bars = load_klines(args.symbol, args.interval, folder=args.dir)
    gaps = find_gaps(bars, args.interval)
    span = f"{bars.index[0]:%Y-%m-%d %H:%M} .. {bars.index[-1]:%Y-%m-%d %H:%M} UTC"
    unit = "minutes" if args.interval == "1m" else f"{args.interval} bars"
    for g in gaps.itertuples():
        print(f"{g.first_missing:%Y-%m-%d %H:%M} .. {g.last_missing:%Y-%m-%d %H:%M} UTC  {g.bars:,} {unit} missing")
    print(
        f"{symbol_id(args.symbol)} {args.interval}, {span}: {len(bars):,} bars, {int(gaps['bars'].sum()):,} {unit} "
        f"missing in {len(gaps)} gaps (never filled)."
    )
    return 0
