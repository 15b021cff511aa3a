"""An independent check of a plan's result against the hard rules (product capability 4).

Written from the rules as the product states them, not from `engine.rules` / `engine.filters`,
so a planner bug cannot hide behind the same bug in a shared helper. Given the starting
snapshot, the policy and the moves (vmid, source, target) in order, it reports:

- memory: a node whose predicted p90 memory exceeds capacity minus reserve, when it did not
  before the plan (or the plan made an already-full node fuller);
- cpu-overcommit: a node whose running guests' vCPUs exceed `cpu_overcommit` x CPUs, likewise;
- anti-affinity: members of a strict anti-affinity group (`plb_anti_affinity_*` tags, negative
  HA resource-affinity, anti-affinity pools) sharing a node beyond what the node count forces;
- affinity: members of a strict affinity group (`plb_affinity_*`, positive HA resource-affinity,
  affinity pools) on more than one node;
- pin / ha-node-affinity / pool-pin: a guest on a node its pins, strict HA node-affinity rules or
  strict pool pin do not allow;
- maintenance: a guest left on a maintenance node although it could move;
- moved-ignored / moved-locked / moved-passthrough / moved-local-disks / moved-container: a moved
  guest that may not move (plb_ignore, locked, PCI/USB passthrough, local disks when the policy
  forbids them, a running container when restarts are not allowed);
- unknown: a move of a guest or to a node the cluster does not have, or whose source is not
  where the guest is.

Each violation says whether the starting placement already broke the same rule the same way
(`new=False`: not repaired) or the plan introduced it (`new=True`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from engine import ClusterSnapshot, Guest, GuestKind, Policy

Move = tuple[int, str, str]  # (vmid, source, target)
_SPLIT = re.compile(r"[,; ]+")


@dataclass(frozen=True)
class Violation:
    kind: str
    subject: str  # what breaks the rule: a node, a guest, a group
    detail: str
    new: bool = True
    amount: float = 0.0  # capacity checks: the node's load (bytes or vCPUs)


# -- moves ------------------------------------------------------------------------------------
def apply_moves(snapshot: ClusterSnapshot, moves: Iterable[Move]) -> ClusterSnapshot:
    """The snapshot once every move has landed, in order (a guest may move more than once)."""
    where = {g.vmid: g.node for g in snapshot.guests}
    for vmid, _, target in moves:
        if vmid in where:
            where[vmid] = target
    guests = tuple(
        replace(g, node=where[g.vmid]) if where[g.vmid] != g.node else g for g in snapshot.guests
    )
    return replace(snapshot, guests=guests)


def undo_moves(snapshot: ClusterSnapshot, moves: Sequence[Move]) -> list[Move]:
    """Moves that take a guest back to a node it already left earlier in the same plan."""
    visited: dict[int, set[str]] = {g.vmid: {g.node} for g in snapshot.guests}
    out = []
    for vmid, source, target in moves:
        seen = visited.setdefault(vmid, {source})
        if target in seen:
            out.append((vmid, source, target))
        seen.add(target)
    return out


def gib_moved(snapshot: ClusterSnapshot, moves: Iterable[Move]) -> float:
    """Memory (expected, running guests) plus local disk carried by the moves, in GiB; the
    same measure as `Plan.gib_moved`."""
    guests = {g.vmid: g for g in snapshot.guests}
    total = 0.0
    for vmid, _, _ in moves:
        g = guests[vmid]
        mem = int(snapshot.forecast(vmid).mem) if g.running else 0
        total += mem + g.local_disk_bytes
    return total / 1024**3


# -- the rules, read from the snapshot --------------------------------------------------------
def _tags(g: Guest) -> list[str]:
    return [t.lower() for item in g.tags for t in _SPLIT.split(item.strip()) if t]


@dataclass
class _Rules:
    maintenance: set[str]
    eligible: list[str]
    allowed: dict[int, list[tuple[str, set[str]]]]  # vmid -> [(kind, nodes)]
    apart: dict[str, list[int]]
    together: dict[str, list[int]]
    ignored: set[int]


def _rules(snapshot: ClusterSnapshot, policy: Policy) -> _Rules:
    names = {n.name for n in snapshot.nodes}
    by_lower = {n.lower(): n for n in names}
    maintenance = {n.name for n in snapshot.nodes if n.maintenance} | set(policy.maintenance_nodes)
    eligible = sorted(n.name for n in snapshot.nodes if n.online and n.name not in maintenance)
    allowed: dict[int, list[tuple[str, set[str]]]] = defaultdict(list)
    apart: dict[str, list[int]] = defaultdict(list)
    together: dict[str, list[int]] = defaultdict(list)
    ignored: set[int] = set()
    known = {g.vmid for g in snapshot.guests}
    for g in sorted(snapshot.guests, key=lambda g: g.vmid):
        pins: set[str] = set()
        for tag in _tags(g):
            if tag == "plb_ignore" or tag.startswith("plb_ignore_"):
                ignored.add(g.vmid)
            elif tag.startswith("plb_anti_affinity_") and len(tag) > len("plb_anti_affinity_"):
                group = f"tag {tag[len('plb_anti_affinity_') :]}"
                if g.vmid not in apart[group]:
                    apart[group].append(g.vmid)
            elif tag.startswith("plb_affinity_") and len(tag) > len("plb_affinity_"):
                group = f"tag {tag[len('plb_affinity_') :]}"
                if g.vmid not in together[group]:
                    together[group].append(g.vmid)
            elif tag.startswith("plb_pin_") and tag[len("plb_pin_") :] in by_lower:
                pins.add(by_lower[tag[len("plb_pin_") :]])
        if pins:
            allowed[g.vmid].append(("pin", pins))
        if g.pool and g.pool in policy.pools:
            pp = policy.pools[g.pool]
            if pp.strict:
                if pp.rule.value == "pin":
                    allowed[g.vmid].append(("pool-pin", set(pp.nodes) & names))
                elif pp.rule.value == "affinity":
                    together[f"pool {g.pool}"].append(g.vmid)
                else:
                    apart[f"pool {g.pool}"].append(g.vmid)
    for rule in snapshot.node_rules:
        if rule.strict:
            nodes = {n for n, _ in rule.nodes if n in names}
            for v in rule.vmids:
                if v in known:
                    allowed[v].append(("ha-node-affinity", nodes))
    for rrule in snapshot.resource_rules:
        members = [v for v in rrule.vmids if v in known]
        if len(members) > 1:
            (together if rrule.positive else apart)[f"HA {rrule.name}"].extend(members)
    return _Rules(maintenance, eligible, dict(allowed), dict(apart), dict(together), ignored)


def immovable(g: Guest, policy: Policy, ignored: set[int]) -> str | None:
    """Why a guest may never be migrated (the `moved-*` kind), or None."""
    if g.vmid in ignored:
        return "moved-ignored"
    if g.lock:
        return "moved-locked"
    if g.local_resources:
        return "moved-passthrough"
    if g.local_disk_bytes and not policy.allow_local_disks:
        return "moved-local-disks"
    if g.kind is GuestKind.LXC and g.running and not policy.allow_container_restart:
        return "moved-container"
    return None


# -- placement checks -------------------------------------------------------------------------
def _placement(snapshot: ClusterSnapshot, policy: Policy, rules: _Rules) -> list[Violation]:
    guests = {g.vmid: g for g in snapshot.guests}
    node_of = {g.vmid: g.node for g in snapshot.guests}
    out: list[Violation] = []
    mem: dict[str, float] = defaultdict(float)
    vcpu: dict[str, int] = defaultdict(int)
    for g in snapshot.guests:
        mem[g.node] += snapshot.forecast(g.vmid).mem_p90
        if g.running:
            vcpu[g.node] += g.vcpus
    for n in snapshot.nodes:
        limit = n.memory - policy.reserve_for(n.name, n.reserve)
        if mem[n.name] > limit:
            out.append(
                Violation(
                    "memory",
                    n.name,
                    f"{n.name}: p90 memory {mem[n.name] / 1024**3:.1f} GiB > "
                    f"{limit / 1024**3:.1f} GiB (capacity minus reserve)",
                    amount=mem[n.name],
                )
            )
        cap = policy.cpu_overcommit * n.cpus
        if vcpu[n.name] > cap:
            out.append(
                Violation(
                    "cpu-overcommit",
                    n.name,
                    f"{n.name}: {vcpu[n.name]} vCPUs > {cap:g} ({policy.cpu_overcommit:g}x "
                    f"{n.cpus} CPUs)",
                    amount=vcpu[n.name],
                )
            )
    slots = max(len(rules.eligible), 1)
    for group, members in sorted(rules.apart.items()):
        per_node = max(1, math.ceil(len(members) / slots))
        counts = Counter(node_of[v] for v in members)
        for node, count in sorted(counts.items()):
            if count > per_node:
                on = sorted(v for v in members if node_of[v] == node)
                out.append(
                    Violation(
                        "anti-affinity",
                        f"{group}@{node}",
                        f"anti-affinity {group}: {count} members on {node} "
                        f"(at most {per_node}): {on}",
                    )
                )
    for group, members in sorted(rules.together.items()):
        spots = sorted({node_of[v] for v in members})
        if len(spots) > 1:
            spread = {n: sorted(v for v in members if node_of[v] == n) for n in spots}
            out.append(Violation("affinity", group, f"affinity {group}: members apart: {spread}"))
    for vmid, restrictions in sorted(rules.allowed.items()):
        for kind, allowed in restrictions:
            if node_of[vmid] not in allowed:
                out.append(
                    Violation(
                        kind,
                        str(vmid),
                        f"guest {vmid} on {node_of[vmid]}; {kind} allows {sorted(allowed)}",
                    )
                )
    for vmid, node in sorted(node_of.items()):
        if node in rules.maintenance and immovable(guests[vmid], policy, rules.ignored) is None:
            out.append(
                Violation("maintenance", str(vmid), f"guest {vmid} left on maintenance node {node}")
            )
    return out


def check(snapshot: ClusterSnapshot, policy: Policy, moves: Sequence[Move]) -> list[Violation]:
    """Every hard-rule violation of the placement after `moves`, and every forbidden move."""
    rules = _rules(snapshot, policy)
    guests = {g.vmid: g for g in snapshot.guests}
    names = {n.name for n in snapshot.nodes}
    out: list[Violation] = []
    where = {g.vmid: g.node for g in snapshot.guests}
    for vmid, source, target in moves:
        if vmid not in guests or target not in names or where.get(vmid) != source:
            out.append(
                Violation(
                    "unknown",
                    str(vmid),
                    f"move {vmid} {source}->{target}: guest at {where.get(vmid)}, "
                    f"target {'known' if target in names else 'unknown'}",
                )
            )
            continue
        where[vmid] = target
        why = immovable(guests[vmid], policy, rules.ignored)
        if why is not None:
            out.append(Violation(why, str(vmid), f"guest {vmid} moved {source}->{target}"))
    before = _placement(snapshot, policy, rules)
    after = _placement(apply_moves(snapshot, moves), policy, rules)
    old = {(v.kind, v.subject): v for v in before}
    for v in after:
        was = old.get((v.kind, v.subject))
        if was is None:
            out.append(v)
        elif v.kind in ("memory", "cpu-overcommit"):
            # a node that was already over counts only if the plan made it worse
            if v.amount > was.amount + 1e-6:
                out.append(replace(v, detail=f"{v.detail}; was already over, now worse"))
        else:
            out.append(replace(v, new=False))
    return out
