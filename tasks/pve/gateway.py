"""The one door to a PVE cluster: reads in a constant number of calls, moves exactly once.

An ingest cycle costs the same few calls whatever the number of guests: `/cluster/resources`
(every node, guest and storage at once), the HA rules (9.x) or groups and resources (8.x), the
HA status (maintenance nodes) and the time. `/pools` is not read: each guest's entry already
names its pool. Per-guest reads (configs, RRD history) are separate calls the caller makes
rarely and caches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import polars as pl

from engine.model import Guest
from engine.plan import Move
from tasks.pve import backfill, configs, migration, privileges, resources, rules, waiting
from tasks.pve.endpoint import PveEndpoint
from tasks.pve.errors import PrivilegeError, QuorumLostError, TransientError
from tasks.pve.inventory import (
    GUEST_SCHEMA,
    NODE_SCHEMA,
    RULES_SCHEMA,
    GuestConfig,
    Inventory,
    frame,
    with_configs,
)
from tasks.pve.retry import RetryPolicy
from tasks.pve.transport import Transport, open_api

log = logging.getLogger("proxflow.pve")


class Gateway:
    def __init__(self, transport: Transport, endpoint: PveEndpoint) -> None:
        self._api = transport
        self._endpoint = endpoint
        self._release: str | None = None
        self._time_node: str | None = None

    @classmethod
    def connect(cls, endpoint: PveEndpoint, retry: RetryPolicy | None = None) -> Gateway:
        """Log in and read the release, so bad TLS or credentials fail here, not mid-run."""
        retry = retry or RetryPolicy()
        api = retry.run(lambda: open_api(endpoint))
        logins = 1 if endpoint.password is not None else 0
        gateway = cls(Transport(api, endpoint.who, retry, calls=logins), endpoint)
        gateway.version()
        return gateway

    def __repr__(self) -> str:
        return (
            f"Gateway({self._endpoint.who} at {self._endpoint.address}, "
            f"PVE {self._release or '?'}, calls={self.calls})"
        )

    @property
    def calls(self) -> int:
        """API calls made so far (each retry counts), for logs and benchmarks; the hourly ticket
        renewal proxmoxer makes on its own with password logins is not among them."""
        return self._api.calls

    # -- the cluster ---------------------------------------------------------------------------
    def version(self) -> str:
        """The PVE release, e.g. "9.1" (read once: it does not change under a running cycle)."""
        if self._release is None:
            self._release = str(self._api.get("version")["release"])
        return self._release

    @property
    def _has_rules(self) -> bool:
        """HA rules replaced HA groups in PVE 9."""
        major = self.version().split(".")[0]
        return not major.isdigit() or int(major) >= 9  # an unknown scheme: assume a new release

    def missing_privileges(self) -> list[str]:
        """Each required privilege the user or token lacks, as "Priv on /path"."""
        return privileges.missing(self._api.get("access/permissions"))

    def check_privileges(self) -> None:
        missing = self.missing_privileges()
        if missing:
            raise PrivilegeError(self._endpoint.who, missing, "/access/permissions")

    def quorate(self) -> bool:
        for item in self._api.get("cluster/status"):
            if isinstance(item, dict) and item.get("type") == "cluster":
                return bool(item.get("quorate"))
        return True  # a standalone node has no cluster entry and is its own quorum

    def require_quorum(self) -> None:
        if not self.quorate():
            raise QuorumLostError(
                None,
                "the cluster has no quorum: PVE refuses changes and nothing is moved",
                "/cluster/status",
            )

    def cluster_time(self) -> float:
        """The cluster's clock (epoch seconds), read from an online node.

        Samples are dated by the cluster, not by this host: the nodes' clocks are what PVE
        stamps RRD points and tasks with, and a simulated cluster runs on its own clock.
        """
        return self._time(None)

    def _time(self, online: Iterable[str] | None) -> float:
        if online is not None:  # the inventory knows who is up: no call to find out
            names = sorted(online)
            if self._time_node not in names:
                self._time_node = names[0] if names else None
        if self._time_node is None:
            self._time_node = self._online_node()
        try:
            return float(self._api.get(f"nodes/{self._time_node}/time")["time"])
        except TransientError:
            self._time_node = self._online_node(exclude=self._time_node)
            return float(self._api.get(f"nodes/{self._time_node}/time")["time"])

    def _online_node(self, exclude: str | None = None) -> str:
        found = [
            (not item.get("local"), str(item.get("name")))
            for item in self._api.get("cluster/status")
            if isinstance(item, dict)
            and item.get("type") == "node"
            and item.get("online")
            and item.get("name") != exclude
        ]
        if not found:
            raise TransientError(None, "no cluster node is online", "/cluster/status")
        return min(found)[1]

    # -- reading -------------------------------------------------------------------------------
    def inventory(self, configs: Mapping[int, GuestConfig] | None = None) -> Inventory:
        """Nodes, guests, rules and samples, in the same few calls at any cluster size."""
        entries = self._api.get("cluster/resources")
        maintenance = rules.maintenance_nodes(self._api.get("cluster/ha/status/current"))
        if self._has_rules:
            found = rules.from_rules(self._api.get("cluster/ha/rules"))
        else:
            found = rules.from_groups(
                self._api.get("cluster/ha/groups"), self._api.get("cluster/ha/resources")
            )
        online = [
            e["node"]
            for e in entries
            if isinstance(e, dict) and e.get("type") == "node" and e.get("status") == "online"
        ]
        taken_at = self._time(online)
        ts = int(taken_at)
        parsed = resources.parse(entries, ts, maintenance)
        return Inventory(
            taken_at=taken_at,
            nodes=tuple(parsed.nodes),
            guests=with_configs(parsed.guests, configs or {}),
            node_rules=tuple(found.node_rules),
            resource_rules=tuple(found.resource_rules),
            node_samples=frame(parsed.node_rows, NODE_SCHEMA),
            guest_samples=frame(parsed.guest_rows, GUEST_SCHEMA),
            rules_seen=frame(found.seen_rows(ts), RULES_SCHEMA),
            problems=tuple(parsed.problems + found.problems),
            shared_storages=frozenset(parsed.shared_storages),
        )

    def guest_configs(
        self,
        inventory: Inventory,
        guests: Iterable[Guest],
        *,
        workers: int = 4,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[int, GuestConfig]:
        """Local devices and disks of `guests`, `workers` reads in flight at most.

        `inventory` says which storages are shared and which nodes are offline. Guests on an
        offline node are left out without a call: each would wait for pveproxy's 595 (up to
        30 s) and its retries. A guest missing from the answer is one to ask about again next
        cycle.
        """
        offline = inventory.offline_nodes
        guests = list(guests)
        skipped = [g.vmid for g in guests if g.node in offline]
        if skipped:
            log.info("configs of %d guest(s) on offline nodes left for later", len(skipped))
            guests = [g for g in guests if g.node not in offline]
        return configs.read_configs(
            self._api, guests, inventory.shared_storages, workers=workers, progress=progress
        )

    def backfill(
        self,
        inventory: Inventory,
        timeframe: str = "day",
        *,
        workers: int = 4,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Node and guest samples of `inventory`'s nodes and guests from PVE's RRD history.

        Node history is kept by the whole cluster, so offline nodes have it too; a guest's is
        read on its node, so guests on offline nodes are left out (their calls would only 595).
        """
        backfill.check_timeframe(timeframe)
        offline = inventory.offline_nodes
        return backfill.read_history(
            self._api,
            inventory.nodes,
            [g for g in inventory.guests if g.node not in offline],
            timeframe,
            workers=workers,
            progress=progress,
        )

    # -- moving --------------------------------------------------------------------------------
    def locate(self, vmid: int) -> migration.GuestLocation | None:
        return migration.locate(self._api, vmid)

    def start_migration(self, move: Move) -> str:
        """POST the migration (after a quorum check) and return its UPID; see migration.start."""
        self.require_quorum()
        upid = migration.start(self._api, move)
        log.info(
            "migration of %s %s from %s to %s: %s",
            move.kind,
            move.vmid,
            move.source,
            move.target,
            upid,
        )
        return upid

    def wait_task(
        self,
        upid: str,
        *,
        timeout: float,
        poll: float = 1.0,
        on_progress: Callable[[str, str], None] | None = None,
    ) -> waiting.TaskOutcome:
        """Poll the task every `poll` s until it ends (HA requests: until the migration they
        cause ends) or `timeout` s pass; `on_progress(upid, state)` hears each poll."""
        return waiting.wait(
            self._api,
            upid,
            timeout=timeout,
            poll=poll,
            now=self.cluster_time,
            hastate=self._hastate,
            on_progress=on_progress,
        )

    def _hastate(self, vmid: int) -> str | None:
        where = self.locate(vmid)
        return where.hastate if where else None

    def verify(self, vmid: int, target: str) -> bool:
        """The guest is on `target`, unlocked and not still moving."""
        return migration.landed(self.locate(vmid), target)
