"""Frames on their way into the store: required columns, time convention, scrubbed JSON.

Each table's key (what makes appends idempotent), required columns, time columns, JSON columns
and list columns. Time columns may arrive as datetimes (naive = UTC, aware = converted) or epoch
seconds and leave as naive UTC. JSON columns arrive as JSON strings and leave with every
secret-looking key's value replaced, so tokens and passwords never reach the file. List columns
leave as lists of strings, CPU fractions (and the roll-ups' CPU means and maxima) rounded to
`CPU_DECIMALS`, guest throughput (KiB/s) rounded to whole KiB/s as the store keeps it. Extra
columns of a frame are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

CPU_DECIMALS = 6  # see analytics.schema: finer digits of a CPU fraction are noise
WHOLE: Final = "half_away_from_zero"  # as DuckDB rounds, so ingest and roll-ups agree


@dataclass(frozen=True)
class _Table:
    key: tuple[str, ...]
    required: tuple[str, ...] = ()
    times: tuple[str, ...] = ()
    jsons: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    rounded: tuple[str, ...] = ()
    whole: tuple[str, ...] = ()  # rounded to integers: a stored row then compares equal
    # a PRIMARY KEY backs the key (ON CONFLICT); else appends anti-join on it (sample tables)
    indexed: bool = True


TABLES: dict[str, _Table] = {
    "node_samples": _Table(("node", "ts"), times=("ts",), rounded=("cpu",), indexed=False),
    "guest_samples": _Table(
        ("vmid", "ts"),
        ("node", "kind"),
        ("ts",),
        rounded=("cpu",),
        whole=("disk_kibps", "net_kibps"),
        indexed=False,
    ),
    "runs": _Table(("run_id",), ("flow",), ("started", "finished"), ("parameters",)),
    "plans": _Table(("plan_id",), ("created",), ("created",), ("moves", "skips")),
    "migrations": _Table(("id",), ("vmid", "source", "target"), ("started", "finished")),
    "models": _Table(("model_id",), ("created", "path"), ("created",), ("metadata",)),
    "rules_seen": _Table(("ts", "kind", "name"), (), ("ts",), ("members",)),
    "guest_config": _Table(("vmid",), (), ("checked",), lists=("local_resources",)),
    # roll-ups: `maintain` computes them, but writing them through the same path lets a
    # benchmark produce exactly the rows and order `maintain` would. Append the hourly rows
    # with the 5-minute ones: `maintain` rolls 5-minute rows up only from the hour of the oldest
    # raw sample on (and adds missing buckets only before the 5-minute cutoff)
    **{
        f"{entity}_samples_{res}": _Table(
            (key, "bucket"),
            ("n",),
            ("bucket",),
            rounded=("cpu_mean", "cpu_max"),
            whole=("disk_kibps_mean", "net_kibps_mean") if (entity, res) == ("guest", "5m") else (),
            indexed=False,
        )
        for entity, key in (("node", "node"), ("guest", "vmid"))
        for res in ("5m", "1h")
    },
}

_SECRET = re.compile(r"pass(word)?|secret|token|ticket|csrf|api[-_]?key|private|credential", re.I)
REDACTED = "<redacted>"


def scrub(value: Any) -> Any:
    """Replace the value of every key that looks like a secret, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET.search(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """JSON for a store column, with secrets scrubbed (use it to build JSON columns)."""
    return json.dumps(scrub(value), default=str, sort_keys=True)


class ArrowStream:
    """Hands DuckDB a frame through the Arrow C stream, so no pyarrow is needed."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._frame.__arrow_c_stream__(requested_schema)


def normalise(table: str, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    spec = TABLES[table]
    missing = [c for c in (*spec.key, *spec.required) if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks required column(s) {missing}")
    frame = frame.select([c for c in columns if c in frame.columns])
    # one fix per column, a later one replacing an earlier. A column of only nulls has polars'
    # Null type, which DuckDB cannot read from Arrow; as text it is a NULL of the column's own
    # type once inserted, unless a fix below gives it a type of its own
    fixes = {c: pl.col(c).cast(pl.String) for c, dtype in frame.schema.items() if dtype == pl.Null}
    for col in spec.times:
        if col not in frame.columns:
            continue
        dtype = frame.schema[col]
        if dtype.is_numeric():
            fixes[col] = pl.from_epoch(pl.col(col).cast(pl.Int64), time_unit="s").alias(col)
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            fixes[col] = pl.col(col).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    for col in spec.jsons:
        if col in frame.columns:
            fixes[col] = pl.col(col).map_elements(lambda s: to_json(json.loads(s)), pl.String)
    for col in spec.rounded:
        if col in frame.columns:
            fixes[col] = pl.col(col).cast(pl.Float64).round(CPU_DECIMALS)
    for col in spec.whole:
        if col in frame.columns:
            fixes[col] = pl.col(col).cast(pl.Float64).round(mode=WHOLE).cast(pl.Int64)
    for col in spec.lists:
        if col not in frame.columns:
            continue
        dtype = frame.schema[col]
        if not isinstance(dtype, pl.List | pl.Null):
            raise ValueError(f"{table}.{col} must be a list of strings (or null), got {dtype}")
        # a column of only empty lists arrives as list[null]; the table wants list[str]
        fixes[col] = pl.col(col).cast(pl.List(pl.String))
    return frame.with_columns(fixes.values()) if fixes else frame
