"""History from PVE's RRD files, so forecasts have data from the first run on.

One `rrddata` call per node and per guest (cf AVERAGE), at most `workers` in flight. Points
without a `cpu` value (the guest was stopped, the node down) are omitted, as PVE omits them.
RRD network and disk figures are rates (bytes/s), not the cumulative counters
`/cluster/resources` reports, so backfilled rows leave the counter columns empty and fill
``disk_kibps`` (diskread + diskwrite) and ``net_kibps`` (netin + netout) instead, in KiB/s as
the store keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import polars as pl

from analytics.schema import KIB
from engine.model import Guest, Node
from tasks.pve.inventory import GUEST_SCHEMA, NODE_SCHEMA, frame
from tasks.pve.transport import Transport, fan_out

TIMEFRAMES = ("hour", "day", "week", "month", "year")  # finest first, as PVE's RRD keeps them


def check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")


def _num(point: dict[str, Any], key: str) -> float | None:
    value = point.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sum(point: dict[str, Any], a: str, b: str) -> float | None:
    """Two rates (bytes/s) as one in KiB/s; None when either is missing (half a sum would read
    as a drop)."""
    first, second = _num(point, a), _num(point, b)
    return None if first is None or second is None else (first + second) / KIB


def node_rows(node: str, points: Iterable[Any]) -> list[tuple[Any, ...]]:
    rows = []
    for p in points:
        if not isinstance(p, dict):
            continue
        t, cpu = _num(p, "time"), _num(p, "cpu")
        if t is None or cpu is None:
            continue
        maxcpu, mem, maxmem = _num(p, "maxcpu"), _num(p, "memused"), _num(p, "memtotal")
        rows.append(
            (
                node,
                int(t),
                cpu,
                None if maxcpu is None else int(maxcpu),
                None if mem is None else int(mem),
                None if maxmem is None else int(maxmem),
            )
        )
    return rows


def guest_rows(guest: Guest, points: Iterable[Any]) -> list[tuple[Any, ...]]:
    rows = []
    for p in points:
        if not isinstance(p, dict):
            continue
        t, cpu = _num(p, "time"), _num(p, "cpu")
        if t is None or cpu is None:
            continue
        mem = _num(p, "memhost")
        mem = _num(p, "mem") if mem is None else mem
        maxmem = _num(p, "maxmem")
        rows.append(
            (
                guest.vmid,
                int(t),
                guest.node,
                guest.kind.value,
                cpu,
                _num(p, "maxcpu") or float(guest.vcpus),
                None if mem is None else int(mem),
                None if maxmem is None else int(maxmem),
                None,
                None,
                None,
                None,
                _sum(p, "diskread", "diskwrite"),
                _sum(p, "netin", "netout"),
            )
        )
    return rows


def read_history(
    api: Transport,
    nodes: Iterable[Node],
    guests: Iterable[Guest],
    timeframe: str,
    *,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    check_timeframe(timeframe)
    params = {"timeframe": timeframe, "cf": "AVERAGE"}

    def node_job(n: Node) -> list[tuple[Any, ...]]:
        return node_rows(n.name, api.get(f"nodes/{n.name}/rrddata", **params))

    def guest_job(g: Guest) -> list[tuple[Any, ...]]:
        path = f"nodes/{g.node}/{g.kind.value}/{g.vmid}/rrddata"
        return guest_rows(g, api.get(path, **params))

    jobs: dict[str, Callable[[], list[tuple[Any, ...]]]] = {
        f"node {n.name}": partial(node_job, n) for n in nodes
    }
    jobs |= {f"guest {g.vmid}": partial(guest_job, g) for g in guests if not g.template}
    done = fan_out(
        jobs,
        workers=workers,
        thread_name="pve-rrd",
        failure="no history for {failed} of {total} series",
        progress=progress,
    )
    node_out = [row for label, rows in done.items() if label.startswith("node") for row in rows]
    guest_out = [row for label, rows in done.items() if label.startswith("guest") for row in rows]
    return (
        frame(node_out, NODE_SCHEMA).sort("node", "ts"),
        frame(guest_out, GUEST_SCHEMA).sort("vmid", "ts"),
    )
