"""The history store: polars frames in, polars frames out, DuckDB underneath.

``Store(path)`` holds no connection. Each unit of work opens the file, does its work and closes
it (``with store.writer() as con:`` commits on success and rolls back on error), because DuckDB
lets only one process open a file for writing and fails other processes' opens at once. Opens
back off with jitter on lock errors (see :mod:`analytics.connect`). Readers open read-only.

Appends are idempotent: every table has a key, and a row whose key is stored already is skipped
(``ON CONFLICT DO NOTHING`` where a primary key backs it, an anti-join on the sample tables, see
:mod:`analytics.append`), so re-ingesting the same samples never duplicates a row. Frames may
carry extra columns (ignored); time columns may be datetimes (naive = UTC, aware = converted)
or epoch seconds. Guest samples get their disk and network rates from their byte counters on
the way in, in the same transaction (:mod:`analytics.rates`). Schema and time convention:
:mod:`analytics.schema`; roll-ups and retention: :mod:`analytics.rollup`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import polars as pl

from analytics.append import write
from analytics.connect import Backoff, Params, StoreLockedError, fetch_frame, opened, read_frame
from analytics.ingest import TABLES, normalise, scrub, to_json
from analytics.rates import with_rates
from analytics.rollup import Retention, maintain
from analytics.schema import (
    LATEST,
    SchemaTooNewError,
    checked_version,
    current_version,
    migrate,
    utc_naive,
)

Resolution = Literal["raw", "5m", "1h"]


class Store:
    """A DuckDB history file; cheap to create, opens the file only per unit of work."""

    def __init__(self, path: str | Path, *, backoff: Backoff | None = None) -> None:
        self.path = Path(path)
        self.backoff = backoff or Backoff()
        self._migrated = False

    # --- connections -------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open read-write (migrating on first use), begin, yield, commit, close."""
        with opened(self.path, read_only=False, backoff=self.backoff) as con:
            if not self._migrated:
                migrate(con, str(self.path))
                self._migrated = True
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open read-only, yield, close. A file that is missing or behind the schema is first
        created or migrated through a writer; a current one is never opened for writing, so
        readers (notebooks, reports) do not take the write lock from the pipeline."""
        if not self._migrated and not self._is_current():
            with self.writer():
                pass
        self._migrated = True
        with opened(self.path, read_only=True, backoff=self.backoff) as con:
            yield con

    def _is_current(self) -> bool:
        return self.path.exists() and self.schema_version() == LATEST

    def migrate(self) -> int:
        """Bring the file to the latest schema; return its version."""
        with self.writer() as con:
            return current_version(con)

    def schema_version(self) -> int:
        """The file's schema version (read-only); refuses a file from a newer proxflow."""
        with opened(self.path, read_only=True, backoff=self.backoff) as con:
            return checked_version(con, str(self.path))

    def read(self, sql: str, params: Params = None) -> pl.DataFrame:
        """Run a query on a short read-only connection and return the result as polars."""
        with self.reader() as con:
            return fetch_frame(con, sql, params)

    # --- writes ------------------------------------------------------------------------------
    def _insert(self, table: str, frame: pl.DataFrame, *, update: bool) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {sorted(TABLES)}")
        if frame.is_empty():
            return 0
        with self.writer() as con:
            rows = normalise(table, frame, table_columns(con, table))
            if table == "guest_samples":
                rows = with_rates(con, rows, update=update)
            return write(con, table, rows, update=update)

    def append(self, table: str, frame: pl.DataFrame) -> int:
        """Insert rows whose key is new; return how many were inserted."""
        return self._insert(table, frame, update=False)

    def upsert(self, table: str, frame: pl.DataFrame) -> int:
        """Insert new rows and overwrite the given columns of existing ones (status changes)."""
        return self._insert(table, frame, update=True)

    def append_node_samples(self, frame: pl.DataFrame) -> int:
        return self.append("node_samples", frame)

    def append_guest_samples(self, frame: pl.DataFrame) -> int:
        return self.append("guest_samples", frame)

    def maintain(self, now: datetime, retention: Retention | None = None) -> dict[str, int]:
        """Roll up and expire in one transaction; return rows deleted per table."""
        with self.writer() as con:
            return maintain(con, now, retention)

    # --- reads -------------------------------------------------------------------------------
    def _window(
        self,
        entity: str,
        key: str,
        start: datetime,
        end: datetime,
        keys: Sequence[Any] | None,
        resolution: Resolution,
        columns: Sequence[str] | None,
    ) -> pl.DataFrame:
        table = f"{entity}_samples" + ("" if resolution == "raw" else f"_{resolution}")
        ts = "ts" if resolution == "raw" else "bucket"
        where = f"{ts} >= $start AND {ts} < $end"
        params: dict[str, Any] = {"start": utc_naive(start), "end": utc_naive(end)}
        if keys is not None:
            where += f" AND list_contains($keys, {key})"
            params["keys"] = list(keys)
        with self.reader() as con:
            select = "*"
            if columns is not None:
                select = ", ".join(_known_columns(con, table, [key, ts, *columns]))
            frame = fetch_frame(con, f"SELECT {select} FROM {table} WHERE {where}", params)
        return _sort_by_key_then_time(frame, key, ts)

    def guest_window(
        self,
        start: datetime,
        end: datetime,
        vmids: Sequence[int] | None = None,
        resolution: Resolution = "raw",
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Guest rows with ``start <= ts < end``, sorted by vmid then time.

        ``columns`` narrows the result to those columns (plus vmid and the time column), which
        reads and sorts that much less.
        """
        return self._window("guest", "vmid", start, end, vmids, resolution, columns)

    def node_window(
        self,
        start: datetime,
        end: datetime,
        nodes: Sequence[str] | None = None,
        resolution: Resolution = "raw",
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Node rows with ``start <= ts < end``, sorted by node then time (``columns`` as in
        :meth:`guest_window`)."""
        return self._window("node", "node", start, end, nodes, resolution, columns)

    def guest_configs(self) -> pl.DataFrame:
        """Every guest's config facts (``guest_config``), sorted by vmid."""
        return self.read("SELECT * FROM guest_config ORDER BY vmid")

    def has_guest_samples(self) -> bool:
        """Whether any raw guest sample is kept; a store without one is backfilled first."""
        return bool(self.read("SELECT EXISTS (SELECT 1 FROM guest_samples) AS any")["any"][0])

    def newest_rollup(self) -> datetime | None:
        """The newest 5-minute bucket of guest samples (None before the first roll-up): how
        recently :meth:`maintain` ran, without keeping a record of it."""
        newest = self.read("SELECT max(bucket) AS b FROM guest_samples_5m")["b"][0]
        return newest if isinstance(newest, datetime) else None

    def summary(self) -> StoreSummary:
        """How much history the file holds, for a status line."""
        row = self.read(
            "SELECT (SELECT count(*) FROM guest_samples) AS guest_samples, "
            "(SELECT max(ts) FROM guest_samples) AS newest_sample, "
            "(SELECT count(*) FROM migrations WHERE status = 'ok') AS migrations_ok"
        ).row(0, named=True)
        return StoreSummary(
            int(row["guest_samples"]), row["newest_sample"], int(row["migrations_ok"])
        )

    # --- migration records -------------------------------------------------------------------
    def migrations(self) -> pl.DataFrame:
        """Every migration record, all columns, in the order they started."""
        return self.read("SELECT * FROM migrations ORDER BY started, id")

    def completed_migrations(self, since: datetime) -> pl.DataFrame:
        """Migrations that finished ``ok`` at or after ``since`` (the planner's cooldowns):
        ``vmid, source, target, finished`` (epoch seconds), oldest first."""
        with self.reader() as con:
            return fetch_completed_migrations(con, since)

    def unfinished_migrations(self, only: str | None = None) -> pl.DataFrame:
        """Records with an intent but no outcome (status ``intent`` or ``running``), all of them
        or the one with id ``only``: ``id, plan_id, vmid, source, target, upid, status,
        started`` (epoch seconds) ``, result``, oldest first."""
        return self.read(
            "SELECT id, plan_id, vmid, source, target, upid, status, "
            "epoch(started) AS started, result FROM migrations "
            "WHERE status IN ('intent', 'running') AND ($only IS NULL OR id = $only) "
            "ORDER BY started",
            {"only": only},
        )


@dataclass(frozen=True)
class StoreSummary:
    """How much history a store holds (see :meth:`Store.summary`)."""

    guest_samples: int
    newest_sample: datetime | None  # naive UTC
    migrations_ok: int


def fetch_completed_migrations(con: duckdb.DuckDBPyConnection, since: datetime) -> pl.DataFrame:
    """:meth:`Store.completed_migrations` on a connection the caller holds (a snapshot reads
    all its parts on one), ties in time by vmid."""
    return fetch_frame(
        con,
        "SELECT vmid, source, target, epoch(finished) AS finished FROM migrations "
        "WHERE status = 'ok' AND finished >= $since ORDER BY finished, vmid",
        {"since": utc_naive(since)},
    )


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        str(r[0])
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
    ]


