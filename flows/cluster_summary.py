"""A first look at a cluster: node load and guests per node, read through proxmoxer.

It reads everything from one `/cluster/resources` call, the way the ingest will.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

GIB = 1024**3


@dataclass(frozen=True)
class NodeRow:
    name: str
    status: str
    cpu: float | None  # fraction of host CPUs
    maxcpu: int | None
    mem: int | None
    maxmem: int | None
    running: int
    stopped: int
    vms: int
    containers: int


def summarize(resources: list[dict[str, Any]]) -> list[NodeRow]:
    nodes = [r for r in resources if r.get("type") == "node"]
    guests = [r for r in resources if r.get("type") in ("qemu", "lxc")]
    rows = []
    for node in sorted(nodes, key=lambda n: n["node"]):
        mine = [g for g in guests if g.get("node") == node["node"]]
        rows.append(
            NodeRow(
                name=node["node"],
                status=node.get("status", "unknown"),
                cpu=node.get("cpu"),
                maxcpu=node.get("maxcpu"),
                mem=node.get("mem"),
                maxmem=node.get("maxmem"),
                running=sum(1 for g in mine if g.get("status") == "running"),
                stopped=sum(1 for g in mine if g.get("status") != "running"),
                vms=sum(1 for g in mine if g["type"] == "qemu"),
                containers=sum(1 for g in mine if g["type"] == "lxc"),
            )
        )
    return rows


def summary_table(rows: list[NodeRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("node", "status", "CPU", "memory", "guests", "VMs", "CTs"):
        table.add_column(column, justify="left" if column in ("node", "status") else "right")
    for r in rows:
        cpu = "-" if r.cpu is None else f"{r.cpu:4.0%} of {r.maxcpu}"
        mem = (
            "-"
            if r.mem is None or not r.maxmem
            else f"{r.mem / r.maxmem:4.0%} of {r.maxmem / GIB:.0f} GiB"
        )
        guests = f"{r.running} up" + (f", {r.stopped} down" if r.stopped else "")
        table.add_row(r.name, r.status, cpu, mem, guests, str(r.vms), str(r.containers))
    return table
