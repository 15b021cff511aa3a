"""What-if questions answered with the planner's own rules: apply a plan, lose a node,
empty a node, and where a new guest of a given size would fit best."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.filters import feasible_targets, penalties, room
from engine.model import ClusterSnapshot, Guest, GuestKind
from engine.plan import NodeLoad, Plan, Skip
from engine.planner import plan
from engine.policy import Policy
from engine.rules import RuleSet, build_rules
from engine.state import State
from engine.tags import parse_tags, split_tags

PROBE_VMID = -1  # the hypothetical guest being placed


def apply_plan(snapshot: ClusterSnapshot, plan: Plan) -> ClusterSnapshot:
    """The snapshot as it will be once every move of `plan` has landed."""
    targets = {m.vmid: m.target for m in plan.moves}
    guests = tuple(
        replace(g, node=targets[g.vmid]) if g.vmid in targets else g for g in snapshot.guests
    )
    return replace(snapshot, guests=guests)


def loads(snapshot: ClusterSnapshot, policy: Policy) -> tuple[tuple[NodeLoad, ...], float]:
    """Per-node predicted load and the imbalance, as the planner measures them."""
    rules = build_rules(snapshot, policy)
    state = State(snapshot, policy, rules.maintenance)
    return state.loads(), state.imbalance()


def _whole_node_budget(snapshot: ClusterSnapshot, policy: Policy, node: str) -> Policy:
    count = sum(1 for g in snapshot.guests if g.node == node)
    return replace(
        policy,
        max_moves=max(policy.max_moves, count),
        max_moves_per_node=max(policy.max_moves_per_node, 2 * count),
    )


def plan_evacuation(snapshot: ClusterSnapshot, policy: Policy, node: str) -> Plan:
    """Move everything movable off `node`, honouring every rule; budgets grow to fit."""
    if node not in {n.name for n in snapshot.nodes}:
        raise ValueError(
            f"no node named {node!r}; nodes are {', '.join(sorted(n.name for n in snapshot.nodes))}"
        )
    return plan(snapshot, _whole_node_budget(snapshot, policy, node), balance=False, evacuate=node)


def why_not_now(snapshot: ClusterSnapshot, policy: Policy, vmid: int, target: str) -> str | None:
    """Why moving `vmid` to `target` would break a hard rule in `snapshot`, or None.

    The last check before a planned move is executed, on a fresh read of the cluster: plans
    made apart (a balance and an evacuation running at once) or a cluster that changed since
    planning must never overfill a node or break a rule. Budgets and gains are not judged here.
    """
    rules = build_rules(snapshot, policy)
    state = State(snapshot, policy, rules.maintenance)
    if target not in state.index:
        return f"no node named {target!r}"
    if vmid not in state.where:
        return "the guest is not on any known node"
    t = state.index[target]
    if t == state.where[vmid]:
        return f"the guest is already on {target}"
    if feasible_targets([vmid], state.where[vmid], state, rules, policy, False)[t]:
        return None
    return _why_not(state, rules, policy, vmid, t, False)


@dataclass(frozen=True)
class NodeLoss:
    node: str
    plan: Plan  # where its guests would go
    stranded: tuple[Skip, ...]  # guests with nowhere to go (or that cannot move)

    @property
    def survivable(self) -> bool:
        return not self.stranded


def _failed(snapshot: ClusterSnapshot, node: str) -> ClusterSnapshot:
    """The snapshot as a node failure sees it: its guests are restarted elsewhere (HA), so
    what only stops the *balancer* from moving them no longer applies — `plb_ignore` tags,
    locks, a container's restart. What binds a guest to the hardware still does: passthrough
    devices, and disks that lived on the failed node."""

    def freed(g: Guest) -> Guest:
        if g.node != node:
            return g
        tags = tuple(t for t in split_tags(g.tags) if not parse_tags(t).ignore)
        return replace(g, tags=tags, lock=None)

    return replace(snapshot, guests=tuple(freed(g) for g in snapshot.guests))


def lose_node(snapshot: ClusterSnapshot, policy: Policy, node: str) -> NodeLoss:
    """If `node` failed: could the others hold its guests, and how loaded would they be?

    Unlike a planned evacuation, a failure restarts guests (see `_failed`), so containers may
    restart and ignored or locked guests need a home too; local disks on the node are lost
    with it, so those guests are stranded whatever the policy allows.
    """
    restart = replace(policy, allow_container_restart=True, allow_local_disks=False)
    evacuation = plan_evacuation(_failed(snapshot, node), restart, node)
    moved = {m.vmid for m in evacuation.moves}
    stranded = tuple(s for s in evacuation.skipped if s.node == node and s.vmid not in moved)
    return NodeLoss(node, evacuation, stranded)


@dataclass(frozen=True)
class Placement:
    node: str
    feasible: bool
    load_after: float  # the node's weighted load with the new guest
    imbalance_after: float
    penalty: float
    why_not: str = ""


def best_nodes(
    snapshot: ClusterSnapshot,
    policy: Policy,
    cores: int,
    memory: int,
    tags: tuple[str, ...] = (),
    cpu: float | None = None,
    mem: float | None = None,
    pool: str | None = None,
) -> list[Placement]:
    """Every node ranked for a new guest: feasible ones first, best (lowest imbalance) first.

    `cpu` and `mem` are the expected use (host cores, bytes); without them the guest is
    assumed busy: half its vCPUs and all its memory.
    """
    if cores <= 0 or memory <= 0:
        raise ValueError(f"a new guest needs cores > 0 and memory > 0, got {cores} and {memory}")
    if not snapshot.nodes:
        return []
    first = sorted(n.name for n in snapshot.nodes)[0]
    probe = Guest(
        PROBE_VMID,
        "new guest",
        first,
        GuestKind.QEMU,
        cores,
        memory,
        int(mem if mem is not None else memory),
        cpu if cpu is not None else cores / 2,
        tags=tags,
        pool=pool,
    )
    with_probe = replace(snapshot, guests=(*snapshot.guests, probe))
    rules = build_rules(with_probe, policy)
    state = State(with_probe, policy, rules.maintenance)
    home = state.where[PROBE_VMID]
    cpu_v, _, mem_v, _, _ = state.unit_totals([PROBE_VMID])
    # evaluate as if the guest came from nowhere: remove it, then try each node
    state.cpu[home] -= cpu_v
    state.mem[home] -= mem_v
    f = with_probe.forecast(PROBE_VMID)
    state.cpu_p90[home] -= f.cpu_p90
    state.mem_p90[home] -= f.mem_p90
    state.vcpus[home] -= cores
    ok = feasible_targets([PROBE_VMID], None, state, rules, policy, balancing=True)
    pen = penalties([PROBE_VMID], state, rules, policy.soft_rule_penalty)
    scores = state.scores()
    delta = state.share(cpu_v, mem_v)
    out = []
    for t, name in enumerate(state.names):
        after = scores.copy()
        after[t] += delta[t]
        imb = float(np.abs(after[state.eligible] - after[state.eligible].mean()).mean())
        why = "" if ok[t] else _why_not(state, rules, policy, PROBE_VMID, t, True)
        out.append(Placement(name, bool(ok[t]), float(after[t]), imb, float(pen[t]), why))
    # MAD does not move while no node crosses the mean: then the cooler node wins
    return sorted(
        out,
        key=lambda p: (
            not p.feasible,
            round(p.imbalance_after + p.penalty, 9),
            p.load_after,
            p.node,
        ),
    )


def _why_not(
    state: State, rules: RuleSet, policy: Policy, vmid: int, t: int, balancing: bool
) -> str:
    """Why node `t`, which `feasible_targets` ruled out for `vmid`, may not take it: its
    hard rules, one by one. The CPU load cap binds `balancing` only."""
    name = state.names[t]
    if not state.online[t]:
        return f"{name} is offline"
    if name in rules.maintenance:
        return f"{name} is in maintenance"
    if not rules.may_run_on(vmid, name):
        return f"{rules.allowed_reason.get(vmid, 'a node restriction')} rules out {name}"
    _, cpu90, _, mem90, vcpus = state.unit_totals([vmid])
    within = room(state, policy, cpu90, mem90, vcpus, t)
    if not within.mem90:
        free = max(0.0, state.mem_limit[t] - state.mem_p90[t]) / 1024**3
        need = mem90 / 1024**3
        return f"{name} has {free:.1f} GiB free after its reserve, the guest needs {need:.1f}"
    if not within.vcpus:
        return f"{name} would exceed the vCPU overcommit cap ({policy.cpu_overcommit:g}x)"
    if balancing and not within.cpu90:
        return f"predicted p90 CPU on {name} would exceed {policy.max_cpu_load:.0%}"
    return f"an anti-affinity group already has a member on {name}"
