"""Roll-ups (raw → 5-minute → hourly) and retention, idempotent.

Rule: a bucket is recomputed from the finer table while all of its finer rows are still kept,
and is frozen once they expire. Deletion cutoffs are aligned to whole hours, so a bucket is
either wholly kept or wholly deleted, and recomputing a kept bucket is exact. Buckets older
than the finer table's cutoff are only inserted if missing (a late re-ingest of expired raw
samples cannot overwrite a complete aggregate with a partial one). Running :func:`maintain`
twice with the same ``now`` therefore changes nothing.

Of the kept hourly buckets, only those from the hour of the oldest raw row on are recomputed
(none while there are no raw rows). 5-minute rows change only through the raw → 5-minute roll-up
of the same :func:`maintain`, which reads only raw rows, so a 5-minute bucket can change only
at or after the oldest raw row; the hourly buckets before its hour were last recomputed by the
:func:`maintain` that last saw raw rows in them (or are frozen), and recomputing them again
would give the same rows. This keeps a roll-up from rereading 90 days of 5-minute rows.

Hourly rows come from the 5-minute rows: ``n`` adds up, ``*_mean`` is the ``n``-weighted mean of
the 5-minute means (the mean of the raw samples, up to the rounding of the stored means),
``*_max`` is the max of maxes. A guest's ``node`` is the node of its latest sample in the bucket.
Guests' 5-minute buckets also keep ``disk_kibps_mean``/``net_kibps_mean``, the mean of the
bucket's raw rates (rows without one are left out; NULL when none has one): the forecaster
trains on them. Hourly buckets keep no throughput (capacity trends read CPU and memory, and
five years of it would cost a quarter of a GB a year), nor do nodes.

The roll-up tables have no primary key (see :mod:`analytics.schema`): recomputed buckets are
merged by :func:`analytics.append.merge`, which updates only the rows whose values changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from analytics.append import merge
from analytics.schema import utc_naive


@dataclass(frozen=True)
class Retention:
    """How long each resolution is kept (cutoffs are aligned down to the hour).

    Defaults: raw 1-minute samples for 3 days (a long weekend's incidents at full detail, and
    every 5-minute bucket is complete long before), 5-minute roll-ups for 90 days (the
    forecaster trains on 30 days of them, with room for re-training and a season of notebook
    work), hourly roll-ups for 5 years (capacity trends). With these a year of history of 5,000
    guests stays under 5 GB, even of random values, which compress worse than real series;
    `bench/store.py` prints the projection. Other values are passed to
    :meth:`analytics.store.Store.maintain` (the pipeline reads them from its settings).
    """

    raw: timedelta = timedelta(days=3)
    five_min: timedelta = timedelta(days=90)
    hourly: timedelta = timedelta(days=5 * 365)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.raw <= self.five_min <= self.hourly:
            raise ValueError(f"retention must satisfy 0 < raw <= five_min <= hourly, got {self!r}")


_AGG_COLS = ("n", "cpu_mean", "cpu_max", "mem_mean", "mem_max")
# guests' 5-minute buckets only: each throughput mean and the raw rate it means
_GUEST_MEANS = {"disk_kibps_mean": "disk_kibps", "net_kibps_mean": "net_kibps"}

# means are kept as the columns are (CPU to six decimals, memory to the byte, rates to the
# KiB/s), so a recomputed bucket compares equal to its stored row when nothing changed
_FROM_RAW = """
SELECT {key}, time_bucket(INTERVAL 5 MINUTE, ts) AS bucket,{node}
       count(*)::INTEGER AS n, round(avg(cpu), 6) AS cpu_mean, max(cpu) AS cpu_max,
       round(avg(mem))::BIGINT AS mem_mean, max(mem) AS mem_max{guest}
FROM {entity}_samples WHERE ts {cmp} $cutoff GROUP BY ALL
"""
_GUEST_FROM_RAW = "".join(
    f",\n       round(avg({rate}))::INTEGER AS {mean}" for mean, rate in _GUEST_MEANS.items()
)

_FROM_5M = """
SELECT {key}, date_trunc('hour', bucket) AS bucket,{node}
       sum(n)::INTEGER AS n, round(sum(cpu_mean * n) / sum(n), 6) AS cpu_mean,
       max(cpu_max) AS cpu_max, round(sum(mem_mean * n) / sum(n))::BIGINT AS mem_mean,
       max(mem_max) AS mem_max
FROM {entity}_samples_5m WHERE bucket {cmp} $cutoff GROUP BY ALL
"""


def _roll(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    source: str,
    target: str,
    cutoff: datetime,
    since: datetime | None,
) -> None:
    """Recompute the `target` buckets from `since` on (none when None; `since` >= `cutoff`)
    and add the missing ones before `cutoff`."""
    key = "node" if entity == "node" else "vmid"
    cols = [key, "bucket", *_AGG_COLS]
    node = guest = ""
    if entity == "guest":
        cols = [key, "bucket", "node", *_AGG_COLS]
        node = f" arg_max(node, {'ts' if source == 'raw' else 'bucket'}) AS node,"
        if source == "raw":
            cols.extend(_GUEST_MEANS)
            guest = _GUEST_FROM_RAW
    select = _FROM_RAW if source == "raw" else _FROM_5M
    # kept buckets are recomputed (changed ones updated), expired ones only added if missing
    for cmp, update, bound in ((">=", True, since), ("<", False, cutoff)):
        if bound is None:
            continue
        query = select.format(key=key, node=node, guest=guest, entity=entity, cmp=cmp)
        con.execute(f"CREATE OR REPLACE TEMP TABLE rolled AS {query}", {"cutoff": bound})
        try:
            merge(
                con,
                f"{entity}_samples_{target}",
                "rolled",
                (key, "bucket"),
                "bucket",
                cols,
                update=update,
            )
        finally:
            con.execute("DROP TABLE rolled")


def _first_raw_hour(con: duckdb.DuckDBPyConnection, entity: str) -> datetime | None:
    """The hour of the entity's oldest raw row; None when it has none."""
    row = con.execute(f"SELECT date_trunc('hour', min(ts)) FROM {entity}_samples").fetchone()
    return row[0] if row else None


def _delete(con: duckdb.DuckDBPyConnection, table: str, column: str, cutoff: datetime) -> int:
    row = con.execute(f"DELETE FROM {table} WHERE {column} < ?", [cutoff]).fetchone()
    return int(row[0]) if row else 0


def maintain(
    con: duckdb.DuckDBPyConnection, now: datetime, retention: Retention | None = None
) -> dict[str, int]:
    """Roll raw rows up into 5-min and hourly tables, then expire old rows.

    Runs on the caller's connection (inside its transaction); returns rows deleted per table.
    """
    keep = retention or Retention()
    hour = utc_naive(now).replace(minute=0, second=0, microsecond=0)
    raw_cut, m5_cut, h_cut = hour - keep.raw, hour - keep.five_min, hour - keep.hourly
    deleted: dict[str, int] = {}
    for entity in ("node", "guest"):
        _roll(con, entity, "raw", "5m", raw_cut, raw_cut)
        first = _first_raw_hour(con, entity)
        _roll(con, entity, "5m", "1h", m5_cut, None if first is None else max(m5_cut, first))
        deleted[f"{entity}_samples"] = _delete(con, f"{entity}_samples", "ts", raw_cut)
        deleted[f"{entity}_samples_5m"] = _delete(con, f"{entity}_samples_5m", "bucket", m5_cut)
        deleted[f"{entity}_samples_1h"] = _delete(con, f"{entity}_samples_1h", "bucket", h_cut)
    return deleted
