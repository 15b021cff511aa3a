"""/cluster/ha: resources, groups (PVE 8), rules (PVE 9) and the manager's status."""

from __future__ import annotations

import hashlib
from typing import Any

from pvesim.api import router
from pvesim.api.params import ApiError, Param
from pvesim.api.routing import Request
from pvesim.cluster import Cluster
from pvesim.scenario import HaResourceSpec

AUDIT = ("Sys.Audit", "/")


def _digest(c: Cluster) -> str:
    return hashlib.sha1(repr(c.spec.ha).encode()).hexdigest()


def _resource(c: Cluster, r: HaResourceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"sid": r.sid, "type": r.sid.split(":")[0], "state": r.state}
    if r.group and c.version == "8.4":
        out["group"] = r.group
    for key in ("max_restart", "max_relocate", "comment"):
        value = getattr(r, key)
        if value is not None:
            out[key] = value
    if r.failback is not None and c.version == "9.1":
        out["failback"] = 1 if r.failback else 0
    out["digest"] = _digest(c)
    return out


@router.add(
    "GET", "/cluster/ha/resources", {"type": Param("string", enum=("ct", "vm"))}, privilege=AUDIT
)
def resources(req: Request) -> list[dict[str, Any]]:
    kind = req.params.get("type")
    return [
        _resource(req.cluster, r)
        for r in req.cluster.spec.ha.resources
        if kind is None or r.sid.startswith(kind + ":")
    ]


@router.add(
    "GET", "/cluster/ha/resources/{sid}", {"sid": Param("string", optional=False)}, privilege=AUDIT
)
def resource(req: Request) -> dict[str, Any]:
    sid = req.params["sid"]
    if sid.isdigit():
        sid = f"vm:{sid}"
    for r in req.cluster.spec.ha.resources:
        if r.sid == sid:
            return _resource(req.cluster, r)
    raise ApiError(500, f"no such resource '{sid}'")


@router.add("GET", "/cluster/ha/groups", privilege=AUDIT)
def groups(req: Request) -> list[dict[str, Any]]:
    c = req.cluster
    if c.version == "9.1":
        raise ApiError(500, "cannot index groups: ha groups have been migrated to rules")
    out = []
    for g in c.spec.ha.groups:
        entry: dict[str, Any] = {
            "group": g.group,
            "type": "group",
            "nodes": ",".join(g.nodes),
            "restricted": 1 if g.restricted else 0,
            "nofailback": 1 if g.nofailback else 0,
            "digest": _digest(c),
        }
        if g.comment:
            entry["comment"] = g.comment
        out.append(entry)
    return out


def _rules(c: Cluster) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rule in c.spec.ha.rules:
        entry: dict[str, Any] = {
            "rule": rule.rule,
            "type": rule.type,
            "resources": ",".join(sorted(rule.resources)),
        }
        if rule.type == "node-affinity":
            entry["nodes"] = ",".join(sorted(rule.nodes))
            if rule.strict:
                entry["strict"] = 1
        elif rule.affinity:
            entry["affinity"] = rule.affinity
        if rule.disable:
            entry["disable"] = 1
        if rule.comment:
            entry["comment"] = rule.comment
        out.append(entry)
    # legacy groups used by resources show up as generated node-affinity rules
    for g in c.spec.ha.groups:
        members = sorted(r.sid for r in c.spec.ha.resources if r.group == g.group)
        if not members:
            continue
        entry = {
            "rule": f"ha-group-{g.group}",
            "type": "node-affinity",
            "resources": ",".join(members),
            "nodes": ",".join(sorted(g.nodes)),
            "comment": f"Generated from HA group '{g.group}'.",
        }
        if g.restricted:
            entry["strict"] = 1
        out.append(entry)
    for i, entry in enumerate(out, start=1):
        entry["order"] = i
        entry["digest"] = _digest(c)
    return out


RULE_TYPES = ("node-affinity", "resource-affinity")


