"""The capacity report's numbers, computed once from a snapshot and history.

Pure (no I/O, no Prefect) and reusing `analytics.capacity` and `analytics.exhaustion` for the
maths. Units follow the engine (CPU in host cores, memory in bytes). "Now" is the guests'
current use; "at the horizon" is their p90 forecast, the level to plan against. No credential
is a parameter, so none can reach a report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from analytics.capacity import NPlusOne, headroom, imbalance_over_time, n_plus_one
from analytics.exhaustion import days_until_exhausted
from engine import ClusterSnapshot, Policy
from engine.policy import GIB

NEED_DAYS = 3  # a trend needs a standard error: at least three daily peaks
TOP_MOVERS = 10
MAX_POINTS = 300  # per plotted series; longer history is bucketed (peaks kept)
WHOLE_DAY_HOURS = 21.6  # an edge day counts when its samples span 90 % of it
NODE_COLUMNS = ("node", "ts", "cpu", "maxcpu", "mem", "maxmem")
FORECAST_COLUMNS = ("series", "ts", "actual", "mean", "p90")
_EXHAUSTION_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "resource": pl.String(),
        "capacity": pl.Float64(),
        "n_days": pl.Int64(),
        "slope_per_day": pl.Float64(),
        "level": pl.Float64(),
        "days": pl.Float64(),
        "days_optimistic": pl.Float64(),
        "days_pessimistic": pl.Float64(),
        "last_day": pl.Date(),
    }
)
_MOVERS_SCHEMA = pl.Schema(
    {
        "vmid": pl.Int64(),
        "name": pl.String(),
        "moves": pl.Int64(),
        "gib_moved": pl.Float64(),
        "last_move": pl.Datetime("us"),
    }
)


@dataclass(frozen=True)
class CapacityReport:
    """Everything the renderers show; frames keep engine units (cores, bytes)."""

    title: str
    generated_at: float  # epoch seconds, cluster time
    horizon_min: int
    headroom: pl.DataFrame  # see analytics.capacity.headroom; online nodes + cluster row
    exhaustion: pl.DataFrame  # node, resource (cpu|memory), days, days_optimistic, ...
    n_plus_one: NPlusOne | None  # None only when no node is online
    imbalance: pl.DataFrame  # see analytics.capacity.imbalance_over_time; instants of 2+ nodes
    top_movers: pl.DataFrame  # vmid, name, moves, gib_moved, last_move
    forecast_vs_actual: pl.DataFrame | None  # series, ts, actual, mean, p90; None: no model
    series_names: Mapping[str, str]  # forecast series (vmid as text) → guest name, when known
    usage: pl.DataFrame  # node, ts, cpu (cores), mem (bytes), cpus, memory: bucketed peaks
    history_days: int  # whole days of node history
    guests: int
    forecast_guests: int  # guests with a forecast of their own (others: stay as they are now)
    offline: tuple[str, ...]
    target_imbalance: float


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; it needs {list(columns)}, got {frame.columns}"
        )


def _whole_days(history: pl.DataFrame) -> pl.DataFrame:
    """Drop a first or last UTC day that the samples cover only in part (its peak is low)."""
    spans = (
        history.group_by(pl.col("ts").dt.date().alias("day"))
        .agg((pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds().alias("span"))
        .sort("day")
    )
    if spans.height == 0:
        return history
    days = spans["day"].to_list()
    short = [d for d, s in zip(days, spans["span"], strict=True) if s < WHOLE_DAY_HOURS * 3600]
    drop = {d for d in short if d in (days[0], days[-1])}
    return history.filter(~pl.col("ts").dt.date().is_in(list(drop)))


def _capacities(
    snapshot: ClusterSnapshot, policy: Policy, history: pl.DataFrame
) -> tuple[dict[str, float], dict[str, float]]:
    """Per node: logical CPUs, and memory guests may use (memory minus the node's reserve).
    Nodes known only from history use their last reported size and the default reserve."""
    last = history.sort("ts").group_by("node").agg(pl.col("maxcpu").last(), pl.col("maxmem").last())
    cpus = {r["node"]: float(r["maxcpu"] or 0) for r in last.iter_rows(named=True)}
    mem = {
        r["node"]: float((r["maxmem"] or 0) - policy.reserve_for(r["node"]))
        for r in last.iter_rows(named=True)
    }
    for n in snapshot.nodes:
        cpus[n.name] = float(n.cpus)
        mem[n.name] = float(n.memory - policy.reserve_for(n.name, n.reserve))
    return cpus, mem


def _exhaustion(
    history: pl.DataFrame, cpus: Mapping[str, float], mem: Mapping[str, float]
) -> pl.DataFrame:
    parts = []
    for resource, column, capacity in (("cpu", "cores", cpus), ("memory", "mem", mem)):
        out = days_until_exhausted(history, capacity, column)
        parts.append(out.with_columns(pl.lit(resource).alias("resource")))
    return pl.concat(parts).select(list(_EXHAUSTION_SCHEMA)).cast(_EXHAUSTION_SCHEMA)


def _every(history: pl.DataFrame) -> str:
    """A bucket width (whole minutes) that keeps a series under `MAX_POINTS` points."""
    span = float(
        history.select((pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds()).item()
    )
    return f"{max(1, math.ceil(span / MAX_POINTS / 60))}m"


def _usage(
    history: pl.DataFrame, cpus: Mapping[str, float], mem: Mapping[str, float]
) -> pl.DataFrame:
    if history.height == 0:
        return pl.DataFrame(
            schema={
                "node": pl.String(),
                "ts": pl.Datetime("us"),
                "cpu": pl.Float64(),
                "mem": pl.Float64(),
                "cpus": pl.Float64(),
                "memory": pl.Float64(),
            }
        )
    every = _every(history)
    return (
        history.with_columns(pl.col("ts").dt.truncate(every))
        .group_by("node", "ts")
        .agg(pl.col("cores").max().alias("cpu"), pl.col("mem").cast(pl.Float64).max())
        .with_columns(
            pl.col("node")
            .replace_strict(cpus, default=None, return_dtype=pl.Float64)
            .alias("cpus"),
            pl.col("node")
            .replace_strict(mem, default=None, return_dtype=pl.Float64)
            .alias("memory"),
        )
        .sort("node", "ts")
    )


def _names(snapshot: ClusterSnapshot, guest_names: Mapping[int, str]) -> dict[int, str]:
    return {g.vmid: g.name for g in snapshot.guests} | dict(guest_names)


def _series_names(
    frame: pl.DataFrame | None, snapshot: ClusterSnapshot, guest_names: Mapping[int, str]
) -> dict[str, str]:
    if frame is None:
        return {}
    names = _names(snapshot, guest_names)
    series = frame["series"].cast(pl.String).unique().to_list()
    return {s: names[int(s)] for s in series if s.isdigit() and int(s) in names}


def _top_movers(
    migrations: pl.DataFrame, snapshot: ClusterSnapshot, guest_names: Mapping[int, str]
) -> pl.DataFrame:
    if migrations.height == 0:
        return pl.DataFrame(schema=_MOVERS_SCHEMA)
    _require(migrations, ("vmid", "status"), "migrations frame")
    when = [c for c in ("finished", "started") if c in migrations.columns]
    last = pl.coalesce(when).max() if when else pl.lit(None, pl.Datetime("us"))
    counted = (
        migrations.filter(pl.col("status") == "ok")
        .group_by(pl.col("vmid").cast(pl.Int64))
        .agg(pl.len().cast(pl.Int64).alias("moves"), last.alias("last_move"))
    )
    names = _names(snapshot, guest_names)
    used = {g.vmid: g.mem_used / GIB for g in snapshot.guests}
    vmids = counted["vmid"].to_list()
    return (
        counted.with_columns(
            pl.Series("name", [names.get(v, "") for v in vmids], pl.String),
            # memory in use now per move: a live migration copies about that much
            (pl.Series([used.get(v) for v in vmids], dtype=pl.Float64) * pl.col("moves")).alias(
                "gib_moved"
            ),
        )
        .sort(["moves", "gib_moved", "vmid"], descending=[True, True, False], nulls_last=True)
        .head(TOP_MOVERS)
        .select(list(_MOVERS_SCHEMA))
        .cast(_MOVERS_SCHEMA)
    )


def _clean_history(node_history: pl.DataFrame) -> pl.DataFrame:
    """The node samples with naive-UTC times, readings present, and CPU in cores."""
    if node_history.height == 0:
        empty = pl.DataFrame(schema=dict.fromkeys((*NODE_COLUMNS, "cores"), pl.Float64))
        return empty.with_columns(
            pl.col("node").cast(pl.String), pl.col("ts").cast(pl.Datetime("us"))
        )
    _require(node_history, NODE_COLUMNS, "node_history")
    ts = pl.col("ts")
    zone = getattr(node_history.schema["ts"], "time_zone", None)
    if zone is not None:
        ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return (
        node_history.select(NODE_COLUMNS)
        .with_columns(pl.col("node").cast(pl.String), ts.cast(pl.Datetime("us")))
        .drop_nulls(["ts", "cpu", "mem"])
        .with_columns((pl.col("cpu") * pl.col("maxcpu")).cast(pl.Float64).alias("cores"))
    )


def _loads(snapshot: ClusterSnapshot) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per guest: node, cpu (cores) and mem (bytes) now, and at the horizon (p90 forecast)."""
    schema = {"node": pl.String, "cpu": pl.Float64, "mem": pl.Float64}
    guests = snapshot.guests
    risk = [snapshot.forecast(g.vmid) for g in guests]
    where = [g.node for g in guests]
    now = pl.DataFrame(
        {"node": where, "cpu": [g.cpu_used for g in guests], "mem": [g.mem_used for g in guests]},
        schema=schema,
    )
    later = pl.DataFrame(
        {"node": where, "cpu": [f.cpu_p90 for f in risk], "mem": [f.mem_p90 for f in risk]},
        schema=schema,
    )
    return now, later


def _online_nodes(snapshot: ClusterSnapshot, policy: Policy) -> pl.DataFrame:
    online = [n for n in snapshot.nodes if n.online]
    return pl.DataFrame(
        {
            "node": [n.name for n in online],
            "cpus": [n.cpus for n in online],
            "memory": [n.memory for n in online],
            "reserve": [policy.reserve_for(n.name, n.reserve) for n in online],
        },
        schema={"node": pl.String, "cpus": pl.Int64, "memory": pl.Int64, "reserve": pl.Int64},
    )


def build_report(
    snapshot: ClusterSnapshot,
    policy: Policy,
    *,
    node_history: pl.DataFrame,
    migrations: pl.DataFrame,
    guest_names: Mapping[int, str],
    forecast_vs_actual: pl.DataFrame | None,
    horizon_min: int,
    title: str,
) -> CapacityReport:
    """The capacity report for ``snapshot`` and the node samples in ``node_history``.

    ``node_history``: node, ts (naive UTC), cpu (busy fraction), maxcpu, mem, maxmem.
    ``migrations``: the store's rows (vmid, status, started, finished, ...); only ``ok`` ones
    count. ``guest_names`` names guests the snapshot no longer holds (it wins over the
    snapshot). ``forecast_vs_actual``: series, ts, actual, mean, p90 (and optionally ``unit``)
    for the busiest guests, or None when no model exists. Short or empty history leaves the
    trend sections explaining why instead of failing.
    """
    if horizon_min <= 0:
        raise ValueError(f"horizon_min must be a positive number of minutes, got {horizon_min}")
    if forecast_vs_actual is not None:
        _require(forecast_vs_actual, FORECAST_COLUMNS, "forecast_vs_actual frame")
        forecast_vs_actual = forecast_vs_actual.with_columns(pl.col("series").cast(pl.String))
        forecast_vs_actual = forecast_vs_actual.sort("series", "ts")
    history = _clean_history(node_history)
    whole = _whole_days(history)
    n_days = whole["ts"].dt.date().n_unique() if whole.height else 0
    cpus, mem = _capacities(snapshot, policy, history)
    nodes = _online_nodes(snapshot, policy)
    now, later = _loads(snapshot)
    return CapacityReport(
        title=title,
        generated_at=snapshot.now,
        horizon_min=horizon_min,
        headroom=headroom(nodes, now, later, default_reserve=policy.memory_reserve),
        exhaustion=(
            _exhaustion(whole, cpus, mem)
            if n_days >= NEED_DAYS
            else pl.DataFrame(schema=_EXHAUSTION_SCHEMA)
        ),
        n_plus_one=n_plus_one(snapshot, policy) if nodes.height else None,
        # a lone node's reading (e.g. polled a moment apart from the rest) has no spread
        imbalance=imbalance_over_time(history, policy).filter(pl.col("nodes") >= 2),
        top_movers=_top_movers(migrations, snapshot, guest_names),
        forecast_vs_actual=forecast_vs_actual,
        series_names=_series_names(forecast_vs_actual, snapshot, guest_names),
        usage=_usage(history, cpus, mem),
        history_days=n_days,
        guests=len(snapshot.guests),
        forecast_guests=len({f.vmid for f in snapshot.forecasts}),
        offline=tuple(sorted(n.name for n in snapshot.nodes if not n.online)),
        target_imbalance=policy.target_imbalance,
    )


__all__ = ["MAX_POINTS", "NEED_DAYS", "CapacityReport", "build_report"]
