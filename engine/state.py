"""The planner's assumed cluster state: per-node sums kept up to date after every move.

Node load is a weighted sum of predicted CPU and memory, each as a fraction of the node's
capacity. Imbalance is the mean absolute deviation (MAD) of that load across the nodes that
can take guests: it is in the same units as load (0.05 = five percentage points), every
node counts (unlike max-min, which sees only the extremes), and it is linear, so the exact
MILP planner can minimise the very number the greedy planner reports.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from engine.model import ClusterSnapshot, Guest
from engine.plan import NodeLoad
from engine.policy import Policy

Vector = npt.NDArray[np.float64]


def mad(scores: Vector) -> float:
    if scores.size == 0:
        return 0.0
    return float(np.abs(scores - scores.mean()).mean())


class State:
    def __init__(self, snapshot: ClusterSnapshot, policy: Policy, maintenance: Iterable[str]):
        nodes = sorted(snapshot.nodes, key=lambda n: n.name)
        down = set(maintenance)
        self.names = [n.name for n in nodes]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.cpus = np.array([max(n.cpus, 1) for n in nodes], dtype=np.float64)
        self.memory = np.array([max(n.memory, 1) for n in nodes], dtype=np.float64)
        self.online = np.array([n.online for n in nodes], dtype=bool)
        self.eligible = np.array([n.online and n.name not in down for n in nodes], dtype=bool)
        self.mem_limit = np.array(
            [n.memory - policy.reserve_for(n.name, n.reserve) for n in nodes], dtype=np.float64
        )
        total = policy.cpu_weight + policy.memory_weight
        self.w_cpu = policy.cpu_weight / total
        self.w_mem = policy.memory_weight / total
        size = len(nodes)
        self.cpu = np.zeros(size)
        self.cpu_p90 = np.zeros(size)
        self.mem = np.zeros(size)
        self.mem_p90 = np.zeros(size)
        self.vcpus = np.zeros(size)
        self.guests: dict[int, Guest] = {g.vmid: g for g in snapshot.guests}
        self.where: dict[int, int] = {}
        self._f = {g.vmid: snapshot.forecast(g.vmid) for g in snapshot.guests}
        for g in snapshot.guests:
            if g.node in self.index:
                i = self.index[g.node]
                self.where[g.vmid] = i
                self._add(g.vmid, i, 1.0)

    def _add(self, vmid: int, i: int, sign: float) -> None:
        f = self._f[vmid]
        self.cpu[i] += sign * f.cpu
        self.cpu_p90[i] += sign * f.cpu_p90
        self.mem[i] += sign * f.mem
        self.mem_p90[i] += sign * f.mem_p90
        if self.guests[vmid].running:
            self.vcpus[i] += sign * self.guests[vmid].vcpus

    def copy(self) -> State:
        """An independent placement over the same nodes and guests, to try moves on."""
        twin = object.__new__(State)
        twin.__dict__.update(self.__dict__)
        for name in ("cpu", "cpu_p90", "mem", "mem_p90", "vcpus"):
            setattr(twin, name, getattr(self, name).copy())
        twin.where = dict(self.where)
        return twin

    def move(self, vmids: Iterable[int], target: int) -> None:
        for v in vmids:
            self._add(v, self.where[v], -1.0)
            self.where[v] = target
            self._add(v, target, 1.0)

    # -- load ------------------------------------------------------------------------------
    def share(self, cpu: float | Vector, mem: float | Vector) -> Vector:
        """The load that `cpu` host cores and `mem` bytes make on each node: the weighted
        share of its CPUs and memory. Arrays of amounts broadcast against the nodes."""
        result: Vector = self.w_cpu * cpu / self.cpus + self.w_mem * mem / self.memory
        return result

    def scores(self) -> Vector:
        return self.share(self.cpu, self.mem)

    @property
    def n_eligible(self) -> int:
        return int(self.eligible.sum())

    def imbalance(self) -> float:
        return mad(self.scores()[self.eligible])

    def unit_totals(self, vmids: Iterable[int]) -> tuple[float, float, float, float, float]:
        cpu = cpu90 = mem = mem90 = vcpu = 0.0
        for v in vmids:
            f = self._f[v]
            cpu += f.cpu
            cpu90 += f.cpu_p90
            mem += f.mem
            mem90 += f.mem_p90
            if self.guests[v].running:
                vcpu += self.guests[v].vcpus
        return cpu, cpu90, mem, mem90, vcpu

    def imbalance_if_moved(
        self, source: int, cpu: float, mem: float
    ) -> tuple[Vector, Vector, Vector]:
        """For every possible target: imbalance after the move, the target's load after it,
        and the variance after it (a tie-breaker: MAD is flat while no node crosses the mean,
        variance still prefers the coolest target)."""
        scores = self.scores()
        delta = self.share(cpu, mem)
        n = len(self.names)
        after = np.tile(scores, (n, 1))
        after[:, source] -= delta[source]
        diag = np.arange(n)
        after[diag, diag] += delta
        cols = after[:, self.eligible]
        if cols.shape[1] == 0:
            return np.zeros(n), scores + delta, np.zeros(n)
        dev = cols - cols.mean(axis=1, keepdims=True)
        imb: Vector = np.abs(dev).mean(axis=1)
        var: Vector = (dev * dev).mean(axis=1)
        return imb, after[diag, diag], var

    def loads(self) -> tuple[NodeLoad, ...]:
        scores = self.scores()
        return tuple(
            NodeLoad(
                node=name,
                cpu=float(self.cpu[i]),
                cpu_p90=float(self.cpu_p90[i]),
                mem=float(self.mem[i]),
                mem_p90=float(self.mem_p90[i]),
                cpus=int(self.cpus[i]),
                memory=int(self.memory[i]),
                score=float(scores[i]),
                eligible=bool(self.eligible[i]),
            )
            for i, name in enumerate(self.names)
        )
