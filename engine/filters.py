"""Hard vetoes, kept apart from scoring: may a guest move at all, and may it go to a node.

Each check is one small named function. Target checks work on whole vectors of nodes at once,
so the planner asks "which nodes could take this unit?" in one call.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from engine.model import Guest, GuestKind
from engine.plan import Reason
from engine.policy import Policy
from engine.rules import RuleSet
from engine.state import State

Mask = npt.NDArray[np.bool_]
Amount = float | npt.NDArray[np.float64]
Nodes = int | slice


class Caps(NamedTuple):
    """What a node may hold: p90 CPU (host cores, the CPU load cap; binding for balancing
    only), p90 memory (bytes, its memory less the reserve) and configured vCPUs (the
    overcommit cap)."""

    cpu90: Amount
    mem90: Amount
    vcpus: Amount


class Room(NamedTuple):
    """Per cap, whether the nodes stay within it (arrays broadcast like the amounts)."""

    cpu90: Mask
    mem90: Mask
    vcpus: Mask

    def fits(self, balancing: bool = True) -> Mask:
        """Within every cap; the CPU load cap binds balancing only, so repairs and
        evacuations may fill a node's CPUs."""
        ok: Mask = self.mem90 & self.vcpus
        return ok & self.cpu90 if balancing else ok


def caps(state: State, policy: Policy, nodes: Nodes = slice(None)) -> Caps:
    return Caps(
        policy.max_cpu_load * state.cpus[nodes],
        state.mem_limit[nodes],
        policy.cpu_overcommit * state.cpus[nodes],
    )


def room(
    state: State,
    policy: Policy,
    cpu90: Amount,
    mem90: Amount,
    vcpus: Amount,
    nodes: Nodes = slice(None),
) -> Room:
    """Whether `nodes` stay within each cap once their load changes by `cpu90` p90 host
    cores, `mem90` bytes of p90 memory and `vcpus` configured vCPUs (negative: load that
    leaves). The amounts may be arrays of candidates; they broadcast against the nodes.

    A change that leaves a node's p90 CPU no higher is within the CPU load cap even if the node
    stays above it: an exchange that relieves a node running hot leaves it no worse. Memory and the
    vCPU overcommit cap are hard limits: a node above them receives nothing."""
    cap = caps(state, policy, nodes)
    now = state.cpu_p90[nodes]
    return Room(
        now + cpu90 <= np.maximum(cap.cpu90, now),  # the exact planner's rule too
        state.mem_p90[nodes] + mem90 <= cap.mem90,
        state.vcpus[nodes] + vcpus <= cap.vcpus,
    )


def why_unmovable(
    guest: Guest, policy: Policy, rules: RuleSet, state: State
) -> tuple[Reason, str] | None:
    if guest.vmid in rules.ignored:
        return Reason.IGNORED, "tagged plb_ignore: never moved, its load still counts"
    if guest.lock:
        return Reason.LOCKED, f"locked ({guest.lock})"
    if guest.local_resources:
        return Reason.LOCAL_RESOURCES, f"uses local devices: {', '.join(guest.local_resources)}"
    if guest.local_disk_bytes and not policy.allow_local_disks:
        return Reason.LOCAL_DISKS, (
            f"has {guest.local_disk_bytes / 1024**3:.1f} GiB on local storage "
            "and the policy does not allow moving local disks"
        )
    if guest.kind is GuestKind.LXC and guest.running and not policy.allow_container_restart:
        return Reason.CONTAINER_RESTART, (
            "a running container can only move by restarting and the policy does not allow it"
        )
    source = state.where.get(guest.vmid)
    if source is None or not state.online[source]:
        return Reason.SOURCE_OFFLINE, f"its node {guest.node} is offline"
    return None


def feasible_targets(
    vmids: list[int],
    source: int | None,
    state: State,
    rules: RuleSet,
    policy: Policy,
    balancing: bool,
    capacity: bool = True,
) -> Mask:
    """Nodes that may take all of `vmids` (currently together on `source`) at once.

    `capacity=False` checks the rules alone, for callers that do their own capacity sums
    (an exchange frees room on the target as it fills it)."""
    ok: Mask = state.eligible.copy()
    if source is not None:
        ok[source] = False
    _, cpu90, _, mem90, vcpus = state.unit_totals(vmids)
    if capacity:
        ok &= room(state, policy, cpu90, mem90, vcpus).fits(balancing)
    for v in vmids:
        allowed = rules.allowed.get(v)
        if allowed is not None:
            ok &= np.array([name in allowed for name in state.names])
    moving = set(vmids)
    for group in rules.groups_of_any(vmids):
        if group.together or not group.strict:
            continue
        inside = moving.intersection(group.vmids)
        if not inside:
            continue
        counts = np.zeros(len(state.names))
        for member in group.vmids:
            if member not in moving and member in state.where:
                counts[state.where[member]] += 1
        ok &= counts + len(inside) <= group.max_per_node
    return ok


def penalties(
    vmids: list[int], state: State, rules: RuleSet, soft_penalty: float
) -> npt.NDArray[np.float64]:
    """Soft-rule cost of placing the unit on each node: lower priority, soft (anti-)affinity."""
    cost = np.zeros(len(state.names))
    moving = set(vmids)
    for v in vmids:
        prefs = rules.preferred.get(v)
        if prefs:
            best = max(prefs.values())
            for i, name in enumerate(state.names):
                prio = prefs.get(name)
                cost[i] += soft_penalty * (2 if prio is None else (1 if prio < best else 0))
    for group in rules.groups_of_any(vmids):
        if group.strict:
            continue
        others = np.zeros(len(state.names))
        for member in group.vmids:
            if member not in moving and member in state.where:
                others[state.where[member]] += 1
        if group.together:
            cost += soft_penalty * (others.sum() - others)
        else:
            cost += soft_penalty * others
    return cost
