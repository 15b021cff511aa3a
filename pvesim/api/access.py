"""/version, /access/ticket and /access/permissions."""

from __future__ import annotations

from typing import Any

from pvesim.api import router
from pvesim.api.params import Param
from pvesim.api.routing import Request
from pvesim.render import PVE_RELEASE

ACL_PATHS = ("/", "/nodes", "/vms", "/storage", "/pool")


@router.add("GET", "/version")
def version(req: Request) -> dict[str, Any]:
    full, repoid = PVE_RELEASE[req.cluster.version]
    return {"version": full, "release": req.cluster.version, "repoid": repoid}


@router.add("GET", "/access/ticket", public=True)
def ticket_dummy(req: Request) -> None:
    return None


TICKET_PARAMS = {
    "username": Param("string", optional=False),
    "password": Param("string", optional=False),
    "realm": Param("string"),
    "otp": Param("string"),
    "tfa-challenge": Param("string"),
    "path": Param("string"),
    "privs": Param("string"),
    "new-format": Param("boolean"),
}


@router.add("POST", "/access/ticket", TICKET_PARAMS, public=True)
def create_ticket(req: Request) -> dict[str, Any]:
    assert req.login is not None
    p = req.params
    data = req.login(p["username"], p["password"], p.get("realm"))
    data["clustername"] = req.cluster.spec.cluster_name
    data["cap"] = {
        "vms": {"VM.Audit": 1, "VM.Migrate": 1},
        "nodes": {"Sys.Audit": 1},
        "storage": {"Datastore.Audit": 1},
        "access": {},
        "dc": {"Sys.Audit": 1},
        "sdn": {},
        "mapping": {},
    }
    return data


@router.add("GET", "/access/permissions", {"path": Param("string"), "userid": Param("string")})
def permissions(req: Request) -> dict[str, dict[str, int]]:
    privs = {p: 1 for p in sorted(req.identity.privileges)}
    wanted = req.params.get("path")
    paths = (wanted,) if wanted else ACL_PATHS
    return {path: dict(privs) for path in paths}
