"""Capacity maths on polars frames: headroom, N+1, and imbalance over time.

Units follow the engine: CPU in host cores, memory in bytes. Node samples from the store carry
``cpu`` as PVE reports it, a busy fraction of the node's ``maxcpu``; :func:`imbalance_over_time`
takes them as they are. Days until exhaustion (trend fitting) lives in
:mod:`analytics.exhaustion` and is re-exported here.

Pure functions: no I/O, no Prefect; the what-if answer reuses ``engine.lose_node`` so the rules
are the planner's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from analytics.exhaustion import CLUSTER, Exhaustion, days_until_exhausted, fit_exhaustion
from engine import ClusterSnapshot, Policy, Skip, apply_plan, loads, lose_node
from engine.plan import NodeLoad

_LOAD_COLUMNS = ("node", "cpu", "mem")


def _usage(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
    missing = [c for c in _LOAD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"load frame lacks column(s) {missing}; needs node, cpu, mem")
    return (
        frame.with_columns(pl.col("node").cast(pl.String))
        .group_by("node")
        .agg(
            pl.col("cpu").cast(pl.Float64).sum().alias(f"cpu_{suffix}"),
            pl.col("mem").cast(pl.Float64).sum().alias(f"mem_{suffix}"),
        )
    )


def headroom(
    nodes: pl.DataFrame,
    now_loads: pl.DataFrame,
    horizon_loads: pl.DataFrame,
    *,
    default_reserve: int = Policy().memory_reserve,
) -> pl.DataFrame:
    """Free CPU and memory per node, now and at the horizon, plus a ``cluster`` row.

    ``nodes``: ``node`` (str), ``cpus`` (logical CPUs), ``memory`` (bytes) and optionally
    ``reserve`` (bytes kept free; null or missing means ``default_reserve``).
    ``now_loads`` / ``horizon_loads``: ``node``, ``cpu`` (host cores busy), ``mem`` (bytes
    used); several rows per node (e.g. one per guest) are summed, absent nodes count as idle.

    Returns, per node sorted by name and then one ``cluster`` row of sums: ``node``, ``cpus``,
    ``memory``, ``reserve``, ``cpu_now``, ``mem_now``, ``cpu_horizon``, ``mem_horizon``,
    ``cpu_free_now`` = cpus − cpu_now, ``mem_free_now`` = memory − reserve − mem_now, and the
    same two at the horizon. Free amounts go negative when a node is over its capacity.
    """
    missing = [c for c in ("node", "cpus", "memory") if c not in nodes.columns]
    if missing:
        raise ValueError(f"nodes frame lacks column(s) {missing}; needs node, cpus, memory")
    reserve = (
        pl.col("reserve").fill_null(default_reserve)
        if "reserve" in nodes.columns
        else pl.lit(default_reserve)
    )
    base = nodes.select(
        pl.col("node").cast(pl.String),
        pl.col("cpus").cast(pl.Float64),
        pl.col("memory").cast(pl.Float64),
        reserve.cast(pl.Float64).alias("reserve"),
    )
    per_node = (
        base.join(_usage(now_loads, "now"), on="node", how="left")
        .join(_usage(horizon_loads, "horizon"), on="node", how="left")
        .with_columns(pl.col("^(cpu|mem)_(now|horizon)$").fill_null(0.0))
        .sort("node")
    )
    cluster = per_node.select(pl.lit(CLUSTER).alias("node"), pl.exclude("node").sum())
    both = pl.concat([per_node, cluster])
    return both.with_columns(
        (pl.col("cpus") - pl.col(f"cpu_{when}")).alias(f"cpu_free_{when}")
        for when in ("now", "horizon")
    ).with_columns(
        (pl.col("memory") - pl.col("reserve") - pl.col(f"mem_{when}")).alias(f"mem_free_{when}")
        for when in ("now", "horizon")
    )


@dataclass(frozen=True)
class NPlusOne:
    """Whether the cluster survives losing its largest node, and how loaded it would be."""

    survivable: bool
    node: str  # the node assumed lost
    stranded: tuple[Skip, ...]  # its guests with nowhere to go, each with reason and detail
    loads: pl.DataFrame  # per node after the loss (the lost node offline), see `loads_frame`
    imbalance: float  # across the surviving eligible nodes


def loads_frame(node_loads: tuple[NodeLoad, ...]) -> pl.DataFrame:
    """Engine `NodeLoad`s as a frame: node, cpu, cpu_p90, mem, mem_p90, cpus, memory, score,
    eligible."""
    return pl.DataFrame(
        [vars(n) for n in node_loads],
        schema={
            "node": pl.String,
            "cpu": pl.Float64,
            "cpu_p90": pl.Float64,
            "mem": pl.Float64,
            "mem_p90": pl.Float64,
            "cpus": pl.Int64,
            "memory": pl.Int64,
            "score": pl.Float64,
            "eligible": pl.Boolean,
        },
    )


def largest_node(snapshot: ClusterSnapshot) -> str:
    """The online node with the most memory, then the most CPUs (then the first by name)."""
    online = [n for n in snapshot.nodes if n.online]
    if not online:
        raise ValueError("no online node: nothing to lose")
    return min(online, key=lambda n: (-n.memory, -n.cpus, n.name)).name


def n_plus_one(snapshot: ClusterSnapshot, policy: Policy, node: str | None = None) -> NPlusOne:
    """Could the other nodes hold every guest if ``node`` (default: the largest) failed?

    Hard rules (memory after the reserve, vCPU overcommit, CPU ceiling, strict affinity,
    pinned or passthrough guests) are honoured by ``engine.lose_node``; the guests it cannot
    place are the stranded ones. Loads are the planner's, with the evacuation applied and the
    lost node offline (stranded guests stay counted on it).
    """
    lost = node if node is not None else largest_node(snapshot)
    loss = lose_node(snapshot, policy, lost)
    after = apply_plan(snapshot, loss.plan)
    after = replace(
        after,
        nodes=tuple(replace(n, online=False) if n.name == lost else n for n in after.nodes),
    )
    node_loads, imbalance = loads(after, policy)
    return NPlusOne(loss.survivable, lost, loss.stranded, loads_frame(node_loads), imbalance)


def imbalance_over_time(
    node_history: pl.DataFrame,
    weights: tuple[float, float] | Policy = (0.5, 0.5),
    *,
    ts: str = "ts",
) -> pl.DataFrame:
    """Per timestamp, the MAD of the per-node weighted load across online nodes.

    Load = w_cpu·cpu + w_mem·mem/maxmem with the weights normalised to sum to 1 (as in
    ``engine.state``); ``cpu`` is the node's busy fraction (PVE's node ``cpu``). ``weights`` is
    ``(w_cpu, w_mem)`` or a `Policy`. Rows with a false ``online`` column (when present) or a
    null/zero reading are left out. Returns ``ts``, ``nodes`` (how many counted), ``mean_load``
    and ``imbalance`` (mean absolute deviation from the mean), sorted by time.
    """
    w_cpu, w_mem = (
        (weights.cpu_weight, weights.memory_weight) if isinstance(weights, Policy) else weights
    )
    total = w_cpu + w_mem
    if total <= 0:
        raise ValueError(f"weights must not both be zero, got {(w_cpu, w_mem)}")
    keep = pl.col("cpu").is_not_null() & pl.col("mem").is_not_null() & (pl.col("maxmem") > 0)
    if "online" in node_history.columns:
        keep = keep & pl.col("online").fill_null(False)
    cpu, mem, maxmem = (pl.col(c).cast(pl.Float64) for c in ("cpu", "mem", "maxmem"))
    load = (w_cpu / total) * cpu + (w_mem / total) * mem / maxmem
    return (
        node_history.filter(keep)
        .select(pl.col(ts), load.alias("load"))
        .group_by(ts)
        .agg(
            pl.len().alias("nodes"),
            pl.col("load").mean().alias("mean_load"),
            (pl.col("load") - pl.col("load").mean()).abs().mean().alias("imbalance"),
        )
        .with_columns(pl.col("nodes").cast(pl.Int64))
        .sort(ts)
    )


__all__ = [
    "CLUSTER",
    "Exhaustion",
    "NPlusOne",
    "days_until_exhausted",
    "fit_exhaustion",
    "headroom",
    "imbalance_over_time",
    "largest_node",
    "loads_frame",
    "n_plus_one",
]
