"""Guest configs: passthrough devices and local disks, read with bounded concurrency."""

from __future__ import annotations

import threading

import pytest

from engine.model import Guest, GuestKind
from tasks.pve import GuestConfig
from tasks.pve.configs import from_lxc_config, from_qemu_precondition, read_configs
from tests.tasks.pve.support import FakeTransport, connect

GIB = 1024**3


def test_the_small_cluster_s_devices_and_local_disks_are_found(sim):
    gateway = connect(sim)
    inv = gateway.inventory()
    configs = gateway.guest_configs(inv, inv.guests)
    assert sorted(configs) == [100, 101, 102, 103, 104, 105, 106, 200, 201]
    assert configs[104] == GuestConfig(104, ("hostpci0",), 0)
    assert configs[105] == GuestConfig(105, (), 40 * GIB)  # scsi0 on local-lvm
    assert configs[106] == GuestConfig(106, (), 20 * GIB)  # scsi0 on local-zfs
    assert configs[100] == GuestConfig(100, (), 0)  # everything on ceph
    assert configs[200] == GuestConfig(200, (), 0)  # rootfs on ceph


def test_pve_8_containers_are_read_from_their_config(make_sim):
    gateway = connect(make_sim("small", pve_version="8.4"))
    inv = gateway.inventory()
    configs = gateway.guest_configs(inv, inv.guests)
    assert configs[200] == GuestConfig(200, (), 0) and configs[201] == GuestConfig(201, (), 0)
    assert configs[105] == GuestConfig(105, (), 40 * GIB)


def test_progress_is_reported_for_every_guest(sim):
    gateway = connect(sim)
    seen: list[tuple[int, int]] = []
    inv = gateway.inventory()
    gateway.guest_configs(inv, inv.guests, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 9) for i in range(1, 10)]


def test_a_local_cdrom_or_mapped_device_pins_a_vm_and_unused_local_disks_still_count():
    config = from_qemu_precondition(
        101,
        {
            "local_resources": ["usb0"],
            "mapped-resources": ["hostpci1"],
            "local_disks": [
                {"volid": "local:iso/debian.iso", "drivename": "ide2", "cdrom": 1, "size": 600},
                {"volid": "local-zfs:vm-101-disk-0", "size": 32 * GIB, "is_unused": 0},
                {"volid": "local-zfs:vm-101-disk-1", "size": 8 * GIB, "is_unused": 1},
            ],
        },
    )
    assert config == GuestConfig(101, ("usb0", "hostpci1 (mapped)", "ide2 (local cdrom)"), 40 * GIB)


def test_a_container_s_devices_bind_mounts_and_local_volumes_are_found():
    config = from_lxc_config(
        200,
        {
            "rootfs": "local-lvm:vm-200-disk-0,size=8G",
            "mp0": "ceph-vm:vm-200-disk-1,mp=/data,size=100G",
            "mp1": "/srv/media,mp=/media",
            "mp2": "/srv/shared,mp=/shared,shared=1",
            "mp3": "local-lvm:vm-200-disk-2,mp=/cache,size=512M",
            "dev0": "/dev/dri/renderD128,gid=44",
            "memory": 1024,
        },
        frozenset({"ceph-vm"}),
    )
    assert config == GuestConfig(200, ("dev0", "mp1"), 8 * GIB + 512 * 1024**2)


@pytest.mark.parametrize("workers", [1, 3])
def test_no_more_than_workers_reads_are_in_flight(workers):
    # the first `workers` reads wait for each other: they pass only if all are in flight at once
    together = threading.Barrier(workers, timeout=5)
    lock = threading.Lock()
    started = in_flight = peak = 0

    def answer(path: str):
        nonlocal started, in_flight, peak
        with lock:
            started += 1
            first = started <= workers
            in_flight += 1
            peak = max(peak, in_flight)
        if first:
            together.wait()
        with lock:
            in_flight -= 1
        return {"local_resources": [], "local_disks": []}

    guests = [Guest(100 + i, f"g{i}", "pve1") for i in range(24)]
    configs = read_configs(FakeTransport(answer), guests, frozenset(), workers=workers)
    assert len(configs) == 24
    assert peak <= workers


def test_templates_are_not_read():
    paths: list[str] = []

    def answer(path: str):
        paths.append(path)
        return {"rootfs": "ceph:x,size=1G"}

    guests = [
        Guest(9000, "tpl", "pve1", kind=GuestKind.LXC, template=True),
        Guest(200, "ct", "pve1", kind=GuestKind.LXC),
    ]
    assert sorted(read_configs(FakeTransport(answer), guests, frozenset({"ceph"}))) == [200]
    assert paths == ["nodes/pve1/lxc/200/config"]
