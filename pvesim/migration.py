"""Guest migration as PVE performs it: synchronous refusals, then a task that takes time.

Refusals that PVE raises before forking a worker come back as HTTP errors. Everything else
happens inside the task: the POST answers a UPID at once, `lock: migrate` is held while the
memory is copied, the guest's node changes in the final phase, and the log ends `TASK OK`
or `TASK ERROR: migration aborted`. HA-managed guests get a short `hamigrate` task and the
real migration starts later, when the simulated HA stack gets to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pvesim.api.params import ApiError, param_error
from pvesim.api.routing import Identity
from pvesim.cluster import Cluster, Guest, MigrationWindow
from pvesim.metrics import guest_sample
from pvesim.tasks import Task

GIB = 1024**3
SECURE_CAP = 1.2e9  # bytes/s one SSH-tunnelled stream manages
FIXED_SECONDS = 4.0  # lock, remote start, tunnel, resume, unlock
HA_CRM_LOOP = 10.0
HA_LRM_DELAY = 3.0
LXC_SHUTDOWN = 6.0
LXC_START = 3.0
ROOT_ONLY = ("force", "migration_type", "migration_network")


@dataclass(frozen=True)
class Request:
    guest: Guest
    target: str
    online: bool
    restart: bool
    with_local_disks: bool
    force: bool
    bwlimit_kib: float | None
    user: str


def local_disks(cluster: Cluster, guest: Guest) -> list[Any]:
    return [d for d in guest.spec.disks if not cluster.storages[d.storage].shared]


def local_resources(guest: Guest) -> list[str]:
    return [f"hostpci{i}" for i in range(len(guest.spec.hostpci))] + [
        f"usb{i}" for i in range(len(guest.spec.usb))
    ]


def unavailable_storages(cluster: Cluster, guest: Guest, node: str) -> list[str]:
    return sorted({d.storage for d in guest.spec.disks if not cluster.storage_on(d.storage, node)})


def precondition(cluster: Cluster, guest: Guest) -> dict[str, Any]:
    """GET .../migrate: where the guest could go and what would stop it."""
    allowed: list[str] = []
    refused: dict[str, dict[str, Any]] = {}
    devices = local_resources(guest)
    for node in cluster.nodes:
        if node == guest.node:
            continue
        why: dict[str, Any] = {}
        missing = unavailable_storages(cluster, guest, node)
        if missing:
            why["unavailable_storages"] = missing
        blocking = _blocking_ha(cluster, guest, node)
        if blocking and cluster.version == "9.1":
            why["blocking-ha-resources"] = blocking
        if devices and guest.kind == "qemu":
            why["unavailable-resources"] = devices
        if why:
            refused[node] = why
        else:
            allowed.append(node)
    running = 1 if guest.status == "running" else 0
    if guest.kind == "lxc":
        out: dict[str, Any] = {"running": running, "allowed-nodes": allowed}
        if refused:
            out["not-allowed-nodes"] = refused
        out["dependent-ha-resources"] = _dependent_ha(cluster, guest)
        return out
    disks = [
        {
            "volid": f"{d.storage}:vm-{guest.vmid}-disk-{d.drive[-1]}",
            "size": d.size,
            "cdrom": 0,
            "is_unused": 0,
            "is_attached": 1,
            "drivename": d.drive,
            "referenced_in_config": 1,
            "replicate": 1,
            "is_vmstate": 0,
            "is_tpmstate": 0,
        }
        for d in local_disks(cluster, guest)
    ]
    out = {
        "running": running,
        "allowed_nodes": allowed,
        "not_allowed_nodes": refused,
        "local_disks": disks,
        "local_resources": devices,
        "mapped-resources": [],
        "mapped-resource-info": {},
    }
    if cluster.version == "9.1":
        out["has-dbus-vmstate"] = 0
        out["dependent-ha-resources"] = _dependent_ha(cluster, guest)
    return out


def _ha_partners(cluster: Cluster, guest: Guest, affinity: str) -> list[str]:
    partners: set[str] = set()
    for rule in cluster.spec.ha.rules:
        if (
            rule.type == "resource-affinity"
            and rule.affinity == affinity
            and not rule.disable
            and guest.sid in rule.resources
        ):
            partners.update(r for r in rule.resources if r != guest.sid)
    return sorted(partners)


def _dependent_ha(cluster: Cluster, guest: Guest) -> list[str]:
    return _ha_partners(cluster, guest, "positive") if guest.ha else []


def _blocking_ha(cluster: Cluster, guest: Guest, node: str) -> list[dict[str, str]]:
    if guest.ha is None:
        return []
    on_node = {g.sid for g in cluster.guests_on(node)}
    return [
        {"sid": sid, "cause": "resource-affinity"}
        for sid in _ha_partners(cluster, guest, "negative")
        if sid in on_node
    ]


# -- synchronous checks -------------------------------------------------------------------


def check_request(cluster: Cluster, guest: Guest, params: dict[str, Any], who: Identity) -> Request:
    """Raise the error PVE answers synchronously, or describe the accepted request."""
    target = params["target"]
    if who.userid != "root@pam":
        bad = {p: "Only root may use this option." for p in ROOT_ONLY if p in params}
        if bad:
            raise param_error(bad)
    if target == guest.node:
        raise param_error({"target": "target is local node."})
    if not cluster.quorate:
        raise ApiError(500, "cluster not ready - no quorum?")
    if target not in cluster.nodes:
        raise ApiError(500, f"no such cluster node '{target}'")
    if guest.lock:
        raise ApiError(
            500,
            f"VM is locked ({guest.lock})"
            if guest.kind == "qemu"
            else f"CT is locked ({guest.lock})",
        )
    running = guest.status == "running"
    online = bool(params.get("online", 0))
    restart = bool(params.get("restart", 0))
    if guest.ha is None and running:
        if guest.kind == "qemu" and not online:
            raise ApiError(500, "can't migrate running VM without --online")
        if guest.kind == "lxc" and not (online or restart):
            raise ApiError(500, "can't migrate running container without --online or --restart")
    if guest.ha is None and "targetstorage" not in params and "target-storage" not in params:
        missing = unavailable_storages(cluster, guest, target)
        if missing:
            raise ApiError(500, f"storage '{missing[0]}' is not available on node '{target}'")
    bw = params.get("bwlimit")
    return Request(
        guest=guest,
        target=target,
        online=online and running,
        restart=restart and running,
        with_local_disks=bool(params.get("with-local-disks", 0)),
        force=bool(params.get("force", 0)),
        bwlimit_kib=float(bw) if bw else None,
        user=who.user,
    )


# -- the task -----------------------------------------------------------------------------


def start(cluster: Cluster, req: Request, now: float) -> str:
    guest = req.guest
    if guest.ha is not None:
        return _start_ha(cluster, req, now)
    return _run_worker(cluster, req, now).upid


def _start_ha(cluster: Cluster, req: Request, now: float) -> str:
    guest = req.guest
    task = cluster.tasks.create(guest.node, "hamigrate", str(guest.vmid), req.user, now)
    task.log(now + 0.2, f"requesting HA migration for {guest.sid} to node {req.target}")
    task.finish(now + 1.2, "OK")
    cluster.events.add(
        now,
        "ha_migration_requested",
        vmid=guest.vmid,
        source=guest.node,
        target=req.target,
        upid=task.upid,
    )
    # the CRM acts on its next 10 s loop, then the LRM on the source node forks the worker
    crm_at = (now // HA_CRM_LOOP + 1) * HA_CRM_LOOP

    def crm(at: float) -> None:
        guest.hastate = "migrate"
        cluster.touch()

    def lrm(at: float) -> None:
        if guest.node == req.target:
            guest.hastate = "started"
            return
        if guest.lock:
            # LRM would retry; the simulator reports it and gives up like a failed request
            guest.hastate = "started"
            cluster.events.add(
                at, "ha_migration_skipped", vmid=guest.vmid, reason=f"locked ({guest.lock})"
            )
            return
        running = guest.status == "running"
        ha_req = Request(
            guest=guest,
            target=req.target,
            online=running and guest.kind == "qemu",
            restart=running and guest.kind == "lxc",
            with_local_disks=False,
            force=False,
            bwlimit_kib=None,
            user="root@pam",
        )
        _run_worker(cluster, ha_req, at, ha=True)

    cluster.scheduler.at(crm_at, crm)
    cluster.scheduler.at(crm_at + HA_LRM_DELAY, lrm)
    return task.upid


def _bandwidth(cluster: Cluster, req: Request, now: float) -> float:
    net = cluster.spec.network
    bw = net.migration_mbps * 1e6 / 8.0
    if net.migration_type == "secure":
        bw = min(bw, SECURE_CAP)
    if req.bwlimit_kib:
        bw = min(bw, req.bwlimit_kib * 1024.0)
    # migrations sharing an end share its link
    sharing = sum(
        1
        for w in cluster.migration_windows
        if w.start <= now < w.end and {w.source, w.target} & {req.guest.node, req.target}
    )
    return bw / (1 + sharing)


def _fmt_duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _failure(cluster: Cluster, req: Request, now: float) -> tuple[float, list[str], str] | None:
    """(seconds into the task, log lines, reason) when the task is bound to fail."""
    guest = req.guest
    if guest.kind == "qemu":
        devices = local_resources(guest)
        if devices and (req.online or not req.force):
            return 1.0, [], f"can't migrate VM which uses local devices: {', '.join(devices)}"
        disks = local_disks(cluster, guest)
        if disks and req.online and not req.with_local_disks:
            # the volume scan is part of phase1, which logs its first line before scanning
            ip = cluster.nodes[req.target].ip
            warn = [
                f"starting migration of VM {guest.vmid} to node '{req.target}' ({ip})",
                *(
                    f"can't migrate local disk '{d.storage}:vm-{guest.vmid}-disk-{d.drive[-1]}': "
                    "can't live migrate attached local disks without with-local-disks option"
                    for d in disks
                ),
            ]
            return 1.0, warn, "Problem found while scanning volumes - can't migrate VM - check log"
    elif req.online:
        return 0.5, [], "lxc live migration is currently not implemented"
    if not cluster.nodes[req.target].online:
        return 3.0, [], "Can't connect to destination address using public key"
    return None


def _run_worker(cluster: Cluster, req: Request, now: float, ha: bool = False) -> Task:
    guest = req.guest
    source, target = guest.node, req.target
    kind = "qmigrate" if guest.kind == "qemu" else "vzmigrate"
    task = cluster.tasks.create(source, kind, str(guest.vmid), req.user, now)
    target_ip = cluster.nodes[target].ip
    what = "VM" if guest.kind == "qemu" else "CT"
    cluster.events.add(
        now,
        "migration_started",
        vmid=guest.vmid,
        type=guest.kind,
        source=source,
        target=target,
        upid=task.upid,
        online=req.online,
        restart=req.restart,
        ha=ha,
    )
    guest.lock = "migrate"
    guest.migrating = True
    cluster.touch()

    injected = guest.fail_next_migration
    guest.fail_next_migration = None
    failure = _failure(cluster, req, now)
    if failure is not None:
        after, warnings, reason = failure
        for line in warnings:
            task.log_stamped(now + after * 0.5, line)
        task.log_stamped(
            now + after, f"ERROR: migration aborted (duration {_fmt_duration(after)}): {reason}"
        )
        _schedule_end(cluster, task, req, now + after, ok=False, moved=False, reason=reason)
        return task

    task.log_stamped(
        now, f"starting migration of {what} {guest.vmid} to node '{target}' ({target_ip})"
    )
    bw = _bandwidth(cluster, req, now)
    disk_bytes = float(sum(d.size for d in local_disks(cluster, guest)))
    mem_bytes = float(guest_sample(guest, now).memhost) if guest.status == "running" else 0.0
    if guest.kind == "lxc":
        total, move_at = _lxc_timeline(task, req, now, bw, disk_bytes)
        if req.restart:

            def shut_down(at: float) -> None:
                if guest.migrating:  # a task that failed earlier left the CT running
                    guest.status = "stopped"
                    cluster.touch()

            cluster.scheduler.at(now + LXC_SHUTDOWN, shut_down)
    else:
        total, move_at = _qemu_timeline(task, req, now, bw, disk_bytes, mem_bytes)
    if req.online or req.restart:
        cluster.migration_windows.append(
            MigrationWindow(guest.vmid, source, target, now, now + move_at, mem_bytes)
        )

    if injected is not None:
        fail_at = now + max(1.0, move_at * 0.6)
        # drop the planned lines after the failure before logging it, so none follow the abort
        task.lines = [line for line in task.lines if line.at <= fail_at]
        task.log_stamped(fail_at, f"migration status error: failed - {injected}")
        task.log_stamped(fail_at, "ERROR: online migrate failure - aborting")
        task.log_stamped(
            fail_at + 0.5,
            f"ERROR: migration aborted (duration {_fmt_duration(fail_at + 0.5 - now)}): {injected}",
        )
        _trim_window(cluster, guest.vmid, now, fail_at)
        _schedule_end(cluster, task, req, fail_at + 0.5, ok=False, moved=False, reason=injected)
        return task

    def move(at: float) -> None:
        guest.move_to(target, at)
        if guest.kind == "lxc" and req.restart:
            guest.status = "running"
            guest.started_at = at + LXC_START
        cluster.touch()

    cluster.scheduler.at(now + move_at, move)
    task.log_stamped(
        now + total, f"migration finished successfully (duration {_fmt_duration(total)})"
    )
    _schedule_end(cluster, task, req, now + total, ok=True, moved=True, reason=None)
    return task


def _qemu_timeline(
    task: Task, req: Request, now: float, bw: float, disk_bytes: float, mem_bytes: float
) -> tuple[float, float]:
    vmid = req.guest.vmid
    t = now
    if not req.online:
        copy = disk_bytes / bw
        if disk_bytes:
            task.log_stamped(t + 0.5, f"copying local disk images ({disk_bytes / GIB:.2f} GiB)")
        total = 2.0 + copy
        return total, total - 0.5
    task.log_stamped(t, f"starting VM {vmid} on remote node '{req.target}'")
    task.log_stamped(t + 2.0, "start remote tunnel")
    task.log_stamped(t + 2.5, "ssh tunnel ver 1")
    t += 3.0
    if req.with_local_disks and disk_bytes:
        mirror = disk_bytes / bw
        task.log_stamped(t, f"starting storage migration of {disk_bytes / GIB:.2f} GiB")
        t += mirror
        task.log_stamped(t, "all 'mirror' jobs are ready")
    task.log_stamped(t, f"starting online/live migration on unix:/run/qemu-server/{vmid}.migrate")
    task.log_stamped(t, "set migration capabilities")
    task.log_stamped(t, "migration downtime limit: 100 ms")
    task.log_stamped(t, f"start migrate command to unix:/run/qemu-server/{vmid}.migrate")
    dirty = req.guest.spec.dirty_rate
    to_send = mem_bytes * (1.0 + dirty)
    copy = to_send / bw
    steps = max(1, min(10, int(copy)))
    for i in range(1, steps + 1):
        done = to_send * i / (steps + 1)
        task.log_stamped(
            t + copy * i / (steps + 1),
            f"migration active, transferred {done / GIB:.2f} GiB of {mem_bytes / GIB:.2f} GiB "
            f"VM-state, {bw / GIB:.2f} GiB/s",
        )
    t += copy
    downtime = 20 + int(60 * dirty)
    task.log_stamped(t, f"average migration speed: {bw / GIB:.2f} GiB/s - downtime {downtime} ms")
    task.log_stamped(t, f"migration completed, transferred {to_send / GIB:.2f} GiB VM-state")
    task.log_stamped(t, "migration status: completed")
    move_at = t - now + 0.5
    total = move_at + FIXED_SECONDS - 3.0 + 1.0
    return total, move_at


def _lxc_timeline(
    task: Task, req: Request, now: float, bw: float, disk_bytes: float
) -> tuple[float, float]:
    vmid = req.guest.vmid
    t = now
    if req.restart:
        task.log_stamped(t, f"shutdown CT {vmid}")
        t += LXC_SHUTDOWN
        task.log_stamped(t, f"stopping CT {vmid}: done")
    if disk_bytes:
        task.log_stamped(t, f"copying local volumes ({disk_bytes / GIB:.2f} GiB)")
        t += disk_bytes / bw
    move_at = t - now + 0.5
    if req.restart:
        task.log_stamped(now + move_at + 0.2, "start container on target node")
        task.log_stamped(now + move_at + LXC_START, "start final cleanup")
    total = move_at + (LXC_START if req.restart else 0.0) + 0.5
    return total, move_at


def _trim_window(cluster: Cluster, vmid: int, start: float, end: float) -> None:
    for w in cluster.migration_windows:
        if w.vmid == vmid and w.start == start:
            w.end = end


def _schedule_end(
    cluster: Cluster, task: Task, req: Request, at: float, ok: bool, moved: bool, reason: str | None
) -> None:
    guest = req.guest
    source = guest.node
    task.finish(at, "OK" if ok else "migration aborted")

    def end(when: float) -> None:
        guest.lock = None
        guest.migrating = False
        if not moved and req.restart:
            guest.status = "running"
        if guest.ha is not None and guest.hastate == "migrate":
            guest.hastate = "started"
        cluster.events.add(
            when,
            "migration_finished",
            vmid=guest.vmid,
            source=source,
            target=req.target,
            upid=task.upid,
            result=task.exitstatus,
            node=guest.node,
            ok=ok,
            **({"reason": reason} if reason else {}),
        )
        cluster.touch()

    cluster.scheduler.at(at, end)
