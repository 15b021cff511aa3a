"""What the planner returns: ordered moves and skipped candidates, each with a reason code."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # why a guest moves
    MAINTENANCE = "maintenance-evacuation"
    PIN = "pin-repair"
    NODE_AFFINITY = "node-affinity-repair"
    ANTI_AFFINITY = "anti-affinity-repair"
    AFFINITY = "affinity-repair"
    BALANCE = "balance"
    # why a guest stays
    IGNORED = "ignored"
    LOCKED = "locked"
    LOCAL_RESOURCES = "local-resources"
    LOCAL_DISKS = "local-disks-not-allowed"
    CONTAINER_RESTART = "container-restart-not-allowed"
    SOURCE_OFFLINE = "source-node-offline"
    COOLDOWN = "cooldown"
    BUDGET_RUN = "budget-moves-per-run"
    BUDGET_NODE = "budget-moves-per-node"
    NO_TARGET = "no-feasible-target"
    RULE_CONFLICT = "rule-conflict"


@dataclass(frozen=True)
class Move:
    vmid: int
    name: str
    kind: str  # qemu | lxc
    source: str
    target: str
    reason: Reason
    detail: str
    online: bool  # live migration (running VM)
    restart: bool  # restart migration (running container)
    with_local_disks: bool
    mem_bytes: int
    disk_bytes: int
    gain: float  # node load moved off the spread: N × imbalance removed (0 for repairs)
    cost: float  # migration cost in the same units (policy: per GiB moved)
    unit: str | None = None  # affinity group moved as one


@dataclass(frozen=True)
class Skip:
    vmid: int
    name: str
    node: str
    reason: Reason
    detail: str


@dataclass(frozen=True)
class Conflict:
    rule: str
    vmids: tuple[int, ...]
    detail: str
    resolution: str  # what the planner does about it


@dataclass(frozen=True)
class NodeLoad:
    node: str
    cpu: float  # expected host cores
    cpu_p90: float
    mem: float  # expected bytes
    mem_p90: float
    cpus: int
    memory: int
    score: float  # weighted CPU and memory fraction: the quantity being balanced
    eligible: bool  # counts towards imbalance (online, not in maintenance)


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    skipped: tuple[Skip, ...]
    conflicts: tuple[Conflict, ...]
    loads_before: tuple[NodeLoad, ...]
    loads_after: tuple[NodeLoad, ...]
    imbalance_before: float
    imbalance_after: float
    planner: str = "greedy"
    note: str = ""

    @property
    def gib_moved(self) -> float:
        return sum(m.mem_bytes + m.disk_bytes for m in self.moves) / 1024**3
