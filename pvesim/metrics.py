"""Metrics with PVE's semantics, computed from the load models at any simulated instant.

- guest `cpu`: busy fraction of the guest's own vCPUs; node `cpu`: of all host CPUs.
- `mem`/`maxmem` in bytes; node `mem` = guests' host memory + host overhead.
- net/disk counters are cumulative bytes since guest start; rrd rates are bytes/s.
Live values change only every `REFRESH` seconds, like pvestatd's loop.

Guests are evaluated in batches (`guest_loads`: any guests at any instants, elementwise) and the
live figures of a whole refresh once (`live_view`), shared by every endpoint until the next
refresh or state change. Single values (`guest_sample`, `node_sample`) are one-element batches,
so whichever endpoint asks, a guest's figure at an instant is the same number.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pvesim.cluster import RRD_EXPIRY, Cluster, Guest, MigrationWindow, Node
from pvesim.load import LoadBatch
from pvesim.noise import FloatArray, IntArray

REFRESH = 10.0
MIB = 1024**2
MIGRATION_CPU = 0.6  # host CPUs a live migration keeps busy on each end (copy + tunnel)


def refresh_instant(t: float) -> float:
    return math.floor(t / REFRESH) * REFRESH


def node_seen_at(node: Node, now: float) -> float | None:
    """The instant whose stats the cluster still shows for `node`, or None once expired."""
    if node.online:
        return refresh_instant(now)
    # its last pvestatd broadcast: the stats it froze at, and what the 5 min expiry counts from
    since = refresh_instant(node.offline_since if node.offline_since is not None else now)
    return since if now - since < RRD_EXPIRY else None


@dataclass(frozen=True)
class GuestSample:
    cpu: float
    mem: int
    memhost: int


def guest_running_at(guest: Guest, t: float) -> bool:
    return guest.status == "running" and guest.started_at <= t


class GuestLoads(NamedTuple):
    """Figures of (guest, instant) pairs, elementwise; rates in bytes/s, guest-centric."""

    cpu: FloatArray
    mem: IntArray
    memhost: IntArray
    netin: FloatArray
    netout: FloatArray
    diskread: FloatArray
    diskwrite: FloatArray


def _as_times(ts: Sequence[float] | FloatArray) -> FloatArray:
    return np.asarray(ts, dtype=np.float64)


class GuestTable:
    """Guests in a fixed order with their static columns, evaluated together: `loads(ts)[i]` is
    `guests[i]` at `ts[i]`. A cluster keeps one of all its guests (`cluster_table`); the set of
    guests, their specs and load models never change, only their state (node, status...)."""

    def __init__(self, guests: Sequence[Guest]) -> None:
        self.guests = list(guests)
        self.vmids = [g.vmid for g in self.guests]
        self.batch = LoadBatch([g.load for g in self.guests])
        self.memory = np.array([g.spec.memory for g in self.guests], dtype=np.int64)
        self.cores = np.array([g.spec.cores for g in self.guests], dtype=np.float64)

    @functools.cached_property
    def by_vmid(self) -> list[Guest]:
        return sorted(self.guests, key=lambda g: g.vmid)

    @functools.cached_property
    def disk_bytes(self) -> dict[str, int]:
        """Bytes of the guests' disks per storage."""
        used: dict[str, int] = {}
        for g in self.guests:
            for d in g.spec.disks:
                used[d.storage] = used.get(d.storage, 0) + d.size
        return used

    def storage_used(self, storage: str) -> int:
        """What a storage shows as used: a third of its guests' disk size (thin provisioning)."""
        return self.disk_bytes.get(storage, 0) // 3

    def loads(self, ts: Sequence[float] | FloatArray) -> GuestLoads:
        loads = self.batch.loads(_as_times(ts))
        mem = (loads.mem * self.memory).astype(np.int64)
        # the host sees a bit more than the guest does (QEMU overhead, page tables)
        memhost = np.minimum(
            (self.memory * 1.03).astype(np.int64), (mem * 1.06).astype(np.int64) + 96 * MIB
        )
        net, disk = loads.net_rate, loads.disk_rate
        # guest-centric naming: netout is what the guest sends; keep in/out asymmetric
        return GuestLoads(loads.cpu, mem, memhost, net * 0.8, net, disk * 1.5, disk)

    def counters(
        self, ts: Sequence[float] | FloatArray, starts: FloatArray | None = None
    ) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Cumulative (netin, netout, diskread, diskwrite) bytes from each guest's start (or
        from `starts`, when given: the guests' `started_at`)."""
        if starts is None:
            starts = np.array([g.started_at for g in self.guests], dtype=np.float64)
        net, disk = self.batch.bytes(starts, _as_times(ts))
        return (
            (net * 0.8).astype(np.int64),
            net.astype(np.int64),
            (disk * 1.5).astype(np.int64),
            disk.astype(np.int64),
        )


