"""Mutable state of the simulated cluster: nodes, guests, HA, pools, tasks, faults, request counts.

One re-entrant lock guards it all; every API call first lets the scheduler catch up with the
virtual clock, so state is always as of "now" in simulated time.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvesim.clock import VirtualClock
from pvesim.events import EventLog, Scheduler
from pvesim.load import LoadSource, SyntheticTable, make_source
from pvesim.scenario import GuestSpec, HaResourceSpec, NodeSpec, ScenarioSpec, StorageSpec
from pvesim.tasks import TaskRegistry

if TYPE_CHECKING:
    from pvesim.metrics import GuestTable, LiveView

RRD_EXPIRY = 300.0  # PVE drops live RRD data of a silent node after 5 minutes
_TAG_SPLIT = re.compile(r"[,; ]+")


def normalize_tags(tags: tuple[str, ...] | list[str]) -> str:
    """PVE's stored form: split on , ; or space, de-duplicated, lower-cased, sorted, ';'-joined."""
    out: set[str] = set()
    for tag in tags:
        out.update(t.lower() for t in _TAG_SPLIT.split(tag) if t)
    return ";".join(sorted(out))


@dataclass
class Node:
    spec: NodeSpec
    nodeid: int
    ip: str
    booted_at: float
    online: bool = True
    offline_since: float | None = None
    outages: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def was_online(self, t: float) -> bool:
        return not any(start <= t and (end is None or t < end) for start, end in self.outages)


@dataclass
class MigrationWindow:
    """Extra load a running migration puts on both ends."""

    vmid: int
    source: str
    target: str
    start: float
    end: float
    mem_bytes: float


@dataclass
class Guest:
    spec: GuestSpec
    node: str
    status: str
    tags: str
    lock: str | None
    started_at: float
    load: LoadSource
    placements: list[tuple[float, str]]
    ha: HaResourceSpec | None = None
    hastate: str | None = None
    migrating: bool = False
    fail_next_migration: str | None = None

    @property
    def vmid(self) -> int:
        return self.spec.vmid

    @property
    def kind(self) -> str:
        return self.spec.type

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    def node_at(self, t: float) -> str:
        times = [p[0] for p in self.placements]
        i = bisect.bisect_right(times, t) - 1
        return self.placements[max(i, 0)][1]

    def move_to(self, node: str, at: float) -> None:
        self.node = node
        self.placements.append((at, node))


@dataclass
class Faults:
    """Injected misbehaviour, set through the control API."""

    error_rate: float = 0.0
    error_code: int = 500
    error_message: str = "simulated failure"
    error_path: str | None = None
    latency: float = 0.0
    offline_delay: float = 0.0


class RequestCounter:
    """API requests per "METHOD /route/template", so a client's call budget can be measured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, method: str, template: str) -> None:
        with self._lock:
            self._counts[f"{method} {template}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class Cluster:
    def __init__(
        self,
        spec: ScenarioSpec,
        clock: VirtualClock,
        traces_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.lock = threading.RLock()
        self.version = spec.pve_version
        self.quorate = True
        self.scheduler = Scheduler()
        self.events = EventLog()
        self.tasks = TaskRegistry()
        self.faults = Faults()
        self.requests = RequestCounter()  # PVE API requests only, read through /_sim/requests
        self.state_version = 0
        self.migration_windows: list[MigrationWindow] = []
        self.response_cache: dict[tuple[Any, ...], bytes] = {}
        self.live_view: LiveView | None = None  # the live figures of the latest refresh
        self.guest_table: GuestTable | None = None  # all guests, for evaluating them at once
        # what a guest's /cluster/resources entry takes from its spec alone (pvesim.render)
        self.resource_bases: dict[int, tuple[dict[str, Any], int, int]] = {}
        self.synthetic = SyntheticTable()  # every synthetic guest's load model, one row each
        self.fingerprint = ""  # the server certificate's, shown by GET /nodes
        start = spec.start
        self.nodes: dict[str, Node] = {
            n.name: Node(n, i + 1, f"10.10.0.{11 + i}", booted_at=start - 40 * 86_400 - i * 3_600)
            for i, n in enumerate(spec.nodes)
        }
        self.storages: dict[str, StorageSpec] = {s.name: s for s in spec.storages}
        ha = {r.sid: r for r in spec.ha.resources}
        self.maintenance: set[str] = set(spec.ha.maintenance)
        self.guests: dict[int, Guest] = {}
        for g in spec.guests:
            sid = f"{'vm' if g.type == 'qemu' else 'ct'}:{g.vmid}"
            res = ha.get(sid)
            running = g.status == "running"
            self.guests[g.vmid] = Guest(
                spec=g,
                node=g.node,
                status=g.status,
                tags=normalize_tags(g.tags),
                lock=g.lock,
                started_at=start - 21 * 86_400 - (g.vmid % 97) * 600 if running else 0.0,
                load=make_source(g.load, spec.seed, g.vmid, start, traces_dir, self.synthetic),
                placements=[(float("-inf"), g.node)],
                ha=res,
                hastate=_initial_hastate(res, running),
            )

    # -- time -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def catch_up(self) -> float:
        """Run every scheduled action that is due and return the current simulated time."""
        now = self.clock.now()
        if self.scheduler.run_until(now):
            self.touch()
        return now

    def touch(self) -> None:
        self.state_version += 1

    # -- lookups ----------------------------------------------------------------------------
    def guest(self, vmid: int) -> Guest | None:
        return self.guests.get(vmid)

    def guests_on(self, node: str) -> list[Guest]:
        return [g for g in self.guests.values() if g.node == node]

    def storage_on(self, storage: str, node: str) -> bool:
        spec = self.storages.get(storage)
        return spec is not None and (spec.nodes is None or node in spec.nodes)

    # -- faults -----------------------------------------------------------------------------
    def set_node_online(self, node: str, online: bool) -> None:
        n = self.nodes[node]
        now = self.catch_up()
        if n.online == online:
            return
        n.online = online
        if online:
            start = n.offline_since if n.offline_since is not None else now
            n.outages[-1] = (start, now)
            n.offline_since = None
            n.booted_at = now
        else:
            n.offline_since = now
            n.outages.append((now, None))
        self.events.add(now, "node_online" if online else "node_offline", node=node)
        self.touch()

    def set_quorum(self, quorate: bool) -> None:
        now = self.catch_up()
        if self.quorate != quorate:
            self.quorate = quorate
            self.events.add(now, "quorum_regained" if quorate else "quorum_lost")
            self.touch()


def _initial_hastate(res: HaResourceSpec | None, running: bool) -> str | None:
    if res is None:
        return None
    if res.state in ("started", "enabled"):
        return "started" if running else "request_start"
    return res.state
