"""Metrics with PVE's semantics, computed from the load models at any simulated instant.

- guest `cpu`: busy fraction of the guest's own vCPUs; node `cpu`: of all host CPUs.
- `mem`/`maxmem` in bytes; node `mem` = guests' host memory + host overhead.
- net/disk counters are cumulative bytes since guest start; rrd rates are bytes/s.
Live values change only every `REFRESH` seconds, like pvestatd's loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pvesim.cluster import Cluster, Guest, MigrationWindow, Node

REFRESH = 10.0
MIB = 1024**2
MIGRATION_CPU = 0.6  # host CPUs a live migration keeps busy on each end (copy + tunnel)


def refresh_instant(t: float) -> float:
    return math.floor(t / REFRESH) * REFRESH


@dataclass(frozen=True)
class GuestSample:
    cpu: float
    mem: int
    memhost: int


def guest_running_at(guest: Guest, t: float) -> bool:
    return guest.status == "running" and guest.started_at <= t


def guest_sample(guest: Guest, t: float) -> GuestSample:
    spec = guest.spec
    cpu = guest.load.cpu(t)
    mem = int(guest.load.mem(t) * spec.memory)
    # the host sees a bit more than the guest does (QEMU overhead, page tables)
    memhost = min(int(spec.memory * 1.03), int(mem * 1.06) + 96 * MIB)
    return GuestSample(cpu, mem, memhost)


def guest_counters(guest: Guest, t: float) -> tuple[int, int, int, int]:
    """Cumulative (netin, netout, diskread, diskwrite) bytes since the guest started."""
    start = guest.started_at
    net = guest.load.net_bytes(start, t)
    disk = guest.load.disk_bytes(start, t)
    # guest-centric naming: netout is what the guest sends; keep in/out asymmetric
    return int(net * 0.8), int(net), int(disk * 1.5), int(disk)


def guest_rates(guest: Guest, t: float) -> tuple[float, float, float, float]:
    net = guest.load.net_rate(t)
    disk = guest.load.disk_rate(t)
    return net * 0.8, net, disk * 1.5, disk


@dataclass(frozen=True)
class NodeSample:
    cpu: float  # fraction of all host CPUs
    mem: int
    netin: float
    netout: float
    loadavg: float
    iowait: float


def _windows_at(cluster: Cluster, t: float) -> list[MigrationWindow]:
    return [w for w in cluster.migration_windows if w.start <= t < w.end]


def node_sample(
    cluster: Cluster, node: Node, t: float, guests: list[Guest] | None = None
) -> NodeSample:
    """Sum of the guests that were on `node` at `t`, plus host overhead and migration traffic."""
    maxcpu = node.spec.maxcpu
    busy = node.spec.overhead_cpu
    mem = float(node.spec.overhead_mem)
    netin = netout = 0.0
    members = guests if guests is not None else list(cluster.guests.values())
    for g in members:
        if guests is None and g.node_at(t) != node.name:
            continue
        if not guest_running_at(g, t):
            continue
        s = guest_sample(g, t)
        busy += s.cpu * g.spec.cores
        mem += s.memhost
        rin, rout, _, _ = guest_rates(g, t)
        netin += rin
        netout += rout
    for w in _windows_at(cluster, t):
        if node.name in (w.source, w.target):
            busy += MIGRATION_CPU
            share = (t - w.start) / max(w.end - w.start, 1e-9)
            if node.name == w.target:
                mem += w.mem_bytes * share
                netin += w.mem_bytes / max(w.end - w.start, 1.0)
            else:
                netout += w.mem_bytes / max(w.end - w.start, 1.0)
    cpu = min(busy / maxcpu, 1.0)
    mem = min(mem, float(node.spec.memory))
    return NodeSample(cpu, int(mem), netin, netout, busy * 1.1, 0.002 + 0.01 * cpu)