def cluster_table(cluster: Cluster) -> GuestTable:
    """All the cluster's guests, in its order (built once: guests and their loads are fixed)."""
    table = cluster.guest_table
    if table is None or len(table.guests) != len(cluster.guests):
        table = cluster.guest_table = GuestTable(list(cluster.guests.values()))
    return table


def guest_loads(guests: Sequence[Guest], ts: Sequence[float] | FloatArray) -> GuestLoads:
    """The figures of `guests[i]` at `ts[i]`, for every i, in one pass."""
    return GuestTable(guests).loads(ts)


def guest_sample(guest: Guest, t: float) -> GuestSample:
    s = guest_loads([guest], [t])
    return GuestSample(float(s.cpu[0]), int(s.mem[0]), int(s.memhost[0]))


def guest_counters(guest: Guest, t: float) -> tuple[int, int, int, int]:
    """Cumulative (netin, netout, diskread, diskwrite) bytes since the guest started."""
    netin, netout, dread, dwrite = GuestTable([guest]).counters([t])
    return int(netin[0]), int(netout[0]), int(dread[0]), int(dwrite[0])


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


class _NodeSums(NamedTuple):
    """Per slot (a node, or one node at an instant): host overhead plus its guests' figures."""

    busy: list[float]  # busy host CPUs: overhead + Σ cpu × vCPUs
    mem: list[float]  # overhead + Σ memhost
    netin: list[float]
    netout: list[float]


def _node_sums(
    nodes: Sequence[Node], slots: IntArray, cores: FloatArray, loads: GuestLoads
) -> _NodeSums:
    """Sums for slot j (of node `nodes[j]`) of the guests i with `slots[i] == j`, each guest
    having `cores[i]` vCPUs; a slot's sum starts with the host overhead and adds its guests in
    order (bincount adds in input order), as a plain loop over them would."""
    count = len(nodes)
    into = np.concatenate((np.arange(count, dtype=np.int64), slots))

    def total(start: list[float], values: FloatArray) -> list[float]:
        weights = np.concatenate((np.array(start, dtype=np.float64), values))
        sums: list[float] = np.bincount(into, weights=weights, minlength=count).tolist()
        return sums

    zeros = [0.0] * count
    return _NodeSums(
        total([n.spec.overhead_cpu for n in nodes], loads.cpu * cores),
        total([float(n.spec.overhead_mem) for n in nodes], loads.memhost.astype(np.float64)),
        total(zeros, loads.netin),
        total(zeros, loads.netout),
    )


def _node_figures(cluster: Cluster, node: Node, t: float, sums: _NodeSums, slot: int) -> NodeSample:
    """A node at `t`: its sums plus migration traffic, capped to its capacity."""
    busy, mem = sums.busy[slot], sums.mem[slot]
    netin, netout = sums.netin[slot], sums.netout[slot]
    for w in _windows_at(cluster, t):
        if node.name in (w.source, w.target):
            busy += MIGRATION_CPU
            share = (t - w.start) / max(w.end - w.start, 1e-9)
            if node.name == w.target:
                mem += w.mem_bytes * share
                netin += w.mem_bytes / max(w.end - w.start, 1.0)
            else:
                netout += w.mem_bytes / max(w.end - w.start, 1.0)
    cpu = min(busy / node.spec.maxcpu, 1.0)
    mem = min(mem, float(node.spec.memory))
    return NodeSample(cpu, int(mem), netin, netout, busy * 1.1, 0.002 + 0.01 * cpu)


def _placed_on(guest: Guest, node: str, t: float) -> bool:
    if len(guest.placements) == 1:
        return guest.placements[0][1] == node
    return guest.node_at(t) == node


def node_samples(
    cluster: Cluster, node: Node, ts: Sequence[float], guests: Sequence[Guest] | None = None
) -> list[NodeSample]:
    """The node's figures at each of `ts`: the guests running on it then (or, when given, those
    of `guests` running then), plus host overhead and migration traffic; one batch for all."""
    members: list[Guest] = []
    slots: list[int] = []
    times: list[float] = []
    for g in cluster.guests.values() if guests is None else guests:
        if guests is None and len(g.placements) == 1 and g.placements[0][1] != node.name:
            continue
        for j, t in enumerate(ts):
            if guests is None and not _placed_on(g, node.name, t):
                continue
            if guest_running_at(g, t):
                members.append(g)
                slots.append(j)
                times.append(t)
    # guest-major: at each instant the guests are summed in the order of `guests` (or the
    # cluster's), like a plain loop over them would
    table = GuestTable(members)
    slot_of = np.array(slots, dtype=np.int64)
    sums = _node_sums([node] * len(ts), slot_of, table.cores, table.loads(times))
    return [_node_figures(cluster, node, t, sums, j) for j, t in enumerate(ts)]


