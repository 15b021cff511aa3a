"""rrddata series: PVE's step and row count per timeframe and version, values per bucket.

A bucket's AVERAGE/MAX is taken over a few instants inside it; buckets where a value did not
exist (node down, guest stopped) omit that key, as RRD does, and keep only `time`.
"""

from __future__ import annotations

import math
from typing import Any

from pvesim.cluster import Cluster, Guest, Node
from pvesim.metrics import guest_loads, guest_running_at, node_samples

# timeframe -> (step seconds, rows)
RESOLUTION: dict[str, dict[str, tuple[int, int]]] = {
    "9.1": {
        "hour": (60, 60),
        "day": (60, 1440),
        "week": (1800, 336),
        "month": (1800, 1440),
        "year": (21600, 1440),
        "decade": (604800, 570),
    },
    "8.4": {
        "hour": (60, 70),
        "day": (1800, 70),
        "week": (10800, 70),
        "month": (43200, 70),
        "year": (604800, 70),
    },
}
MAX_SAMPLES = 4


def buckets(version: str, timeframe: str, now: float) -> tuple[int, list[int]]:
    step, rows = RESOLUTION[version][timeframe]
    last = int(math.floor(now / step) * step)
    return step, [last - step * (rows - 1 - i) for i in range(rows)]


def _instants(start: int, step: int) -> list[float]:
    n = min(MAX_SAMPLES, max(1, step // 60))
    return [start + step * (i + 0.5) / n for i in range(n)]


def _combine(values: list[float], cf: str) -> float:
    return max(values) if cf == "MAX" else sum(values) / len(values)


def node_series(
    cluster: Cluster, node: Node, timeframe: str, cf: str, now: float
) -> list[dict[str, Any]]:
    step, starts = buckets(cluster.version, timeframe, now)
    spec = node.spec
    v9 = cluster.version == "9.1"
    out: list[dict[str, Any]] = []
    points_of = [
        [t for t in _instants(start, step) if t <= now and node.was_online(t)] for start in starts
    ]
    # every instant of every bucket in one batch
    flat = node_samples(cluster, node, [t for points in points_of for t in points])
    done = 0
    for start, points in zip(starts, points_of, strict=True):
        item: dict[str, Any] = {"time": start}
        if points:
            samples = flat[done : done + len(points)]
            done += len(points)
            mem = _combine([float(s.mem) for s in samples], cf)
            item.update(
                maxcpu=float(spec.maxcpu),
                cpu=_combine([s.cpu for s in samples], cf),
                iowait=_combine([s.iowait for s in samples], cf),
                loadavg=_combine([s.loadavg for s in samples], cf),
                memtotal=float(spec.memory),
                memused=mem,
                swaptotal=8589930496.0,
                swapused=0.0,
                roottotal=float(spec.rootfs),
                rootused=float(spec.rootfs) * 0.09,
                netin=_combine([s.netin for s in samples], cf),
                netout=_combine([s.netout for s in samples], cf),
            )
            if v9:
                item.update(
                    # consolidated like any other source: MAX of memavailable, not total - MAX(used)
                    memavailable=_combine([float(spec.memory) - s.mem for s in samples], cf),
                    arcsize=0.0,
                    pressurecpusome=round(item["cpu"] * 3.0, 4),
                    pressureiosome=0.0,
                    pressureiofull=0.0,
                    pressurememorysome=0.0,
                    pressurememoryfull=0.0,
                )
        out.append(item)
    return _drop_empty_tail(out)


def guest_series(
    cluster: Cluster, guest: Guest, timeframe: str, cf: str, now: float
) -> list[dict[str, Any]]:
    step, starts = buckets(cluster.version, timeframe, now)
    spec = guest.spec
    v9 = cluster.version == "9.1"
    maxdisk = float(sum(d.size for d in spec.disks))
    out: list[dict[str, Any]] = []
    points_of = [
        [
            t
            for t in _instants(start, step)
            if t <= now
            and guest_running_at(guest, t)
            and cluster.nodes[guest.node_at(t)].was_online(t)
        ]
        for start in starts
    ]
    # every instant of every bucket in one batch, as plain floats
    flat = [t for points in points_of for t in points]
    loads = guest_loads([guest] * len(flat), flat)
    cpu, netin, netout = loads.cpu.tolist(), loads.netin.tolist(), loads.netout.tolist()
    diskread, diskwrite = loads.diskread.tolist(), loads.diskwrite.tolist()
    mem, memhost = loads.mem.astype(float).tolist(), loads.memhost.astype(float).tolist()
    done = 0
    for start, points in zip(starts, points_of, strict=True):
        item: dict[str, Any] = {"time": start}
        if points:
            at = slice(done, done + len(points))
            done += len(points)
            item.update(
                maxcpu=float(spec.cores),
                cpu=_combine(cpu[at], cf),
                maxmem=float(spec.memory),
                mem=_combine(mem[at], cf),
                maxdisk=maxdisk,
                disk=maxdisk * 0.35 if spec.type == "lxc" else 0.0,
                netin=_combine(netin[at], cf),
                netout=_combine(netout[at], cf),
                diskread=_combine(diskread[at], cf),
                diskwrite=_combine(diskwrite[at], cf),
            )
            if v9:
                item.update(
                    memhost=_combine(memhost[at], cf),
                    pressurecpusome=round(item["cpu"] * 2.0, 4),
                    pressurecpufull=round(item["cpu"] * 1.5, 4),
                    pressureiosome=0.0,
                    pressureiofull=0.0,
                    pressurememorysome=0.0,
                    pressurememoryfull=0.0,
                )
        out.append(item)
    return _drop_empty_tail(out)


def _drop_empty_tail(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if items and len(items[-1]) == 1:
        items.pop()
    return items
