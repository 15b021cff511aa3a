"""Injected faults seen through the API: dead nodes, lost quorum, errors, latency.

Facts §1.4 and §4.3. Faults are set with the simulator's control API, as a test of proxflow
would set them.
"""

from __future__ import annotations

import time

import pytest
from proxmoxer import ResourceException

from tests.conftest import Control, password_client, token_client
from tests.pvesim.api_support import raw

NODE_STATS = ("cpu", "mem", "disk", "uptime")
GUEST_STATS = ("cpu", "mem", "netin", "netout", "diskread", "diskwrite", "memhost")
ON_PVE2 = {"qemu/102", "qemu/103", "lxc/201"}


def by_id(items):
    return {item["id"]: item for item in items}


def set_faults(control: Control, **faults):
    """POST /_sim/faults; `Control.post` cannot pass the faults' `path` field (its own argument)."""
    r = control.session.post(
        f"{control.base}/faults", json=faults, timeout=10, verify=control.verify
    )
    r.raise_for_status()
    return r.json()["data"]


def resources(pve, kind):
    return by_id(pve.cluster.resources.get(type=kind))


# -- a node goes down --------------------------------------------------------------------------


def test_calls_proxied_to_an_offline_node_answer_595_no_route_to_host(pve, control):
    control.post("nodes/pve2/offline")
    for call in (
        pve.nodes("pve2").status.get,
        pve.nodes("pve2").qemu.get,
        pve.nodes("pve2").qemu(102).status.current.get,
        lambda: pve.nodes("pve2").qemu(102).migrate.post(target="pve1", online=1),
    ):
        with pytest.raises(ResourceException) as exc:
            call()
        assert exc.value.status_code == 595
        assert exc.value.content == "No route to host"
        assert exc.value.errors == {"errors": b""}
        assert exc.value.status_message.startswith("Errors during connection establishment")


def test_the_595_has_an_empty_body(sim, control):
    control.post("nodes/pve2/offline")
    r = raw(sim, "GET", "/nodes/pve2/status")
    assert (r.status_code, r.reason, r.content) == (595, "No route to host", b"")


def test_a_ticket_client_gets_the_same_595(sim, control):
    control.post("nodes/pve3/offline")
    with pytest.raises(ResourceException) as exc:
        password_client(sim).nodes("pve3").lxc.get()
    assert exc.value.status_code == 595


def test_other_nodes_keep_answering_while_one_is_offline(pve, control):
    control.post("nodes/pve2/offline")
    assert pve.nodes("pve1").status.get()["uptime"] > 0
    assert [v["vmid"] for v in pve.nodes("pve3").qemu.get()] == [104]


def test_cluster_status_shows_the_offline_node_with_online_0(pve, control):
    control.post("nodes/pve2/offline")
    nodes = {i["name"]: i for i in pve.cluster.status.get() if i["type"] == "node"}
    assert nodes["pve2"]["online"] == 0
    assert nodes["pve1"]["online"] == 1 and nodes["pve3"]["online"] == 1
    [cluster] = [i for i in pve.cluster.status.get() if i["type"] == "cluster"]
    assert cluster["quorate"] == 1  # two of three votes remain


def test_cluster_resources_shows_the_node_offline_without_usage_figures(pve, control):
    control.post("nodes/pve2/offline")
    node = resources(pve, "node")["node/pve2"]
    assert node["status"] == "offline"
    for key in NODE_STATS:
        assert key not in node, key
    assert node["maxcpu"] == 16  # capacity stays while the RRD entry is younger than 5 min
    assert "cpu" in resources(pve, "node")["node/pve1"]


def test_nodes_shows_the_offline_node_too(pve, control):
    control.post("nodes/pve2/offline")
    node = {n["node"]: n for n in pve.nodes.get()}["pve2"]
    assert node["status"] == "offline"
    assert "cpu" not in node and "mem" not in node


def test_guests_of_an_offline_node_keep_their_last_figures_for_under_5_minutes(pve, control):
    control.advance(5)  # go down between two pvestatd broadcasts
    before = resources(pve, "vm")
    control.post("nodes/pve2/offline")
    control.advance(250)
    after = resources(pve, "vm")
    for gid in ON_PVE2:
        assert after[gid]["status"] == "running"
        for key in GUEST_STATS:
            assert after[gid][key] == before[gid][key], (gid, key)


def test_guests_of_a_node_offline_for_over_5_minutes_show_status_unknown(pve, control):
    control.advance(5)
    control.post("nodes/pve2/offline")
    control.advance(301)
    guests = resources(pve, "vm")
    for gid in ON_PVE2:
        assert guests[gid]["status"] == "unknown", gid
        for key in GUEST_STATS:
            assert key not in guests[gid], (gid, key)
    assert guests["qemu/100"]["status"] == "running"
    node = resources(pve, "node")["node/pve2"]
    assert "maxcpu" not in node and "maxmem" not in node


def test_node_rrddata_is_not_proxied_and_has_holes_while_the_node_is_down(pve, control):
    control.post("nodes/pve2/offline")
    control.advance(600)
    items = pve.nodes("pve2").rrddata.get(timeframe="hour")
    assert all(set(i) == {"time"} for i in items[-9:])  # down for the last ten buckets
    assert "cpu" in items[0]