def _known_columns(con: duckdb.DuckDBPyConnection, table: str, wanted: list[str]) -> list[str]:
    """`wanted` without repeats, refusing a column the table lacks with the ones it has."""
    have = table_columns(con, table)
    unknown = [c for c in wanted if c not in have]
    if unknown:
        raise ValueError(f"{table} has no column(s) {unknown}; it has {have}")
    return list(dict.fromkeys(wanted))


def _sort_by_key_then_time(frame: pl.DataFrame, key: str, ts: str) -> pl.DataFrame:
    """Sorted by `key`, then `ts`, outside SQL: an ORDER BY of a day of samples took twice as
    long as the whole read.

    Rows come in stored order, which is time order unless older history was back-filled later;
    then a stable sort by an integer key alone is enough. numpy's stable argsort (a timsort,
    which merges the sorted run of keys of every instant) plus one gather of the rechunked frame
    beat a polars multi-column sort by a factor of two or more.
    """
    frame = frame.rechunk()
    keys = frame[key]
    if keys.dtype.is_integer() and keys.null_count() == 0 and frame[ts].is_sorted():
        return frame[np.argsort(keys.to_numpy(), kind="stable")]
    return frame.sort(key, ts)


__all__ = [
    "Backoff",
    "Retention",
    "SchemaTooNewError",
    "Store",
    "StoreLockedError",
    "StoreSummary",
    "read_frame",
    "scrub",
    "to_json",
]
