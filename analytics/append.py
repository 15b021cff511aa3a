"""Idempotent writes: ON CONFLICT on tables with a primary key, anti-join on sample tables.

Sample tables and their roll-ups carry no index (see :mod:`analytics.schema`), so :func:`merge`
keeps their key unique itself: the incoming rows are cut to one per key (the first), rows whose
key is stored already are updated only when asked to and only where a value differs, and the
rest are inserted in time order. Both steps look at the stored rows of the incoming rows' own
time range only, given as literals so DuckDB can skip every row group whose zone map lies
outside it; a snapshot append therefore reads a few row groups, not the table.

This is exact while no other transaction writes the same table at the same time: DuckDB admits
one writing process per file, and the per-file thread lock of :mod:`analytics.connect`
serialises the writers inside a process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import polars as pl

from analytics.ingest import TABLES, ArrowStream


def time_literal(when: datetime) -> str:
    """A TIMESTAMP literal for a time bound, so DuckDB skips row groups by their zone maps."""
    return f"TIMESTAMP '{when.isoformat(sep=' ')}'"


def time_range(
    con: duckdb.DuckDBPyConnection, source: str, time: str
) -> tuple[datetime, datetime] | None:
    """The first and last value of `time` in relation `source`; None when it has no rows."""
    row = con.execute(f"SELECT min({time}), max({time}) FROM {source}").fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def merge(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: str,
    key: Sequence[str],
    time: str,
    columns: Sequence[str],
    *,
    update: bool,
) -> int:
    """Write relation `source` (unique per `key`) into `table`; return rows inserted or changed.

    `time` is the key's time column; rows are inserted ordered by it, then by the rest of the key.
    """
    span = time_range(con, source, time)
    if span is None:
        return 0
    within = f"t.{time} BETWEEN {time_literal(span[0])} AND {time_literal(span[1])}"
    match = " AND ".join(f"t.{k} = s.{k}" for k in key)
    values = [c for c in columns if c not in key]
    changed = 0
    if update and values:
        differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in values)
        done = con.execute(
            f"UPDATE {table} AS t SET {', '.join(f'{c} = s.{c}' for c in values)} "
            f"FROM {source} AS s WHERE {within} AND {match} AND ({differs})"
        ).fetchone()
        changed = int(done[0]) if done else 0
    cols = ", ".join(columns)
    order = ", ".join([time, *(k for k in key if k != time)])
    done = con.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {source} AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {within} AND {match}) "
        f"ORDER BY {order}"
    ).fetchone()
    return changed + (int(done[0]) if done else 0)


def write(con: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame, *, update: bool) -> int:
    """Write normalised `rows` (see :func:`analytics.ingest.normalise`) into `table`."""
    spec = TABLES[table]
    key = list(spec.key)
    if not spec.indexed:
        rows = rows.unique(subset=key, keep="first", maintain_order=True)
    con.register("incoming", ArrowStream(rows))
    try:
        if not spec.indexed:
            return merge(con, table, "incoming", key, spec.times[0], rows.columns, update=update)
        cols = ", ".join(rows.columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in rows.columns if c not in key)
        conflict = f"DO UPDATE SET {sets}" if update and sets else "DO NOTHING"
        done = con.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming "
            f"ON CONFLICT ({', '.join(key)}) {conflict}"
        ).fetchone()
        return int(done[0]) if done else 0
    finally:
        con.unregister("incoming")