def test_a_node_back_online_answers_again_and_shows_figures(pve, control):
    control.post("nodes/pve2/offline")
    control.advance(400)
    control.post("nodes/pve2/online")
    status = pve.nodes("pve2").status.get()
    assert isinstance(status["cpu"], float)
    node = resources(pve, "node")["node/pve2"]
    assert node["status"] == "online"
    assert all(key in node for key in NODE_STATS)
    online = {i["name"]: i["online"] for i in pve.cluster.status.get() if i["type"] == "node"}
    assert online == {"pve1": 1, "pve2": 1, "pve3": 1}
    guests = resources(pve, "vm")
    for gid in ON_PVE2:
        assert guests[gid]["status"] == "running"
        assert "cpu" in guests[gid]


def test_the_595_can_be_delayed_like_a_slow_proxy_timeout(pve, control):
    set_faults(control, offline_delay=0.3)
    control.post("nodes/pve2/offline")
    started = time.perf_counter()
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve2").status.get()
    assert exc.value.status_code == 595
    assert time.perf_counter() - started >= 0.3


# -- quorum ----------------------------------------------------------------------------------------


def test_without_quorum_cluster_status_says_quorate_0(pve, control):
    control.post("quorum", quorate=0)
    [cluster] = [i for i in pve.cluster.status.get() if i["type"] == "cluster"]
    assert cluster["quorate"] == 0


def test_without_quorum_a_migration_is_refused_with_500(pve, control):
    control.post("quorum", quorate=0)
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert exc.value.status_code == 500
    assert exc.value.content == "cluster not ready - no quorum?"
    assert exc.value.errors is None
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve1").qemu(100).migrate.get()
    assert exc.value.content == "cluster not ready - no quorum?"


def test_without_quorum_reads_still_work(pve, control):
    control.post("quorum", quorate=0)
    assert len(pve.cluster.resources.get(type="vm")) == 9
    assert pve.nodes("pve1").status.get()["cpu"] >= 0


def test_quorum_regained_lets_migrations_through_again(pve, control):
    control.post("quorum", quorate=0)
    control.post("quorum", quorate=1)
    [cluster] = [i for i in pve.cluster.status.get() if i["type"] == "cluster"]
    assert cluster["quorate"] == 1
    upid = pve.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert ":qmigrate:100:" in upid


def test_losing_two_of_three_nodes_loses_quorum(pve, control):
    control.post("nodes/pve2/offline")
    control.post("nodes/pve3/offline")
    [cluster] = [i for i in pve.cluster.status.get() if i["type"] == "cluster"]
    assert cluster["quorate"] == 0


# -- injected errors and latency -------------------------------------------------------------------


def test_an_error_rate_of_1_fails_the_matching_path_with_the_configured_answer(pve, control):
    set_faults(
        control,
        error_rate=1.0,
        error_code=503,
        error_message="service unavailable (simulated)",
        path="^/cluster/resources",
    )
    for _ in range(3):
        with pytest.raises(ResourceException) as exc:
            pve.cluster.resources.get(type="vm")
        assert exc.value.status_code == 503
        assert exc.value.content == "service unavailable (simulated)"
    assert pve.version.get()["release"] == "9.1"
    assert pve.nodes("pve1").status.get()["cpu"] >= 0
    assert len(pve.cluster.status.get()) == 4


def test_an_injected_error_has_pve_s_error_body(sim, control):
    set_faults(control, error_rate=1.0, error_code=500, error_message="boom", path="^/version$")
    r = raw(sim, "GET", "/version")
    assert (r.status_code, r.reason) == (500, "boom")
    assert r.json() == {"data": None, "message": "boom\n"}


def test_clearing_the_faults_restores_the_path(pve, control):
    set_faults(control, error_rate=1.0, error_code=502, path="^/cluster/resources")
    with pytest.raises(ResourceException):
        pve.cluster.resources.get()
    control.delete("faults")
    assert pve.cluster.resources.get(type="node")
    assert control.get("faults")["error_rate"] == 0.0


def test_an_error_rate_without_a_path_hits_every_api_call_but_not_the_control_api(pve, control):
    set_faults(control, error_rate=1.0, error_code=500, error_message="chaos")
    for call in (pve.version.get, pve.nodes.get, pve.cluster.status.get):
        with pytest.raises(ResourceException) as exc:
            call()
        assert exc.value.content == "chaos"
    assert control.get("faults")["error_rate"] == 1.0


def test_bad_credentials_are_still_refused_before_any_injected_error(sim, control):
    set_faults(control, error_rate=1.0, error_code=500)
    r = raw(sim, "GET", "/version", headers={"Authorization": "PVEAPIToken=root@pam!x=y"})
    assert r.status_code == 401


def test_injected_latency_slows_every_api_call(pve, control):
    set_faults(control, latency=0.3)
    for call in (pve.version.get, lambda: pve.cluster.resources.get(type="node")):
        started = time.perf_counter()
        call()
        assert time.perf_counter() - started >= 0.3
    control.delete("faults")
    assert control.get("faults")["latency"] == 0.0
    assert pve.version.get()["release"] == "9.1"


def test_faults_are_reported_back_by_the_control_api(control):
    state = set_faults(control, error_rate=0.5, error_code=504, path="^/nodes", latency=0.1)
    assert state == control.get("faults")
    assert state["error_rate"] == 0.5 and state["error_code"] == 504
    assert state["path"] == "^/nodes" and state["latency"] == 0.1


def test_a_half_error_rate_fails_some_calls_and_not_others(sim, control):
    set_faults(control, error_rate=0.5, error_code=500, path="^/version$")
    pve = token_client(sim)
    outcomes = []
    for _ in range(40):
        try:
            pve.version.get()
            outcomes.append(True)
        except ResourceException:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 40
