"""A stand-in for data.binance.vision on 127.0.0.1, as the local exchange stands in for the REST API.

:func:`build_archive` writes catalog klines in Binance's archive layout (one zip per month or day,
one header-less CSV in it with Binance's 12 columns, a ``.CHECKSUM`` file with its sha256 beside
it, microsecond times on request as the archives have them from 2025 on); :class:`ArchiveServer`
serves such a folder over HTTP with ``Range`` support and can cut a transfer short, to rehearse
an interrupted download.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import duckdb
from aiohttp import web

from workbench.catalog import KLINE_COLUMNS, Catalog
from workbench.download import ArchiveFile


def build_archive(
    source: Catalog, folder: str | Path, files: Iterable[ArchiveFile], *, microseconds: bool = False
) -> int:
    """Write ``files`` (zip and ``.CHECKSUM``) under ``folder`` from the klines of ``source``; returns rows."""
    total = 0
    with duckdb.connect() as con:
        for file in files:
            query = source.query(file.symbol, file.interval)
            if query is None:
                continue
            lo = f"epoch_ms(TIMESTAMP '{file.period}-01')" if file.monthly else f"epoch_ms(DATE '{file.period}')"
            hi = f"epoch_ms(TIMESTAMP '{file.period}-01' + INTERVAL 1 MONTH)" if file.monthly else f"{lo} + 86400000"
            scale = "* 1000" if microseconds else ""
            times = {"open_time": f"open_time {scale}", "close_time": f"close_time {scale} + {999 if scale else 0}"}
            columns = ", ".join(f"CAST({times.get(c, c)} AS VARCHAR)" for c in KLINE_COLUMNS)
            where = f"open_time >= {lo} AND open_time < {hi}"
            rows = con.execute(f"SELECT {columns}, '0' FROM ({query}) k WHERE {where} ORDER BY open_time").fetchall()
            if not rows:
                continue
            total += len(rows)
            write_zip(Path(folder) / file.path, file.name.removesuffix(".zip") + ".csv", rows)
    return total


def write_zip(path: Path, member: str, rows: list[tuple[str, ...]]) -> None:
    """One archive file and its ``.CHECKSUM`` (``<sha256>  <name>``, as Binance writes it)."""
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "".join(",".join(row) + "\n" for row in rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body.getvalue())
    write_checksum(path)


def write_checksum(path: Path, digest: str | None = None) -> None:
    """``path``'s ``.CHECKSUM`` file: its sha256, or ``digest``."""
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")


class ArchiveServer:
    """Serves ``folder`` on 127.0.0.1 (``url``); ``cut[path] = n`` ends the next transfer of ``path``
    after ``n`` bytes; ``requests`` records each ``(path, Range header)``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ArchiveServer:
        app = web.Application(middlewares=[self._record])
        app.router.add_static("/", self.folder)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        path = request.path.lstrip("/")
        self.requests.append((path, request.headers.get("Range")))
        if path not in self.cut or not (self.folder / path).is_file():
            return await handler(request)
        ranged = request.http_range.start or 0
        body = (self.folder / path).read_bytes()[ranged:]
        answer = web.StreamResponse(status=206 if ranged else 200, headers={"Content-Length": str(len(body))})
        await answer.prepare(request)
        await answer.write(body[: self.cut.pop(path)])
        request.transport.close()  # type: ignore[union-attr]
        return answer
