"""Migrations that fail: refused synchronously (HTTP error, no task) or aborted inside the task.

PVE checks a few things before it forks the worker and answers those as HTTP errors; every
other failure shows up later as a task that ends `migration aborted` (facts §0.8, §6.2).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from pvesim.auth import TokenCredential
from tests.conftest import Control
from tests.pvesim.migration_support import (
    STAMP,
    events_of,
    guest,
    log,
    logged_duration,
    migrate,
    migration_seconds,
    run_until_stopped,
    status,
)

# -- synchronous refusals --------------------------------------------------------------------


def refuse(
    pve: ProxmoxAPI, control: Control, source: str, vmid: int, kind: str = "qemu", **params: Any
) -> ResourceException:
    """POST a migration that must be refused: HTTP error, no task, the guest untouched."""
    before = guest(pve, vmid)
    with pytest.raises(ResourceException) as info:
        migrate(pve, source, vmid, kind, **params)
    assert pve.cluster.tasks.get() == []
    assert pve.nodes(source).tasks.get(source="all") == []
    assert control.events("migration_started") == []
    after = guest(pve, vmid)
    assert (after["node"], after.get("lock"), after["status"]) == (
        before["node"],
        before.get("lock"),
        before["status"],
    )
    return info.value


def assert_refusal_logged(control: Control, err: ResourceException, vmid: int, target: str) -> None:
    (event,) = control.events("migration_refused")
    assert (event["vmid"], event["target"]) == (vmid, target)
    assert (event["status"], event["reason"]) == (err.status_code, err.content)
    assert event.get("errors") == err.errors


def test_migrating_to_the_node_the_guest_is_on_is_a_400_naming_the_target(pve, control):
    err = refuse(pve, control, "pve1", 100, target="pve1", online=1)

    assert err.status_code == 400
    assert err.content == "Parameter verification failed."
    assert err.errors == {"target": "target is local node."}
    assert_refusal_logged(control, err, 100, "pve1")


def test_an_unknown_target_node_is_a_500_no_such_cluster_node(pve, control):
    err = refuse(pve, control, "pve1", 100, target="pveX", online=1)

    assert err.status_code == 500
    assert err.content == "no such cluster node 'pveX'"
    assert err.errors is None
    assert_refusal_logged(control, err, 100, "pveX")


def test_a_guest_locked_by_a_backup_is_refused_with_its_lock_named(pve, control):
    control.post("guests/101/lock", lock="backup")

    err = refuse(pve, control, "pve1", 101, target="pve2", online=1)

    assert err.status_code == 500
    assert err.content == "VM is locked (backup)"
    assert guest(pve, 101)["lock"] == "backup"
    assert_refusal_logged(control, err, 101, "pve2")


def test_a_running_vm_without_online_is_refused(pve, control):
    err = refuse(pve, control, "pve1", 100, target="pve2")

    assert err.status_code == 500
    assert err.content == "can't migrate running VM without --online"
    assert_refusal_logged(control, err, 100, "pve2")


def test_python_true_for_online_fails_the_boolean_type_check_with_a_400(pve, control):
    err = refuse(pve, control, "pve1", 100, target="pve2", online=True)

    assert err.status_code == 400
    assert err.content == "Parameter verification failed."
    assert err.errors == {"online": "type check ('boolean') failed - got 'True'"}
    # the schema check runs before the migrate handler, as in PVE, so nothing reached it
    assert [e["kind"] for e in control.events() if e["kind"].startswith("migration_")] == []


def test_without_quorum_a_migration_is_refused_with_cluster_not_ready(pve, control):
    control.post("quorum", quorate=False)

    err = refuse(pve, control, "pve1", 100, target="pve2", online=1)

    assert err.status_code == 500
    assert err.content == "cluster not ready - no quorum?"
    assert_refusal_logged(control, err, 100, "pve2")


def test_a_disk_on_storage_the_target_lacks_is_refused_before_any_task(pve, control):
    # 106 is stopped on pve1 with its disk on local-zfs, which only pve1 and pve2 have
    err = refuse(pve, control, "pve1", 106, target="pve3")

    assert err.status_code == 500
    assert err.content == "storage 'local-zfs' is not available on node 'pve3'"
    assert_refusal_logged(control, err, 106, "pve3")


def test_a_running_container_without_online_or_restart_is_refused(pve, control):
    err = refuse(pve, control, "pve3", 200, "lxc", target="pve1")

    assert err.status_code == 500
    assert err.content == "can't migrate running container without --online or --restart"
    assert_refusal_logged(control, err, 200, "pve1")


def test_only_root_may_force_a_migration_and_the_same_token_may_migrate_without_it(make_sim):
    sim = make_sim("small", extra_tokens=[TokenCredential("lb@pve", "t", "secret")])
    lb = ProxmoxAPI(
        sim.host,
        user="lb@pve",
        token_name="t",
        token_value="secret",
        verify_ssl=str(sim.ca_file),
        timeout=10,
    )
    control = Control(sim)

    err = refuse(lb, control, "pve1", 106, target="pve2", force=1)

    assert err.status_code == 400
    assert err.errors == {"force": "Only root may use this option."}
    assert_refusal_logged(control, err, 106, "pve2")
    upid = migrate(lb, "pve1", 106, target="pve2")
    assert upid.split(":")[7] == "lb@pve!t"
    assert run_until_stopped(lb, control, upid)["exitstatus"] == "OK"
    assert guest(lb, 106)["node"] == "pve2"


# -- failures inside the task ----------------------------------------------------------------


def assert_aborted(
    pve: ProxmoxAPI, control: Control, upid: str, vmid: int, source: str
) -> list[str]:
    """The task ends `migration aborted`; the guest is still running on its source, unlocked."""
    st = run_until_stopped(pve, control, upid, step=0.5)
    assert st["status"] == "stopped"
    assert st["exitstatus"] == "migration aborted"
    lines = log(pve, upid)
    assert lines[-1] == "TASK ERROR: migration aborted"
    assert re.match(rf"^{STAMP} ERROR: migration aborted \(duration \d\d:\d\d:\d\d\): ", lines[-2])
    entry = guest(pve, vmid)
    assert (entry["node"], entry["status"]) == (source, "running")
    assert "lock" not in entry
    (finished,) = events_of(control, "migration_finished", upid=upid)
    assert finished["ok"] is False
    assert finished["result"] == "migration aborted"
    assert finished["node"] == source
    assert lines[-2].endswith(f": {finished['reason']}")
    (listed,) = pve.nodes(source).tasks.get(errors=1)
    assert listed["upid"] == upid and listed["status"] == "migration aborted"
    return lines


def accepted(pve: ProxmoxAPI, control: Control, source: str, vmid: int, **kw: Any) -> str:
    """POST a migration that is accepted: HTTP 200 with a UPID for a task that is running."""
    upid = migrate(pve, source, vmid, **kw)
    assert Tasks.decode_upid(upid)["node"] == source
    assert status(pve, upid)["status"] == "running"
    (started,) = events_of(control, "migration_started", upid=upid)
    assert started["vmid"] == vmid
    return upid


def test_a_vm_with_pci_passthrough_is_accepted_then_aborted_for_its_local_device(pve, control):
    upid = accepted(pve, control, "pve3", 104, target="pve1", online=1)

    lines = assert_aborted(pve, control, upid, 104, "pve3")

    assert lines[-2].endswith(
        "ERROR: migration aborted (duration 00:00:01): "
        "can't migrate VM which uses local devices: hostpci0"
    )


def test_a_running_vm_with_a_local_disk_is_aborted_without_with_local_disks(pve, control):
    upid = accepted(pve, control, "pve1", 105, target="pve2", online=1)

    lines = assert_aborted(pve, control, upid, 105, "pve1")

    assert re.match(rf"^{STAMP} starting migration of VM 105 to node 'pve2' \(.*\)$", lines[0])
    assert any(
        line.endswith(
            "can't migrate local disk 'local-lvm:vm-105-disk-0': "
            "can't live migrate attached local disks without with-local-disks option"
        )
        for line in lines
    ), lines
    assert lines[-2].endswith("Problem found while scanning volumes - can't migrate VM - check log")


def test_with_local_disks_the_same_vm_migrates_and_the_disk_copy_makes_it_slower(pve, control):
    upid = accepted(pve, control, "pve1", 105, target="pve2", online=1, **{"with-local-disks": 1})

    st = run_until_stopped(pve, control, upid, step=5)

    assert st["exitstatus"] == "OK"
    entry = guest(pve, 105)
    assert (entry["node"], entry["status"]) == ("pve2", "running")
    assert "lock" not in entry
    lines = log(pve, upid)
    assert lines[-1] == "TASK OK"
    assert any(line.endswith("starting storage migration of 40.00 GiB") for line in lines)
    assert any(line.endswith("all 'mirror' jobs are ready") for line in lines)
    speed = float(re.search(r"average migration speed: ([\d.]+) GiB/s", "\n".join(lines))[1])
    seconds = migration_seconds(control, upid)
    assert seconds > 40 / speed  # the 40 GiB disk alone takes that long at the link speed
    assert logged_duration(lines) == round(seconds)


def test_an_injected_failure_aborts_the_task_mid_copy_and_only_the_next_migration(pve, control):
    control.post("guests/100/fail-next-migration", reason="connection reset by peer")
    upid = accepted(pve, control, "pve1", 100, target="pve2", online=1)

    lines = assert_aborted(pve, control, upid, 100, "pve1")

    # the QEMU error, the abort and the final line close the log: nothing was copied after
    assert [re.sub(f"^{STAMP} ", "", line) for line in lines[-4:]] == [
        "migration status error: failed - connection reset by peer",
        "ERROR: online migrate failure - aborting",
        lines[-2].split(" ", 2)[2],
        "TASK ERROR: migration aborted",
    ]
    assert lines[-2].endswith("): connection reset by peer")
    assert not any("migration completed" in line for line in lines)
    retry = accepted(pve, control, "pve1", 100, target="pve2", online=1)
    assert run_until_stopped(pve, control, retry)["exitstatus"] == "OK"
    assert guest(pve, 100)["node"] == "pve2"


def test_live_migration_of_a_container_is_accepted_then_aborted_as_not_implemented(pve, control):
    upid = accepted(pve, control, "pve3", 200, kind="lxc", target="pve1", online=1)

    assert Tasks.decode_upid(upid)["type"] == "vzmigrate"
    lines = assert_aborted(pve, control, upid, 200, "pve3")
    assert lines[-2].endswith("lxc live migration is currently not implemented")


def test_a_migration_to_an_offline_node_is_accepted_then_aborted(pve, control):
    control.post("nodes/pve2/offline")

    upid = accepted(pve, control, "pve1", 100, target="pve2", online=1)

    assert_aborted(pve, control, upid, 100, "pve1")
    assert guest(pve, 100)["node"] == "pve1"


def test_a_restart_mode_container_migration_failing_before_shutdown_leaves_it_running(pve, control):
    control.post("guests/200/fail-next-migration", reason="rsync died")
    upid = accepted(pve, control, "pve3", 200, kind="lxc", target="pve1", restart=1)

    lines = assert_aborted(pve, control, upid, 200, "pve3")
    control.advance(20)  # past the instant the shutdown would have completed

    assert lines[-2].endswith("): rsync died")
    entry = guest(pve, 200)
    assert (entry["node"], entry["status"]) == ("pve3", "running")
