"""The history store's DDL as numbered migrations, applied once each, in a transaction.

Time: every ``ts``/``bucket``/``created``/``started``/``finished`` column is a naive
``TIMESTAMP`` holding **UTC**. A timestamp (rather than epoch seconds) lets DuckDB bucket with
``time_bucket``/``date_trunc`` and reads naturally in notebooks; callers may still hand in
epoch seconds or tz-aware datetimes, which the store converts to naive UTC on the way in.

Samples are **wide** (one row per entity and sample time, one column per metric), not long
(entity, metric, ts, value):

- every collector poll yields all metrics of an entity at once, so a wide row is exactly one
  observation and the primary key (entity, ts) makes re-ingest idempotent per observation;
- the planner and features read several metrics of the same instant together (cpu with cpus,
  mem with maxmem); wide rows need no pivot and are about 10x fewer rows;
- metrics are a small, fixed set from PVE's API; a new one is a migration (an added nullable
  column), which is cheap in DuckDB's columnar storage and keeps types per metric.

Secrets are never stored: there is no column for tokens, passwords or tickets, and JSON
payloads (run parameters, model metadata) are scrubbed by the store before insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb


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


def check_not_newer(version: int, where: str) -> None:
    if version > LATEST:
        raise SchemaTooNewError(
            f"{where} has history-store schema version {version}, but this proxflow only knows "
            f"versions up to {LATEST}; it was written by a newer proxflow. Upgrade proxflow "
            "(or point it at another file) instead of opening this one."
        )


def migrate(con: duckdb.DuckDBPyConnection, where: str = "the store") -> list[int]:
    """Apply every migration the file lacks, each in its own transaction; return those applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        "description VARCHAR NOT NULL, applied TIMESTAMP NOT NULL)"
    )
    have = current_version(con)
    check_not_newer(have, where)
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
