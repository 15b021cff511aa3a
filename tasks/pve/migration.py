"""Starting a migration exactly once, finding a guest, and checking where it landed.

A POST that fails transiently may still have reached PVE (the answer was lost, or the client
timed out while pveproxy worked). Posting again blindly could start a second migration, so
after such a failure the source node's task list is read again: a migration task for the
guest that was not there before the first attempt is ours, and its UPID is returned. Only when
none appeared is the POST repeated. The node's own list is used, not `/cluster/tasks`: a node
lists a task the moment its worker starts, while the cluster-wide list is a periodic broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.plan import Move
from tasks.pve.errors import TransientError
from tasks.pve.transport import Transport

MIGRATION_TYPES = frozenset({"qmigrate", "vzmigrate", "hamigrate"})


@dataclass(frozen=True)
class GuestLocation:
    vmid: int
    node: str
    kind: str  # qemu | lxc
    status: str
    lock: str | None
    hastate: str | None


def locate(api: Transport, vmid: int) -> GuestLocation | None:
    for e in api.get("cluster/resources", type="vm"):
        if isinstance(e, dict) and e.get("vmid") == vmid:
            return GuestLocation(
                vmid=vmid,
                node=str(e.get("node")),
                kind=str(e.get("type")),
                status=str(e.get("status")),
                lock=e.get("lock") or None,
                hastate=e.get("hastate") or None,
            )
    return None


def landed(where: GuestLocation | None, target: str) -> bool:
    """On `target`, unlocked, and not still being moved by HA."""
    return (
        where is not None
        and where.node == target
        and where.lock is None
        and where.hastate not in ("migrate", "relocate")
    )


def migrate_params(move: Move) -> dict[str, Any]:
    """PVE's form for the move: booleans as 1/0, never True/False (PVE answers 400 to those)."""
    params: dict[str, Any] = {"target": move.target}
    if move.kind == "qemu":
        params["online"] = 1 if move.online else 0
        if move.with_local_disks:
            params["with-local-disks"] = 1
    elif move.kind == "lxc":
        params["restart"] = 1 if move.restart else 0
    else:
        raise ValueError(f"move of guest {move.vmid}: kind {move.kind!r} is not qemu or lxc")
    return params


def migration_tasks(api: Transport, node: str, vmid: int) -> dict[str, int]:
    """{UPID: start time} of the migration tasks `node` lists for `vmid`, running or done."""
    items = api.get(f"nodes/{node}/tasks", vmid=vmid, source="all", limit=100)
    return {
        str(t["upid"]): int(t.get("starttime") or 0)
        for t in items
        if isinstance(t, dict) and t.get("type") in MIGRATION_TYPES and t.get("upid")
    }


def start(api: Transport, move: Move) -> str:
    path = f"nodes/{move.source}/{move.kind}/{move.vmid}/migrate"
    params = migrate_params(move)
    before = migration_tasks(api, move.source, move.vmid)
    retry = api.retry
    for attempt in range(1, retry.attempts + 1):
        try:
            return str(api.post(path, **params))
        except TransientError as failure:
            try:
                after = migration_tasks(api, move.source, move.vmid)
            except TransientError:
                raise TransientError(
                    failure.status,
                    f"migration of guest {move.vmid} to {move.target}: the request failed "
                    f"({failure.message}) and whether it started cannot be checked now; "
                    f"look at the tasks of {move.source} before trying again",
                    failure.path,
                ) from None
            new = after.keys() - before.keys()
            if new:
                return max(new, key=lambda upid: after[upid])
            if attempt == retry.attempts:
                raise
            retry.sleep(retry.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
