"""Small builders so that engine tests read like tables.

Sizes are given in GiB and host cores; the builders turn them into the engine's units
(bytes, host cores). A guest without an explicit forecast is predicted to stay as it is now
(`Forecast.from_current`), so `cpu=` and `mem_gib=` are also its predicted load.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.model import (
    ClusterSnapshot,
    Forecast,
    Guest,
    GuestKind,
    MigrationRecord,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)
from engine.plan import Plan, Reason
from engine.planner import plan as make_plan
from engine.policy import Policy

GIB = 1024**3
MIN = 60.0

UNLIMITED = {"max_moves": 10_000, "max_moves_per_node": 10_000, "cooldown_minutes": 0.0}


def gib(n: float) -> int:
    return int(n * GIB)


def node(
    name: str,
    cpus: int = 16,
    mem_gib: float = 64,
    *,
    online: bool = True,
    maintenance: bool = False,
    reserve_gib: float | None = None,
) -> Node:
    reserve = None if reserve_gib is None else gib(reserve_gib)
    return Node(name, cpus, gib(mem_gib), online, maintenance, reserve)


def nodes(*names: str, cpus: int = 16, mem_gib: float = 64) -> tuple[Node, ...]:
    """Identical nodes: `nodes("pve1", "pve2", "pve3")`."""
    return tuple(node(n, cpus, mem_gib) for n in names)


def guest(
    vmid: int,
    where: str,
    cpu: float = 1.0,
    mem_gib: float = 4,
    *,
    tags: str | Sequence[str] = (),
    vcpus: int | None = None,
    kind: str = "qemu",
    running: bool = True,
    pool: str | None = None,
    lock: str | None = None,
    ha: bool = False,
    passthrough: Sequence[str] = (),
    local_disk_gib: float = 0,
    name: str | None = None,
) -> Guest:
    """A guest using `cpu` host cores and `mem_gib` GiB now; tags as PVE writes them."""
    return Guest(
        vmid=vmid,
        name=name or f"{'ct' if kind == 'lxc' else 'vm'}{vmid}",
        node=where,
        kind=GuestKind(kind),
        vcpus=vcpus if vcpus is not None else max(1, math.ceil(cpu)),
        mem_max=gib(mem_gib),
        mem_used=gib(mem_gib),
        cpu_used=cpu,
        running=running,
        tags=(tags,) if isinstance(tags, str) and tags else tuple(tags),
        pool=pool,
        lock=lock,
        ha_managed=ha,
        local_resources=tuple(passthrough),
        local_disk_bytes=gib(local_disk_gib),
    )


def forecast(
    vmid: int,
    cpu: float,
    mem_gib: float,
    *,
    cpu_p90: float | None = None,
    mem_p90_gib: float | None = None,
) -> Forecast:
    return Forecast(
        vmid,
        cpu,
        cpu if cpu_p90 is None else cpu_p90,
        float(gib(mem_gib)),
        float(gib(mem_gib if mem_p90_gib is None else mem_p90_gib)),
    )


def ha_nodes(
    name: str, vmids: Iterable[int], prio: Mapping[str, int], *, strict: bool
) -> NodeAffinityRule:
    """A PVE 9 HA node-affinity rule (or a PVE 8 HA group: restricted = strict)."""
    return NodeAffinityRule(name, tuple(vmids), tuple(prio.items()), strict)


def ha_together(name: str, *vmids: int) -> ResourceAffinityRule:
    return ResourceAffinityRule(name, vmids, positive=True)


def ha_apart(name: str, *vmids: int) -> ResourceAffinityRule:
    return ResourceAffinityRule(name, vmids, positive=False)


def moved(vmid: int, source: str, target: str, minutes_ago: float, now: float) -> MigrationRecord:
    return MigrationRecord(vmid, source, target, now - minutes_ago * MIN)


def snapshot(node_list: Iterable[Node], guest_list: Iterable[Guest], **kw: Any) -> ClusterSnapshot:
    """`kw`: forecasts, node_rules, resource_rules, history, now (as in ClusterSnapshot)."""
    for key in ("forecasts", "node_rules", "resource_rules", "history"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return ClusterSnapshot(tuple(node_list), tuple(guest_list), **kw)


def policy(**kw: Any) -> Policy:
    """A policy through the same validation a config file gets."""
    return Policy.from_mapping(kw)


def unlimited(**kw: Any) -> Policy:
    """A policy without budgets or cooldown."""
    return policy(**{**UNLIMITED, **kw})


def run(snap: ClusterSnapshot, pol: Policy | None = None, **kw: Any) -> Plan:
    return make_plan(snap, pol or Policy(), **kw)


# -- reading a plan ------------------------------------------------------------------------------


def apply(snap: ClusterSnapshot, result: Plan, *, record: bool = False) -> ClusterSnapshot:
    """The snapshot after the plan's moves; with `record`, the moves join the history."""
    targets = {m.vmid: m.target for m in result.moves}
    guests = tuple(replace(g, node=targets.get(g.vmid, g.node)) for g in snap.guests)
    history = snap.history
    if record:
        history += tuple(
            MigrationRecord(m.vmid, m.source, m.target, snap.now) for m in result.moves
        )
    return replace(snap, guests=guests, history=history)


