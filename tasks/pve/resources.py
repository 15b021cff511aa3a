"""`/cluster/resources` entries → engine nodes and guests plus store sample rows.

Parsing is forgiving by design: one odd entry must not stop a cycle for the whole cluster.
An entry that cannot be used is skipped and a problem names it, the field and the value; a
field this code does not know is reported once per name and otherwise ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.model import Guest, GuestKind, Node

NODE_FIELDS = frozenset(
    {"id", "type", "node", "status", "level", "cpu", "maxcpu", "mem", "maxmem", "disk"}
    | {"maxdisk", "uptime", "cgroup-mode", "host-arch", "hastate", "memhost", "network"}
)
GUEST_FIELDS = frozenset(
    {"id", "type", "vmid", "node", "name", "status", "template", "uptime", "cpu", "maxcpu"}
    | {"mem", "maxmem", "memhost", "disk", "maxdisk", "netin", "netout", "diskread"}
    | {"diskwrite", "tags", "lock", "hastate", "pool", "pressurecpusome", "pressurecpufull"}
    | {"pressureiosome", "pressureiofull", "pressurememorysome", "pressurememoryfull"}
)
IGNORED_TYPES = frozenset({"storage", "pool", "sdn", "network"})
COUNTERS = ("netin", "netout", "diskread", "diskwrite")


class BadField(ValueError):
    def __init__(self, key: str, value: Any) -> None:
        super().__init__(key)
        self.key = key
        self.value = value


def number(entry: Mapping[str, Any], key: str) -> float | None:
    """The field as a float; None when absent; `BadField` when it is not a number."""
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadField(key, value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise BadField(key, value) from None
    raise BadField(key, value)


def integer(entry: Mapping[str, Any], key: str) -> int | None:
    value = number(entry, key)
    if value is None:
        return None
    if not value.is_integer():
        raise BadField(key, entry.get(key))
    return int(value)


@dataclass
class Parsed:
    """Everything one `/cluster/resources` answer holds, for the inventory."""

    nodes: list[Node] = field(default_factory=list)
    guests: list[Guest] = field(default_factory=list)
    shared_storages: set[str] = field(default_factory=set)
    node_rows: list[tuple[Any, ...]] = field(default_factory=list)
    guest_rows: list[tuple[Any, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unknown_fields: dict[str, set[str]] = field(default_factory=dict)

    def report_unknown(self) -> None:
        for kind, names in sorted(self.unknown_fields.items()):
            self.problems.append(
                f"cluster/resources: {kind} entries carry field(s) this version of proxflow "
                f"does not know, ignored: {', '.join(sorted(names))}"
            )


def parse(entries: Iterable[Any], ts: int, maintenance: set[str]) -> Parsed:
    out = Parsed()
    for entry in entries:
        if not isinstance(entry, dict):
            out.problems.append(
                f"cluster/resources: entry is not an object, skipped: {entry!r:.80}"
            )
            continue
        kind = entry.get("type")
        if kind == "node":
            _node(entry, ts, maintenance, out)
        elif kind in ("qemu", "lxc"):
            _guest(entry, ts, out)
        elif kind == "storage":
            name = entry.get("storage")
            if isinstance(name, str) and entry.get("shared"):
                out.shared_storages.add(name)
        elif kind not in IGNORED_TYPES:
            out.problems.append(
                f"cluster/resources: entry {entry.get('id')!r} has unknown type {kind!r}, skipped"
            )
    names = {n.name for n in out.nodes}
    for g in [g for g in out.guests if g.node not in names]:
        out.problems.append(f"guest {g.vmid}: node {g.node!r} is not a known node, skipped")
    out.guests = [g for g in out.guests if g.node in names]
    out.guest_rows = [r for r in out.guest_rows if r[2] in names]
    out.report_unknown()
    return out


def _unknown(entry: Mapping[str, Any], known: frozenset[str], kind: str, out: Parsed) -> None:
    extra = entry.keys() - known
    if extra:
        out.unknown_fields.setdefault(kind, set()).update(extra)


def _node(entry: dict[str, Any], ts: int, maintenance: set[str], out: Parsed) -> None:
    name = entry.get("node")
    if not isinstance(name, str) or not name:
        out.problems.append(f"cluster/resources: node entry without a name, skipped: {entry!r:.80}")
        return
    _unknown(entry, NODE_FIELDS, "node", out)
    try:
        maxcpu = integer(entry, "maxcpu")
        maxmem = integer(entry, "maxmem")
        cpu = number(entry, "cpu")
        mem = integer(entry, "mem")
    except BadField as bad:
        out.problems.append(
            f"node {name}: field {bad.key} has non-numeric value {bad.value!r}, node skipped"
        )
        return
    online = entry.get("status") == "online"
    out.nodes.append(
        Node(
            name=name,
            cpus=maxcpu or 0,  # an offline node's capacity is gone after PVE's 5 min RRD expiry
            memory=maxmem or 0,
            online=online,
            maintenance=name in maintenance or entry.get("hastate") == "maintenance",
        )
    )
    if online and cpu is not None:
        out.node_rows.append((name, ts, cpu, maxcpu, mem, maxmem))


def _guest(entry: dict[str, Any], ts: int, out: Parsed) -> None:
    kind = entry["type"]
    vmid_raw = entry.get("vmid")
    try:
        vmid = integer(entry, "vmid")
    except BadField:
        vmid = None
    if vmid is None:
        out.problems.append(f"cluster/resources: {kind} entry with vmid {vmid_raw!r}, skipped")
        return
    node = entry.get("node")
    if not isinstance(node, str) or not node:
        out.problems.append(f"guest {vmid}: field node has value {node!r}, guest skipped")
        return
    _unknown(entry, GUEST_FIELDS, kind, out)
    try:
        cpus = integer(entry, "maxcpu")
        maxmem = integer(entry, "maxmem")
        cpu = number(entry, "cpu")
        mem = integer(entry, "mem")
        memhost = integer(entry, "memhost")
        counters = [integer(entry, k) for k in COUNTERS]
    except BadField as bad:
        out.problems.append(
            f"guest {vmid}: field {bad.key} has non-numeric value {bad.value!r}, guest skipped"
        )
        return
    status = entry.get("status")
    if status != "unknown" and (cpus is None or maxmem is None):
        absent = "maxcpu" if cpus is None else "maxmem"
        out.problems.append(f"guest {vmid}: field {absent} is missing, guest skipped")
        return
    running = status == "running"
    used = memhost if memhost is not None else mem  # the host's view is what a node carries
    tags = entry.get("tags")
    lock = entry.get("lock")
    pool = entry.get("pool")
    out.guests.append(
        Guest(
            vmid=vmid,
            name=str(entry.get("name") or f"{kind}{vmid}"),
            node=node,
            kind=GuestKind(kind),
            vcpus=cpus or 1,
            mem_max=maxmem or 0,
            mem_used=(used or 0) if running else 0,
            cpu_used=(cpu or 0.0) * (cpus or 0) if running else 0.0,
            running=running,
            tags=tuple(t for t in tags.split(";") if t) if isinstance(tags, str) else (),
            pool=pool if isinstance(pool, str) and pool else None,
            lock=lock if isinstance(lock, str) and lock else None,
            ha_managed="hastate" in entry,
            template=bool(entry.get("template")),
        )
    )
    if running and cpu is not None:
        # no rates: the store derives them from the counters of consecutive samples
        out.guest_rows.append(
            (vmid, ts, node, kind, cpu, float(cpus or 0), used, maxmem, *counters, None, None)
        )
