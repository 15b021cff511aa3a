"""The inventory: the whole cluster as engine types and store frames, in a constant few calls."""

from __future__ import annotations

import pytest

from engine.model import GuestKind, NodeAffinityRule, ResourceAffinityRule
from tasks.pve import GuestConfig
from tasks.pve.inventory import GUEST_SCHEMA, NODE_SCHEMA, RULES_SCHEMA
from tests.conftest import Control
from tests.tasks.pve.support import connect, requests_made

START = 1_795_000_000  # the small scenario's simulated epoch
GIB = 1024**3
CYCLE_9 = {
    "GET /cluster/resources": 1,
    "GET /cluster/ha/status/current": 1,
    "GET /cluster/ha/rules": 1,
    "GET /nodes/{node}/time": 1,
}


@pytest.fixture
def gateway(sim):
    return connect(sim)


def test_nodes_carry_capacity_state_and_maintenance(gateway, control: Control):
    control.post("nodes/pve3/maintenance", enabled=True)
    nodes = {n.name: n for n in gateway.inventory().nodes}
    assert sorted(nodes) == ["pve1", "pve2", "pve3"]
    assert (nodes["pve1"].cpus, nodes["pve1"].memory) == (16, 64 * GIB)  # 8 cores, 16 threads
    assert all(n.online for n in nodes.values())
    assert [n for n in nodes if nodes[n].maintenance] == ["pve3"]


def test_an_offline_node_is_kept_and_marked_offline(gateway, control: Control):
    control.post("nodes/pve2/offline")
    inv = gateway.inventory()
    assert {n.name: n.online for n in inv.nodes} == {"pve1": True, "pve2": False, "pve3": True}
    assert "pve2" not in inv.node_samples["node"].to_list()
    assert inv.taken_at == START  # the time came from a node still up


def test_guests_are_mapped_to_engine_units(gateway):
    inv = gateway.inventory()
    guests = {g.vmid: g for g in inv.guests}
    assert sorted(guests) == [100, 101, 102, 103, 104, 105, 106, 200, 201]
    web = guests[100]
    row = inv.guest_samples.filter(vmid=100).row(0, named=True)
    assert web.kind is GuestKind.QEMU and web.node == "pve1" and web.vcpus == 2
    assert web.mem_max == 4 * GIB
    assert web.cpu_used == pytest.approx(row["cpu"] * 2)  # host cores = busy fraction × vCPUs
    assert web.mem_used == row["mem"] > 0
    assert web.tags == ("plb_anti_affinity_web", "prod")  # PVE's ;-joined text, split
    assert web.pool == "prod"
    assert guests[200].kind is GuestKind.LXC
    assert guests[103].ha_managed and guests[201].ha_managed and not web.ha_managed


def test_a_stopped_guest_uses_nothing_and_has_no_sample(gateway):
    inv = gateway.inventory()
    stopped = inv.guest(106)
    assert stopped is not None and not stopped.running
    assert (stopped.cpu_used, stopped.mem_used) == (0.0, 0)
    assert 106 not in inv.guest_samples["vmid"].to_list()


def test_a_locked_guest_shows_its_lock(gateway, control: Control):
    control.post("guests/101/lock", lock="backup")
    assert gateway.inventory().guest(101).lock == "backup"


def test_cached_configs_fill_in_local_resources_and_disks(gateway):
    configs = {104: GuestConfig(104, ("hostpci0",), 0), 105: GuestConfig(105, (), 40 * GIB)}
    inv = gateway.inventory(configs)
    assert inv.guest(104).local_resources == ("hostpci0",)
    assert inv.guest(105).local_disk_bytes == 40 * GIB
    assert inv.guest(100).local_resources == () and inv.guest(100).local_disk_bytes == 0


def test_pve_9_ha_rules_become_engine_rules(gateway):
    inv = gateway.inventory()
    assert NodeAffinityRule("app-on-pve2", (103,), (("pve2", 2), ("pve3", 1)), True) in (
        inv.node_rules
    )
    assert inv.resource_rules == (ResourceAffinityRule("app-apart-from-ct", (201, 103), False),)
    assert sorted(inv.rules_seen["name"].to_list()) == [
        "app-apart-from-ct",
        "app-on-pve2",
        "ha-group-prefer-pve2",
    ]


def test_pve_8_ha_groups_become_node_affinity_rules(make_sim, control: Control):
    sim = make_sim("small", pve_version="8.4")
    inv = connect(sim).inventory()
    assert inv.node_rules == (
        NodeAffinityRule("ha-group-prefer-pve2", (103,), (("pve2", 2), ("pve3", 1)), True),
    )
    assert inv.resource_rules == ()


def test_frames_have_the_store_s_columns_and_types(gateway):
    inv = gateway.inventory()
    assert inv.node_samples.schema == NODE_SCHEMA
    assert inv.guest_samples.schema == GUEST_SCHEMA
    assert inv.rules_seen.schema == RULES_SCHEMA
    assert inv.node_samples.height == 3
    assert inv.guest_samples.height == 8  # nine guests, one stopped
    assert set(inv.guest_samples["ts"].to_list()) == {START}


def test_the_snapshot_holds_the_inventory_at_its_time(gateway):
    inv = gateway.inventory()
    snap = inv.snapshot()
    assert snap.now == inv.taken_at == START
    assert snap.nodes == inv.nodes and snap.guests == inv.guests
    assert snap.forecast(100).cpu == inv.guest(100).cpu_used  # no forecast: as it is now


def test_a_cycle_makes_four_calls_on_pve_9(sim, control: Control):
    gateway = connect(sim)
    control.delete("requests")
    before = gateway.calls
    gateway.inventory()
    assert requests_made(control) == CYCLE_9
    assert gateway.calls - before == 4


def test_a_cycle_makes_five_calls_on_pve_8(make_sim):
    sim = make_sim("small", pve_version="8.4")
    control = Control(sim)
    gateway = connect(sim)
    control.delete("requests")
    gateway.inventory()
    assert requests_made(control) == {
        "GET /cluster/resources": 1,
        "GET /cluster/ha/status/current": 1,
        "GET /cluster/ha/groups": 1,
        "GET /cluster/ha/resources": 1,
        "GET /nodes/{node}/time": 1,
    }


def test_the_call_count_does_not_grow_with_the_number_of_guests(make_sim):
    counts = {}
    for scenario in ("small", "large:8x1500"):
        sim = make_sim(scenario)
        control = Control(sim)
        gateway = connect(sim)
        control.delete("requests")
        inv = gateway.inventory()
        counts[len(inv.guests)] = requests_made(control)
    assert sorted(counts) == [9, 1500]
    assert counts[9] == counts[1500] == CYCLE_9
