"""One read of the whole cluster: engine types for the planner, frames for the store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from engine.model import (
    ClusterSnapshot,
    Forecast,
    Guest,
    MigrationRecord,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)

# the store's sample columns (analytics.schema), PVE units: cpu is a busy fraction of the
# entity's own CPUs, memory in bytes, ts in epoch seconds
NODE_SCHEMA: dict[str, Any] = {
    "node": pl.String,
    "ts": pl.Int64,
    "cpu": pl.Float64,
    "maxcpu": pl.Int64,
    "mem": pl.Int64,
    "maxmem": pl.Int64,
}
GUEST_SCHEMA: dict[str, Any] = {
    "vmid": pl.Int64,
    "ts": pl.Int64,
    "node": pl.String,
    "kind": pl.String,
    "cpu": pl.Float64,
    "cpus": pl.Float64,
    "mem": pl.Int64,
    "maxmem": pl.Int64,
    "netin": pl.Int64,  # cumulative byte counters, as /cluster/resources gives them
    "netout": pl.Int64,
    "diskread": pl.Int64,
    "diskwrite": pl.Int64,
    # KiB/s, diskread + diskwrite and netin + netout: an RRD backfill gives them; live rows
    # leave them null and the store derives them from the counters (analytics.rates)
    "disk_kibps": pl.Float64,
    "net_kibps": pl.Float64,
}
RULES_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "kind": pl.String,
    "name": pl.String,
    "members": pl.String,
}


def frame(rows: Iterable[tuple[Any, ...]], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=dict(schema), orient="row")


@dataclass(frozen=True)
class GuestConfig:
    """Slowly changing facts about a guest that `/cluster/resources` does not carry."""

    vmid: int
    local_resources: tuple[str, ...] = ()  # passthrough devices and bind mounts: never movable
    local_disk_bytes: int = 0  # volumes on storage only the current node has


@dataclass(frozen=True)
class Inventory:
    taken_at: float  # cluster time, epoch seconds
    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    node_rules: tuple[NodeAffinityRule, ...]
    resource_rules: tuple[ResourceAffinityRule, ...]
    node_samples: pl.DataFrame = field(repr=False)
    guest_samples: pl.DataFrame = field(repr=False)
    rules_seen: pl.DataFrame = field(repr=False)
    problems: tuple[str, ...] = ()
    shared_storages: frozenset[str] = frozenset()

    def snapshot(
        self, forecasts: Iterable[Forecast] = (), history: Iterable[MigrationRecord] = ()
    ) -> ClusterSnapshot:
        return ClusterSnapshot(
            nodes=self.nodes,
            guests=self.guests,
            forecasts=tuple(forecasts),
            node_rules=self.node_rules,
            resource_rules=self.resource_rules,
            history=tuple(history),
            now=self.taken_at,
        )

    @property
    def offline_nodes(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes if not n.online)

    def guest(self, vmid: int) -> Guest | None:
        return next((g for g in self.guests if g.vmid == vmid), None)


def with_configs(guests: Iterable[Guest], configs: Mapping[int, GuestConfig]) -> tuple[Guest, ...]:
    """Guests with their cached local resources and disks filled in."""
    out = []
    for g in guests:
        cfg = configs.get(g.vmid)
        if cfg is not None:
            g = replace(
                g, local_resources=cfg.local_resources, local_disk_bytes=cfg.local_disk_bytes
            )
        out.append(g)
    return tuple(out)
