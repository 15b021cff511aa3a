"""Every limit on how much one plan may do, enforced here and nowhere else.

Moves per run, moves touching one node, and per-guest cooldown after a migration. The
cooldown grows for repeat movers (back-off), so a guest that keeps being moved gets left
alone for longer each time instead of ping-ponging between nodes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.model import MigrationRecord
from engine.plan import Reason
from engine.policy import Policy

REPEAT_WINDOW = 7 * 86_400.0  # moves older than this no longer lengthen the cooldown


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    detail: str


class Budget:
    def __init__(self, policy: Policy, history: tuple[MigrationRecord, ...], now: float) -> None:
        self.policy = policy
        self.now = now
        self._last: dict[int, float] = {}
        self._recent: dict[int, int] = defaultdict(int)
        for rec in history:
            if rec.finished_at > self._last.get(rec.vmid, float("-inf")):
                self._last[rec.vmid] = rec.finished_at
            if now - rec.finished_at <= REPEAT_WINDOW:
                self._recent[rec.vmid] += 1

    def cooldown_left(self, vmid: int) -> float:
        """Seconds until the guest may be moved for balance again (0 when it may)."""
        last = self._last.get(vmid)
        if last is None or self.policy.cooldown_minutes <= 0:
            return 0.0
        repeats = max(self._recent[vmid], 1)
        window = self.policy.cooldown_minutes * 60 * self.policy.cooldown_backoff ** (repeats - 1)
        return max(0.0, last + window - self.now)

    def refuse(
        self, plan: Mapping[int, tuple[str, str]], changed: Iterable[int], balancing: bool
    ) -> Refusal | None:
        """Why the plan as it would be after a change may not stand, or None.

        `plan` maps each moving guest to (source, target); `changed` are the guests the change
        adds or re-targets. Counts are taken from the plan itself, so a move that is dropped or
        re-targeted gives back its share at once. Repairs ignore the cooldown: a guest on a
        node it must leave leaves.
        """
        if len(plan) > self.policy.max_moves:
            return Refusal(Reason.BUDGET_RUN, f"the run may make {self.policy.max_moves} moves")
        counts = node_counts(plan.values())
        limit = self.policy.max_moves_per_node
        touched = sorted({node for v in changed if v in plan for node in plan[v]})
        for node in touched:
            if counts[node] > limit:
                return Refusal(
                    Reason.BUDGET_NODE, f"node {node} may take part in {limit} moves per run"
                )
        if balancing:
            for vmid in changed:
                left = self.cooldown_left(vmid) if vmid in plan else 0.0
                if left > 0:
                    return Refusal(
                        Reason.COOLDOWN,
                        f"guest {vmid} moved recently; it may move again in {left / 60:.0f} min",
                    )
        return None

    def node_room(
        self, plan: Iterable[tuple[str, str]], names: list[str], moves: int
    ) -> list[bool]:
        """Per node: may it take part in `moves` more moves, given the plan so far?"""
        counts = node_counts(plan)
        limit = self.policy.max_moves_per_node
        return [counts[n] + moves <= limit for n in names]


def node_counts(plan: Iterable[tuple[str, str]]) -> Counter[str]:
    """How many planned moves each node takes part in, as source or target."""
    counts: Counter[str] = Counter()
    for source, target in plan:
        counts[source] += 1
        counts[target] += 1
    return counts
