"""JSON shapes of nodes, guests and storages as PVE returns them (field names, types, units)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pvesim.cluster import Cluster, Guest, Node
from pvesim.metrics import (
    live_node_sample,
    live_view,
    node_seen_at,
)

KERNEL = {"9.1": "6.17.2-1-pve", "8.4": "6.8.12-9-pve"}
PVE_RELEASE = {"9.1": ("9.1.4", "5ac30304265fbd8e"), "8.4": ("8.4.1", "2a5fa54a8503f96d")}


def node_resource(cluster: Cluster, node: Node, now: float) -> dict[str, Any]:
    spec = node.spec
    entry: dict[str, Any] = {
        "id": f"node/{node.name}",
        "type": "node",
        "node": node.name,
        "status": "online" if node.online else "offline",
        "level": "",
    }
    seen = node_seen_at(node, now)
    if seen is not None:
        entry.update(maxcpu=spec.maxcpu, maxmem=spec.memory, maxdisk=spec.rootfs)
    if node.online and seen is not None:
        s = live_node_sample(cluster, node, seen)
        entry.update(
            cpu=round(s.cpu, 6),
            mem=s.mem,
            disk=int(spec.rootfs * 0.09),
            uptime=int(now - node.booted_at),
        )
        entry["cgroup-mode"] = 2
        entry["host-arch"] = "x86_64"
    if cluster.spec.ha.resources or node.name in cluster.maintenance:
        entry["hastate"] = (
            "maintenance"
            if node.name in cluster.maintenance
            else ("online" if node.online else "unknown")
        )
    return entry


def guest_base(guest: Guest) -> dict[str, Any]:
    spec = guest.spec
    return {
        "vmid": spec.vmid,
        "name": spec.name,
        "maxcpu": spec.cores,
        "maxmem": spec.memory,
        "maxdisk": sum(d.size for d in spec.disks),
    }


def guest_resource(cluster: Cluster, guest: Guest, now: float) -> dict[str, Any]:
    return guest_resources(cluster, [guest], now)[0]


def guest_resources(cluster: Cluster, guests: Iterable[Guest], now: float) -> list[dict[str, Any]]:
    """The /cluster/resources entries of `guests`, from one live view."""
    view = live_view(cluster, now)
    rows = view.guests
    cpu, mem, memhost = view.cpu, view.mem, view.memhost
    netin, netout, diskread, diskwrite = view.netin, view.netout, view.diskread, view.diskwrite
    v9 = cluster.version == "9.1"
    statics = cluster.resource_bases
    out: list[dict[str, Any]] = []
    for guest in guests:
        spec = guest.spec
        static = statics.get(spec.vmid)
        if static is None:  # what follows from the spec alone (specs never change), built once
            base = {"id": f"{spec.type}/{spec.vmid}", "type": spec.type, **guest_base(guest)}
            disk = _lxc_disk(guest) if spec.type == "lxc" else 0
            static = statics[spec.vmid] = (base, 1 if spec.template else 0, disk)
        base, template, disk = static
        status, seen, row = rows[spec.vmid]
        entry: dict[str, Any]
        if row >= 0:  # running: one dict display, the bulk of a big cluster
            entry = {
                **base,
                "node": guest.node,
                "status": status,
                "template": template,
                "uptime": int(seen - guest.started_at),
                "disk": disk,
                "cpu": round(cpu[row], 6),
                "mem": mem[row],
                "netin": netin[row],
                "netout": netout[row],
                "diskread": diskread[row],
                "diskwrite": diskwrite[row],
            }
            if v9:
                entry["memhost"] = memhost[row]
        else:
            entry = {**base, "node": guest.node, "status": status, "template": template}
            if status != "unknown":
                entry["uptime"] = 0
                entry["disk"] = disk
        if guest.tags:
            entry["tags"] = guest.tags
        if guest.lock:
            entry["lock"] = guest.lock
        if guest.hastate:
            entry["hastate"] = guest.hastate
        if spec.pool:
            entry["pool"] = spec.pool
        out.append(entry)
    return out


def _lxc_disk(guest: Guest) -> int:
    return int(sum(d.size for d in guest.spec.disks) * 0.35)


def guest_list_entry(cluster: Cluster, guest: Guest, now: float) -> dict[str, Any]:
    """One item of GET /nodes/{node}/qemu or /lxc."""
    spec = guest.spec
    view = live_view(cluster, now)
    status, seen, _ = view.guests[guest.vmid]
    sample = view.sample(guest.vmid)
    entry: dict[str, Any] = {
        "vmid": spec.vmid,
        "name": spec.name,
        "status": "stopped" if status == "unknown" else status,
        "cpus": spec.cores,
        "maxmem": spec.memory,
        "maxdisk": sum(d.size for d in spec.disks),
        "uptime": int(seen - guest.started_at) if sample else 0,
        "cpu": round(sample.cpu, 6) if sample else 0,
        "mem": sample.mem if sample else 0,
        "disk": _lxc_disk(guest) if spec.type == "lxc" else 0,
    }
    if spec.type == "qemu" and sample:
        entry["pid"] = 100_000 + spec.vmid
    if spec.type == "lxc":
        entry["type"] = "lxc"
        entry["maxswap"] = 512 * 1024**2
        entry["swap"] = 0
    if sample is not None:
        entry.update(
            netin=sample.netin,
            netout=sample.netout,
            diskread=sample.diskread,
            diskwrite=sample.diskwrite,
        )
        if cluster.version == "9.1":
            entry["memhost"] = sample.memhost
            entry.update(
                pressurecpusome=round(sample.cpu * 2.0, 2),
                pressurecpufull=round(sample.cpu * 1.5, 2),
                pressureiosome=0,
                pressureiofull=0,
                pressurememorysome=0,
                pressurememoryfull=0,
            )
    if guest.tags:
        entry["tags"] = guest.tags
    if guest.lock:
        entry["lock"] = guest.lock
    if spec.template:
        entry["template"] = 1
    return entry


def guest_status_current(cluster: Cluster, guest: Guest, now: float) -> dict[str, Any]:
    entry = guest_list_entry(cluster, guest, now)
    if guest.spec.type == "qemu":
        entry["qmpstatus"] = entry["status"]
        entry["agent"] = 1
        if entry["status"] == "running":
            entry["running-machine"] = "pc-i440fx-9.2+pve1"
    entry["ha"] = (
        {"managed": 1, "state": guest.ha.state if guest.ha.state != "enabled" else "started"}
        if guest.ha
        else {"managed": 0}
    )
    return entry


def config_digest(config: dict[str, Any]) -> str:
    text = "\n".join(f"{k}: {config[k]}" for k in sorted(config))
    return hashlib.sha1(text.encode()).hexdigest()


def guest_config(guest: Guest) -> dict[str, Any]:
    spec = guest.spec
    mib = spec.memory // 1024**2
    config: dict[str, Any]
    if spec.type == "qemu":
        config = {
            "name": spec.name,
            "cores": spec.cores,
            "sockets": 1,
            "cpu": "x86-64-v2-AES",
            "memory": str(mib),
            "numa": 0,
            "ostype": "l26",
            "scsihw": "virtio-scsi-single",
            "boot": "order=" + ";".join([d.drive for d in spec.disks] + ["net0"]),
            "net0": f"virtio=BC:24:11:{spec.vmid % 256:02X}:{(spec.vmid // 256) % 256:02X}:01,"
            "bridge=vmbr0,firewall=1",
            "onboot": 1,
            "smbios1": f"uuid={_uuid(spec.vmid)}",
            "vmgenid": _uuid(spec.vmid + 7),
            "meta": "creation-qemu=9.2.0,ctime=1745000000",
        }
        for disk in spec.disks:
            config[disk.drive] = (
                f"{disk.storage}:vm-{spec.vmid}-disk-{disk.drive[-1]},iothread=1,size={_gib(disk.size)}"
            )
        for i, dev in enumerate(spec.hostpci):
            config[f"hostpci{i}"] = dev
        for i, dev in enumerate(spec.usb):
            config[f"usb{i}"] = dev
    else:
        config = {
            "hostname": spec.name,
            "cores": spec.cores,
            "memory": mib,
            "swap": 512,
            "arch": "amd64",
            "ostype": "debian",
            "unprivileged": 1,
            "net0": f"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:{spec.vmid % 256:02X}:AA:02,"
            "ip=dhcp,type=veth",
            "onboot": 1,
        }
        for disk in spec.disks:
            config[disk.drive] = f"{disk.storage}:vm-{spec.vmid}-disk-0,size={_gib(disk.size)}"
    if guest.tags:
        config["tags"] = guest.tags
    if guest.lock:
        config["lock"] = guest.lock
    if spec.template:
        config["template"] = 1
    config["digest"] = config_digest(config)
    return config


def _gib(size: int) -> str:
    gib = size / 1024**3
    return f"{int(gib)}G" if gib.is_integer() else f"{size // 1024**2}M"


def _uuid(n: int) -> str:
    h = hashlib.md5(str(n).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
