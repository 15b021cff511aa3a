"""Repairs: bring every guest back within its hard rules, whatever the load.

Order: maintenance evacuation, node restrictions (pins, strict HA node-affinity, pool pins),
anti-affinity, affinity. A guest that must move but cannot is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from engine.filters import feasible_targets
from engine.plan import Reason
from engine.planning import GIB, PlanBuilder, Unit
from engine.rules import Group


class Repairs(PlanBuilder):
    def _repair(self, unit: Unit, reason: Reason, detail: str) -> None:
        blocked = [v for v in unit.vmids if v in self.blocked]
        if blocked:
            return  # already skipped with its own reason
        target, _, _ = self.best_target(unit, balancing=False)
        if target is None:
            for v in unit.vmids:
                self.skip(v, Reason.NO_TARGET, f"must move ({detail}) but no node can take it")
            return
        self.apply(unit, target, reason, detail, gain=0.0)

    def repair_maintenance(self) -> None:
        down = self.rules.maintenance
        for unit in self.units():
            node = self.node_of(unit.vmids[0])
            if node in down:
                self._repair(unit, Reason.MAINTENANCE, f"node {node} is in maintenance")
        for v, (_reason, detail) in self.blocked.items():
            if v in self.state.where and self.node_of(v) in down:
                self.skips[v] = replace(
                    self.skips[v],
                    detail=f"{detail}; it stays on maintenance node {self.node_of(v)}",
                )
        self._explain_held_back(lambda v: self.node_of(v) in down, "must leave a maintenance node")

    def _explain_held_back(self, breaks: Callable[[int], bool], what: str) -> None:
        """Guests that break a rule but cannot move alone, because a member of their affinity
        group cannot move: say so instead of leaving them unexplained."""
        movable = {v for unit in self.units() for v in unit.vmids}
        for v in sorted(self.state.where):
            if v in movable or v in self.blocked or v in self.moves or not breaks(v):
                continue
            partners = [
                p
                for g in self.rules.groups_of_any([v])
                if g.together and g.strict
                for p in g.vmids
                if p in self.blocked
            ]
            who = f"guest {partners[0]}" if partners else "a member"
            self.skip(
                v,
                Reason.RULE_CONFLICT,
                f"{what}, but it moves only with its affinity group and {who} cannot move",
            )

    def repair_restrictions(self) -> None:
        for unit in self.units():
            for v in unit.vmids:
                node = self.node_of(v)
                if not self.rules.may_run_on(v, node):
                    why = self.rules.allowed_reason.get(v, "node restriction")
                    reason = Reason.NODE_AFFINITY if why.startswith("HA") else Reason.PIN
                    allowed = ", ".join(sorted(self.rules.allowed[v]))
                    self._repair(unit, reason, f"{why} allows only {allowed}")
                    break
        self._explain_held_back(
            lambda v: not self.rules.may_run_on(v, self.node_of(v)), "breaks its node restriction"
        )
        for v in sorted(self.blocked):
            if v in self.state.where and not self.rules.may_run_on(v, self.node_of(v)):
                reason, detail = self.blocked[v]
                self.skips[v] = replace(
                    self.skips[v], detail=f"{detail}; it breaks its node restriction and stays"
                )

    def repair_anti_affinity(self) -> None:
        for group in self.rules.groups:
            if group.together or not group.strict:
                continue
            self._spread(group)

    def _spread(self, group: Group) -> None:
        stuck: set[int] = set()  # crowded nodes none of whose members can leave
        while True:
            by_node: dict[int, list[int]] = {}
            for v in group.vmids:
                if v in self.state.where:
                    by_node.setdefault(self.state.where[v], []).append(v)
            crowded = sorted(
                i for i, vs in by_node.items() if len(vs) > group.max_per_node and i not in stuck
            )
            if not crowded:
                return
            members = by_node[crowded[0]]
            candidates = sorted(
                (v for v in members if v not in self.blocked and v not in self.moves),
                key=lambda v: (self.snapshot.forecast(v).mem, v),
            )
            node = self.state.names[crowded[0]]
            detail = f"{group.name} allows {group.max_per_node} per node; {node} has {len(members)}"
            # move the member whose move helps the balance most (net of its cost)
            options: list[tuple[float, int, Unit, int]] = []
            for v in candidates:
                unit = self.unit_of(v)
                if unit is None:
                    continue
                target, value, _ = self.best_target(unit, balancing=False)
                if target is not None:
                    options.append((-(value - self.cost(unit.vmids)), v, unit, target))
            moved = False
            for _, _, unit, target in sorted(options, key=lambda o: (o[0], o[1])):
                if self.apply(unit, target, Reason.ANTI_AFFINITY, detail, 0.0):
                    moved = True
                    break
            if not moved:
                for v in members:
                    if v not in self.moves:
                        self.skip(v, Reason.NO_TARGET, f"{detail}, and no member can move")
                stuck.add(crowded[0])

    def repair_affinity(self) -> None:
        for group in self.rules.groups:
            if not (group.together and group.strict):
                continue
            present = [v for v in group.vmids if v in self.state.where]
            nodes = sorted({self.state.where[v] for v in present})
            if len(nodes) <= 1:
                continue
            self._gather(group, present)

    def _gather(self, group: Group, members: list[int]) -> None:
        fixed = {self.state.where[v] for v in members if v in self.blocked}
        if len(fixed) > 1:
            for v in members:
                self.skip(
                    v,
                    Reason.RULE_CONFLICT,
                    f"{group.name}: members that cannot move sit on different nodes",
                )
            return
        best: tuple[float, float, int] | None = None
        for t in range(len(self.state.names)):
            if fixed and t not in fixed:
                continue
            name = self.state.names[t]
            if not all(self.rules.may_run_on(v, name) for v in members):
                continue
            off = [v for v in members if self.state.where[v] != t]
            ok = feasible_targets(off, None, self.state, self.rules, self.policy, balancing=False)
            if not ok[t]:
                continue
            homes = {v: self.state.where[v] for v in off}
            self.state.move(off, t)
            imb = self.state.imbalance()
            for v, h in homes.items():
                self.state.move([v], h)
            gib = sum(self.snapshot.forecast(v).mem for v in off) / GIB
            key = (gib, imb, t)
            if best is None or key < best:
                best = key
        detail = f"{group.name} keeps its members on one node"
        if best is None:
            for v in members:
                self.skip(v, Reason.NO_TARGET, f"{detail}, but no node can hold them all")
            return
        target = best[2]
        moving = tuple(v for v in members if self.state.where[v] != target)
        self.apply(Unit(moving, group.name), target, Reason.AFFINITY, detail, 0.0)
