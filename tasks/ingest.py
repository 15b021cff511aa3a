"""One ingest cycle: read the cluster in a constant number of calls, keep it in the store.

The per-guest facts the planner needs but `/cluster/resources` does not carry (passthrough
devices, local disks) change rarely, so they are read per guest only for guests that are new or
whose record is older than `refresh`, at most `max_reads` per cycle, and kept in the store's
``guest_config`` table. A steady-state cycle therefore costs the same few calls at 100 guests as
at 5,000. The migration task re-checks a guest right before moving it, so a device added since
the last read is still caught.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from analytics import Store
from tasks.limits import store_slot
from tasks.pve import Gateway, GuestConfig, Inventory
from tasks.pve.backfill import TIMEFRAMES, check_timeframe
from tasks.pve.inventory import with_configs
from tasks.records import Slot, write_many

REFRESH_SECONDS = 6 * 3600.0
MAX_READS = 500


@dataclass(frozen=True)
class IngestResult:
    inventory: Inventory
    node_rows: int
    guest_rows: int
    configs_read: int
    calls: int
    problems: tuple[str, ...]


def cached_configs(store: Store) -> tuple[dict[int, GuestConfig], dict[int, float]]:
    frame = store.guest_configs()
    configs: dict[int, GuestConfig] = {}
    checked: dict[int, float] = {}
    for r in frame.iter_rows(named=True):
        vmid = int(r["vmid"])
        configs[vmid] = GuestConfig(
            vmid=vmid,
            local_resources=tuple(r["local_resources"] or ()),
            local_disk_bytes=int(r["local_disk_bytes"] or 0),
        )
        when = r["checked"]
        checked[vmid] = when.timestamp() if isinstance(when, datetime) else float(when or 0)
    return configs, checked


def config_frame(configs: dict[int, GuestConfig], inventory: Inventory) -> pl.DataFrame:
    where = {g.vmid: g for g in inventory.guests}
    rows = [
        {
            "vmid": c.vmid,
            "node": where[c.vmid].node if c.vmid in where else None,
            "kind": where[c.vmid].kind.value if c.vmid in where else None,
            "local_resources": list(c.local_resources),
            "local_disk_bytes": c.local_disk_bytes,
            "checked": inventory.taken_at,
        }
        for c in configs.values()
    ]
    return pl.DataFrame(
        rows,
        schema={
            "vmid": pl.Int64,
            "node": pl.String,
            "kind": pl.String,
            "local_resources": pl.List(pl.String),
            "local_disk_bytes": pl.Int64,
            "checked": pl.Float64,
        },
    )


def collect(
    gateway: Gateway,
    store: Store,
    *,
    refresh: float = REFRESH_SECONDS,
    max_reads: int = MAX_READS,
    progress: Callable[[int, int], None] | None = None,
    slot: Slot = store_slot,
) -> IngestResult:
    """Read the cluster, refresh stale guest facts, append everything to the store.

    `slot` guards the store write (see `tasks.records.write_many`).
    """
    calls_before = gateway.calls
    configs, checked = cached_configs(store)
    inventory = gateway.inventory(configs=configs)
    due = sorted(
        (g for g in inventory.guests if inventory.taken_at - checked.get(g.vmid, 0.0) > refresh),
        key=lambda g: (checked.get(g.vmid, 0.0), g.vmid),
    )[:max_reads]
    fresh = gateway.guest_configs(inventory, due, progress=progress) if due else {}
    if fresh:
        configs.update(fresh)
        inventory = dataclasses.replace(inventory, guests=with_configs(inventory.guests, configs))
    node_rows, guest_rows, _, _ = write_many(
        store,
        [
            ("node_samples", inventory.node_samples, False),
            ("guest_samples", inventory.guest_samples, False),
            ("rules_seen", inventory.rules_seen, False),
            ("guest_config", config_frame(fresh, inventory), True),
        ],
        slot=slot,
    )
    return IngestResult(
        inventory,
        node_rows,
        guest_rows,
        len(fresh),
        gateway.calls - calls_before,
        inventory.problems,
    )


def backfill(
    gateway: Gateway,
    store: Store,
    timeframe: str,
    progress: Callable[[int, int], None] | None = None,
    *,
    slot: Slot = store_slot,
) -> tuple[int, int]:
    """History from PVE's RRD files, as fine as PVE keeps it for each stretch of time.

    Every timeframe up to the requested one is read, finest first, for the guests of one
    inventory; a coarser one only adds the time before the finer one begins (at 30-minute
    resolution for a week, for instance), so recent history keeps PVE's finest resolution.
    `progress(done, total)` counts the series of all timeframes together.
    """
    check_timeframe(timeframe)
    frames = TIMEFRAMES[: TIMEFRAMES.index(timeframe) + 1]
    inventory = gateway.inventory()
    nodes: list[pl.DataFrame] = []
    guests: list[pl.DataFrame] = []
    for i, frame in enumerate(frames):
        # every timeframe reads the same series, so the whole backfill is len(frames) times one
        step = None if progress is None else _offset(progress, i, len(frames))
        n, g = gateway.backfill(inventory, frame, progress=step)
        if nodes:
            n = n.filter(pl.col("ts") < min(f["ts"].min() for f in nodes))  # type: ignore[type-var]
        if guests:
            g = g.filter(pl.col("ts") < min(f["ts"].min() for f in guests))  # type: ignore[type-var]
        nodes.append(n)
        guests.append(g)
    node_rows, guest_rows = write_many(
        store,
        [
            ("node_samples", pl.concat(nodes, how="vertical_relaxed"), False),
            ("guest_samples", pl.concat(guests, how="vertical_relaxed"), False),
        ],
        slot=slot,
    )
    return node_rows, guest_rows


def _offset(
    progress: Callable[[int, int], None], part: int, parts: int
) -> Callable[[int, int], None]:
    """Progress of one of `parts` equal parts, reported as progress of the whole."""
    return lambda done, total: progress(part * total + done, parts * total)
