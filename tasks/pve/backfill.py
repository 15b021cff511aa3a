"""History from PVE's RRD files, so forecasts have data from the first run on.

One `rrddata` call per node and per guest (cf AVERAGE), at most `workers` in flight. Points
without a `cpu` value (the guest was stopped, the node down) are omitted, as PVE omits them.
RRD network and disk figures are rates (bytes/s) while the store's columns hold the cumulative
counters `/cluster/resources` reports, so backfilled rows leave those columns empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from typing import Any

import polars as pl

from engine.model import Guest, Node
from tasks.pve.errors import PveError
from tasks.pve.inventory import GUEST_SCHEMA, NODE_SCHEMA, frame
from tasks.pve.transport import Transport

log = logging.getLogger("proxflow.pve")
# requests keeps 10 connections per host; more threads would open and drop extra ones
MAX_WORKERS = 10
TIMEFRAMES = ("hour", "day", "week", "month", "year")


def _num(point: dict[str, Any], key: str) -> float | None:
    value = point.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    params = {"timeframe": timeframe, "cf": "AVERAGE"}

    def node_job(n: Node) -> list[tuple[Any, ...]]:
        return node_rows(n.name, api.get(f"nodes/{n.name}/rrddata", **params))

    def guest_job(g: Guest) -> list[tuple[Any, ...]]:
        path = f"nodes/{g.node}/{g.kind.value}/{g.vmid}/rrddata"
        return guest_rows(g, api.get(path, **params))

    jobs: list[tuple[str, Callable[[], list[tuple[Any, ...]]]]] = [
        (f"node {n.name}", partial(node_job, n)) for n in nodes
    ]
    jobs += [(f"guest {g.vmid}", partial(guest_job, g)) for g in guests if not g.template]
    node_out: list[tuple[Any, ...]] = []
    guest_out: list[tuple[Any, ...]] = []
    failed: list[str] = []
    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, MAX_WORKERS)), thread_name_prefix="pve-rrd"
    ) as pool:
        futures = {pool.submit(job): label for label, job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            label = futures[future]
            try:
                rows = future.result()
            except PveError as exc:
                failed.append(f"{label} ({exc.message})")
            else:
                (node_out if label.startswith("node") else guest_out).extend(rows)
            if progress is not None:
                progress(done, len(jobs))
    if failed:
        log.warning(
            "no history for %d of %d series: %s",
            len(failed),
            len(jobs),
            "; ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""),
        )
    return (
        frame(node_out, NODE_SCHEMA).sort("node", "ts"),
        frame(guest_out, GUEST_SCHEMA).sort("vmid", "ts"),
    )