def placement(snap: ClusterSnapshot) -> dict[int, str]:
    return {g.vmid: g.node for g in snap.guests}


def targets(result: Plan) -> dict[int, str]:
    return {m.vmid: m.target for m in result.moves}


def reasons(result: Plan) -> dict[int, Reason]:
    return {m.vmid: m.reason for m in result.moves}


def skips(result: Plan) -> dict[int, Reason]:
    return {s.vmid: s.reason for s in result.skipped}


def per_node(snap: ClusterSnapshot, vmids: Iterable[int]) -> Counter[str]:
    """How many of `vmids` each node holds."""
    chosen = set(vmids)
    return Counter(g.node for g in snap.guests if g.vmid in chosen)


def mem_p90(snap: ClusterSnapshot) -> dict[str, float]:
    """Predicted p90 memory per node, bytes."""
    out = {n.name: 0.0 for n in snap.nodes}
    for g in snap.guests:
        if g.node in out:
            out[g.node] += snap.forecast(g.vmid).mem_p90
    return out


def scores(snap: ClusterSnapshot, pol: Policy) -> dict[str, float]:
    """Each node's weighted load, computed here independently of the engine's State."""
    total = pol.cpu_weight + pol.memory_weight
    cpu = {n.name: 0.0 for n in snap.nodes}
    mem = {n.name: 0.0 for n in snap.nodes}
    for g in snap.guests:
        if g.node in cpu:
            f = snap.forecast(g.vmid)
            cpu[g.node] += f.cpu
            mem[g.node] += f.mem
    return {
        n.name: (pol.cpu_weight * cpu[n.name] / max(n.cpus, 1)) / total
        + (pol.memory_weight * mem[n.name] / max(n.memory, 1)) / total
        for n in snap.nodes
    }


def imbalance(snap: ClusterSnapshot, pol: Policy) -> float:
    """MAD of the node loads over the nodes that can take guests."""
    down = set(pol.maintenance_nodes)
    s = scores(snap, pol)
    values = [
        s[n.name] for n in snap.nodes if n.online and not n.maintenance and n.name not in down
    ]
    if not values:
        return 0.0
    arr = np.array(values, dtype=np.float64)
    return float(np.abs(arr - arr.mean()).mean())


# -- reading a failure ---------------------------------------------------------------------------


def describe(snap: ClusterSnapshot, pol: Policy | None = None) -> str:
    """A compact table of a snapshot (and the policy's non-default values), for failure notes."""
    lines = []
    for n in snap.nodes:
        flags = [f for f, on in (("offline", not n.online), ("maintenance", n.maintenance)) if on]
        reserve = "" if n.reserve is None else f" reserve {n.reserve / GIB:g} GiB"
        lines.append(f"node {n.name}: {n.cpus} cpus {n.memory / GIB:g} GiB{reserve} {flags or ''}")
    for g in snap.guests:
        f = snap.forecast(g.vmid)
        extra = [
            text
            for text, on in (
                (g.kind.value, g.kind is not GuestKind.QEMU),
                ("stopped", not g.running),
                (f"lock={g.lock}", bool(g.lock)),
                (f"passthrough={','.join(g.local_resources)}", bool(g.local_resources)),
                (f"local disk {g.local_disk_bytes / GIB:g} GiB", bool(g.local_disk_bytes)),
                (f"tags={';'.join(g.tags)}", bool(g.tags)),
            )
            if on
        ]
        lines.append(
            f"guest {g.vmid} on {g.node}: cpu {f.cpu:g} (p90 {f.cpu_p90:g}) vcpus {g.vcpus} "
            f"mem {f.mem / GIB:.2f} GiB (p90 {f.mem_p90 / GIB:.2f}) {' '.join(extra)}"
        )
    lines += [repr(r) for r in (*snap.node_rules, *snap.resource_rules, *snap.history)]
    if pol is not None:
        default = Policy()
        changed = {k: v for k, v in vars(pol).items() if getattr(default, k) != v}
        lines.append(f"policy: {changed}")
    return "\n".join(lines)


def summary(result: Plan) -> str:
    """A plan in a few lines: moves, skips, conflicts, note."""
    lines = [f"move {m.vmid} {m.source} -> {m.target} ({m.reason.value})" for m in result.moves]
    lines += [f"skip {s.vmid} on {s.node} ({s.reason.value}: {s.detail})" for s in result.skipped]
    lines += [f"conflict {c.rule} {c.vmids}: {c.resolution}" for c in result.conflicts]
    lines.append(f"note: {result.note}")
    return "\n".join(lines)
