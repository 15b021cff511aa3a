"""/nodes and the per-node endpoints: status, version, time, rrddata, storage, tasks."""

from __future__ import annotations

from typing import Any

from pvesim.api import router
from pvesim.api.params import BOOL, CF, NODE, TIMEFRAME_8, TIMEFRAME_9, ApiError, Param, param_error
from pvesim.api.routing import Reply, Request
from pvesim.cluster import Node
from pvesim.metrics import cluster_table, live_node_sample, refresh_instant
from pvesim.render import KERNEL, PVE_RELEASE, node_resource
from pvesim.rrd import node_series
from pvesim.tasks import Task, parse_upid

N = {"node": NODE}


def node_of(req: Request) -> Node:
    name = req.params["node"]
    node = req.cluster.nodes.get(name)
    if node is None:
        raise ApiError(
            500,
            f"hostname lookup '{name}' failed - failed to get address info for: {name}: "
            "Name or service not known",
        )
    return node


@router.add("GET", "/nodes")
def nodes(req: Request) -> list[dict[str, Any]]:
    c = req.cluster
    out = []
    for node in c.nodes.values():
        entry = node_resource(c, node, refresh_instant(req.now))
        for key in ("cgroup-mode", "host-arch", "hastate"):
            entry.pop(key, None)
        if "Sys.Audit" not in req.identity.privileges:
            entry = {k: entry[k] for k in ("id", "type", "node", "status", "level")}
        entry["ssl_fingerprint"] = c.fingerprint
        out.append(entry)
    return out


@router.add("GET", "/nodes/{node}", N)
def node_index(req: Request) -> list[dict[str, str]]:
    node_of(req)
    names = ["qemu", "lxc", "status", "version", "time", "rrddata", "storage", "tasks"]
    return [{"name": n} for n in names]


@router.add(
    "GET", "/nodes/{node}/status", N, privilege=("Sys.Audit", "/nodes/{node}"), proxied=True
)
def node_status(req: Request) -> dict[str, Any]:
    c = req.cluster
    node = node_of(req)
    spec = node.spec
    s = live_node_sample(c, node, req.now)
    kernel = KERNEL[c.version]
    full, repoid = PVE_RELEASE[c.version]
    available = spec.memory - s.mem
    load = s.loadavg
    return {
        "uptime": int(req.now - node.booted_at),
        "idle": 0,
        "loadavg": [f"{load:.2f}", f"{load * 1.05:.2f}", f"{load * 1.1:.2f}"],
        "kversion": f"Linux {kernel} #1 SMP PREEMPT_DYNAMIC PMX {kernel} x86_64",
        "current-kernel": {
            "sysname": "Linux",
            "release": kernel,
            "version": "#1 SMP PREEMPT_DYNAMIC PMX",
            "machine": "x86_64",
        },
        "boot-info": {"mode": "efi", "secureboot": 0},
        "cpuinfo": {
            "model": spec.cpu_model,
            "sockets": 1,
            "cores": spec.cores,
            "cpus": spec.maxcpu,
            "mhz": "2994.372",
            "hvm": "1",
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr",
            "user_hz": 100,
        },
        "cpu": round(s.cpu, 6),
        "wait": round(s.iowait, 6),
        "memory": {
            "total": spec.memory,
            "used": s.mem,
            "free": int(available * 0.85),
            # `available` is new in PVE 9: the 8.4 schema has total/used/free only
            **({"available": available} if c.version == "9.1" else {}),
        },
        "ksm": {"shared": 0},
        "swap": {"total": 8589930496, "used": 0, "free": 8589930496},
        "rootfs": {
            "total": spec.rootfs,
            "used": int(spec.rootfs * 0.09),
            "avail": int(spec.rootfs * 0.86),
            "free": int(spec.rootfs * 0.91),
        },
        "pveversion": f"pve-manager/{full}/{repoid}",
    }


@router.add("GET", "/nodes/{node}/version", N, proxied=True)
def node_version(req: Request) -> dict[str, Any]:
    node_of(req)
    full, repoid = PVE_RELEASE[req.cluster.version]
    return {"version": full, "release": req.cluster.version, "repoid": repoid}


@router.add("GET", "/nodes/{node}/time", N, privilege=("Sys.Audit", "/nodes/{node}"), proxied=True)
def node_time(req: Request) -> dict[str, Any]:
    """The virtual clock, as the node would tell it: clients date samples by the cluster's time."""
    node_of(req)
    now = int(req.now)
    # simulated nodes run on UTC, so local time and UTC agree
    return {"time": now, "localtime": now, "timezone": "UTC"}


RRD_PARAMS = {
    "node": NODE,
    "timeframe": Param("string", optional=False, enum=TIMEFRAME_9),
    "cf": CF,
}
RRD_PARAMS_8 = {**RRD_PARAMS, "timeframe": Param("string", optional=False, enum=TIMEFRAME_8)}


