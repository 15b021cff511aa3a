"""Every endpoint proxflow reads answers with PVE's shape, types and units (facts §1, §3, §4)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from tests.conftest import Control, password_client, token_client
from tests.pvesim.api_support import GUEST_SOURCES_9, NODE_SOURCES_9, raw, running_sim

START = 1_795_000_000  # the small scenario's simulated epoch
GIB = 1024**3
NODES = ("pve1", "pve2", "pve3")
TAG = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$")
FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
UPID = re.compile(
    r"^UPID:[a-zA-Z0-9-]+:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$"
)
GUEST_STATS = ("cpu", "mem", "netin", "netout", "diskread", "diskwrite", "memhost")


@pytest.fixture(scope="module")
def shared_sim():
    """One simulator for the tests that only read; its clock stays at the scenario start."""
    with running_sim() as sim:
        yield sim


@pytest.fixture(scope="module")
def pve(shared_sim):
    return token_client(shared_sim)


@pytest.fixture(scope="module")
def clients(shared_sim):
    return {"token": token_client(shared_sim), "password": password_client(shared_sim)}


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


def expect_error(call, status: int, message: str) -> ResourceException:
    with pytest.raises(ResourceException) as exc:
        call()
    assert exc.value.status_code == status
    assert exc.value.content == message
    return exc.value


# -- both ways in, every read endpoint -----------------------------------------------------------

READ_PATHS = [
    ("version", {}),
    ("access/permissions", {}),
    ("cluster/status", {}),
    ("cluster/resources", {}),
    ("cluster/options", {}),
    ("cluster/tasks", {}),
    ("nodes", {}),
    ("nodes/pve1/status", {}),
    ("nodes/pve1/version", {}),
    ("nodes/pve1/rrddata", {"timeframe": "hour"}),
    ("nodes/pve1/storage", {}),
    ("nodes/pve1/qemu", {}),
    ("nodes/pve3/lxc", {}),
    ("nodes/pve1/tasks", {}),
    ("nodes/pve1/qemu/100/status/current", {}),
    ("nodes/pve1/qemu/100/config", {}),
    ("nodes/pve1/qemu/100/rrddata", {"timeframe": "hour"}),
    ("nodes/pve1/qemu/100/migrate", {}),
    ("nodes/pve3/lxc/200/status/current", {}),
    ("nodes/pve3/lxc/200/config", {}),
    ("nodes/pve3/lxc/200/rrddata", {"timeframe": "hour"}),
    ("nodes/pve3/lxc/200/migrate", {}),
    ("cluster/ha/resources", {}),
    ("cluster/ha/rules", {}),
    ("cluster/ha/status/current", {}),
    ("cluster/ha/status/manager_status", {}),
    ("pools", {}),
    ("pools/prod", {}),
]


def test_every_read_endpoint_answers_a_ticket_client_as_it_answers_a_token_client(clients):
    for path, params in READ_PATHS:
        by_token = clients["token"](path).get(**params)
        assert by_token is not None, path
        assert clients["password"](path).get(**params) == by_token, path


def test_answers_carry_pve_s_envelope_content_type_and_server_header(shared_sim):
    r = raw(shared_sim, "GET", "/version")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert r.headers["Server"].startswith("pve-api-daemon/3.0")
    assert set(r.json()) == {"data"}


def test_large_answers_are_gzip_compressed_when_the_client_accepts_it(shared_sim):
    r = raw(shared_sim, "GET", "/cluster/resources", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip"
    assert r.json()["data"]


# -- /version, /cluster -------------------------------------------------------------------------


def test_version_names_the_release_and_the_full_version(pve):
    v = pve.version.get()
    assert set(v) == {"version", "release", "repoid"}
    assert v["release"] == "9.1"
    assert v["version"].startswith("9.1.")
    assert re.fullmatch(r"[0-9a-f]{16}", v["repoid"])


def test_cluster_status_has_one_cluster_entry_and_one_entry_per_node(pve):
    items = pve.cluster.status.get()
    clusters = [i for i in items if i["type"] == "cluster"]
    nodes = [i for i in items if i["type"] == "node"]
    assert len(clusters) == 1
    cluster = clusters[0]
    assert cluster["id"] == "cluster"
    assert cluster["name"] == "small"
    assert cluster["nodes"] == 3
    assert cluster["quorate"] == 1
    assert isinstance(cluster["version"], int)
    assert [n["name"] for n in nodes] == list(NODES)
    for n in nodes:
        assert n["id"] == f"node/{n['name']}"
        assert isinstance(n["nodeid"], int) and n["nodeid"] >= 1
        assert isinstance(n["ip"], str)
        assert n["online"] == 1
        assert n["local"] in (0, 1)
        assert n["level"] == ""
    assert sum(n["local"] for n in nodes) == 1


def test_cluster_resources_without_type_lists_nodes_guests_storage_and_pools(pve):
    types = {r["type"] for r in pve.cluster.resources.get()}
    assert {"node", "qemu", "lxc", "storage", "pool"} <= types


@pytest.mark.parametrize(
    ("kind", "types"),
    [("vm", {"qemu", "lxc"}), ("node", {"node"}), ("storage", {"storage"})],
)
def test_cluster_resources_filters_by_type(pve, kind, types):
    items = pve.cluster.resources.get(type=kind)
    assert items
    assert {r["type"] for r in items} == types


def test_cluster_resources_guests_have_pve_s_fields_and_types(pve):
    guests = by_id(pve.cluster.resources.get(type="vm"))
    assert set(guests) == {
        "qemu/100",
        "qemu/101",
        "qemu/102",
        "qemu/103",
        "qemu/104",
        "qemu/105",
        "qemu/106",
        "lxc/200",
        "lxc/201",
    }
    web = guests["qemu/100"]
    assert web["vmid"] == 100 and web["name"] == "web01" and web["node"] == "pve1"
    assert web["status"] == "running"
    assert web["template"] == 0
    assert web["maxcpu"] == 2
    assert web["maxmem"] == 4 * GIB
    assert web["maxdisk"] == 32 * GIB
    assert web["disk"] == 0  # QEMU never reports in-guest disk usage
    assert isinstance(web["cpu"], float)
    for key in ("mem", "memhost", "maxmem", "uptime", "netin", "netout", "diskread", "diskwrite"):
        assert isinstance(web[key], int), key
    assert 0 < web["mem"] <= web["maxmem"]
    assert web["pool"] == "prod"
    assert "lock" not in web
    assert guests["lxc/200"]["disk"] > 0  # containers report rootfs usage
    assert guests["qemu/103"]["hastate"] == "started"
    assert "hastate" not in web


def test_guest_cpu_is_a_fraction_of_its_own_vcpus_and_adds_up_to_the_node_s_cpu(pve):
    resources = pve.cluster.resources.get()
    nodes = {r["node"]: r for r in resources if r["type"] == "node"}
    guests = [r for r in resources if r["type"] in ("qemu", "lxc") and r["status"] == "running"]
    for name, node in nodes.items():
        on_node = [g for g in guests if g["node"] == name]
        assert all(0.0 <= g["cpu"] <= 1.0 for g in on_node)
        guest_host_cpus = sum(g["cpu"] * g["maxcpu"] for g in on_node)
        node_host_cpus = node["cpu"] * node["maxcpu"]
        # the node's busy CPUs are its guests' (cpu × maxcpu) plus less than one CPU of host work
        assert guest_host_cpus <= node_host_cpus + 1e-3
        assert node_host_cpus - guest_host_cpus < 1.0


def test_cluster_resources_tags_are_lower_cased_sorted_and_semicolon_joined(pve):
    guests = by_id(pve.cluster.resources.get(type="vm"))
    assert guests["qemu/100"]["tags"] == "plb_anti_affinity_web;prod"  # configured "Prod"
    assert guests["lxc/200"]["tags"] == "plb_pin_pve3"
    assert "tags" not in guests["qemu/102"]
    for g in guests.values():
        if "tags" in g:
            parts = g["tags"].split(";")
            assert parts == sorted(set(parts))
            assert all(TAG.match(t) for t in parts)


def test_a_stopped_guest_has_no_cpu_or_memory_figures_and_zero_uptime(pve):
    stopped = by_id(pve.cluster.resources.get(type="vm"))["qemu/106"]
    assert stopped["status"] == "stopped"
    assert stopped["uptime"] == 0
    for key in GUEST_STATS:
        assert key not in stopped, key
    assert stopped["maxcpu"] == 1 and stopped["maxmem"] == 2 * GIB


def test_cluster_resources_nodes_have_capacity_and_usage(pve):
    for node in pve.cluster.resources.get(type="node"):
        assert node["id"] == f"node/{node['node']}"
        assert node["status"] == "online"
        assert node["maxcpu"] == 16
        assert node["maxmem"] == 64 * GIB
        assert isinstance(node["cpu"], float) and 0 < node["cpu"] <= 1
        assert isinstance(node["mem"], int) and 0 < node["mem"] < node["maxmem"]
        assert isinstance(node["disk"], int) and isinstance(node["maxdisk"], int)
        assert isinstance(node["uptime"], int)
        assert node["hastate"] == "online"


def test_cluster_resources_storage_entries_are_per_node(pve):
    storages = by_id(pve.cluster.resources.get(type="storage"))
    ceph = storages["storage/pve1/ceph-vm"]
    assert ceph["plugintype"] == "rbd" and ceph["shared"] == 1
    assert ceph["status"] == "available"
    assert isinstance(ceph["disk"], int) and ceph["maxdisk"] == 4 * 1024 * GIB
    assert storages["storage/pve1/local-lvm"]["shared"] == 0
    assert "storage/pve3/local-zfs" not in storages  # local-zfs exists on pve1 and pve2 only
    assert "storage/pve2/local-zfs" in storages


def test_cluster_options_show_the_migration_settings(pve):
    options = pve.cluster.options.get()
    assert options["migration"]["type"] in ("secure", "insecure")
    assert isinstance(options["max_workers"], int)


# -- /nodes ------------------------------------------------------------------------------------


def test_nodes_lists_every_node_with_stats_and_the_certificate_fingerprint(pve):
    nodes = pve.nodes.get()
    assert [n["node"] for n in nodes] == list(NODES)
    for n in nodes:
        assert n["type"] == "node" and n["status"] == "online" and n["level"] == ""
        assert n["maxcpu"] == 16 and n["maxmem"] == 64 * GIB
        assert isinstance(n["cpu"], float) and isinstance(n["mem"], int)
        assert isinstance(n["uptime"], int)
        assert FINGERPRINT.match(n["ssl_fingerprint"])


def test_node_status_has_string_loadavg_and_consistent_memory(pve):
    s = pve.nodes("pve1").status.get()
    assert len(s["loadavg"]) == 3
    assert all(isinstance(x, str) for x in s["loadavg"])
    assert all(float(x) >= 0 for x in s["loadavg"])
    assert s["idle"] == 0
    assert isinstance(s["cpu"], float) and 0 <= s["cpu"] <= 1
    assert isinstance(s["wait"], float)
    mem = s["memory"]
    assert mem["total"] == 64 * GIB
    assert mem["used"] == mem["total"] - mem["available"]
    assert s["cpuinfo"]["cpus"] == 16 and s["cpuinfo"]["cores"] == 8
    assert s["cpuinfo"]["sockets"] == 1
    assert s["pveversion"].startswith("pve-manager/9.1.")
    assert isinstance(s["uptime"], int)
    assert set(s["rootfs"]) >= {"total", "used", "avail", "free"}
    assert s["current-kernel"]["sysname"] == "Linux"


def test_node_status_cpu_matches_cluster_resources(pve):
    nodes = by_id(pve.cluster.resources.get(type="node"))
    for name in NODES:
        status = pve.nodes(name).status.get()
        assert status["cpu"] == nodes[f"node/{name}"]["cpu"]
        assert status["memory"]["used"] == nodes[f"node/{name}"]["mem"]


def test_node_version_is_the_cluster_version(pve):
    assert pve.nodes("pve2").version.get() == pve.version.get()


# -- rrddata -----------------------------------------------------------------------------------


def assert_series(items: list[dict[str, Any]], step: int, rows: int) -> None:
    assert len(items) == rows
    times = [i["time"] for i in items]
    assert all(isinstance(t, int) and t % step == 0 for t in times)
    assert all(b - a == step for a, b in itertools.pairwise(times))
    assert times[-1] <= START


def test_node_rrddata_hour_is_60_points_60_seconds_apart_with_float_values(pve):
    items = pve.nodes("pve1").rrddata.get(timeframe="hour")
    assert_series(items, 60, 60)
    for item in items:
        assert set(item) == NODE_SOURCES_9 | {"time"}
        assert all(isinstance(v, float) for k, v in item.items() if k != "time")
    assert items[-1]["maxcpu"] == 16.0
    assert items[-1]["memtotal"] == float(64 * GIB)


@pytest.mark.parametrize(
    ("timeframe", "step", "rows"),
    [
        ("day", 60, 1440),
        ("week", 1800, 336),
        ("month", 1800, 1440),
        ("year", 21600, 1440),
        ("decade", 604800, 570),
    ],
)
def test_node_rrddata_resolution_follows_pve_9(pve, timeframe, step, rows):
    assert_series(pve.nodes("pve2").rrddata.get(timeframe=timeframe), step, rows)


@pytest.mark.parametrize("timeframe", ["hour", "week"])
def test_node_rrddata_max_is_never_below_average(pve, timeframe):
    avg = pve.nodes("pve1").rrddata.get(timeframe=timeframe)
    peak = pve.nodes("pve1").rrddata.get(timeframe=timeframe, cf="MAX")
    assert [i["time"] for i in avg] == [i["time"] for i in peak]
    for a, m in zip(avg, peak, strict=True):
        assert set(a) == set(m)
        for key in a:
            assert m[key] >= a[key] - 1e-9 * max(1.0, abs(a[key])), (a["time"], key)


def test_guest_rrddata_max_is_never_below_average(pve):
    avg = pve.nodes("pve1").qemu(100).rrddata.get(timeframe="week")
    peak = pve.nodes("pve1").qemu(100).rrddata.get(timeframe="week", cf="MAX")
    for a, m in zip(avg, peak, strict=True):
        for key in a:
            assert m[key] >= a[key] - 1e-9 * max(1.0, abs(a[key])), (a["time"], key)


def test_node_rrddata_averages_track_the_live_figures(pve):
    live = by_id(pve.cluster.resources.get(type="node"))["node/pve1"]
    last = pve.nodes("pve1").rrddata.get(timeframe="hour")[-1]
    assert last["cpu"] == pytest.approx(live["cpu"], abs=0.1)
    assert last["memused"] == pytest.approx(live["mem"], rel=0.1)


@pytest.mark.parametrize(("kind", "node", "vmid"), [("qemu", "pve1", 100), ("lxc", "pve3", 200)])
def test_guest_rrddata_hour_has_guest_sources_in_bytes_per_second(pve, kind, node, vmid):
    api = pve.nodes(node)(kind)(vmid)
    items = api.rrddata.get(timeframe="hour")
    assert_series(items, 60, 60)
    last = items[-1]
    assert set(last) == GUEST_SOURCES_9 | {"time"}
    assert all(isinstance(v, float) for k, v in last.items() if k != "time")
    live = api.status.current.get()
    assert last["maxcpu"] == float(live["cpus"])
    assert last["maxmem"] == float(live["maxmem"])


def test_guest_rrddata_day_has_the_same_resolution_as_the_node_s(pve):
    assert_series(pve.nodes("pve1").qemu(101).rrddata.get(timeframe="day"), 60, 1440)


def test_a_stopped_guest_s_rrddata_has_no_cpu_or_memory_values(pve):
    items = pve.nodes("pve1").qemu(106).rrddata.get(timeframe="hour")
    assert items
    assert not any("cpu" in i or "mem" in i for i in items)


# -- storage, guest lists ----------------------------------------------------------------------


def test_node_storage_lists_the_storages_present_on_the_node(pve):
    on_pve1 = {s["storage"]: s for s in pve.nodes("pve1").storage.get()}
    on_pve3 = {s["storage"] for s in pve.nodes("pve3").storage.get()}
    assert set(on_pve1) == {"ceph-vm", "local-lvm", "local-zfs"}
    assert on_pve3 == {"ceph-vm", "local-lvm"}
    ceph = on_pve1["ceph-vm"]
    assert ceph["type"] == "rbd" and ceph["shared"] == 1 and ceph["active"] == 1
    assert ceph["total"] == ceph["used"] + ceph["avail"]
    assert all(isinstance(ceph[k], int) for k in ("total", "used", "avail"))


def test_node_qemu_lists_the_node_s_vms_with_cpus_and_byte_figures(pve):
    vms = {v["vmid"]: v for v in pve.nodes("pve1").qemu.get()}
    assert set(vms) == {100, 101, 105, 106}
    web = vms[100]
    assert web["name"] == "web01" and web["status"] == "running"
    assert web["cpus"] == 2 and web["maxmem"] == 4 * GIB
    assert isinstance(web["cpu"], float)
    assert isinstance(web["mem"], int) and isinstance(web["memhost"], int)
    assert isinstance(web["pid"], int)
    assert web["tags"] == "plb_anti_affinity_web;prod"
    assert vms[106]["status"] == "stopped"
    assert vms[106]["uptime"] == 0


def test_node_lxc_lists_the_node_s_containers(pve):
    cts = pve.nodes("pve3").lxc.get()
    assert [c["vmid"] for c in cts] == [200]
    ct = cts[0]
    assert ct["type"] == "lxc" and ct["status"] == "running"
    assert ct["cpus"] == 1 and ct["maxmem"] == GIB
    assert isinstance(ct["maxswap"], int) and ct["disk"] > 0
    assert pve.nodes("pve1").lxc.get() == []


# -- one guest ---------------------------------------------------------------------------------


def test_qemu_status_current_has_qmp_status_agent_and_ha_state(pve):
    s = pve.nodes("pve1").qemu(100).status.current.get()
    assert s["vmid"] == 100 and s["status"] == "running" and s["qmpstatus"] == "running"
    assert s["cpus"] == 2 and s["maxmem"] == 4 * GIB
    assert isinstance(s["cpu"], float) and isinstance(s["mem"], int)
    assert s["ha"] == {"managed": 0}
    assert s["agent"] == 1
    ha = pve.nodes("pve2").qemu(103).status.current.get()
    assert ha["ha"] == {"managed": 1, "state": "started"}


def test_status_current_agrees_with_cluster_resources(pve):
    live = by_id(pve.cluster.resources.get(type="vm"))["qemu/102"]
    s = pve.nodes("pve2").qemu(102).status.current.get()
    assert (s["cpu"], s["mem"], s["maxmem"]) == (live["cpu"], live["mem"], live["maxmem"])


def test_lxc_status_current_has_the_container_figures(pve):
    s = pve.nodes("pve3").lxc(200).status.current.get()
    assert s["vmid"] == 200 and s["status"] == "running" and s["type"] == "lxc"
    assert s["cpus"] == 1 and s["maxmem"] == GIB
    assert s["ha"] == {"managed": 0}
    ha = pve.nodes("pve2").lxc(201).status.current.get()
    assert ha["ha"]["managed"] == 1


def test_qemu_config_memory_is_a_string_and_devices_are_listed(pve):
    config = pve.nodes("pve1").qemu(100).config.get()
    assert config["memory"] == "4096"
    assert config["cores"] == 2 and config["sockets"] == 1
    assert config["name"] == "web01"
    assert config["tags"] == "plb_anti_affinity_web;prod"
    assert config["scsi0"].startswith("ceph-vm:vm-100-disk-0,")
    assert re.fullmatch(r"[0-9a-f]{40}", config["digest"])
    assert "lock" not in config
    gpu = pve.nodes("pve3").qemu(104).config.get()
    assert gpu["hostpci0"] == "0000:41:00.0,pcie=1"


def test_lxc_config_memory_is_an_integer(pve):
    config = pve.nodes("pve3").lxc(200).config.get()
    assert config["memory"] == 1024
    assert isinstance(config["swap"], int)
    assert config["hostname"] == "dns1"
    assert config["rootfs"].startswith("ceph-vm:")
    assert re.fullmatch(r"[0-9a-f]{40}", config["digest"])


def test_qemu_migrate_precondition_uses_underscored_keys(pve):
    pre = pve.nodes("pve1").qemu(100).migrate.get()
    assert pre["running"] == 1
    assert pre["allowed_nodes"] == ["pve2", "pve3"]
    assert pre["not_allowed_nodes"] == {}
    assert pre["local_disks"] == []
    assert pre["local_resources"] == []
    assert "allowed-nodes" not in pre


def test_qemu_migrate_precondition_lists_passthrough_devices_as_local_resources(pve):
    pre = pve.nodes("pve3").qemu(104).migrate.get()
    assert pre["local_resources"] == ["hostpci0"]


def test_qemu_migrate_precondition_lists_the_local_lvm_disk(pve):
    pre = pve.nodes("pve1").qemu(105).migrate.get()
    [disk] = pre["local_disks"]
    assert disk["volid"] == "local-lvm:vm-105-disk-0"
    assert disk["size"] == 40 * GIB
    assert disk["drivename"] == "scsi0"
    assert disk["cdrom"] == 0 and disk["is_attached"] == 1


def test_qemu_migrate_precondition_refuses_nodes_without_the_guest_s_storage(pve):
    pre = pve.nodes("pve1").qemu(106).migrate.get()
    assert pre["running"] == 0
    assert pre["allowed_nodes"] == ["pve2"]
    assert pre["not_allowed_nodes"] == {"pve3": {"unavailable_storages": ["local-zfs"]}}


def test_lxc_migrate_precondition_uses_dashed_keys(pve):
    pre = pve.nodes("pve3").lxc(200).migrate.get()
    assert pre["running"] == 1
    assert pre["allowed-nodes"] == ["pve1", "pve2"]
    assert "allowed_nodes" not in pre and "local_disks" not in pre


def test_a_qemu_guest_addressed_under_the_wrong_node_is_a_500(pve):
    message = "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"
    expect_error(pve.nodes("pve2").qemu(100).status.current.get, 500, message)
    expect_error(pve.nodes("pve2").qemu(100).config.get, 500, message)
    expect_error(lambda: pve.nodes("pve2").qemu(100).rrddata.get(timeframe="hour"), 500, message)
    expect_error(pve.nodes("pve2").qemu(100).migrate.get, 500, message)


def test_a_container_addressed_under_the_wrong_node_is_a_500(pve):
    expect_error(
        pve.nodes("pve1").lxc(200).status.current.get,
        500,
        "Configuration file 'nodes/pve1/lxc/200.conf' does not exist",
    )


def test_a_vm_addressed_as_a_container_is_a_500(pve):
    expect_error(
        pve.nodes("pve1").lxc(100).config.get,
        500,
        "Configuration file 'nodes/pve1/lxc/100.conf' does not exist",
    )


def test_the_500_body_carries_the_message_and_a_newline(shared_sim):
    r = raw(shared_sim, "GET", "/nodes/pve2/qemu/100/status/current")
    assert r.status_code == 500
    assert r.reason == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"
    assert r.json() == {
        "data": None,
        "message": "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist\n",
    }


def test_an_unknown_path_is_501_not_implemented(pve, shared_sim):
    expect_error(pve.nosuch.get, 501, "Method 'GET /nosuch' not implemented")
    expect_error(
        pve.nodes("pve1").nosuch.get, 501, "Method 'GET /nodes/pve1/nosuch' not implemented"
    )
    r = raw(shared_sim, "DELETE", "/version")
    assert (r.status_code, r.reason) == (501, "Method 'DELETE /version' not implemented")


def test_an_unknown_node_is_a_hostname_lookup_failure(pve):
    exc = expect_error(
        pve.nodes("pve9").status.get,
        500,
        "hostname lookup 'pve9' failed - failed to get address info for: pve9: "
        "Name or service not known",
    )
    assert exc.errors is None


# -- HA, pools -----------------------------------------------------------------------------------


def test_ha_resources_list_the_configured_resources_without_groups_in_pve_9(pve):
    items = {r["sid"]: r for r in pve.cluster.ha.resources.get()}
    assert set(items) == {"vm:103", "ct:201"}
    vm = items["vm:103"]
    assert vm["type"] == "vm" and vm["state"] == "started"
    assert "group" not in vm
    assert isinstance(vm["digest"], str)
    assert [r["sid"] for r in pve.cluster.ha.resources.get(type="ct")] == ["ct:201"]


def test_one_ha_resource_is_found_by_sid_or_bare_vmid(pve):
    assert pve.cluster.ha.resources("vm:103").get()["sid"] == "vm:103"
    assert pve.cluster.ha.resources("103").get()["sid"] == "vm:103"
    expect_error(pve.cluster.ha.resources("vm:999").get, 500, "no such resource 'vm:999'")


def test_ha_groups_fail_in_pve_9_because_they_became_rules(pve):
    expect_error(
        pve.cluster.ha.groups.get, 500, "cannot index groups: ha groups have been migrated to rules"
    )


def test_ha_rules_list_affinity_rules_and_the_rule_made_from_the_legacy_group(pve):
    rules = {r["rule"]: r for r in pve.cluster.ha.rules.get()}
    assert set(rules) == {"app-on-pve2", "app-apart-from-ct", "ha-group-prefer-pve2"}
    node = rules["app-on-pve2"]
    assert node["type"] == "node-affinity"
    assert node["resources"] == "vm:103"
    assert node["nodes"] == "pve2:2,pve3:1"
    assert node["strict"] == 1
    apart = rules["app-apart-from-ct"]
    assert apart["type"] == "resource-affinity"
    assert apart["resources"] == "ct:201,vm:103"  # comma-joined, sorted
    assert apart["affinity"] == "negative"
    assert "strict" not in apart and "disable" not in apart
    legacy = rules["ha-group-prefer-pve2"]
    assert legacy["comment"] == "Generated from HA group 'prefer-pve2'."
    assert sorted(r["order"] for r in rules.values()) == [1, 2, 3]
    only = pve.cluster.ha.rules.get(type="resource-affinity")
    assert [r["rule"] for r in only] == ["app-apart-from-ct"]
    assert {r["rule"] for r in pve.cluster.ha.rules.get(resource="ct:201")} == {"app-apart-from-ct"}


def test_ha_status_current_reports_quorum_master_lrms_and_services(pve):
    items = pve.cluster.ha.status.current.get()
    kinds = [i["type"] for i in items]
    assert kinds.count("quorum") == 1 and kinds.count("master") == 1
    assert kinds.count("lrm") == 3 and kinds.count("service") == 2
    assert all(isinstance(i["id"], str) and isinstance(i["status"], str) for i in items)
    quorum = next(i for i in items if i["type"] == "quorum")
    assert quorum["status"] == "OK" and quorum["quorate"] == 1
    services = {i["sid"]: i for i in items if i["type"] == "service"}
    vm = services["vm:103"]
    assert vm["id"] == "service:vm:103"
    assert vm["node"] == "pve2"
    assert vm["state"] == "started" and vm["crm_state"] == "started"
    assert vm["request_state"] == "started"
    assert vm["status"] == "vm:103 (pve2, started)"
    assert vm["max_restart"] == 1 and vm["max_relocate"] == 1
    assert vm["failback"] == 1


def test_ha_status_current_has_a_fencing_entry_in_pve_9(pve):
    [fencing] = [i for i in pve.cluster.ha.status.current.get() if i["type"] == "fencing"]
    assert fencing["id"] == "fencing"
    assert fencing["armed-state"] == "armed"


def test_ha_manager_status_has_the_manager_quorum_and_lrm_parts(pve):
    status = pve.cluster.ha.status.manager_status.get()
    assert set(status) >= {"manager_status", "quorum", "lrm_status"}
    manager = status["manager_status"]
    assert manager["master_node"] in NODES
    assert set(manager["node_status"]) == set(NODES)
    assert manager["service_status"]["vm:103"]["node"] == "pve2"
    assert set(status["lrm_status"]) == set(NODES)


def test_pools_list_the_pools_and_a_pool_lists_its_members(pve):
    assert pve.pools.get() == [{"poolid": "prod", "comment": "production"}]
    pool = pve.pools("prod").get()
    assert pool["comment"] == "production"
    assert [m["id"] for m in pool["members"]] == ["qemu/100", "qemu/101"]
    member = pool["members"][0]
    assert member["type"] == "qemu" and member["node"] == "pve1" and member["pool"] == "prod"
    expect_error(pve.pools("nosuch").get, 500, "pool 'nosuch' does not exist")


# -- tasks ---------------------------------------------------------------------------------------


def test_a_migration_task_runs_then_stops_ok_and_its_log_grows(sim):
    pve, control = token_client(sim), Control(sim)
    upid = pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert UPID.match(upid)
    assert len(upid.split(":")) == 9
    task = pve.nodes("pve1").tasks(upid)
    running = task.status.get()
    assert running["status"] == "running"
    assert "exitstatus" not in running
    early = task.log.get()
    assert [line["n"] for line in early] == list(range(1, len(early) + 1))
    assert "starting migration of VM 100 to node 'pve2'" in early[0]["t"]
    assert [t["upid"] for t in pve.nodes("pve1").tasks.get(source="active")] == [upid]
    assert pve.nodes("pve1").tasks.get() == []  # the archive holds finished tasks only
    control.advance(120)
    done = task.status.get()
    assert done["status"] == "stopped" and done["exitstatus"] == "OK"
    assert task.log.get(limit=0)[-1]["t"] == "TASK OK"
    assert pve.nodes("pve1").tasks.get(source="active") == []


def test_an_ha_guest_s_migration_is_a_hamigrate_task_whose_fresh_log_says_no_content(sim):
    pve, control = token_client(sim), Control(sim)
    upid = pve.nodes("pve2").qemu(103).migrate.post(target="pve3", online=1)
    assert upid.endswith(":hamigrate:103:root@pam!proxflow:")
    task = pve.nodes("pve2").tasks(upid)
    assert task.log.get() == [{"n": 1, "t": "no content"}]
    control.advance(5)
    assert task.status.get()["exitstatus"] == "OK"
    assert task.log.get()[-1] == {"n": 2, "t": "TASK OK"}


def test_task_status_splits_a_token_user_into_user_and_tokenid(sim):
    pve = token_client(sim)
    upid = pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.endswith(":qmigrate:100:root@pam!proxflow:")
    status = pve.nodes("pve1").tasks(upid).status.get()
    assert status["upid"] == upid
    assert status["node"] == "pve1"
    assert status["type"] == "qmigrate"
    assert status["id"] == "100"
    assert status["user"] == "root@pam"
    assert status["tokenid"] == "proxflow"
    assert all(isinstance(status[k], int) for k in ("pid", "pstart", "starttime"))
    assert status["starttime"] == START
    decoded = Tasks.decode_upid(upid)
    assert (decoded["node"], decoded["type"], decoded["id"]) == ("pve1", "qmigrate", "100")
    assert (decoded["pid"], decoded["starttime"]) == (status["pid"], status["starttime"])


@pytest.fixture(scope="module")
def migrated():
    """Four migrations (three from pve1, one doomed from pve3), all finished 10 min later."""
    with running_sim() as sim:
        pve, control = token_client(sim), Control(sim)
        upids = {100: pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)}
        control.advance(60)
        upids[101] = pve.nodes("pve1").qemu(101).migrate.post(target="pve3", online=1)
        upids[106] = pve.nodes("pve1").qemu(106).migrate.post(target="pve2")
        upids[104] = pve.nodes("pve3").qemu(104).migrate.post(target="pve1", online=1)
        control.advance(600)
        yield sim, pve, upids


def test_the_task_list_shows_finished_tasks_newest_first(migrated):
    _, pve, _ = migrated
    r = pve.nodes("pve1").tasks.get()
    assert [t["id"] for t in r] == ["106", "101", "100"]
    for t in r:
        assert UPID.match(t["upid"])
        assert t["node"] == "pve1" and t["type"] == "qmigrate"
        assert t["user"] == "root@pam" and t["tokenid"] == "proxflow"
        assert t["status"] == "OK"
        assert isinstance(t["endtime"], int) and t["endtime"] >= t["starttime"]


def test_the_task_list_and_the_task_log_report_total_beside_data(migrated):
    sim, _, upids = migrated
    listed = raw(sim, "GET", "/nodes/pve1/tasks", params={"limit": 1}).json()
    assert len(listed["data"]) == 1
    assert listed["total"] == 3
    log = raw(sim, "GET", f"/nodes/pve1/tasks/{upids[100]}/log", params={"limit": 2}).json()
    assert len(log["data"]) == 2
    assert log["total"] > 2


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"typefilter": "qmigrate"}, ["106", "101", "100"]),
        ({"typefilter": "hamigrate"}, []),
        ({"vmid": 100}, ["100"]),
        ({"since": START + 30}, ["106", "101"]),
        ({"until": START + 30}, ["100"]),
        ({"start": 1, "limit": 1}, ["101"]),
        ({"limit": 2}, ["106", "101"]),
        ({"source": "all"}, ["106", "101", "100"]),
        ({"source": "active"}, []),
        ({"userfilter": "root@pam"}, ["106", "101", "100"]),
        ({"errors": 1}, []),
    ],
)
def test_the_task_list_filters(migrated, params, ids):
    _, pve, _ = migrated
    assert [t["id"] for t in pve.nodes("pve1").tasks.get(**params)] == ids


def test_a_failed_task_is_listed_with_its_error_and_found_by_the_errors_filter(migrated):
    _, pve, upids = migrated
    [failed] = pve.nodes("pve3").tasks.get(errors=1)
    assert failed["upid"] == upids[104]
    assert failed["status"] == "migration aborted"
    status = pve.nodes("pve3").tasks(upids[104]).status.get()
    assert status["status"] == "stopped" and status["exitstatus"] == "migration aborted"
    log = [line["t"] for line in pve.nodes("pve3").tasks(upids[104]).log.get()]
    assert log[-1] == "TASK ERROR: migration aborted"
    assert any("can't migrate VM which uses local devices: hostpci0" in line for line in log)


def test_the_task_log_pages_with_start_and_limit(migrated):
    _, pve, upids = migrated
    log = pve.nodes("pve1").tasks(upids[100]).log
    everything = log.get(limit=0)
    assert len(everything) > 5
    assert [line["n"] for line in everything] == list(range(1, len(everything) + 1))
    assert everything[-1]["t"] == "TASK OK"
    assert "migration finished successfully" in everything[-2]["t"]
    page = log.get(start=2, limit=3)
    assert page == everything[2:5]
    assert [line["n"] for line in page] == [3, 4, 5]


def test_the_cluster_task_list_has_every_node_s_tasks(migrated):
    _, pve, upids = migrated
    listed = {t["upid"] for t in pve.cluster.tasks.get()}
    assert set(upids.values()) <= listed


def test_an_unknown_or_malformed_upid_is_a_400(migrated):
    _, pve, upids = migrated
    other_node = upids[104].replace("UPID:pve3:", "UPID:pve1:")
    exc = expect_error(
        pve.nodes("pve1").tasks(other_node).status.get, 400, "Parameter verification failed."
    )
    assert exc.errors == {"upid": "no such task"}
    exc = expect_error(
        pve.nodes("pve1").tasks("UPID:nonsense").status.get, 400, "Parameter verification failed."
    )
    assert exc.errors == {"upid": "unable to parse worker upid"}


def test_a_ticket_user_s_task_has_no_tokenid(sim):
    pve = password_client(sim)
    upid = pve.nodes("pve1").qemu(101).migrate.post(target="pve3", online=1)
    assert upid.endswith(":qmigrate:101:root@pam:")
    status = pve.nodes("pve1").tasks(upid).status.get()
    assert status["user"] == "root@pam"
    assert "tokenid" not in status
