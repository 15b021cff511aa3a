"""The planner's working state: assumed placement, budget, moves and skips so far.

Repairs and balancing both build on this: `apply` is the one way a move enters a plan (it
re-targets or drops an earlier move of the same guest, and charges the budget), `skip` the
one way a guest is recorded as staying, with its reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

import numpy as np

from engine.budget import Budget
from engine.filters import feasible_targets, penalties, why_unmovable
from engine.model import ClusterSnapshot, Guest, GuestKind
from engine.plan import Move, Reason, Skip
from engine.policy import Policy
from engine.rules import RuleSet
from engine.state import State

GIB = 1024**3


@dataclass(frozen=True)
class Unit:
    """Guests that move together: one guest, or a whole affinity group."""

    vmids: tuple[int, ...]
    name: str | None = None


class PlanBuilder:
    def __init__(self, snapshot: ClusterSnapshot, policy: Policy, rules: RuleSet) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.rules = rules
        self.state = State(snapshot, policy, rules.maintenance)
        self.budget = Budget(policy, snapshot.history, snapshot.now)
        self.guests = {g.vmid: g for g in snapshot.guests}
        self.home = {g.vmid: g.node for g in snapshot.guests}
        self.moves: dict[int, Move] = {}  # insertion order is plan order
        self.skips: dict[int, Skip] = {}
        self.note = ""
        self.blocked: dict[int, tuple[Reason, str]] = {}
        for g in sorted(snapshot.guests, key=lambda g: g.vmid):
            why = why_unmovable(g, policy, rules, self.state)
            if why is not None:
                self.blocked[g.vmid] = why
                self.skip(g.vmid, *why)

    # -- bookkeeping ------------------------------------------------------------------------
    def node_of(self, vmid: int) -> str:
        return self.state.names[self.state.where[vmid]]

    def skip(self, vmid: int, reason: Reason, detail: str) -> None:
        if vmid not in self.skips and vmid not in self.moves:
            g = self.guests[vmid]
            node = self.node_of(vmid) if vmid in self.state.where else g.node
            self.skips[vmid] = Skip(vmid, g.name, node, reason, detail)

    def cost(self, vmids: tuple[int, ...] | list[int]) -> float:
        """Migration cost of moving these guests now; zero for guests the plan moves anyway."""
        return sum(self.migration_cost(v) for v in vmids if v not in self.moves)

    def added_moves(self, unit: Unit) -> int:
        """Migrations moving `unit` adds to the plan: re-targeting a planned move adds none."""
        return sum(1 for v in unit.vmids if v not in self.moves)

    def migration_cost(self, vmid: int) -> float:
        g = self.guests[vmid]
        mem = self.snapshot.forecast(vmid).mem if g.running else 0.0
        gib = mem / GIB + self.policy.local_disk_cost_factor * g.local_disk_bytes / GIB
        return self.policy.migration_cost_per_gib * gib

    def objective(self) -> float:
        """The plan judged as a whole, the way the exact planner judges a placement: total
        absolute deviation of node load, plus each move's cost and margin, plus the soft-rule
        penalties where the movable units stand."""
        st = self.state
        total = st.imbalance() * st.n_eligible
        total += sum(self.migration_cost(v) + self.policy.margin for v in self.moves)
        for unit in self.units():
            vmids = list(unit.vmids)
            if self.rules.groups_of_any(vmids) or any(v in self.rules.preferred for v in vmids):
                pen = penalties(vmids, st, self.rules, self.policy.soft_rule_penalty)
                total += float(pen[st.where[vmids[0]]])
        return total

    def fork(self) -> Self:
        """A copy of the plan so far that can be carried on without touching this one."""
        twin = copy.copy(self)
        twin.state = self.state.copy()
        twin.moves = dict(self.moves)
        twin.skips = dict(self.skips)
        return twin

    def apply_all(self, steps: Iterable[tuple[Unit, int, str, float]], reason: Reason) -> bool:
        """Make every move of `steps` ((unit, target, detail, gain), in order) or none: they
        are made on a fork, and the plan takes the fork over only if the budget allowed all."""
        trial = self.fork()
        if not all(trial.apply(unit, t, reason, detail, gain) for unit, t, detail, gain in steps):
            return False
        self.state, self.moves, self.skips = trial.state, trial.moves, trial.skips
        return True

    def apply(self, unit: Unit, target: int, reason: Reason, detail: str, gain: float) -> bool:
        """Record and apply a move of `unit` to `target` if the budget allows it."""
        target_name = self.state.names[target]
        after = self.planned()
        added = self.added_moves(unit)  # counted before the plan changes below
        for v in unit.vmids:
            if self.home[v] == target_name:
                after.pop(v, None)  # back home: the earlier move is dropped
            else:
                after[v] = (self.home[v], target_name)
        balancing = reason is Reason.BALANCE
        refusal = self.budget.refuse(after, unit.vmids, balancing=balancing and added > 0)
        if refusal is not None:
            for v in unit.vmids:
                self.skip(v, refusal.reason, refusal.detail)
            return False
        cost = self.cost(unit.vmids)
        self.state.move(unit.vmids, target)
        share = 1.0 / len(unit.vmids)
        for v in unit.vmids:
            g = self.guests[v]
            earlier = self.moves.pop(v, None)
            self.skips.pop(v, None)
            if self.home[v] == target_name:
                continue  # back home: the earlier move is simply dropped
            first_reason = earlier.reason if earlier is not None else reason
            text = detail if earlier is None else f"{earlier.detail}; then {detail}"
            self.moves[v] = make_move(
                g,
                self.home[v],
                target_name,
                first_reason,
                text,
                gain * share,
                cost * share,
                unit.name,
                self.snapshot,
            )
        return True

    # -- choosing a target ------------------------------------------------------------------
    def best_target(self, unit: Unit, balancing: bool) -> tuple[int | None, float, float]:
        """(target, net value, imbalance after) for moving `unit` from where it is now."""
        vmids = list(unit.vmids)
        sources = {self.state.where[v] for v in vmids}
        source = min(sources)
        ok = feasible_targets(vmids, source, self.state, self.rules, self.policy, balancing)
        for s in sources:
            ok[s] = False
        if not ok.any():
            return None, 0.0, 0.0
        cpu, _, mem, _, _ = self.state.unit_totals(vmids)
        if len(sources) == 1:
            after, target_load, var = self.state.imbalance_if_moved(source, cpu, mem)
        else:
            after, target_load, var = self._imbalance_if_gathered(vmids)
        pen = penalties(vmids, self.state, self.rules, self.policy.soft_rule_penalty)
        here = pen[source]
        before = self.state.imbalance()
        # gain in node-load units: the total absolute deviation removed (N × ΔMAD), so one
        # move's worth does not shrink as the cluster grows
        value = (before - after) * self.state.n_eligible - (pen - here)
        if balancing:
            value = value - self.cost(vmids)
            ok &= target_load < self.state.scores()[source]
            moving = self.added_moves(unit)
            ok &= np.array(self.budget.node_room(self.planned().values(), self.state.names, moving))
            if not ok.any():
                return None, 0.0, 0.0
        # rank by value, then by variance: among equal MAD gains the coolest target wins
        rank = np.where(ok, np.round(value, 9) - 1e-3 * var, -np.inf)
        best = int(np.argmax(rank))
        return best, float(value[best]), float(after[best])

    def _imbalance_if_gathered(self, vmids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        homes = {v: self.state.where[v] for v in vmids}
        n = len(self.state.names)
        after = np.zeros(n)
        load = np.zeros(n)
        var = np.zeros(n)
        for t in range(n):
            self.state.move(vmids, t)
            scores = self.state.scores()
            after[t] = self.state.imbalance()
            load[t] = scores[t]
            var[t] = float(np.var(scores[self.state.eligible]))
            for v, h in homes.items():
                self.state.move([v], h)
        return after, load, var

    # -- the run ----------------------------------------------------------------------------

    def planned(self) -> dict[int, tuple[str, str]]:
        """The plan so far as guest -> (source, target): what the budget is charged on."""
        return {v: (m.source, m.target) for v, m in self.moves.items()}

    def _targets_so_far(self) -> frozenset[tuple[int, str]]:
        """Each guest the plan moves, with its target: the same before and after a round only
        if the round changed nothing (a re-target counts as a change)."""
        return frozenset((v, m.target) for v, m in self.moves.items())

    def units(self) -> list[Unit]:
        """Movable units: whole affinity groups sitting together, and every other guest."""
        grouped: set[int] = set()
        out: list[Unit] = []
        for group in self.rules.groups:
            if not (group.together and group.strict):
                continue
            grouped.update(group.vmids)
            members = [v for v in group.vmids if v in self.state.where]
            nodes = {self.state.where[v] for v in members}
            if len(nodes) == 1 and not any(v in self.blocked for v in members):
                out.append(Unit(tuple(members), group.name))
        for g in sorted(self.snapshot.guests, key=lambda g: g.vmid):
            if g.vmid not in grouped and g.vmid not in self.blocked and g.vmid in self.state.where:
                out.append(Unit((g.vmid,)))
        return out

    def unit_of(self, vmid: int) -> Unit | None:
        """The unit `vmid` moves with, or None when it cannot move without breaking one."""
        for unit in self.units():
            if vmid in unit.vmids:
                return unit
        return None


def make_move(
    g: Guest,
    source: str,
    target: str,
    reason: Reason,
    detail: str,
    gain: float,
    cost: float,
    unit: str | None,
    snapshot: ClusterSnapshot,
) -> Move:
    lxc = g.kind is GuestKind.LXC
    return Move(
        vmid=g.vmid,
        name=g.name,
        kind=g.kind.value,
        source=source,
        target=target,
        reason=reason,
        detail=detail,
        online=g.running and not lxc,
        restart=g.running and lxc,
        with_local_disks=g.local_disk_bytes > 0,
        mem_bytes=int(snapshot.forecast(g.vmid).mem) if g.running else 0,
        disk_bytes=g.local_disk_bytes,
        gain=gain,
        cost=cost,
        unit=unit,
    )