@router.add(
    "GET",
    "/nodes/{node}/rrddata",
    RRD_PARAMS,
    privilege=("Sys.Audit", "/nodes/{node}"),
    params_by_version={"8.4": RRD_PARAMS_8},
)
def node_rrddata(req: Request) -> list[dict[str, Any]]:
    node = node_of(req)
    return node_series(
        req.cluster, node, req.params["timeframe"], req.params.get("cf", "AVERAGE"), req.now
    )


STORAGE_PARAMS = {
    "node": NODE,
    "content": Param("string"),
    "enabled": BOOL,
    "format": BOOL,
    "storage": Param("string"),
    "target": Param("string"),
}


@router.add("GET", "/nodes/{node}/storage", STORAGE_PARAMS, proxied=True)
def node_storage(req: Request) -> list[dict[str, Any]]:
    c = req.cluster
    node = node_of(req)
    out = []
    for s in c.storages.values():
        if not c.storage_on(s.name, node.name):
            continue
        if req.params.get("storage") not in (None, s.name):
            continue
        if "Datastore.Audit" not in req.identity.privileges:
            continue
        used = cluster_table(c).storage_used(s.name)
        out.append(
            {
                "storage": s.name,
                "type": s.type,
                "content": s.content,
                "active": 1,
                "enabled": 1,
                "shared": 1 if s.shared else 0,
                "total": s.size,
                "used": used,
                "avail": s.size - used,
                "used_fraction": used / s.size if s.size else 0.0,
            }
        )
    return out


TASK_LIST_PARAMS = {
    "node": NODE,
    "start": Param("integer", minimum=0, default=0),
    "limit": Param("integer", minimum=0, default=50),
    "userfilter": Param("string"),
    "typefilter": Param("string"),
    "vmid": Param("integer", minimum=100, maximum=999_999_999),
    "since": Param("integer"),
    "until": Param("integer"),
    "errors": Param("boolean", default=0),
    "source": Param("string", enum=("archive", "active", "all"), default="archive"),
    "statusfilter": Param("string"),
}


@router.add(
    "GET",
    "/nodes/{node}/tasks",
    TASK_LIST_PARAMS,
    privilege=("Sys.Audit", "/nodes/{node}"),
    proxied=True,
)
def node_tasks(req: Request) -> Reply:
    p = req.params
    node = node_of(req)
    now = req.now
    selected: list[Task] = []
    for task in reversed(req.cluster.tasks.all()):
        if task.node != node.name:
            continue
        running = task.running(now)
        if (p["source"] == "archive" and running) or (p["source"] == "active" and not running):
            continue
        if "typefilter" in p and task.type != p["typefilter"]:
            continue
        if "vmid" in p and task.id != str(p["vmid"]):
            continue
        if "userfilter" in p and p["userfilter"] not in task.user:
            continue
        if "since" in p and task.starttime < p["since"]:
            continue
        if "until" in p and task.starttime > p["until"]:
            continue
        if p["errors"] and (running or task.exitstatus == "OK"):
            continue
        selected.append(task)
    total = len(selected)
    window = selected[p["start"] :]
    if p["limit"]:
        window = window[: p["limit"]]
    return Reply([t.list_entry(now) for t in window], total=total)


UPID = {"node": NODE, "upid": Param("string", optional=False)}


def task_of(req: Request) -> Task:
    node_of(req)
    upid = req.params["upid"]
    if parse_upid(upid) is None:
        raise param_error({"upid": "unable to parse worker upid"})
    task = req.cluster.tasks.get(upid)
    if task is None or task.node != req.params["node"] or task.starttime > req.now:
        raise param_error({"upid": "no such task"})
    return task


@router.add("GET", "/nodes/{node}/tasks/{upid}", UPID, proxied=True)
def task_index(req: Request) -> list[dict[str, str]]:
    task_of(req)
    return [{"name": "log"}, {"name": "status"}]


@router.add("GET", "/nodes/{node}/tasks/{upid}/status", UPID, proxied=True)
def task_status(req: Request) -> dict[str, Any]:
    return task_of(req).status(req.now)


LOG_PARAMS = {
    **UPID,
    "start": Param("integer", minimum=0, default=0),
    "limit": Param("integer", minimum=0, default=50),
    "download": BOOL,
}


@router.add("GET", "/nodes/{node}/tasks/{upid}/log", LOG_PARAMS, proxied=True)
def task_log(req: Request) -> Reply:
    task = task_of(req)
    lines = task.visible_lines(req.now) or ["no content"]
    start, limit = req.params["start"], req.params["limit"]
    window = lines[start:] if not limit else lines[start : start + limit]
    return Reply(
        [{"n": start + i + 1, "t": text} for i, text in enumerate(window)], total=len(lines)
    )