def node_sample(
    cluster: Cluster, node: Node, t: float, guests: list[Guest] | None = None
) -> NodeSample:
    """Sum of the guests that were on `node` at `t`, plus host overhead and migration traffic."""
    return node_samples(cluster, node, [t], guests)[0]


# -- the live figures of one refresh ----------------------------------------------------------
class LiveSample(NamedTuple):
    """A running guest's live figures: cpu fraction, memory and cumulative counters in bytes."""

    cpu: float
    mem: int
    memhost: int
    netin: int
    netout: int
    diskread: int
    diskwrite: int


@dataclass(frozen=True)
class LiveView:
    """What the cluster shows for one refresh: every guest, and every online node's sums.

    `guests[vmid]` is (status, instant its figures are from, row), status being running,
    stopped, or unknown (its node's stats expired); a running guest's figures are item `row`
    of the columns (cpu, mem, ...), and row is -1 for the others.
    """

    key: tuple[float, int]  # (refresh instant, state version)
    guests: dict[int, tuple[str, float, int]]
    cpu: list[float]
    mem: list[int]
    memhost: list[int]
    netin: list[int]
    netout: list[int]
    diskread: list[int]
    diskwrite: list[int]
    nodes: dict[str, NodeSample]  # online nodes only

    def sample(self, vmid: int) -> LiveSample | None:
        row = self.guests[vmid][2]
        if row < 0:
            return None
        return LiveSample(
            self.cpu[row],
            self.mem[row],
            self.memhost[row],
            self.netin[row],
            self.netout[row],
            self.diskread[row],
            self.diskwrite[row],
        )


_STATUS = ("unknown", "stopped", "running")  # by (shown + running)


def live_view(cluster: Cluster, now: float) -> LiveView:
    """The live figures at `now`'s refresh, computed once per refresh and state version.

    A guest's figures are from its node's last broadcast (`node_seen_at`); a node's are the sum
    of the very guest figures shown, so the two always add up.
    """
    bucket = refresh_instant(now)
    key = (bucket, cluster.state_version)
    view = cluster.live_view
    if view is not None and view.key == key:
        return view
    seen_at = {name: node_seen_at(n, bucket) for name, n in cluster.nodes.items()}
    table = cluster_table(cluster)
    guests = table.guests
    node_of = [g.node for g in guests]
    seen = [seen_at[n] for n in node_of]
    # every guest at its node's broadcast instant (the value of a guest not shown is not used)
    times = np.array([bucket if t is None else t for t in seen], dtype=np.float64)
    starts = np.array([g.started_at for g in guests], dtype=np.float64)
    shown = np.array([t is not None for t in seen], dtype=np.bool_)
    running = np.array([g.status == "running" for g in guests], dtype=np.bool_)
    running &= shown & (starts <= times)
    loads = table.loads(times)
    netin, netout, diskread, diskwrite = table.counters(times, starts)
    status = [_STATUS[code] for code in (shown.astype(np.int64) + running).tolist()]
    rows = np.where(running, np.arange(len(guests)), -1).tolist()
    # an online node shows the sum of its running guests as shown (all seen at `bucket`)
    nodes_on = [n for n in cluster.nodes.values() if n.online]
    slot_of = {n.name: j for j, n in enumerate(nodes_on)}
    slots = np.array([slot_of.get(n, -1) for n in node_of], dtype=np.int64)
    members = np.flatnonzero(running & (slots >= 0))
    sums = _node_sums(
        nodes_on,
        slots[members],
        table.cores[members],
        GuestLoads._make(column[members] for column in loads),
    )
    view = LiveView(
        key=key,
        guests=dict(zip(table.vmids, zip(status, times.tolist(), rows, strict=True), strict=True)),
        cpu=loads.cpu.tolist(),
        mem=loads.mem.tolist(),
        memhost=loads.memhost.tolist(),
        netin=netin.tolist(),
        netout=netout.tolist(),
        diskread=diskread.tolist(),
        diskwrite=diskwrite.tolist(),
        nodes={n.name: _node_figures(cluster, n, bucket, sums, j) for j, n in enumerate(nodes_on)},
    )
    cluster.live_view = view
    return view


def live_node_sample(cluster: Cluster, node: Node, now: float) -> NodeSample:
    """The node's live figures at `now`'s refresh (from the live view while it is online)."""
    sample = live_view(cluster, now).nodes.get(node.name)
    if sample is None:
        return node_sample(cluster, node, refresh_instant(now), cluster.guests_on(node.name))
    return sample
