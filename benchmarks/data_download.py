"""Downloading and ingesting one symbol-year of real 1m klines from a local archive server, and
load_klines of that year, cold and warm, side by side in one run (wall and CPU time).

The archive (data.binance.vision's layout: daily zips for the partial months at the ends, monthly
ones between, each with its .CHECKSUM) is built from the catalog's BTCUSDT klines: the shared year
2023-06-26 .. 2024-06-25 when ``../shared/data/binance`` is there, else the bundled three months.
It is served on 127.0.0.1 by workbench.archive.ArchiveServer in this process, so the download's CPU
time includes the server's. "cold" is load_klines' first call in the process (the files are in
the OS page cache); "warm" is the next call (the in-process cache, a copy of the frame).

    .venv/bin/python benchmarks/data_download.py [--symbol BTCUSDT]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from workbench import data
from workbench.archive import ArchiveServer, build_archive
from workbench.catalog import Catalog
from workbench.download import download, plan


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def main(symbol: str) -> None:
    source = data.catalogs()[-1]  # the shared year if present, else the bundled slice
    first, last = (source.summary(symbol)[k].date() for k in ("first", "last"))
    files = plan(symbol, "1m", first, last)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rows = build_archive(source, root / "archive", files)
        size = sum(p.stat().st_size for p in (root / "archive").rglob("*.zip"))
        print(f"{symbol} {first} .. {last}: {rows:,} rows in {len(files)} archive files ({size / 1e6:.1f} MB of zips)")
        print(f"source: {source.root}")
        async with ArchiveServer(root / "archive") as server:
            wall, cpu = time.perf_counter(), time.process_time()
            [report] = await download(
                [symbol], start=first, end=last, archive_url=server.url, rest_url=None, folder=root / "cat",
                progress=False,
            )  # fmt: skip
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert report.rows == rows and not report.missing, report
        print(f"{'step':<44}{'rows/s':>12}{'wall s':>9}{'CPU s':>8}")
        print(f"{'download + verify + ingest (archive server)':<44}{rows / wall:>12,.0f}{wall:>9.2f}{cpu:>8.2f}")

        catalog = Catalog(root / "cat" / "binance")
        data._cached.cache_clear()
        steps = [
            ("load_klines, Parquet catalog (cold)", *timed(data.load_klines, symbol, folder=root / "cat")),
            ("load_klines, Parquet catalog (warm)", *timed(data.load_klines, symbol, folder=root / "cat")),
        ]
        if data.shared_dir() is not None:  # the same year from the shared csv.gz, for comparison
            steps.append(("read of the shared csv.gz (cold)", *timed(Catalog(data.shared_dir()).read, symbol)))
        for label, frame, wall, cpu in steps:
            print(f"{label:<44}{len(frame) / wall:>12,.0f}{wall:>9.2f}{cpu:>8.2f}")
        parquet = sum(p.stat().st_size for p in catalog.files(symbol))
        print(f"catalog: {len(catalog.files(symbol))} Parquet files, {parquet / 1e6:.1f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbol", default="BTCUSDT")
    asyncio.run(main(parser.parse_args().symbol))
