"""The history store's DDL as numbered migrations, applied once each, in a transaction.

Time: every ``ts``/``bucket``/``created``/``started``/``finished`` column is a naive
``TIMESTAMP`` holding **UTC**. A timestamp (rather than epoch seconds) lets DuckDB bucket with
``time_bucket``/``date_trunc`` and reads naturally in notebooks; callers may still hand in
epoch seconds or tz-aware datetimes, which the store converts to naive UTC on the way in.

Samples are **wide** (one row per entity and sample time, one column per metric), not long
(entity, metric, ts, value):

- every collector poll yields all metrics of an entity at once, so a wide row is exactly one
  observation and the key (entity, ts) makes re-ingest idempotent per observation;
- the planner and features read several metrics of the same instant together (cpu with cpus,
  mem with maxmem); wide rows need no pivot and are about 10x fewer rows;
- metrics are a small, fixed set from PVE's API; a new one is a migration (an added nullable
  column), which is cheap in DuckDB's columnar storage and keeps types per metric.

Sample tables carry no PRIMARY KEY (since version 4): its index cost more bytes per row than
the compressed row itself, so (entity, ts) stays unique through anti-join appends instead
(:mod:`analytics.append`). Their rows are written in time order, which lets DuckDB store time
and entity columns as runs and deltas and skip row groups outside a read's time range. CPU
fractions are kept to six decimals (PVE measures them from 1/100 s ticks over 10 s, so
finer digits are noise) and stored by DuckDB as small integers; mean memory is kept to the
byte.

Guest disk and network throughput (since version 5) is kept in whole KiB per second (1,024
bytes/s) in INTEGER columns: ``disk_kibps`` (diskread + diskwrite) and ``net_kibps`` (netin +
netout) per sample, ``disk_kibps_mean`` and ``net_kibps_mean`` per 5-minute bucket (hourly
buckets keep none, see :mod:`analytics.rollup`). Live samples carry PVE's cumulative byte
counters, from which the store derives the rates (:mod:`analytics.rates`); backfilled ones carry
the RRD's rates and no counters. A KiB/s is
finer than any use of them (the forecaster counts 1 KiB/s as idle), and DuckDB bit-packs
integers by their range: in a checkpointed table of log-normal rates, whole KiB/s took about
2 bytes per value, whole bytes/s 4. Rows from before version 5 keep NULL there.

Secrets are never stored: there is no column for tokens, passwords or tickets, and JSON
payloads (run parameters, model metadata) are scrubbed by the store before insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

KIB = 1024  # bytes in a KiB: guest throughput is kept in whole KiB/s (see above)


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer proxflow whose schema this version does not know."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_ROLLUP = """
CREATE TABLE {table} (
    {key} {key_type} NOT NULL,
    bucket TIMESTAMP NOT NULL,{extra}
    n BIGINT NOT NULL,
    cpu_mean DOUBLE, cpu_max DOUBLE,
    mem_mean DOUBLE, mem_max DOUBLE,
    PRIMARY KEY ({key}, bucket)
);
"""


def _rollups() -> str:
    parts = []
    for res in ("5m", "1h"):
        parts.append(
            _ROLLUP.format(table=f"node_samples_{res}", key="node", key_type="VARCHAR", extra="")
        )
        parts.append(
            _ROLLUP.format(
                table=f"guest_samples_{res}",
                key="vmid",
                key_type="INTEGER",
                extra="\n    node VARCHAR,",
            )
        )
    return "".join(parts)


# Version 4's sample tables: (create columns, copy expressions, time column). Copies round CPU
# fractions to six decimals, keep mean memory to the byte and write rows in time order.
_SAMPLES_V4 = {
    "node_samples": (
        "node VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, cpu DOUBLE, maxcpu INTEGER, "
        "mem BIGINT, maxmem BIGINT",
        "node, ts, round(cpu, 6), maxcpu, mem, maxmem",
        "ts, node",
    ),
    "guest_samples": (
        "vmid INTEGER NOT NULL, ts TIMESTAMP NOT NULL, node VARCHAR NOT NULL, "
        "kind VARCHAR NOT NULL, cpu DOUBLE, cpus DOUBLE, mem BIGINT, maxmem BIGINT, "
        "netin BIGINT, netout BIGINT, diskread BIGINT, diskwrite BIGINT",
        "vmid, ts, node, kind, round(cpu, 6), cpus, mem, maxmem, netin, netout, diskread, "
        "diskwrite",
        "ts, vmid",
    ),
}
_ROLLUP_V4 = (
    "n INTEGER NOT NULL, cpu_mean DOUBLE, cpu_max DOUBLE, mem_mean BIGINT, mem_max BIGINT",
    "n, round(cpu_mean, 6), round(cpu_max, 6), round(mem_mean), round(mem_max)",
)


def _unindexed_samples() -> str:
    tables = dict(_SAMPLES_V4)
    for entity, key, key_type in (("node", "node", "VARCHAR"), ("guest", "vmid", "INTEGER")):
        node = ", node VARCHAR" if entity == "guest" else ""
        node_copy = ", node" if entity == "guest" else ""
        for res in ("5m", "1h"):
            tables[f"{entity}_samples_{res}"] = (
                f"{key} {key_type} NOT NULL, bucket TIMESTAMP NOT NULL{node}, {_ROLLUP_V4[0]}",
                f"{key}, bucket{node_copy}, {_ROLLUP_V4[1]}",
                f"bucket, {key}",
            )
    parts = []
    for table, (columns, copy, order) in tables.items():
        parts.append(
            f"CREATE TABLE {table}_v4 ({columns});\n"
            f"INSERT INTO {table}_v4 SELECT {copy} FROM {table} ORDER BY {order};\n"
            f"DROP TABLE {table};\n"
            f"ALTER TABLE {table}_v4 RENAME TO {table};\n"
        )
    return "".join(parts)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "samples, plans, migrations, runs, models, rules_seen",
        """
