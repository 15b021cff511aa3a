"""/pools and /pools/{poolid}: resource pools and their members."""

from __future__ import annotations

from typing import Any

from pvesim.api import router
from pvesim.api.params import ApiError, Param
from pvesim.api.routing import Request
from pvesim.metrics import refresh_instant
from pvesim.render import guest_resources

POOL_ID = Param("string")


@router.add(
    "GET", "/pools", {"poolid": POOL_ID, "type": Param("string", enum=("qemu", "lxc", "storage"))}
)
def pools(req: Request) -> list[dict[str, Any]]:
    wanted = req.params.get("poolid")
    out = []
    for pool in req.cluster.spec.pools:
        if wanted is not None and pool.poolid != wanted:
            continue
        entry: dict[str, Any] = {"poolid": pool.poolid}
        if pool.comment:
            entry["comment"] = pool.comment
        if wanted is not None:
            entry["members"] = _members(req, pool.poolid, req.params.get("type"))
        out.append(entry)
    return out


def _members(req: Request, poolid: str, kind: str | None) -> list[dict[str, Any]]:
    now = refresh_instant(req.now)
    c = req.cluster
    members = [
        g
        for g in sorted(c.guests.values(), key=lambda g: g.vmid)
        if g.spec.pool == poolid and (kind is None or g.kind == kind)
    ]
    return guest_resources(c, members, now)


@router.add(
    "GET",
    "/pools/{poolid}",
    {
        "poolid": Param("string", optional=False),
        "type": Param("string", enum=("qemu", "lxc", "storage")),
    },
)
def pool(req: Request) -> dict[str, Any]:
    poolid = req.params["poolid"]
    for p in req.cluster.spec.pools:
        if p.poolid == poolid:
            out: dict[str, Any] = {"members": _members(req, poolid, req.params.get("type"))}
            if p.comment:
                out["comment"] = p.comment
            return out
    raise ApiError(500, f"pool '{poolid}' does not exist")
