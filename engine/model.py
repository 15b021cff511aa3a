"""The cluster as the planner sees it: frozen value objects, no I/O.

Units are chosen so that sums mean something: CPU in host cores (a guest's busy fraction of
its own vCPUs × its vCPUs), memory and disk in bytes, times in epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class GuestKind(StrEnum):
    QEMU = "qemu"
    LXC = "lxc"


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int  # logical CPUs
    memory: int  # bytes
    online: bool = True
    maintenance: bool = False  # from HA, the node itself, or policy
    reserve: int | None = None  # bytes kept free; None means the policy default


@dataclass(frozen=True)
class Guest:
    vmid: int
    name: str
    node: str
    kind: GuestKind = GuestKind.QEMU
    vcpus: int = 1
    mem_max: int = 0  # configured memory, bytes
    mem_used: int = 0  # host view, bytes
    cpu_used: float = 0.0  # host cores busy now
    running: bool = True
    tags: tuple[str, ...] = ()
    pool: str | None = None
    lock: str | None = None
    ha_managed: bool = False
    local_resources: tuple[str, ...] = ()  # passthrough devices: never movable
    local_disk_bytes: int = 0  # disks on storage only this node has
    template: bool = False


@dataclass(frozen=True)
class Forecast:
    """A guest's predicted load over the planning horizon: the mean and a high quantile."""

    vmid: int
    cpu: float  # expected host cores
    cpu_p90: float
    mem: float  # expected bytes
    mem_p90: float

    @staticmethod
    def from_current(guest: Guest) -> Forecast:
        """What a guest without history is assumed to do: stay as it is now."""
        if not guest.running:
            return Forecast(guest.vmid, 0.0, 0.0, 0.0, 0.0)
        return Forecast(
            guest.vmid,
            guest.cpu_used,
            guest.cpu_used,
            float(guest.mem_used),
            float(guest.mem_used),
        )


@dataclass(frozen=True)
class NodeAffinityRule:
    """PVE 9 HA node-affinity (or a PVE 8 HA group): where guests may or should run."""

    name: str
    vmids: tuple[int, ...]
    nodes: tuple[tuple[str, int], ...]  # (node, priority); higher priority is preferred
    strict: bool = False


@dataclass(frozen=True)
class ResourceAffinityRule:
    """PVE 9 HA resource-affinity: keep guests together (positive) or apart (negative)."""

    name: str
    vmids: tuple[int, ...]
    positive: bool


@dataclass(frozen=True)
class MigrationRecord:
    vmid: int
    source: str
    target: str
    finished_at: float


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything the planner knows at one instant."""

    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    forecasts: tuple[Forecast, ...] = ()
    node_rules: tuple[NodeAffinityRule, ...] = ()
    resource_rules: tuple[ResourceAffinityRule, ...] = ()
    history: tuple[MigrationRecord, ...] = ()
    now: float = 0.0
    _forecast_index: dict[int, Forecast] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index = {f.vmid: f for f in self.forecasts}
        for g in self.guests:
            if g.vmid not in index:
                index[g.vmid] = Forecast.from_current(g)
        object.__setattr__(self, "_forecast_index", index)

    def forecast(self, vmid: int) -> Forecast:
        return self._forecast_index[vmid]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