CREATE TABLE node_samples (
    node VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
    cpu DOUBLE, maxcpu INTEGER, mem BIGINT, maxmem BIGINT,
    PRIMARY KEY (node, ts)
);
CREATE TABLE guest_samples (
    vmid INTEGER NOT NULL, ts TIMESTAMP NOT NULL, node VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    cpu DOUBLE, cpus DOUBLE, mem BIGINT, maxmem BIGINT,
    netin BIGINT, netout BIGINT, diskread BIGINT, diskwrite BIGINT,
    PRIMARY KEY (vmid, ts)
);
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY, flow VARCHAR NOT NULL, started TIMESTAMP,
    finished TIMESTAMP, status VARCHAR, parameters JSON
);
CREATE TABLE plans (
    plan_id VARCHAR PRIMARY KEY, run_id VARCHAR, created TIMESTAMP NOT NULL, planner VARCHAR,
    imbalance_before DOUBLE, imbalance_after DOUBLE, moves JSON, skips JSON
);
CREATE TABLE migrations (
    id VARCHAR PRIMARY KEY, plan_id VARCHAR, vmid INTEGER NOT NULL, source VARCHAR NOT NULL,
    target VARCHAR NOT NULL, upid VARCHAR, status VARCHAR, started TIMESTAMP,
    finished TIMESTAMP, result VARCHAR
);
CREATE TABLE models (
    model_id VARCHAR PRIMARY KEY, created TIMESTAMP NOT NULL, path VARCHAR NOT NULL,
    metadata JSON, promoted BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE rules_seen (
    ts TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, name VARCHAR NOT NULL, members JSON,
    PRIMARY KEY (ts, kind, name)
);
""",
    ),
    Migration(2, "5-minute and hourly roll-ups of node and guest samples", _rollups()),
    Migration(
        3,
        "guest_config: slowly changing per-guest facts from the guest config",
        """
CREATE TABLE guest_config (
    vmid INTEGER PRIMARY KEY, node VARCHAR, kind VARCHAR, local_resources VARCHAR[],
    local_disk_bytes BIGINT, checked TIMESTAMP
);
""",
    ),
    Migration(
        4,
        "sample tables without primary-key indexes, rows in time order, mean memory in bytes",
        _unindexed_samples(),
    ),
    Migration(
        5,
        "guest disk and network throughput in KiB/s: per sample and per 5-minute bucket",
        """
ALTER TABLE guest_samples ADD COLUMN disk_kibps INTEGER;
ALTER TABLE guest_samples ADD COLUMN net_kibps INTEGER;
ALTER TABLE guest_samples_5m ADD COLUMN disk_kibps_mean INTEGER;
ALTER TABLE guest_samples_5m ADD COLUMN net_kibps_mean INTEGER;
""",
    ),
)

LATEST = MIGRATIONS[-1].version


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version; 0 for a fresh file."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not found or not found[0]:
        return 0
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def checked_version(con: duckdb.DuckDBPyConnection, where: str) -> int:
    """The file's schema version (as :func:`current_version`), refusing a file written by a
    newer proxflow: its tables may mean something this version does not know, so neither
    reading nor migrating it is safe. Every open that looks at the version goes through here.
    """
    # on a cursor: the version query leaves its result open, which would block later queries
    with con.cursor() as cursor:
        version = current_version(cursor)
    if version > LATEST:
        raise SchemaTooNewError(
            f"{where} has history-store schema version {version}, but this proxflow only knows "
            f"versions up to {LATEST}; it was written by a newer proxflow. Upgrade proxflow "
            "(or point it at another file) instead of opening this one."
        )
    return version


def migrate(con: duckdb.DuckDBPyConnection, where: str = "the store") -> list[int]:
    """Apply every migration the file lacks, each in its own transaction; return those applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        "description VARCHAR NOT NULL, applied TIMESTAMP NOT NULL)"
    )
    have = checked_version(con, where)
    applied: list[int] = []
    for step in MIGRATIONS:
        if step.version <= have:
            continue
        con.begin()
        try:
            con.execute(step.sql)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [step.version, step.description, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        applied.append(step.version)
    return applied


def utc_naive(when: datetime) -> datetime:
    """The store's time convention: naive UTC. Aware datetimes are converted; naive pass as-is."""
    if when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)
