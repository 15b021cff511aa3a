"""Exact mode: the placement that minimises imbalance plus migration cost, by MILP (HiGHS).

Same hard rules, capacities and budgets as the greedy planner, same objective: imbalance (MAD,
linear with one auxiliary variable per node) plus, per move, its migration cost and the policy
margin, plus soft-rule penalties. It is for small and medium clusters and for measuring how far
the greedy plan is from the optimum; past its time limit, or if the solver finds nothing, the
greedy plan is returned instead, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix

from engine.filters import caps, penalties
from engine.model import ClusterSnapshot
from engine.plan import Move, Plan, Reason
from engine.planner import Planner, plan
from engine.planning import Unit, make_move
from engine.policy import Policy
from engine.rules import build_rules
from engine.state import State


@dataclass(frozen=True)
class _Column:
    unit: int
    node: int
    moves: int  # members that would change node
    cost: float


def plan_exact(snapshot: ClusterSnapshot, policy: Policy, time_limit: float = 10.0) -> Plan:
    rules = build_rules(snapshot, policy)
    base = Planner(snapshot, policy, rules)
    state = base.state
    n_nodes = len(state.names)
    units = _units(base)
    if not units:
        return replace(plan(snapshot, policy), planner="exact", note="nothing can move")

    cols: list[_Column] = []
    for u, unit in enumerate(units):
        homes = [state.where[v] for v in unit.vmids]
        for t in _allowed_nodes(base, unit, homes):
            moving = [v for v, h in zip(unit.vmids, homes, strict=True) if h != t]
            cols.append(_Column(u, t, len(moving), base.cost(moving) if moving else 0.0))
    n_x = len(cols)
    eligible = [int(i) for i in np.flatnonzero(state.eligible)]
    n_e = len(eligible)
    n_var = n_x + n_e  # x columns, then one deviation variable per eligible node

    # loads of what cannot move stay put
    fixed = {v for unit in units for v in unit.vmids}
    static = _Static(state, fixed)

    cost = np.zeros(n_var)
    pen_cache: dict[int, np.ndarray] = {}
    for j, col in enumerate(cols):
        unit = units[col.unit]
        if col.unit not in pen_cache:
            pen_cache[col.unit] = penalties(
                list(unit.vmids), state, rules, policy.soft_rule_penalty
            )
        cost[j] = col.cost + policy.margin * col.moves + pen_cache[col.unit][col.node]
    cost[n_x:] = 1.0  # total absolute deviation: the greedy planner's gain units

    rows: list[tuple[dict[int, float], float, float]] = []
    # each unit on exactly one node
    for u in range(len(units)):
        rows.append(({j: 1.0 for j, c in enumerate(cols) if c.unit == u}, 1.0, 1.0))
    # capacities, never worse than today on nodes that are already over
    per_node: dict[int, list[int]] = {}
    for j, col in enumerate(cols):
        per_node.setdefault(col.node, []).append(j)
    totals = [state.unit_totals(u.vmids) for u in units]
    for t, js in per_node.items():
        cap = caps(state, policy, t)
        mem_cap = max(cap.mem90, state.mem_p90[t]) - static.mem_p90[t]
        vcpu_cap = max(cap.vcpus, state.vcpus[t]) - static.vcpus[t]
        rows.append(({j: totals[cols[j].unit][3] for j in js}, -np.inf, mem_cap))
        rows.append(({j: totals[cols[j].unit][4] for j in js}, -np.inf, vcpu_cap))
        cpu_cap = max(cap.cpu90, state.cpu_p90[t]) - static.cpu_p90[t]
        rows.append(({j: totals[cols[j].unit][1] for j in js}, -np.inf, cpu_cap))
    # anti-affinity: members per node
    for group in rules.groups:
        if group.together or not group.strict:
            continue
        members = set(group.vmids)
        for t in range(n_nodes):
            coef = {
                j: float(len(members.intersection(units[c.unit].vmids)))
                for j, c in enumerate(cols)
                if c.node == t and members.intersection(units[c.unit].vmids)
            }
            pinned = sum(1 for v in members - fixed if state.where.get(v) == t)
            if coef:
                rows.append((coef, -np.inf, max(group.max_per_node - pinned, 0)))
    # budgets: moves per run and per node
    rows.append(
        ({j: float(c.moves) for j, c in enumerate(cols) if c.moves}, -np.inf, policy.max_moves)
    )
    for t in range(n_nodes):
        touching: dict[int, float] = {}
        for j, col in enumerate(cols):
            unit = units[col.unit]
            out = sum(1 for v in unit.vmids if state.where[v] == t and col.node != t)
            into = col.moves if col.node == t else 0
            if out + into:
                touching[j] = float(out + into)
        if touching:
            rows.append((touching, -np.inf, policy.max_moves_per_node))
    # deviation: d_n >= |L_n - mean|, with L_n linear in x
    node_load: list[dict[int, float]] = []
    shares = [state.share(cpu, mem) for cpu, _, mem, _, _ in totals]  # per unit, on each node
    for t in eligible:
        node_load.append({j: float(shares[cols[j].unit][t]) for j in per_node.get(t, ())})
    static_score = state.share(static.cpu, static.mem)
    mean_coef: dict[int, float] = {}
    for coef in node_load:
        for j, a in coef.items():
            mean_coef[j] = mean_coef.get(j, 0.0) + a / n_e
    static_mean = float(static_score[eligible].mean()) if n_e else 0.0
    for k, t in enumerate(eligible):
        # with L_t = static_t + A_t x and mean = static_mean + M x:
        #   L_t - mean - d_k <= 0  ->  (A_t - M) x - d_k <= static_mean - static_t
        #   mean - L_t - d_k <= 0  ->  (M - A_t) x - d_k <= static_t - static_mean
        diff = dict(mean_coef)
        for j, a in node_load[k].items():
            diff[j] = diff.get(j, 0.0) - a
        const = static_mean - static_score[t]
        up = {j: -a for j, a in diff.items()}
        up[n_x + k] = -1.0
        rows.append((up, -np.inf, const))
        down = dict(diff)
        down[n_x + k] = -1.0
        rows.append((down, -np.inf, -const))

    matrix = lil_matrix((len(rows), n_var))
    lower = np.empty(len(rows))
    upper = np.empty(len(rows))
    for r, (coef, lo, hi) in enumerate(rows):
        for j, a in coef.items():
            matrix[r, j] = a
        lower[r], upper[r] = lo, hi
    integrality = np.concatenate([np.ones(n_x), np.zeros(n_e)])
    bounds = Bounds(np.zeros(n_var), np.concatenate([np.ones(n_x), np.full(n_e, np.inf)]))
    result = milp(
        cost,
        constraints=LinearConstraint(matrix.tocsr(), lower, upper),
        integrality=integrality,
        bounds=bounds,
        options={"time_limit": time_limit, "disp": False},
    )
    if result.x is None:
        greedy = plan(snapshot, policy)
        why = f"the solver found no placement ({result.message.strip()}); greedy plan instead"
        return replace(greedy, note=why)

    chosen = {cols[j].unit: cols[j].node for j in range(n_x) if result.x[j] > 0.5}
    note = "optimal" if result.status == 0 else f"best found within {time_limit:g} s"
    return _to_plan(base, units, chosen, note)


class _Static:
    """Per-node load of the guests the MILP does not place."""

    def __init__(self, state: State, fixed: set[int]) -> None:
        n = len(state.names)
        self.cpu = np.zeros(n)
        self.cpu_p90 = np.zeros(n)
        self.mem = np.zeros(n)
        self.mem_p90 = np.zeros(n)
        self.vcpus = np.zeros(n)
        for v, t in state.where.items():
            if v in fixed:
                continue
            cpu, cpu90, mem, mem90, vcpu = state.unit_totals([v])
            self.cpu[t] += cpu
            self.cpu_p90[t] += cpu90
            self.mem[t] += mem
            self.mem_p90[t] += mem90
            self.vcpus[t] += vcpu


def _units(base: Planner) -> list[Unit]:
    """Everything that may move: whole strict affinity groups (even if split) and singles."""
    grouped: set[int] = set()
    out: list[Unit] = []
    for group in base.rules.groups:
        if not (group.together and group.strict):
            continue
        members = tuple(v for v in group.vmids if v in base.state.where)
        grouped.update(members)
        if not any(v in base.blocked for v in members):
            out.append(Unit(members, group.name))
    cooling = {v for v in base.state.where if base.budget.cooldown_left(v) > 0}
    for v in sorted(base.state.where):
        if v in grouped or v in base.blocked:
            continue
        node = base.state.names[base.state.where[v]]
        must_leave = node in base.rules.maintenance or not base.rules.may_run_on(v, node)
        if v in cooling and not must_leave:
            continue
        out.append(Unit((v,)))
    return out


def _allowed_nodes(base: Planner, unit: Unit, homes: list[int]) -> list[int]:
    state, rules = base.state, base.rules
    out = []
    for t, name in enumerate(state.names):
        if not state.eligible[t]:
            continue
        if all(rules.may_run_on(v, name) for v in unit.vmids):
            out.append(t)
    if not out and len(set(homes)) == 1:
        out = [homes[0]]  # nowhere to go: it stays, as the greedy planner would skip it
    return out


def _to_plan(base: Planner, units: list[Unit], chosen: dict[int, int], note: str) -> Plan:
    state, rules = base.state, base.rules
    loads_before = state.loads()
    imbalance_before = state.imbalance()
    crowded = _crowded_members(base)
    moves: list[Move] = []
    for u, unit in enumerate(units):
        target = chosen.get(u)
        if target is None:
            continue
        homes = {v: state.where[v] for v in unit.vmids}
        moving = [v for v in unit.vmids if homes[v] != target]
        if not moving:
            continue
        split = len(set(homes.values())) > 1
        for v in moving:
            source = state.names[homes[v]]
            reason, detail = _reason(base, v, source, split, unit, crowded)
            g = base.guests[v]
            moves.append(
                make_move(
                    g,
                    source,
                    state.names[target],
                    reason,
                    detail,
                    0.0,
                    base.cost([v]),
                    unit.name,
                    base.snapshot,
                )
            )
        state.move(moving, target)
    moves.sort(key=lambda m: (m.reason is Reason.BALANCE, list(Reason).index(m.reason), m.vmid))
    skipped = tuple(base.skips[v] for v in sorted(base.skips))
    return Plan(
        moves=tuple(moves),
        skipped=skipped,
        conflicts=tuple(rules.conflicts),
        loads_before=loads_before,
        loads_after=state.loads(),
        imbalance_before=imbalance_before,
        imbalance_after=state.imbalance(),
        planner="exact",
        note=note,
    )


def _crowded_members(base: Planner) -> set[int]:
    out: set[int] = set()
    for group in base.rules.groups:
        if group.together or not group.strict:
            continue
        per: dict[int, list[int]] = {}
        for v in group.vmids:
            if v in base.state.where:
                per.setdefault(base.state.where[v], []).append(v)
        for members in per.values():
            if len(members) > group.max_per_node:
                out.update(members)
    return out


def _reason(
    base: Planner, vmid: int, source: str, split: bool, unit: Unit, crowded: set[int]
) -> tuple[Reason, str]:
    rules = base.rules
    if source in rules.maintenance:
        return Reason.MAINTENANCE, f"node {source} is in maintenance"
    if not rules.may_run_on(vmid, source):
        why = rules.allowed_reason.get(vmid, "node restriction")
        reason = Reason.NODE_AFFINITY if why.startswith("HA") else Reason.PIN
        return reason, f"{why} allows only {', '.join(sorted(rules.allowed[vmid]))}"
    if split:
        return Reason.AFFINITY, f"{unit.name} keeps its members on one node"
    if vmid in crowded:
        return Reason.ANTI_AFFINITY, "its anti-affinity group shares a node"
    return Reason.BALANCE, "part of the placement with the least imbalance plus migration cost"
