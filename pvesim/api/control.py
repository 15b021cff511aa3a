"""The simulator's own control API under /_sim: faults, clock, event log, request counts.

It lives outside PVE's namespace so no PVE client can hit it by accident, and it uses the same
authentication so a test drives it with the credentials it already has.
"""

from __future__ import annotations

from typing import Any

from pvesim.api.params import ApiError, Param
from pvesim.api.routing import Request, Router

control = Router()

NODE = {"node": Param("string", optional=False)}
VMID = {"vmid": Param("integer", optional=False)}


def _node(req: Request) -> str:
    name = req.params["node"]
    if name not in req.cluster.nodes:
        raise ApiError(404, f"no such node '{name}'")
    return str(name)


def _guest_id(req: Request) -> int:
    vmid = int(req.params["vmid"])
    if req.cluster.guest(vmid) is None:
        raise ApiError(404, f"no such guest {vmid}")
    return vmid


@control.add("GET", "/_sim/info")
def info(req: Request) -> dict[str, Any]:
    c = req.cluster
    return {
        "scenario": c.spec.name,
        "pve_version": c.version,
        "now": req.now,
        "speed": c.clock.speed,
        "quorate": 1 if c.quorate else 0,
        "nodes": {n.name: {"online": 1 if n.online else 0} for n in c.nodes.values()},
        "guests": len(c.guests),
        "pending": len(c.scheduler),
    }


@control.add(
    "GET",
    "/_sim/events",
    {"since": Param("integer", minimum=0, default=0), "kind": Param("string")},
)
def events(req: Request) -> list[dict[str, Any]]:
    return [
        e.as_json() for e in req.cluster.events.since(req.params["since"], req.params.get("kind"))
    ]


@control.add("POST", "/_sim/nodes/{node}/offline", NODE)
def node_offline(req: Request) -> None:
    req.cluster.set_node_online(_node(req), False)


@control.add("POST", "/_sim/nodes/{node}/online", NODE)
def node_online(req: Request) -> None:
    req.cluster.set_node_online(_node(req), True)


@control.add(
    "POST", "/_sim/nodes/{node}/maintenance", {**NODE, "enabled": Param("boolean", optional=False)}
)
def maintenance(req: Request) -> None:
    node = _node(req)
    c = req.cluster
    if req.params["enabled"]:
        c.maintenance.add(node)
    else:
        c.maintenance.discard(node)
    c.events.add(req.now, "maintenance", node=node, enabled=bool(req.params["enabled"]))
    c.touch()


@control.add("POST", "/_sim/quorum", {"quorate": Param("boolean", optional=False)})
def quorum(req: Request) -> None:
    req.cluster.set_quorum(bool(req.params["quorate"]))


FAULTS = {
    "error_rate": Param("number", minimum=0, maximum=1),
    "error_code": Param("integer", minimum=400, maximum=599),
    "error_message": Param("string"),
    "path": Param("string"),
    "latency": Param("number", minimum=0, maximum=60),
    "offline_delay": Param("number", minimum=0, maximum=60),
}


@control.add("POST", "/_sim/faults", FAULTS)
def set_faults(req: Request) -> dict[str, Any]:
    f = req.cluster.faults
    p = req.params
    f.error_rate = p.get("error_rate", f.error_rate)
    f.error_code = p.get("error_code", f.error_code)
    f.error_message = p.get("error_message", f.error_message)
    f.error_path = p.get("path", f.error_path)
    f.latency = p.get("latency", f.latency)
    f.offline_delay = p.get("offline_delay", f.offline_delay)
    req.cluster.events.add(req.now, "faults_set", **p)
    return get_faults(req)


@control.add("GET", "/_sim/faults")
def get_faults(req: Request) -> dict[str, Any]:
    f = req.cluster.faults
    return {
        "error_rate": f.error_rate,
        "error_code": f.error_code,
        "error_message": f.error_message,
        "path": f.error_path,
        "latency": f.latency,
        "offline_delay": f.offline_delay,
    }


@control.add("DELETE", "/_sim/faults")
def clear_faults(req: Request) -> None:
    f = req.cluster.faults
    f.error_rate, f.latency, f.offline_delay, f.error_path = 0.0, 0.0, 0.0, None
    req.cluster.events.add(req.now, "faults_cleared")


@control.add("POST", "/_sim/guests/{vmid}/fail-next-migration", {**VMID, "reason": Param("string")})
def fail_next(req: Request) -> None:
    guest = req.cluster.guests[_guest_id(req)]
    guest.fail_next_migration = req.params.get("reason") or "simulated migration failure"


LOCKS = (
    "backup",
    "clone",
    "create",
    "migrate",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
)


@control.add(
    "POST",
    "/_sim/guests/{vmid}/lock",
    {**VMID, "lock": Param("string", optional=False, enum=LOCKS)},
)
def lock(req: Request) -> None:
    guest = req.cluster.guests[_guest_id(req)]
    guest.lock = req.params["lock"]
    req.cluster.events.add(req.now, "guest_locked", vmid=guest.vmid, lock=guest.lock)
    req.cluster.touch()


@control.add("DELETE", "/_sim/guests/{vmid}/lock", VMID)
def unlock(req: Request) -> None:
    guest = req.cluster.guests[_guest_id(req)]
    if guest.migrating:
        raise ApiError(409, f"guest {guest.vmid} is migrating; its lock clears when that ends")
    guest.lock = None
    req.cluster.events.add(req.now, "guest_unlocked", vmid=guest.vmid)
    req.cluster.touch()


@control.add("GET", "/_sim/clock")
def clock(req: Request) -> dict[str, float]:
    return {"now": req.now, "speed": req.cluster.clock.speed}


@control.add(
    "POST",
    "/_sim/clock",
    {"speed": Param("number", minimum=0), "advance": Param("number", minimum=0)},
)
def set_clock(req: Request) -> dict[str, float]:
    c = req.cluster
    if "speed" in req.params:
        c.clock.set_speed(req.params["speed"])
    if "advance" in req.params:
        c.clock.advance(req.params["advance"])
    now = c.catch_up()
    return {"now": now, "speed": c.clock.speed}


@control.add("GET", "/_sim/requests")
def requests_made(req: Request) -> dict[str, Any]:
    """PVE API requests served since start or the last reset (control calls not counted)."""
    counts = req.cluster.requests.snapshot()
    return {"total": sum(counts.values()), "routes": counts}


@control.add("DELETE", "/_sim/requests")
def reset_requests(req: Request) -> None:
    req.cluster.requests.reset()
