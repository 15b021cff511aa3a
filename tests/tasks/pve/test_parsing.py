"""Odd answers: a bad entry is skipped and named, never fatal for the cycle (fakes, no server)."""

from __future__ import annotations

from tasks.pve import rules
from tasks.pve.resources import parse
from tests.tasks.pve.support import fake_gateway

TS = 1_795_000_000
NODE = {"type": "node", "node": "pve1", "status": "online", "cpu": 0.1, "maxcpu": 8}
NODE = {**NODE, "mem": 1, "maxmem": 16}


def vm(vmid, **fields):
    base = {
        "id": f"qemu/{vmid}",
        "type": "qemu",
        "vmid": vmid,
        "node": "pve1",
        "name": f"vm{vmid}",
        "status": "running",
        "cpu": 0.5,
        "maxcpu": 2,
        "mem": 100,
        "maxmem": 200,
    }
    return {**base, **fields}


def test_a_guest_with_a_non_numeric_maxmem_is_skipped_and_named():
    parsed = parse([NODE, vm(100), vm(101, maxmem="lots")], TS, set())
    assert [g.vmid for g in parsed.guests] == [100]
    assert parsed.problems == [
        "guest 101: field maxmem has non-numeric value 'lots', guest skipped"
    ]
    assert [r[0] for r in parsed.guest_rows] == [100]


def test_numbers_sent_as_text_are_accepted():
    parsed = parse([NODE, vm(100, maxmem="200", cpu="0.25")], TS, set())
    assert parsed.problems == []
    assert parsed.guests[0].cpu_used == 0.5  # 0.25 × 2 vCPUs


def test_unknown_fields_are_reported_once_per_kind_and_ignored():
    parsed = parse([NODE, vm(100, shiny=1), vm(101, shiny=2, glow=3)], TS, set())
    assert len(parsed.guests) == 2
    assert parsed.problems == [
        "cluster/resources: qemu entries carry field(s) this version of proxflow does not know, "
        "ignored: glow, shiny"
    ]


def test_an_entry_of_an_unknown_type_is_skipped_and_named():
    parsed = parse([NODE, {"id": "mystery/1", "type": "mystery"}, "junk"], TS, set())
    assert parsed.problems == [
        "cluster/resources: entry 'mystery/1' has unknown type 'mystery', skipped",
        "cluster/resources: entry is not an object, skipped: 'junk'",
    ]


def test_a_guest_without_a_usable_vmid_or_node_is_skipped():
    parsed = parse([NODE, vm("abc"), vm(102, node=None), vm(103, node="ghost")], TS, set())
    assert parsed.guests == []
    assert parsed.problems == [
        "cluster/resources: qemu entry with vmid 'abc', skipped",
        "guest 102: field node has value None, guest skipped",
        "guest 103: node 'ghost' is not a known node, skipped",
    ]


def test_a_template_is_a_guest_marked_as_template():
    parsed = parse([NODE, vm(9000, template=1, status="stopped")], TS, set())
    assert parsed.guests[0].template and not parsed.guests[0].running


def test_the_host_view_of_memory_wins_over_the_guest_view():
    parsed = parse([NODE, vm(100, mem=100, memhost=150)], TS, set())
    assert parsed.guests[0].mem_used == 150
    assert parsed.guest_rows[0][6] == 150


def test_an_offline_node_past_pve_s_rrd_expiry_has_no_capacity_and_no_sample():
    parsed = parse([NODE, {"type": "node", "node": "pve2", "status": "offline"}], TS, set())
    pve2 = parsed.nodes[1]
    assert (pve2.online, pve2.cpus, pve2.memory) == (False, 0, 0)
    assert [r[0] for r in parsed.node_rows] == ["pve1"]


def test_shared_storages_are_named():
    entries = [
        NODE,
        {"type": "storage", "storage": "ceph", "shared": 1, "node": "pve1"},
        {"type": "storage", "storage": "local-lvm", "shared": 0, "node": "pve1"},
    ]
    parsed = parse(entries, TS, set())
    assert parsed.shared_storages == {"ceph"}


# -- HA rules, groups, status ------------------------------------------------------------------


def rule(name, kind, **fields):
    return {"rule": name, "type": kind, **fields}


def test_bad_and_unusable_ha_rules_are_skipped_and_named():
    na, ra = "node-affinity", "resource-affinity"
    found = rules.from_rules(
        [
            rule("ok", na, resources="vm:100", nodes="pve1:2,pve2"),
            rule("off", na, resources="vm:100", nodes="pve1", disable=1),
            rule("bad-sid", ra, resources="vm:x", affinity="negative"),
            rule("bad-prio", na, resources="vm:100", nodes="pve1:hi"),
            rule("bad-aff", ra, resources="vm:1", affinity="maybe"),
            rule("flagged", na, resources="vm:1", nodes="pve1", errors={"nodes": "gone"}),
            rule("new", "node-anti-affinity", resources="vm:1"),
            {"type": na},
        ]
    )
    assert [r.name for r in found.node_rules] == ["ok"]
    assert found.node_rules[0].nodes == (("pve1", 2), ("pve2", 0))  # PVE's default priority 0
    assert found.problems == [
        "HA rule bad-sid: resource 'vm:x' is not vm:<vmid> or ct:<vmid>, skipped",
        "HA rule bad-prio: node entry 'pve1:hi' is not node[:priority], skipped",
        "HA rule bad-aff: affinity 'maybe' is not positive or negative, skipped",
        "HA rule flagged: PVE marks it invalid and does not apply it ({'nodes': 'gone'}); "
        "not enforced",
        "HA rule new: unknown type 'node-anti-affinity', skipped",
        "HA rules: entry without a rule name, skipped: {'type': 'node-affinity'}",
    ]


def test_a_pve_8_group_applies_to_the_resources_that_name_it():
    found = rules.from_groups(
        [
            {"group": "g1", "nodes": "pve1:1,pve2:2", "restricted": 0},
            {"group": "unused", "nodes": "pve3"},
        ],
        [{"sid": "vm:101", "group": "g1"}, {"sid": "ct:200", "group": "g1"}, {"sid": "vm:9"}],
    )
    assert [(r.name, r.vmids, r.nodes, r.strict) for r in found.node_rules] == [
        ("ha-group-g1", (101, 200), (("pve1", 1), ("pve2", 2)), False)
    ]


def test_maintenance_is_read_from_the_lrm_entries():
    status = [
        {"type": "quorum", "status": "OK"},
        {"type": "lrm", "node": "pve1", "status": "pve1 (active, Thu Nov 26 10:00:00 2026)"},
        {"type": "lrm", "node": "pve2", "status": "pve2 (maintenance mode, Thu Nov 26 2026)"},
        {"type": "lrm", "node": "pve3", "status": "pve3 (idle)", "mode": "maintenance"},
    ]
    assert rules.maintenance_nodes(status) == {"pve2", "pve3"}


def test_the_inventory_reports_problems_instead_of_failing():
    answers = {
        "cluster/resources": [NODE, vm(100), vm(101, maxcpu=[2])],
        "cluster/ha/status/current": [],
        "cluster/ha/rules": [{"rule": "r", "type": "other"}],
        "nodes/pve1/time": {"time": TS, "localtime": TS, "timezone": "UTC"},
    }
    inv = fake_gateway(answers).inventory()
    assert [g.vmid for g in inv.guests] == [100]
    assert inv.problems == (
        "guest 101: field maxcpu has non-numeric value [2], guest skipped",
        "HA rule r: unknown type 'other', skipped",
    )