@router.add(
    "GET",
    "/cluster/ha/rules",
    {"type": Param("string", enum=RULE_TYPES), "resource": Param("string")},
    privilege=AUDIT,
    versions=("9.1",),
)
def rules(req: Request) -> list[dict[str, Any]]:
    kind = req.params.get("type")
    resource = req.params.get("resource")
    return [
        r
        for r in _rules(req.cluster)
        if (kind is None or r["type"] == kind)
        and (resource is None or resource in r["resources"].split(","))
    ]


@router.add("GET", "/cluster/ha/status/current", privilege=AUDIT)
def status_current(req: Request) -> list[dict[str, Any]]:
    c = req.cluster
    now = int(req.now)
    master = next((n for n in c.nodes.values() if n.online), None)
    out: list[dict[str, Any]] = [
        {
            "id": "quorum",
            "type": "quorum",
            "node": master.name if master else "",
            "status": "OK" if c.quorate else "No quorum on node",
            "quorate": 1 if c.quorate else 0,
        }
    ]
    if master is not None:
        out.append(
            {
                "id": "master",
                "type": "master",
                "node": master.name,
                "status": f"{master.name} (active, {_ctime(now)})",
                "timestamp": now,
            }
        )
    if c.version == "9.1":  # the CRM's watchdog state, new in PVE 9.1
        armed = "armed" if master is not None else "standby"
        out.append(
            {
                "id": "fencing",
                "type": "fencing",
                "node": master.name if master else "",
                "status": f"{armed} (CRM watchdog {'active' if master else 'standby'})",
                "armed-state": armed,
            }
        )
    for node in c.nodes.values():
        if node.name in c.maintenance:
            text = "maintenance mode"
        elif node.online:
            text = "active"
        else:
            text = "old timestamp - dead?"
        # PVE's lrm entries are id/type/node/status/timestamp; the mode shows in the text
        out.append(
            {
                "id": f"lrm:{node.name}",
                "type": "lrm",
                "node": node.name,
                "status": f"{node.name} ({text}, {_ctime(now)})",
                "timestamp": now,
            }
        )
    for r in c.spec.ha.resources:
        g = c.guest(int(r.sid.split(":")[1]))
        if g is None:
            continue
        state = g.hastate or r.state
        out.append(
            {
                "id": f"service:{r.sid}",
                "type": "service",
                "sid": r.sid,
                "node": g.node,
                "state": state,
                "crm_state": state,
                "request_state": "started" if r.state in ("started", "enabled") else r.state,
                "status": f"{r.sid} ({g.node}, {state})",
                "max_restart": r.max_restart if r.max_restart is not None else 1,
                "max_relocate": r.max_relocate if r.max_relocate is not None else 1,
            }
        )
        if c.version == "9.1":  # read_and_check_resources_config fills in failback=1
            out[-1]["failback"] = 1 if r.failback is None or r.failback else 0
    return out


@router.add("GET", "/cluster/ha/status/manager_status", privilege=AUDIT)
def manager_status(req: Request) -> dict[str, Any]:
    c = req.cluster
    master = next((n.name for n in c.nodes.values() if n.online), "")
    services = {}
    for r in c.spec.ha.resources:
        g = c.guest(int(r.sid.split(":")[1]))
        if g is not None:
            services[r.sid] = {"node": g.node, "state": g.hastate or r.state, "uid": f"{g.vmid:x}"}
    node_status = {
        n.name: "maintenance" if n.name in c.maintenance else ("online" if n.online else "unknown")
        for n in c.nodes.values()
    }
    return {
        "manager_status": {
            "master_node": master,
            "node_status": node_status,
            "service_status": services,
            "timestamp": int(req.now),
        },
        "quorum": {"node": master, "quorate": "1" if c.quorate else "0"},
        "lrm_status": {
            n.name: {"mode": "active" if n.online else "unknown", "timestamp": int(req.now)}
            for n in c.nodes.values()
        },
    }


def _ctime(t: int) -> str:
    import time

    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(t))
