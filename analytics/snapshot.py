"""A `ClusterSnapshot` rebuilt from the history store, for what-if questions away from the cluster.

The snapshot is the cluster as the newest ingest saw it: the nodes and running guests sampled at
the newest sample time, their local devices and disks from ``guest_config``, the HA rules
recorded in ``rules_seen`` at that time, and the migrations finished in the days before it (for
cooldowns). A guest that a migration moved after the newest sample (a balance run ends with its
moves, the next ingest comes later) is placed on that migration's target. Everything is read on
one read-only connection, so the parts agree with each other and the file is never created,
migrated or locked against writers for longer than the reads.

What the store does not keep, and so the snapshot cannot know:

- tags, pools, locks, HA management and guest names (guests are named ``qemu<vmid>`` or
  ``lxc<vmid>``, as PVE's own fallback): a guest pinned or ignored by a tag counts as movable;
- node maintenance and per-node memory reserves (the policy's defaults apply);
- stopped guests: PVE reports no load for them and the collector stores none, so they are
  absent (a stopped guest and a deleted one look the same in the store);
- nodes offline at the newest sample keep the size of their last sample and are offline.

Guests carry no forecast: the engine then assumes each stays at its current load. Pass
``forecasts`` to plan against a model's instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from analytics.connect import fetch_frame, opened
from analytics.schema import checked_version
from analytics.store import Store, fetch_completed_migrations
from engine import (
    ClusterSnapshot,
    Forecast,
    Guest,
    GuestKind,
    MigrationRecord,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)

NEEDS_VERSION = 3  # guest_config arrived with schema version 3
HISTORY_DAYS = 7.0  # migrations older than this no longer hold a cooldown

_NODES = """
SELECT node, ts, maxcpu, maxmem, ts = max(ts) OVER () AS online FROM node_samples
QUALIFY row_number() OVER (PARTITION BY node ORDER BY ts DESC) = 1 ORDER BY node
"""
_GUESTS = """
SELECT s.vmid, s.node, s.kind, s.cpu, s.cpus, s.mem, s.maxmem,
       c.local_resources, coalesce(c.local_disk_bytes, 0) AS local_disk_bytes
FROM guest_samples s LEFT JOIN guest_config c USING (vmid)
WHERE s.ts = (SELECT max(ts) FROM guest_samples) ORDER BY s.vmid
"""
_RULES = "SELECT kind, name, members FROM rules_seen WHERE ts = $at ORDER BY kind, name"


def snapshot_from_store(
    store: Store,
    *,
    forecasts: Iterable[Forecast] = (),
    history_days: float = HISTORY_DAYS,
) -> ClusterSnapshot:
    """The cluster at the store's newest sample (see the module docstring for what is missing).

    Raises `FileNotFoundError` for a missing file and `ValueError` for a store that is too old
    or holds no node samples yet.
    """
    if not store.path.is_file():
        raise FileNotFoundError(f"{store.path}: no history store there")
    with opened(store.path, read_only=True, backoff=store.backoff) as con:
        _check_version(con, store)
        nodes = fetch_frame(con, _NODES)
        if nodes.is_empty():
            raise ValueError(
                f"{store.path}: no node samples yet; run an ingest (or `proxflow demo`) first"
            )
        newest = nodes["ts"].max()
        assert isinstance(newest, datetime)
        guests = fetch_frame(con, _GUESTS)
        rules = fetch_frame(con, _RULES, {"at": newest})
        moved = fetch_completed_migrations(con, newest - timedelta(days=history_days))
    # the last move of each guest that the newest sample did not see yet
    since_sample = moved.filter(pl.col("finished") > newest.replace(tzinfo=UTC).timestamp())
    moved_to = dict(zip(since_sample["vmid"], since_sample["target"], strict=True))
    node_rules, resource_rules = _rules(rules, store)
    return ClusterSnapshot(
        nodes=tuple(_node(r) for r in nodes.iter_rows(named=True)),
        guests=tuple(_guest(r, moved_to) for r in guests.iter_rows(named=True)),
        forecasts=tuple(forecasts),
        node_rules=node_rules,
        resource_rules=resource_rules,
        history=migration_records(moved),
        now=newest.replace(tzinfo=UTC).timestamp(),
    )


def migration_records(moved: pl.DataFrame) -> tuple[MigrationRecord, ...]:
    """The engine's records of completed migrations, from the store's rows of them."""
    return tuple(
        MigrationRecord(int(r["vmid"]), r["source"], r["target"], float(r["finished"]))
        for r in moved.iter_rows(named=True)
    )


def _check_version(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    version = checked_version(con, str(store.path))
    if version < NEEDS_VERSION:
        raise ValueError(
            f"{store.path}: history-store schema version {version}, but a snapshot needs "
            f"version {NEEDS_VERSION} or later (guest_config); one ingest cycle upgrades it"
        )


def _node(r: dict[str, Any]) -> Node:
    return Node(
        name=r["node"],
        cpus=int(r["maxcpu"] or 0),
        memory=int(r["maxmem"] or 0),
        online=bool(r["online"]),
    )


def _guest(r: dict[str, Any], moved_to: dict[int, str]) -> Guest:
    kind = GuestKind(r["kind"])
    cpus = float(r["cpus"] or 0.0)
    return Guest(
        vmid=int(r["vmid"]),
        name=f"{kind.value}{r['vmid']}",
        node=moved_to.get(int(r["vmid"]), r["node"]),
        kind=kind,
        vcpus=max(1, round(cpus)),
        mem_max=int(r["maxmem"] or 0),
        mem_used=int(r["mem"] or 0),
        cpu_used=float(r["cpu"] or 0.0) * cpus,
        local_resources=tuple(r["local_resources"] or ()),
        local_disk_bytes=int(r["local_disk_bytes"]),
    )


def _rules(
    frame: pl.DataFrame, store: Store
) -> tuple[tuple[NodeAffinityRule, ...], tuple[ResourceAffinityRule, ...]]:
    """Engine rules from ``rules_seen`` rows (members as `tasks.pve.rules` writes them)."""
    node_rules: list[NodeAffinityRule] = []
    resource_rules: list[ResourceAffinityRule] = []
    for r in frame.iter_rows(named=True):
        kind, name = r["kind"], r["name"]
        try:
            members = json.loads(r["members"])
            vmids = tuple(int(v) for v in members["vmids"])
            if kind == "node-affinity":
                nodes = tuple((str(n), int(p)) for n, p in members["nodes"])
                node_rules.append(NodeAffinityRule(name, vmids, nodes, bool(members["strict"])))
            elif kind == "resource-affinity":
                resource_rules.append(ResourceAffinityRule(name, vmids, bool(members["positive"])))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{store.path}: rules_seen row {name!r} ({kind}) is unreadable ({exc!r}); "
                "expected kind node-affinity with members {vmids, nodes, strict} or "
                f"resource-affinity with {{vmids, positive}}, got members {r['members']!r:.120}"
            ) from None
    return tuple(node_rules), tuple(resource_rules)


__all__ = ["HISTORY_DAYS", "migration_records", "snapshot_from_store"]
