"""A baseline planner in the style of the common single-metric balancers (ProxLB-like).

It looks at memory only, as one current sample (each guest's `mem_used`, no forecast, no
CPU), and works like this:

1. guests on a maintenance node go to the node that was least used at the start;
2. a pinned guest (`plb_pin_<node>`) that is off its pins goes to the least used of them;
3. anti-affinity (`plb_anti_affinity_<group>`): every member after the first on a shared
   node goes to the first node, in name order, that holds no member (first fit);
4. balancing: while the memory spread (max - min of used/total across the nodes that can take
   guests) is above the threshold and the move budget lasts, move the smallest running guest
   of the most-used node to the node that was least used at the start. That target is chosen
   once and never re-evaluated; it stops when the most-used node *is* that target.

It honours `plb_ignore*` tags (never moves those guests) and pins (never moves a guest off
them), and the same move budget as the engine (`policy.max_moves`, counting every move). It
does not know HA rules, affinity tags, locks, passthrough or local disks, and it never checks
how full a target will be after a move. The result is a list of (vmid, source, target) in
order; the benchmark scores it with the engine's own measure.
"""

from __future__ import annotations

import re

from engine import ClusterSnapshot, Policy

Move = tuple[int, str, str]  # (vmid, source, target)

BALANCINESS = 0.10  # stop once max - min memory use is below 10 percentage points
_SPLIT = re.compile(r"[,; ]+")


def _tags(raw: tuple[str, ...]) -> list[str]:
    return [t.lower() for item in raw for t in _SPLIT.split(item.strip()) if t]


def plan_baseline(
    snapshot: ClusterSnapshot, policy: Policy, threshold: float = BALANCINESS
) -> list[Move]:
    nodes = sorted(snapshot.nodes, key=lambda n: n.name)
    memory = {n.name: max(n.memory, 1) for n in nodes}
    down = {n.name for n in nodes if n.maintenance} | set(policy.maintenance_nodes)
    targets = [n.name for n in nodes if n.online and n.name not in down]
    by_lower = {n.name.lower(): n.name for n in nodes}
    where = {g.vmid: g.node for g in snapshot.guests}
    size = {g.vmid: float(g.mem_used) if g.running else 0.0 for g in snapshot.guests}
    running = {g.vmid for g in snapshot.guests if g.running}
    ignored: set[int] = set()
    pins: dict[int, list[str]] = {}
    anti: dict[str, list[int]] = {}
    for g in sorted(snapshot.guests, key=lambda g: g.vmid):
        for tag in _tags(g.tags):
            if tag == "plb_ignore" or tag.startswith("plb_ignore_"):
                ignored.add(g.vmid)
            elif tag.startswith("plb_pin_") and tag[8:] in by_lower:
                pins.setdefault(g.vmid, []).append(by_lower[tag[8:]])
            elif tag.startswith("plb_anti_affinity_") and len(tag) > 18:
                anti.setdefault(tag[18:], []).append(g.vmid)
    if not targets:
        return []

    def used(node: str) -> float:
        return sum(size[v] for v, n in where.items() if n == node) / memory[node]

    least = min(targets, key=lambda n: (used(n), n))  # chosen once, never re-evaluated
    moves: list[Move] = []

    def may_go(vmid: int, node: str) -> bool:
        return vmid not in ignored and (vmid not in pins or node in pins[vmid])

    def move(vmid: int, node: str) -> bool:
        if len(moves) >= policy.max_moves or where[vmid] == node:
            return False
        moves.append((vmid, where[vmid], node))
        where[vmid] = node
        return True

    # 1. maintenance evacuation
    for vmid in sorted(where):
        if where[vmid] in down and vmid not in ignored:
            allowed = [n for n in pins.get(vmid, [least]) if n in targets] or [least]
            move(vmid, min(allowed, key=lambda n: (used(n), n)))
    # 2. pins
    for vmid, nodes_ok in sorted(pins.items()):
        if vmid not in ignored and where[vmid] not in nodes_ok:
            allowed = [n for n in nodes_ok if n in targets]
            if allowed:
                move(vmid, min(allowed, key=lambda n: (used(n), n)))
    # 3. anti-affinity, first fit
    for _, members in sorted(anti.items()):
        seen: set[str] = set()
        for vmid in members:
            node = where[vmid]
            if node not in seen:
                seen.add(node)
                continue
            occupied = {where[v] for v in members}
            free = [n for n in targets if n not in occupied and may_go(vmid, n)]
            if free and move(vmid, free[0]):
                seen.add(free[0])
    # 4. balance memory: smallest guests of the most-used node to the start's least-used node
    while len(moves) < policy.max_moves:
        usage = {n: used(n) for n in targets}
        if max(usage.values()) - min(usage.values()) < threshold:
            break
        source = max(targets, key=lambda n: (usage[n], n))
        if source == least:
            break
        candidates = sorted(
            (v for v, n in where.items() if n == source and v in running and may_go(v, least)),
            key=lambda v: (size[v], v),
        )
        if not candidates:
            break
        move(candidates[0], least)
    return moves
