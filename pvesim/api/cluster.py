"""/cluster/status, /cluster/resources, /cluster/options, /cluster/tasks, /cluster/nextid."""

from __future__ import annotations

import json
from typing import Any

from pvesim.api import router
from pvesim.api.params import ApiError, Param
from pvesim.api.routing import Request
from pvesim.cluster import Cluster
from pvesim.metrics import cluster_table, refresh_instant
from pvesim.render import guest_resources, node_resource


class RawJson(bytes):
    """An already serialised response body (the whole `{"data": ...}` envelope).

    A cached body is served many times per refresh: the server keeps its gzip form here.
    """

    gzipped: bytes | None = None


try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with Prefect
    orjson = None  # type: ignore[assignment]


def _dumps(doc: Any) -> bytes:
    """Compact JSON. /cluster/resources is big (1.7 MB at 5,000 guests): the stdlib encoder
    takes ~20 ms on it, orjson ~2 ms. Same values either way; orjson writes small floats
    without an exponent (0.00005, not 5e-05) and non-ASCII as UTF-8 rather than \\u escapes."""
    if orjson is not None:
        try:
            return orjson.dumps(doc)
        except TypeError:  # something orjson refuses (an int beyond 64 bits): use the stdlib
            pass
    return json.dumps(doc, separators=(",", ":")).encode()


@router.add("GET", "/cluster/status", privilege=("Sys.Audit", "/"))
def status(req: Request) -> list[dict[str, Any]]:
    c = req.cluster
    online = sum(1 for n in c.nodes.values() if n.online)
    out: list[dict[str, Any]] = [
        {
            "type": "cluster",
            "id": "cluster",
            "name": c.spec.cluster_name,
            "nodes": len(c.nodes),
            "quorate": 1 if c.quorate and online * 2 > len(c.nodes) else 0,
            "version": len(c.nodes) + 2,
        }
    ]
    first = next(iter(c.nodes))
    for node in c.nodes.values():
        out.append(
            {
                "type": "node",
                "id": f"node/{node.name}",
                "name": node.name,
                "nodeid": node.nodeid,
                "ip": node.ip,
                "local": 1 if node.name == first else 0,
                "online": 1 if node.online else 0,
                "level": "",
            }
        )
    return out


RESOURCE_TYPES = ("vm", "storage", "node", "sdn")


@router.add("GET", "/cluster/resources", {"type": Param("string", enum=RESOURCE_TYPES)})
def resources(req: Request) -> RawJson:
    c = req.cluster
    kind = req.params.get("type")
    privs = req.identity.privileges
    bucket = refresh_instant(req.now)
    key = (
        bucket,
        c.state_version,
        kind,
        "VM.Audit" in privs,
        "Sys.Audit" in privs,
        "Datastore.Audit" in privs,
    )
    cache = c.response_cache
    hit = cache.get(key)
    if hit is not None:
        return hit if isinstance(hit, RawJson) else RawJson(hit)
    body = RawJson(_dumps({"data": _resources(c, kind, privs, bucket)}))
    cache.clear()
    cache[key] = body
    return body


def _resources(
    c: Cluster, kind: str | None, privs: frozenset[str], now: float
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if kind in (None, "node") and "Sys.Audit" in privs:
        out.extend(node_resource(c, n, now) for n in c.nodes.values())
    if kind in (None, "vm") and "VM.Audit" in privs:
        out.extend(guest_resources(c, cluster_table(c).by_vmid, now))
    if kind in (None, "storage") and "Datastore.Audit" in privs:
        table = cluster_table(c)
        for node in c.nodes.values():
            for s in c.storages.values():
                if not c.storage_on(s.name, node.name):
                    continue
                entry: dict[str, Any] = {
                    "id": f"storage/{node.name}/{s.name}",
                    "type": "storage",
                    "storage": s.name,
                    "node": node.name,
                    "plugintype": s.type,
                    "status": "available" if node.online else "unknown",
                    "shared": 1 if s.shared else 0,
                    "content": s.content,
                }
                if node.online:
                    entry.update(disk=table.storage_used(s.name), maxdisk=s.size)
                out.append(entry)
    if kind is None:
        for pool in c.spec.pools:
            out.append({"id": f"/pool/{pool.poolid}", "type": "pool", "pool": pool.poolid})
    if kind in (None, "sdn"):
        for node in c.nodes.values():
            out.append(
                {
                    "id": f"sdn/{node.name}/localnetwork",
                    "type": "sdn",
                    "sdn": "localnetwork",
                    "node": node.name,
                    "status": "ok" if node.online else "unknown",
                }
            )
    return out


@router.add("GET", "/cluster/options", privilege=("Sys.Audit", "/"))
def options(req: Request) -> dict[str, Any]:
    net = req.cluster.spec.network
    out: dict[str, Any] = {
        "keyboard": "en-us",
        "migration": {"type": net.migration_type},
        "max_workers": 4,
        "tag-style": {"ordering": "alphabetical", "case-sensitive": 0},
    }
    if req.cluster.version == "9.1":
        out["crs"] = {"ha": "basic", "ha-rebalance-on-start": 0}
    else:
        out["crs"] = {"ha": "basic"}
    return out


@router.add("GET", "/cluster/tasks")
def cluster_tasks(req: Request) -> list[dict[str, Any]]:
    tasks = req.cluster.tasks.all()[-200:]
    return [t.list_entry(req.now) for t in reversed(tasks)]


@router.add("GET", "/cluster/nextid", {"vmid": Param("integer", minimum=100, maximum=999_999_999)})
def nextid(req: Request) -> str:
    used = set(req.cluster.guests)
    wanted = req.params.get("vmid")
    if wanted is not None:
        if wanted in used:
            raise ApiError(
                400, f"VM {wanted} already exists", {"vmid": f"VM {wanted} already exists"}
            )
        return str(wanted)
    vmid = 100
    while vmid in used:
        vmid += 1
    return str(vmid)
