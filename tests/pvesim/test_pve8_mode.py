"""`pve_version="8.4"`: the differences from 9.1 that proxflow must cope with (facts §4, §9)."""

from __future__ import annotations

import itertools

import pytest
from proxmoxer import ResourceException

from tests.conftest import password_client, token_client
from tests.pvesim.api_support import GUEST_SOURCES_8, NODE_SOURCES_8, running_sim


@pytest.fixture(scope="module")
def sim8():
    with running_sim(pve_version="8.4") as sim:
        yield sim


@pytest.fixture(scope="module")
def pve(sim8):
    return token_client(sim8)


def expect_error(call, status: int, message: str) -> None:
    with pytest.raises(ResourceException) as exc:
        call()
    assert exc.value.status_code == status
    assert exc.value.content == message


def test_the_version_is_8_4(pve):
    version = pve.version.get()
    assert version["release"] == "8.4"
    assert version["version"].startswith("8.4.")
    assert pve.nodes("pve1").version.get() == version
    assert pve.nodes("pve1").status.get()["pveversion"].startswith("pve-manager/8.4.")


def test_a_ticket_client_works_in_8_4_too(sim8):
    assert password_client(sim8).version.get()["release"] == "8.4"


def test_guests_have_no_memhost_or_pressure_figures(pve):
    guests = [g for g in pve.cluster.resources.get(type="vm") if g["status"] == "running"]
    assert guests
    for g in guests:
        assert "cpu" in g and "mem" in g
        assert "memhost" not in g
    for vm in pve.nodes("pve1").qemu.get():
        assert "memhost" not in vm
        assert not any(k.startswith("pressure") for k in vm)
    status = pve.nodes("pve1").qemu(100).status.current.get()
    assert "memhost" not in status and "mem" in status


def test_node_rrddata_hour_has_70_points_and_no_pve_9_sources(pve):
    items = pve.nodes("pve1").rrddata.get(timeframe="hour")
    assert len(items) == 70
    times = [i["time"] for i in items]
    assert all(b - a == 60 for a, b in itertools.pairwise(times))
    assert set(items[-1]) == NODE_SOURCES_8 | {"time"}


@pytest.mark.parametrize(
    ("timeframe", "step"),
    [("day", 1800), ("week", 10800), ("month", 43200), ("year", 604800)],
)
def test_node_rrddata_keeps_70_rows_at_coarser_steps(pve, timeframe, step):
    items = pve.nodes("pve2").rrddata.get(timeframe=timeframe)
    assert len(items) == 70
    assert items[1]["time"] - items[0]["time"] == step


def test_there_is_no_decade_timeframe(pve):
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve1").rrddata.get(timeframe="decade")
    assert exc.value.status_code == 400
    assert exc.value.errors == {
        "timeframe": "value 'decade' does not have a value in the enumeration "
        "'hour, day, week, month, year'"
    }


def test_guest_rrddata_has_70_points_without_memhost(pve):
    items = pve.nodes("pve1").qemu(100).rrddata.get(timeframe="hour")
    assert len(items) == 70
    assert set(items[-1]) == GUEST_SOURCES_8 | {"time"}


def test_ha_groups_work_and_resources_name_their_group(pve):
    groups = pve.cluster.ha.groups.get()
    assert len(groups) == 1
    group = groups[0]
    assert group["group"] == "prefer-pve2" and group["type"] == "group"
    assert set(group["nodes"].split(",")) == {"pve2:2", "pve3:1"}
    assert group["restricted"] == 1 and group["nofailback"] == 0
    assert isinstance(group["digest"], str)
    resources = {r["sid"]: r for r in pve.cluster.ha.resources.get()}
    assert resources["vm:103"]["group"] == "prefer-pve2"
    assert "group" not in resources["ct:201"]


def test_ha_rules_do_not_exist(pve):
    expect_error(pve.cluster.ha.rules.get, 501, "Method 'GET /cluster/ha/rules' not implemented")


def test_container_migrate_precondition_does_not_exist(pve):
    expect_error(
        pve.nodes("pve3").lxc(200).migrate.get,
        501,
        "Method 'GET /nodes/pve3/lxc/200/migrate' not implemented",
    )


def test_vm_migrate_precondition_lacks_the_pve_9_keys(pve):
    pre = pve.nodes("pve1").qemu(100).migrate.get()
    assert pre["allowed_nodes"] == ["pve2", "pve3"]
    assert pre["local_disks"] == [] and pre["local_resources"] == []
    assert "dependent-ha-resources" not in pre
    assert "has-dbus-vmstate" not in pre


def test_ha_status_has_no_fencing_entry_and_no_failback(pve):
    items = pve.cluster.ha.status.current.get()
    assert "fencing" not in {i["type"] for i in items}
    services = [i for i in items if i["type"] == "service"]
    assert services
    assert all("failback" not in s for s in services)


def test_conntrack_state_is_not_a_migrate_parameter_in_8_4(pve):
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve1").qemu(100).migrate.post(
            target="pve2", online=1, **{"with-conntrack-state": 1}
        )
    assert exc.value.status_code == 400
    assert exc.value.errors == {
        "with-conntrack-state": "property is not defined in schema and the schema does not "
        "allow additional properties"
    }


def test_a_vm_migration_still_works_in_8_4(make_sim):
    sim = make_sim("small", pve_version="8.4")
    upid = token_client(sim).nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.startswith("UPID:pve1:") and upid.endswith(":qmigrate:100:root@pam!proxflow:")
