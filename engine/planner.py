"""The greedy planner: repair every rule violation first, then balance, explaining each step.

Repairs run on any cluster, calm or hot, in this order: maintenance evacuation, node
restrictions (pins, strict HA node-affinity, pool pins), anti-affinity, affinity. Balancing
then makes the single best move at a time: the one whose drop in imbalance beats its
migration cost by the policy margin most, whose target ends up less loaded than the source
was, and that breaks no hard rule. The assumed state is updated after every move, so later
moves see earlier ones. Small clusters also weigh pairs of moves and, on three nodes, carry
competing first choices to the end (see `engine.balancing`).

A guest appears in a plan at most once. When balancing later wants to move a guest that the
plan already moves, the existing move is re-targeted (or dropped, if it would go home), so a
plan never carries a move that undoes another.
"""

from __future__ import annotations

from dataclasses import replace

from engine.balancing import Balancing
from engine.model import ClusterSnapshot
from engine.plan import Plan, Reason
from engine.policy import Policy
from engine.repairs import Repairs
from engine.rules import build_rules

REPAIR_ROUNDS = 3  # repair, balance, and again while balancing frees room for repairs


def plan(
    snapshot: ClusterSnapshot,
    policy: Policy,
    *,
    balance: bool = True,
    evacuate: str | None = None,
) -> Plan:
    """A deterministic, explained migration plan for `snapshot` under `policy`."""
    if evacuate is not None:
        policy = replace(policy, maintenance_nodes=tuple({*policy.maintenance_nodes, evacuate}))
    rules = build_rules(snapshot, policy)
    # an evacuation only empties the node: other repairs wait for a normal run
    return Planner(snapshot, policy, rules).run(balance, repairs=evacuate is None)


class Planner(Repairs, Balancing):
    def run(self, balance: bool, repairs: bool = True) -> Plan:
        loads_before = self.state.loads()
        imbalance_before = self.state.imbalance()
        for round_ in range(REPAIR_ROUNDS):
            targets_before = self._targets_so_far()
            self.repair_maintenance()
            if repairs:
                self.repair_restrictions()
                self.repair_anti_affinity()
                self.repair_affinity()
            if balance:
                self.balance()
            # a later repair or balancing may have made room for a repair that had none
            waiting = [v for v, s in self.skips.items() if s.reason is Reason.NO_TARGET]
            last = round_ == REPAIR_ROUNDS - 1
            if not waiting or self._targets_so_far() == targets_before or last:
                break
            for v in waiting:
                del self.skips[v]
        moves = tuple(self.moves.values())
        skipped = tuple(self.skips[v] for v in sorted(self.skips))
        return Plan(
            moves=moves,
            skipped=skipped,
            conflicts=tuple(self.rules.conflicts),
            loads_before=loads_before,
            loads_after=self.state.loads(),
            imbalance_before=imbalance_before,
            imbalance_after=self.state.imbalance(),
            planner="greedy",
            note=self.note,
        )
