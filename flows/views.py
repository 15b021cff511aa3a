"""Rich tables for the CLI: nodes, guests with their rules, plans, results, placements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from engine import ClusterSnapshot, Plan, Policy, loads
from engine.tags import parse_tags
from engine.whatif import Placement
from tasks.migrate import MoveResult

GIB = 1024**3


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "  -  "


def nodes_table(snapshot: ClusterSnapshot, policy: Policy, title: str = "Nodes") -> Table:
    node_loads, imbalance = loads(snapshot, policy)
    table = Table(title=f"{title} (imbalance {imbalance:.2%})")
    for col in (
        "node",
        "status",
        "guests",
        "CPU now",
        "CPU pred.",
        "mem now",
        "mem pred.",
        "memory",
    ):
        table.add_column(col, justify="left" if col in ("node", "status") else "right")
    per_node: dict[str, list[float]] = {n.name: [0, 0.0, 0.0] for n in snapshot.nodes}
    for g in snapshot.guests:
        if g.node in per_node and g.running:
            row = per_node[g.node]
            row[0] += 1
            row[1] += g.cpu_used
            row[2] += g.mem_used
    for load in node_loads:
        node = snapshot.node(load.node)
        status = "online" if node.online else "offline"
        if node.maintenance or load.node in policy.maintenance_nodes:
            status += ", maintenance"
        count, cpu_now, mem_now = per_node[load.node]
        table.add_row(
            load.node,
            status,
            str(int(count)),
            _pct(cpu_now, node.cpus),
            _pct(load.cpu, node.cpus),
            _pct(mem_now, node.memory),
            _pct(load.mem, node.memory),
            f"{node.memory / GIB:.0f} GiB",
        )
    return table


def _rules_of(tags: Sequence[str], ha_rules: list[str]) -> str:
    rules = parse_tags(tuple(tags))
    parts = [f"affinity:{a}" for a in rules.affinity]
    parts += [f"anti-affinity:{a}" for a in rules.anti_affinity]
    parts += [f"pin:{p}" for p in rules.pins]
    if rules.ignore:
        parts.append("ignored")
    return ", ".join(parts + ha_rules)


def guests_table(
    snapshot: ClusterSnapshot, node: str | None = None, policy: Policy | None = None
) -> Table:
    ha: dict[int, list[str]] = {}
    pools = policy.pools if policy is not None else {}
    for g in snapshot.guests:
        rule = pools.get(g.pool) if g.pool else None
        if rule is not None:
            where = f" {','.join(rule.nodes)}" if rule.nodes else ""
            soft = "" if rule.strict else " (soft)"
            ha.setdefault(g.vmid, []).append(f"pool {g.pool}: {rule.rule.value}{where}{soft}")
    for nr in snapshot.node_rules:
        for vmid in nr.vmids:
            ha.setdefault(vmid, []).append(
                f"{'strict ' if nr.strict else ''}node-affinity:{nr.name}"
            )
    for rr in snapshot.resource_rules:
        kind = "together" if rr.positive else "apart"
        for vmid in rr.vmids:
            ha.setdefault(vmid, []).append(f"{kind}:{rr.name}")
    table = Table(title="Guests" + (f" on {node}" if node else ""))
    for col in ("vmid", "name", "kind", "node", "state", "vCPUs", "CPU", "mem", "tags", "rules"):
        table.add_column(col, justify="right" if col in ("vmid", "vCPUs", "CPU", "mem") else "left")
    for g in sorted(snapshot.guests, key=lambda g: g.vmid):
        if node and g.node != node:
            continue
        state = "running" if g.running else "stopped"
        if g.lock:
            state += f", lock {g.lock}"
        if g.local_resources:
            state += ", passthrough"
        table.add_row(
            str(g.vmid),
            g.name,
            g.kind.value,
            g.node,
            state,
            str(g.vcpus),
            f"{g.cpu_used:.2f}",
            f"{g.mem_used / GIB:.1f} GiB",
            ";".join(g.tags),
            _rules_of(g.tags, ha.get(g.vmid, [])),
        )
    return table


def plan_tables(plan: Plan, skips: int = 15) -> list[Table]:
    spread = f"{plan.imbalance_before:.2%} → {plan.imbalance_after:.2%}"
    head = (
        f"Plan ({plan.planner}): imbalance {spread}, "
        f"{len(plan.moves)} move(s), {plan.gib_moved:.1f} GiB"
    )
    moves = Table(title=head)
    for col in ("#", "guest", "from", "to", "reason", "why"):
        moves.add_column(col)
    for i, m in enumerate(plan.moves, 1):
        moves.add_row(str(i), f"{m.vmid} {m.name}", m.source, m.target, m.reason.value, m.detail)
    out = [moves]
    notable = [s for s in plan.skipped if s.reason.value != "ignored"]
    if notable:
        t = Table(title=f"Notable skips ({len(notable)}, first {min(skips, len(notable))})")
        for col in ("guest", "node", "reason", "why"):
            t.add_column(col)
        for s in notable[:skips]:
            t.add_row(f"{s.vmid} {s.name}", s.node, s.reason.value, s.detail)
        out.append(t)
    if plan.conflicts:
        t = Table(title="Rule conflicts")
        for col in ("rule", "guests", "problem", "what the planner does"):
            t.add_column(col)
        for c in plan.conflicts:
            t.add_row(c.rule, ", ".join(map(str, c.vmids)), c.detail, c.resolution)
        out.append(t)
    return out


def results_table(results: Sequence[MoveResult]) -> Table:
    table = Table(title="Migrations")
    for col in ("guest", "from", "to", "status", "seconds", "detail"):
        table.add_column(col)
    colour = {"ok": "green", "failed": "red", "skipped": "yellow"}
    for r in results:
        table.add_row(
            f"{r.vmid} {r.name}",
            r.source,
            r.target,
            f"[{colour.get(r.status, 'white')}]{r.status}[/]",
            "" if r.seconds is None else f"{r.seconds:.0f}",
            r.detail,
        )
    return table


def placement_table(ranked: Sequence[Placement]) -> Table:
    table = Table(title="Best nodes for the new guest")
    for col in ("rank", "node", "fits", "load after", "imbalance after", "why not"):
        table.add_column(col)
    for i, p in enumerate(ranked, 1):
        table.add_row(
            str(i),
            p.node,
            "yes" if p.feasible else "no",
            f"{p.load_after:.3f}",
            f"{p.imbalance_after:.2%}",
            p.why_not,
        )
    return table


def plan_json(plan: Plan) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "planner": plan.planner,
        "imbalance_before": plan.imbalance_before,
        "imbalance_after": plan.imbalance_after,
        "gib_moved": plan.gib_moved,
        "note": plan.note,
        "moves": [asdict(m) for m in plan.moves],
        "skipped": [asdict(s) for s in plan.skipped],
        "conflicts": [asdict(c) for c in plan.conflicts],
        "loads_before": [asdict(n) for n in plan.loads_before],
        "loads_after": [asdict(n) for n in plan.loads_after],
    }


def rows_table(title: str, rows: Sequence[dict[str, Any]], limit: int = 40) -> Table:
    """Any list of flat records (artifact rows) as a table, the first `limit` of them."""
    table = Table(title=title.replace("_", " ").capitalize())
    for col in rows[0]:
        table.add_column(str(col))
    for row in rows[:limit]:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    return table
