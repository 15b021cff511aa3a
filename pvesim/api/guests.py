"""Per-guest endpoints for QEMU VMs and LXC containers (lists, status, config, rrd, migrate)."""

from __future__ import annotations

from typing import Any

from pvesim import migration
from pvesim.api import router
from pvesim.api.nodes import node_of
from pvesim.api.params import BOOL, CF, NODE, TIMEFRAME_8, VMID, ApiError, Param
from pvesim.api.routing import Request
from pvesim.cluster import Guest
from pvesim.render import guest_config, guest_list_entry, guest_status_current
from pvesim.rrd import guest_series

GV = {"node": NODE, "vmid": VMID}
KINDS = {"qemu": "qemu-server", "lxc": "lxc"}


def guest_of(req: Request, kind: str) -> Guest:
    node = node_of(req)
    vmid = req.params["vmid"]
    guest = req.cluster.guest(vmid)
    if guest is None or guest.kind != kind or guest.node != node.name:
        raise ApiError(
            500, f"Configuration file 'nodes/{node.name}/{KINDS[kind]}/{vmid}.conf' does not exist"
        )
    return guest


AUDIT = ("VM.Audit", "/vms/{vmid}")


def _list(req: Request, kind: str) -> list[dict[str, Any]]:
    node = node_of(req)
    if "VM.Audit" not in req.identity.privileges:
        return []
    guests = sorted(
        (g for g in req.cluster.guests_on(node.name) if g.kind == kind), key=lambda g: g.vmid
    )
    return [guest_list_entry(req.cluster, g, req.now) for g in guests]


@router.add("GET", "/nodes/{node}/qemu", {"node": NODE, "full": BOOL}, proxied=True)
def qemu_list(req: Request) -> list[dict[str, Any]]:
    return _list(req, "qemu")


@router.add("GET", "/nodes/{node}/lxc", {"node": NODE}, proxied=True)
def lxc_list(req: Request) -> list[dict[str, Any]]:
    return _list(req, "lxc")


CONFIG = {**GV, "current": BOOL, "snapshot": Param("string")}
# guest rrddata has no decade timeframe in either version
RRD_GUEST = {**GV, "timeframe": Param("string", optional=False, enum=TIMEFRAME_8), "cf": CF}

MIGRATE_GET = {**GV, "target": Param("string", format="pve-node")}
QEMU_MIGRATE_POST = {
    **GV,
    "target": Param("string", optional=False, format="pve-node"),
    "online": BOOL,
    "with-local-disks": BOOL,
    "targetstorage": Param("string"),
    "bwlimit": Param("integer", minimum=0),
    "migration_type": Param("string", enum=("secure", "insecure")),
    "migration_network": Param("string"),
    "force": BOOL,
}
QEMU_MIGRATE_POST_9 = {**QEMU_MIGRATE_POST, "with-conntrack-state": BOOL}
LXC_MIGRATE_POST = {
    **GV,
    "target": Param("string", optional=False, format="pve-node"),
    "online": BOOL,
    "restart": BOOL,
    "timeout": Param("integer", default=180),
    "target-storage": Param("string"),
    "bwlimit": Param("number", minimum=0),
}


def _register(kind: str) -> None:
    base = f"/nodes/{{node}}/{kind}/{{vmid}}"

    @router.add("GET", f"{base}/status/current", GV, privilege=AUDIT, proxied=True)
    def status_current(req: Request) -> dict[str, Any]:
        return guest_status_current(req.cluster, guest_of(req, kind), req.now)

    @router.add("GET", f"{base}/config", CONFIG, privilege=AUDIT, proxied=True)
    def config(req: Request) -> dict[str, Any]:
        return guest_config(guest_of(req, kind))

    @router.add("GET", f"{base}/rrddata", RRD_GUEST, privilege=AUDIT, proxied=True)
    def rrddata(req: Request) -> list[dict[str, Any]]:
        guest = guest_of(req, kind)
        return guest_series(
            req.cluster, guest, req.params["timeframe"], req.params.get("cf", "AVERAGE"), req.now
        )

    post_params = QEMU_MIGRATE_POST if kind == "qemu" else LXC_MIGRATE_POST
    post_by_version = {"9.1": QEMU_MIGRATE_POST_9} if kind == "qemu" else {}

    @router.add(
        "POST",
        f"{base}/migrate",
        post_params,
        privilege=("VM.Migrate", "/vms/{vmid}"),
        proxied=True,
        params_by_version=post_by_version,
    )
    def migrate_post(req: Request) -> str:
        guest = guest_of(req, kind)
        try:
            accepted = migration.check_request(req.cluster, guest, req.params, req.identity)
        except ApiError as refusal:
            req.cluster.events.add(
                req.now,
                "migration_refused",
                vmid=guest.vmid,
                source=guest.node,
                target=req.params["target"],
                status=refusal.status,
                reason=refusal.reason,
                **({"errors": refusal.errors} if refusal.errors else {}),
            )
            raise
        return migration.start(req.cluster, accepted, req.now)

    versions = ("9.1", "8.4") if kind == "qemu" else ("9.1",)

    @router.add(
        "GET",
        f"{base}/migrate",
        MIGRATE_GET,
        privilege=("VM.Migrate", "/vms/{vmid}"),
        proxied=True,
        versions=versions,
    )
    def migrate_get(req: Request) -> dict[str, Any]:
        c = req.cluster
        guest = guest_of(req, kind)
        if not c.quorate:
            raise ApiError(500, "cluster not ready - no quorum?")
        if guest.lock:
            what = "VM" if kind == "qemu" else "CT"
            raise ApiError(500, f"{what} is locked ({guest.lock})")
        return migration.precondition(c, guest)


_register("qemu")
_register("lxc")
