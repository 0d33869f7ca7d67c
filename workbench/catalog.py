"""The kline catalog: Binance spot klines as Parquet files that DuckDB queries directly.

Under a catalog root (a ``binance`` folder) each symbol, interval and UTC month is one file::

    spot/klines/symbol=BTCUSDT/interval=1m/month=2023-06/data.parquet

sorted by open time, with Binance's columns (times in ms, prices and volumes as the exact
``DECIMAL(18,8)``/``DECIMAL(24,8)`` of Binance's 8-decimal strings) and a ``source`` column naming the
archive file (``BTCUSDT-1m-2023-06-26.zip``) or ``rest`` each row came from. Any tool reads it::

    SELECT * FROM read_parquet('data/binance/spot/klines/*/*/*/*.parquet', hive_partitioning = true)

Parquet partitions rather than one DuckDB file: a month is written to a temporary file and renamed
into place, so an interrupted download leaves either the old month or the new one, never half of
one; readers (notebooks, the local exchange, tests) never contend for a DuckDB file's writer lock;
the bundled slice is a handful of small immutable files in git. Plain Binance kline CSVs
(``spot/<interval>/<SYMBOL>-<interval>.csv[.gz]``, with a header row, as ``shared/data/binance`` has
them) are read as part of the catalog too.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pandas as pd

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
)
TYPES = {
    "open_time": "BIGINT",
    "open": "DECIMAL(18,8)",
    "high": "DECIMAL(18,8)",
    "low": "DECIMAL(18,8)",
    "close": "DECIMAL(18,8)",
    "volume": "DECIMAL(18,8)",
    "close_time": "BIGINT",
    "quote_volume": "DECIMAL(24,8)",
    "trades": "BIGINT",
    "taker_buy_base_volume": "DECIMAL(18,8)",
    "taker_buy_quote_volume": "DECIMAL(24,8)",
}
INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000}  # fmt: skip
TIMES = ("open_time", "close_time")
MICROSECONDS = 10**14  # open times above this are microseconds (spot archives from 2025 on)


def _sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join(map(_sql_str, paths)) + "]"


class Catalog:
    """The klines under one ``binance`` folder: Parquet month partitions and plain kline CSVs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # -- where things are -------------------------------------------------------------------

    def _series(self, symbol_id: str, interval: str) -> Path:
        return self.root / "spot" / "klines" / f"symbol={symbol_id}" / f"interval={interval}"

    def partition(self, symbol_id: str, interval: str, month: str) -> Path:
        """The Parquet file of one symbol, interval and month (``"2023-06"``)."""
        return self._series(symbol_id, interval) / f"month={month}" / "data.parquet"

    def files(self, symbol_id: str, interval: str = "1m") -> list[Path]:
        """Every file holding klines of ``symbol_id``: its month partitions, then plain CSVs."""
        months = sorted(self._series(symbol_id, interval).glob("month=*/data.parquet"))
        folder = self.root / "spot" / interval
        csvs = [folder / f"{symbol_id}-{interval}.csv", folder / f"{symbol_id}-{interval}.csv.gz"]
        return months + [p for p in csvs if p.exists()]

    def symbols(self, interval: str = "1m") -> list[str]:
        """Symbol ids (``"BTCUSDT"``) with klines of ``interval`` here."""
        parts = {p.parent.parent.parent.name.removeprefix("symbol=") for p in self._partitions(interval)}
        csvs = {p.name.split("-")[0] for p in (self.root / "spot" / interval).glob(f"*-{interval}.csv*")}
        return sorted(parts | csvs)

    def _partitions(self, interval: str) -> list[Path]:
        return sorted((self.root / "spot" / "klines").glob(f"symbol=*/interval={interval}/month=*/data.parquet"))

    # -- reading ------------------------------------------------------------------------------

    def query(self, symbol_id: str, interval: str = "1m") -> str | None:
        """The SQL that selects every kline of ``symbol_id`` here (``None`` if there is none)."""
        files = self.files(symbol_id, interval)
        parquet = [p for p in files if p.suffix == ".parquet"]
        columns = ", ".join(KLINE_COLUMNS)
        parts = [f"SELECT {columns} FROM read_parquet({_sql_list(parquet)})"] if parquet else []
        parts += [f"SELECT {columns} FROM read_csv({_sql_list([p])}, header = true)" for p in files if p not in parquet]
        if len(parts) > 1:  # the same bar in a partition and a CSV: keep one
            return f"SELECT * FROM ({' UNION ALL '.join(parts)}) QUALIFY row_number() OVER (PARTITION BY open_time) = 1"
        return parts[0] if parts else None

    def read(self, symbol_id: str, interval: str = "1m") -> pd.DataFrame:
        """All klines of ``symbol_id`` here, sorted by ``open_time`` (ms), prices as floats."""
        query = self.query(symbol_id, interval)
        if query is None:
            return pd.DataFrame(columns=list(KLINE_COLUMNS))
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")
            return con.execute(f"{query} ORDER BY open_time").df()

    def summary(self, symbol_id: str, interval: str = "1m") -> dict[str, object]:
        """``first`` and ``last`` open time, ``bars`` and ``missing`` bars between them, ``files``."""
        query = self.query(symbol_id, interval) or "SELECT 0 AS open_time WHERE false"
        with duckdb.connect() as con:
            bars, first, last = con.execute(
                f"SELECT count(*), min(open_time), max(open_time) FROM ({query}) k"
            ).fetchone()
        span = (last - first) // INTERVAL_MS[interval] + 1 if bars else 0
        stamp = {"first": pd.to_datetime(first, unit="ms", utc=True), "last": pd.to_datetime(last, unit="ms", utc=True)}
        return {**stamp, "bars": bars, "missing": span - bars, "files": len(self.files(symbol_id, interval))}

    def sources(self, symbol_id: str, interval: str, month: str) -> set[str]:
        """The archive files (and ``rest``) the month partition was built from."""
        path = self.partition(symbol_id, interval, month)
        if not path.exists():
            return set()
        with duckdb.connect() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT source FROM read_parquet(?)", [str(path)]).fetchall()}

    # -- writing ------------------------------------------------------------------------------

    def ingest(self, symbol_id: str, interval: str, rows: pd.DataFrame | Path, source: str) -> int:
        """Add klines to the catalog, month by month; returns the rows that were new.

        ``rows`` is a frame with Binance's kline columns (strings or numbers) or a CSV file of an
        archive (Binance's 12 columns, no header as in spot archives, or with one). Open times in microseconds become
        milliseconds. Rows already in the catalog stay as they are; each month is written to a
        temporary file and renamed into place."""
        with duckdb.connect() as con:
            if isinstance(rows, Path):
                with rows.open("rb") as text:
                    header = not text.read(1).isdigit()
                names = ", ".join(f"'{c}': 'VARCHAR'" for c in (*KLINE_COLUMNS, "ignore"))
                con.execute(
                    f"CREATE TEMP VIEW raw AS SELECT * FROM read_csv({_sql_str(rows)}, header = {header},"
                    f" columns = {{{names}}})"
                )
            else:
                con.register("raw", rows[list(KLINE_COLUMNS)].astype(str))
            casts = ", ".join(f"CAST({c} AS {TYPES[c]}) AS {c}" for c in KLINE_COLUMNS)
            in_ms = ", ".join(f"CASE WHEN {c} > {MICROSECONDS} THEN {c} // 1000 ELSE {c} END AS {c}" for c in TIMES)
            con.execute(
                "CREATE TEMP TABLE new AS SELECT *, ? AS source, strftime(make_timestamp(open_time * 1000), '%Y-%m')"
                f" AS month FROM (SELECT * REPLACE ({in_ms}) FROM (SELECT {casts} FROM raw))",
                [source],
            )
            added = 0
            for (month,) in con.execute("SELECT DISTINCT month FROM new ORDER BY month").fetchall():
                added += self._write_month(con, symbol_id, interval, month)
            return added

    def _write_month(self, con: duckdb.DuckDBPyConnection, symbol_id: str, interval: str, month: str) -> int:
        path = self.partition(symbol_id, interval, month)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ", ".join((*KLINE_COLUMNS, "source"))
        fresh = f"SELECT {columns}, 1 AS rank FROM new WHERE month = '{month}'"
        before = 0
        if path.exists():
            before = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
            fresh = f"SELECT {columns}, 0 AS rank FROM read_parquet({_sql_list([path])}) UNION ALL {fresh}"
        temporary = path.with_name(f".{uuid.uuid4().hex}.parquet.tmp")
        try:
            once = "QUALIFY row_number() OVER (PARTITION BY open_time ORDER BY rank) = 1 ORDER BY open_time"
            con.execute(
                f"COPY (SELECT {columns} FROM ({fresh}) {once}) TO {_sql_str(temporary)}"
                " (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2)"
            )
            after = con.execute("SELECT count(*) FROM read_parquet(?)", [str(temporary)]).fetchone()[0]
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return int(after - before)
