"""The archive downloader against a local archive server on 127.0.0.1 that serves data.binance.vision's
layout built from the bundled real klines: monthly and daily files, a missing month and day, microsecond
times, a corrupt zip, a checksum mismatch, an interrupted transfer that resumes; the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from workbench.archive import ArchiveServer, build_archive, write_checksum
from workbench.catalog import Catalog
from workbench.data import load_klines
from workbench.download import ArchiveFile, download, plan
from workbench.errors import DataError

BUNDLED = Catalog(Path(__file__).resolve().parent.parent / "data" / "binance")
WORKBENCH = str(Path(sys.executable).with_name("workbench"))
AUG = ArchiveFile("BTCUSDT", "1m", "2023-08")


def bundled(first: str, last: str) -> pd.DataFrame:
    frame = BUNDLED.read("BTCUSDT").set_index("open_time")
    lo, hi = (pd.Timestamp(d, tz="UTC").value // 10**6 for d in (first, last))
    return frame[(frame.index >= lo) & (frame.index < hi + 86_400_000)]


def stored(folder: Path) -> pd.DataFrame:
    return Catalog(folder / "binance").read("BTCUSDT").set_index("open_time")


@pytest.fixture
async def archive(tmp_path):
    """The archive of BTCUSDT 2023-07-30 .. 2023-09-01 (daily, monthly 2023-08, daily), served."""
    root = tmp_path / "archive"
    files = plan("BTCUSDT", "1m", dt.date(2023, 7, 30), dt.date(2023, 9, 1))
    build_archive(BUNDLED, root, files + AUG.days())  # the days of August too, for when the month is missing
    async with ArchiveServer(root) as server:
        yield server


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        WORKBENCH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


def test_the_plan_takes_whole_months_monthly_and_the_rest_daily():
    names = [f.name for f in plan("BTCUSDT", "1m", dt.date(2023, 7, 30), dt.date(2023, 9, 1))]
    assert names == [
        "BTCUSDT-1m-2023-07-30.zip",
        "BTCUSDT-1m-2023-07-31.zip",
        "BTCUSDT-1m-2023-08.zip",
        "BTCUSDT-1m-2023-09-01.zip",
    ]
    assert AUG.path == "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2023-08.zip"
    assert len(AUG.days()) == 31 and AUG.days()[0].path.startswith("data/spot/daily/klines/BTCUSDT/1m/")


async def test_download_verifies_ingests_and_skips_what_is_there(archive, tmp_path):
    code, out, err = await cli(
        "data", "download", "BTCUSDT", "--start", "2023-07-30", "--end", "2023-09-01",
        "--archive-url", archive.url, "--rest-url", "", "--dir", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "4 files fetched (49,"[:15] in out and "0 already there" in out
    got, want = stored(tmp_path), bundled("2023-07-30", "2023-09-01")
    assert len(got) == len(want) == 34 * 1440
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    sources = set().union(
        *(Catalog(tmp_path / "binance").sources("BTCUSDT", "1m", m) for m in ("2023-07", "2023-08", "2023-09"))
    )
    assert sources == {f.name for f in plan("BTCUSDT", "1m", dt.date(2023, 7, 30), dt.date(2023, 9, 1))}
    assert {p for p, _ in archive.requests if p.endswith(".zip")} == {
        f.path for f in plan("BTCUSDT", "1m", dt.date(2023, 7, 30), dt.date(2023, 9, 1))
    }

    archive.requests.clear()
    again = await download(["BTCUSDT"], start="2023-07-30", end="2023-09-01", archive_url=archive.url,
                           rest_url=None, folder=tmp_path, progress=False)  # fmt: skip
    assert len(again[0].skipped) == 4 and again[0].fetched == [] and archive.requests == []
    assert list(tmp_path.glob("binance/.download/*")) == []


async def test_a_missing_month_is_fetched_by_day_and_a_missing_day_is_a_gap_never_filled(archive, tmp_path):
    root = archive.folder
    missing_day = ArchiveFile("BTCUSDT", "1m", "2023-08-10")
    for path in (AUG.path, missing_day.path):
        (root / path).unlink()
        (root / f"{path}.CHECKSUM").unlink()
    [report] = await download(["BTCUSDT"], start="2023-08-01", end="2023-08-31", archive_url=archive.url,
                              rest_url=None, folder=tmp_path, progress=False)  # fmt: skip
    assert report.missing == [missing_day.name] and len(report.fetched) == 30
    assert len(stored(tmp_path)) == 30 * 1440

    code, out, err = await cli("data", "gaps", "BTCUSDT", "--dir", str(tmp_path))
    assert code == 0, err
    assert "2023-08-10 00:00 .. 2023-08-10 23:59 UTC  1,440 minutes missing" in out
    assert "1,440 minutes missing in 1 gaps" in out
    bars = load_klines("BTC/USDT", folder=tmp_path)
    assert pd.Timestamp("2023-08-10 12:00", tz="UTC") not in bars.index and len(bars) == 30 * 1440


async def test_microsecond_archives_are_read_as_milliseconds(tmp_path):
    day = ArchiveFile("BTCUSDT", "1m", "2023-09-01")
    build_archive(BUNDLED, tmp_path / "archive", [day], microseconds=True)
    with zipfile.ZipFile(tmp_path / "archive" / day.path) as z:
        first = z.read(z.namelist()[0]).decode().split("\n")[0].split(",")
    assert first[0] == "1693526400000000" and first[6] == "1693526459999999"  # as the 2025+ archives write them
    async with ArchiveServer(tmp_path / "archive") as server:
        await download(["BTCUSDT"], start="2023-09-01", end="2023-09-01", archive_url=server.url, rest_url=None,
                       folder=tmp_path, progress=False)  # fmt: skip
    got, want = stored(tmp_path), bundled("2023-09-01", "2023-09-01")
    assert list(got.index) == list(want.index) and (got["close_time"] == want["close_time"]).all()
    assert got.index[0] == 1_693_526_400_000 and (got["close"] == want["close"]).all()


@pytest.mark.parametrize("fault", ["checksum", "corrupt"])
async def test_a_bad_file_is_refused_with_one_line_and_nothing_kept(archive, tmp_path, fault):
    path = archive.folder / AUG.path
    if fault == "checksum":
        write_checksum(path, "0" * 64)
    else:  # a truncated zip, with a CHECKSUM that matches it: only opening it finds the damage
        path.write_bytes(path.read_bytes()[:5000])
        write_checksum(path)
    code, out, err = await cli(
        "data", "download", "BTCUSDT", "--start", "2023-08-01", "--end", "2023-08-31",
        "--archive-url", archive.url, "--rest-url", "", "--dir", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    expected = "Checksum mismatch for BTCUSDT-1m-2023-08.zip" if fault == "checksum" else "Corrupt archive BTCUSDT-1m"
    assert err.startswith(f"workbench: {expected}") and "refused" in err
    assert not Catalog(tmp_path / "binance").partition("BTCUSDT", "1m", "2023-08").exists()
    assert list(tmp_path.glob("binance/.download/*")) == []


async def test_an_interrupted_transfer_resumes_where_it_stopped(archive, tmp_path):
    size = (archive.folder / AUG.path).stat().st_size
    archive.cut[AUG.path] = 100_000
    with pytest.raises(DataError, match="resumes where it stopped"):  # no retries left: the run stops
        await download(["BTCUSDT"], start="2023-08-01", end="2023-08-31", archive_url=archive.url, rest_url=None,
                       folder=tmp_path, progress=False, retries=0)  # fmt: skip
    part = tmp_path / "binance" / ".download" / f"{AUG.name}.part"
    assert part.stat().st_size == 100_000 and not Catalog(tmp_path / "binance").files("BTCUSDT")

    archive.requests.clear()
    archive.cut[AUG.path] = 200_000  # cut again mid-way: this run retries by itself, each time from where it was
    [report] = await download(["BTCUSDT"], start="2023-08-01", end="2023-08-31", archive_url=archive.url,
                              rest_url=None, folder=tmp_path, progress=False, backoff=0.01)  # fmt: skip
    ranges = [r for p, r in archive.requests if p == AUG.path]
    assert ranges == ["bytes=100000-", "bytes=300000-"] and size > 300_000
    assert report.fetched == [AUG.name] and len(stored(tmp_path)) == 31 * 1440
    assert not part.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["DOGEXYZ", "--start", "2023-08-01", "--end", "2023-08-02"], "Unknown symbol DOGEXYZ"),
        (["BTC-USDT!", "--start", "2023-08-01"], "Unknown symbol 'BTC-USDT!'"),
        (["BTCUSDT", "--start", "2023-08-03", "--end", "2023-08-02"], "The start 2023-08-03 is after the end"),
        (["BTCUSDT", "--start", "May 1st"], "Bad date"),
    ],
)
async def test_bad_input_gets_one_clear_line_and_exit_2(archive, tmp_path, args, message):
    code, out, err = await cli(
        "data", "download", *args, "--archive-url", archive.url, "--rest-url", "", "--dir", str(tmp_path), "--quiet"
    )
    assert code == 2 and err.startswith(f"workbench: {message}") and len(err.strip().splitlines()) == 1, err


async def test_a_progress_bar_shows_files_and_rows_and_data_list_shows_the_catalog(archive, tmp_path):
    code, out, err = await cli(
        "data", "download", "BTCUSDT", "--start", "2023-08-31", "--end", "2023-09-01",
        "--archive-url", archive.url, "--rest-url", "", "--dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and "BTCUSDT: 100%" in err and "2/2" in err and "rows=2,880" in err, err
    code, out, err = await cli("data", "list", "--dir", str(tmp_path))
    assert code == 0, err
    line = next(line for line in out.splitlines() if "BTCUSDT" in line)
    assert "2023-08-31 00:00:00+00:00" in line and "2023-09-01 23:59:00+00:00" in line and " 2880 " in line
