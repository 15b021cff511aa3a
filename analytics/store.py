"""The history store: polars frames in, polars frames out, DuckDB underneath.

``Store(path)`` holds no connection. Each unit of work opens the file, does its work and closes
it (``with store.writer() as con:`` commits on success and rolls back on error), because DuckDB
lets only one process open a file for writing and fails other processes' opens at once. Opens
back off with jitter on lock errors (see :mod:`analytics.connect`). Readers open read-only.

Appends are idempotent: every table has a primary key and rows are inserted with
``ON CONFLICT DO NOTHING``, so re-ingesting the same samples never duplicates a row. Frames may
carry extra columns (ignored); time columns may be datetimes (naive = UTC, aware = converted)
or epoch seconds. Schema and time convention: :mod:`analytics.schema`; roll-ups and retention:
:mod:`analytics.rollup`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from analytics.connect import Backoff, Params, StoreLockedError, fetch_frame, opened, read_frame
from analytics.ingest import TABLES, ArrowStream, normalise, scrub, to_json
from analytics.rollup import Retention, maintain
from analytics.schema import (
    SchemaTooNewError,
    check_not_newer,
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
        """Open read-only (after making sure the file exists and is migrated), yield, close."""
        if not self._migrated:
            with self.writer():
                pass
        with opened(self.path, read_only=True, backoff=self.backoff) as con:
            yield con

    def migrate(self) -> int:
        """Bring the file to the latest schema; return its version."""
        with self.writer() as con:
            return current_version(con)

    def schema_version(self) -> int:
        """The file's schema version (read-only); refuses a file from a newer proxflow."""
        with opened(self.path, read_only=True, backoff=self.backoff) as con:
            version = current_version(con)
        check_not_newer(version, str(self.path))
        return version

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
            columns = [
                str(r[0])
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "ORDER BY ordinal_position",
                    [table],
                ).fetchall()
            ]
            rows = normalise(table, frame, columns)
            cols = ", ".join(rows.columns)
            key = TABLES[table].key
            sets = ", ".join(f"{c} = excluded.{c}" for c in rows.columns if c not in key)
            conflict = f"DO UPDATE SET {sets}" if update and sets else "DO NOTHING"
            con.register("incoming", ArrowStream(rows))
            try:
                done = con.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming "
                    f"ON CONFLICT ({', '.join(key)}) {conflict}"
                ).fetchone()
            finally:
                con.unregister("incoming")
            return int(done[0]) if done else 0

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
    ) -> pl.DataFrame:
        table = f"{entity}_samples" + ("" if resolution == "raw" else f"_{resolution}")
        ts = "ts" if resolution == "raw" else "bucket"
        where = f"{ts} >= $start AND {ts} < $end"
        params: dict[str, Any] = {"start": utc_naive(start), "end": utc_naive(end)}
        if keys is not None:
            where += f" AND list_contains($keys, {key})"
            params["keys"] = list(keys)
        return self.read(f"SELECT * FROM {table} WHERE {where} ORDER BY {key}, {ts}", params)

    def guest_window(
        self,
        start: datetime,
        end: datetime,
        vmids: Sequence[int] | None = None,
        resolution: Resolution = "raw",
    ) -> pl.DataFrame:
        """Guest rows with ``start <= ts < end``, sorted by vmid then time."""
        return self._window("guest", "vmid", start, end, vmids, resolution)

    def node_window(
        self,
        start: datetime,
        end: datetime,
        nodes: Sequence[str] | None = None,
        resolution: Resolution = "raw",
    ) -> pl.DataFrame:
        """Node rows with ``start <= ts < end``, sorted by node then time."""
        return self._window("node", "node", start, end, nodes, resolution)

    def latest_guest_samples(self) -> pl.DataFrame:
        """Each guest's most recent raw sample, sorted by vmid."""
        return self.read(
            "SELECT * FROM guest_samples "
            "QUALIFY row_number() OVER (PARTITION BY vmid ORDER BY ts DESC) = 1 ORDER BY vmid"
        )

    def guest_configs(self) -> pl.DataFrame:
        """Every guest's config facts (``guest_config``), sorted by vmid."""
        return self.read("SELECT * FROM guest_config ORDER BY vmid")


__all__ = [
    "Backoff",
    "Retention",
    "SchemaTooNewError",
    "Store",
    "StoreLockedError",
    "read_frame",
    "scrub",
    "to_json",
]
