"""Every limit on how much one plan may do, enforced here and nowhere else.

Moves per run, moves touching one node, and per-guest cooldown after a migration. The
cooldown grows for repeat movers (back-off), so a guest that keeps being moved gets left
alone for longer each time instead of ping-ponging between nodes.
"""

from __future__ import annotations

from collections import defaultdict
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
        self.used = 0
        self.per_node: dict[str, int] = defaultdict(int)
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
        self, moves: list[tuple[int, str]], target: str, balancing: bool, new: int
    ) -> Refusal | None:
        """Why these (guest, source) moves to `target` may not happen, or None.

        `new` counts the moves that are not re-targets of moves already in the plan. Repairs
        ignore the cooldown: a guest on a node it must leave leaves.
        """
        if self.used + new > self.policy.max_moves:
            return Refusal(Reason.BUDGET_RUN, f"the run may make {self.policy.max_moves} moves")
        touches: dict[str, int] = defaultdict(int)
        for _, source in moves:
            touches[source] += 1
            touches[target] += 1
        for node, count in sorted(touches.items()):
            if self.per_node[node] + count > self.policy.max_moves_per_node:
                limit = self.policy.max_moves_per_node
                return Refusal(
                    Reason.BUDGET_NODE, f"node {node} may take part in {limit} moves per run"
                )
        if balancing:
            for vmid, _ in moves:
                left = self.cooldown_left(vmid)
                if left > 0:
                    return Refusal(
                        Reason.COOLDOWN,
                        f"guest {vmid} moved recently; it may move again in {left / 60:.0f} min",
                    )
        return None

    def node_room(self, names: list[str], moves: int) -> list[bool]:
        """Per node: may it take part in `moves` more moves this run?"""
        limit = self.policy.max_moves_per_node
        return [self.per_node[n] + moves <= limit for n in names]

    def spend(self, moves: list[tuple[int, str]], target: str, new: int) -> None:
        self.used += new
        for _, source in moves:
            self.per_node[source] += 1
            self.per_node[target] += 1

    def release(self, source: str, target: str) -> None:
        """Give back what one move held (it is being re-targeted or undone)."""
        self.per_node[source] -= 1
        self.per_node[target] -= 1
