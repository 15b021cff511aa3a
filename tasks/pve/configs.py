"""Per-guest facts the planner needs before moving a guest: local devices and local disks.

These change rarely, so the caller caches them and asks only for new or stale guests; reads
run with at most `workers` calls in flight, so a first run over thousands of guests neither
floods pveproxy nor takes minutes.

- QEMU: `GET .../qemu/{vmid}/migrate` is PVE's own migration pre-check; it lists exactly the
  devices (`local_resources`) and non-shared volumes (`local_disks`) a move would trip on.
- LXC: the container pre-check (`GET .../lxc/{vmid}/migrate`) is new in PVE 9.1 and reports
  neither devices nor volumes, so the config is read instead (it works on 8.x too): `devN`
  passthrough and host bind mounts pin a container; `rootfs`/`mpN` volumes on storage no other
  node has are local disks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from engine.model import Guest, GuestKind
from tasks.pve.inventory import GuestConfig
from tasks.pve.transport import Transport, fan_out

_SIZE = re.compile(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_CT_VOLUME = re.compile(r"^(rootfs|mp\d+)$")
_CT_DEVICE = re.compile(r"^dev\d+$")


def size_bytes(spec: str) -> int:
    m = _SIZE.search(spec)
    return int(float(m[1]) * _UNITS[m[2]]) if m else 0


def from_qemu_precondition(vmid: int, data: Mapping[str, Any]) -> GuestConfig:
    devices = [str(d) for d in data.get("local_resources") or ()]
    # a mapped device moves only where its mapping exists, and live only if the mapping says
    # so; the planner cannot check either, so it treats the guest as pinned
    devices += [f"{d} (mapped)" for d in data.get("mapped-resources") or () if d not in devices]
    disk_bytes = 0
    for disk in data.get("local_disks") or ():
        if not isinstance(disk, dict):
            continue
        if disk.get("cdrom"):  # PVE refuses to migrate a VM with a local ISO attached
            devices.append(f"{disk.get('drivename') or disk.get('volid')} (local cdrom)")
        else:
            disk_bytes += int(disk.get("size") or 0)
    return GuestConfig(vmid, tuple(devices), disk_bytes)


def from_lxc_config(vmid: int, config: Mapping[str, Any], shared: frozenset[str]) -> GuestConfig:
    devices: list[str] = []
    disk_bytes = 0
    for key, value in config.items():
        if _CT_DEVICE.match(key):
            devices.append(key)
        elif _CT_VOLUME.match(key) and isinstance(value, str):
            volume = value.split(",", 1)[0]
            if volume.startswith("/"):  # a host bind mount, unless marked as shared
                if "shared=1" not in value:
                    devices.append(key)
            elif volume.split(":", 1)[0] not in shared:
                disk_bytes += size_bytes(value)
    return GuestConfig(vmid, tuple(sorted(devices)), disk_bytes)


def read_configs(
    api: Transport,
    guests: Iterable[Guest],
    shared: frozenset[str],
    *,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, GuestConfig]:
    """Configs of `guests` (templates skipped); a guest that cannot be read is left out."""
    wanted = [g for g in guests if not g.template]

    def one(g: Guest) -> GuestConfig:
        base = f"nodes/{g.node}/{g.kind.value}/{g.vmid}"
        if g.kind is GuestKind.QEMU:
            return from_qemu_precondition(g.vmid, api.get(f"{base}/migrate"))
        return from_lxc_config(g.vmid, api.get(f"{base}/config"), shared)

    return fan_out(
        {g.vmid: partial(one, g) for g in wanted},
        workers=workers,
        thread_name="pve-config",
        failure="could not read the configuration of {failed} guest(s), left for the next cycle",
        progress=progress,
    )
