"""Migrations end to end against the simulator; its event log is the ground truth."""

from __future__ import annotations

import pytest

from tasks.pve import QuorumLostError, RefusedError, RetryPolicy, migrate_params
from tasks.pve.transport import Transport
from tasks.pve.waiting import is_success
from tests.conftest import Control
from tests.tasks.pve.support import connect, move, requests_made

SPEED = 200.0  # simulated seconds per real second: a 10 s migration takes 50 ms
POLL = 0.01


@pytest.fixture
def fast_sim(make_sim):
    return make_sim("small", speed=SPEED)


@pytest.fixture
def gateway(fast_sim):
    return connect(fast_sim)


@pytest.fixture
def ctl(fast_sim):
    return Control(fast_sim)


def started(ctl: Control, vmid: int) -> list[dict]:
    return [e for e in ctl.events("migration_started") if e["vmid"] == vmid]


def test_a_running_vm_moves_live_and_lands(gateway, ctl):
    upid = gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    outcome = gateway.wait_task(upid, timeout=20, poll=POLL)
    assert outcome.ok and outcome.exitstatus == "OK" and outcome.followed == ()
    assert outcome.upid == upid and outcome.finished >= outcome.started
    [event] = started(ctl, 100)
    assert (event["upid"], event["online"], event["target"]) == (upid, True, "pve2")
    assert gateway.verify(100, "pve2")
    assert not gateway.verify(100, "pve1")


def test_a_running_container_moves_in_restart_mode(gateway, ctl):
    upid = gateway.start_migration(move(200, "lxc", "pve3", "pve1", restart=True))
    assert ":vzmigrate:200:" in upid
    assert gateway.wait_task(upid, timeout=20, poll=POLL).ok
    [event] = started(ctl, 200)
    assert (event["restart"], event["online"]) == (True, False)
    assert gateway.verify(200, "pve1")


@pytest.mark.parametrize(
    ("vmid", "kind", "source", "target", "real"),
    [(103, "qemu", "pve2", "pve3", "qmigrate"), (201, "lxc", "pve2", "pve1", "vzmigrate")],
    ids=["a VM", "a container"],
)
def test_an_ha_request_is_followed_to_the_real_migration(
    gateway, ctl, vmid, kind, source, target, real
):
    upid = gateway.start_migration(move(vmid, kind, source, target, online=True, restart=True))
    assert f":hamigrate:{vmid}:" in upid
    seen: list[tuple[str, str]] = []
    outcome = gateway.wait_task(upid, timeout=20, poll=POLL, on_progress=lambda *s: seen.append(s))
    [event] = started(ctl, vmid)
    assert outcome.ok
    assert outcome.followed == (event["upid"],)
    assert f":{real}:{vmid}:" in event["upid"] and event["ha"] is True
    assert {u for u, _ in seen} <= {upid, event["upid"]}  # progress names the task watched
    assert gateway.verify(vmid, target)


def test_a_migration_that_fails_in_its_task_says_why(gateway, ctl):
    ctl.post("guests/101/fail-next-migration", reason="target refused the memory stream")
    upid = gateway.start_migration(move(101, "qemu", "pve1", "pve3", online=True))
    outcome = gateway.wait_task(upid, timeout=20, poll=POLL)
    assert not outcome.ok and not outcome.timed_out
    assert outcome.exitstatus == "migration aborted"
    assert "target refused the memory stream" in outcome.detail
    assert outcome.detail.endswith("TASK ERROR: migration aborted")
    assert not gateway.verify(101, "pve3") and gateway.verify(101, "pve1")


def test_a_vm_with_passthrough_fails_inside_the_task_not_at_the_post(gateway):
    upid = gateway.start_migration(move(104, "qemu", "pve3", "pve1", online=True))
    outcome = gateway.wait_task(upid, timeout=20, poll=POLL)
    assert not outcome.ok
    assert "uses local devices: hostpci0" in outcome.detail


def test_a_locked_guest_is_refused_at_once_and_not_retried(gateway, ctl):
    ctl.post("guests/101/lock", lock="backup")
    ctl.delete("requests")
    with pytest.raises(RefusedError, match=r"VM is locked \(backup\)"):
        gateway.start_migration(move(101, "qemu", "pve1", "pve2", online=True))
    assert requests_made(ctl)["POST /nodes/{node}/qemu/{vmid}/migrate"] == 1
    assert started(ctl, 101) == []


def test_a_running_vm_without_online_is_refused(gateway):
    with pytest.raises(RefusedError, match="can't migrate running VM without --online"):
        gateway.start_migration(move(101, "qemu", "pve1", "pve2", online=False))


def test_nothing_is_posted_without_quorum(gateway, ctl):
    ctl.post("quorum", quorate=False)
    ctl.delete("requests")
    with pytest.raises(QuorumLostError):
        gateway.start_migration(move(101, "qemu", "pve1", "pve2", online=True))
    assert "POST /nodes/{node}/qemu/{vmid}/migrate" not in requests_made(ctl)


def test_a_guest_is_not_verified_while_its_migration_still_holds_the_lock(make_sim):
    sim = make_sim("small")  # paused clock: the migration stays in flight
    gateway = connect(sim)
    upid = gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    where = gateway.locate(100)
    assert (where.node, where.lock, where.kind, where.status) == (
        "pve1",
        "migrate",
        "qemu",
        "running",
    )
    assert not gateway.verify(100, "pve2")
    outcome = gateway.wait_task(upid, timeout=0.05, poll=0.01)
    assert outcome.timed_out and not outcome.ok and outcome.finished is None
    assert outcome.detail.startswith("running after")


def test_locate_answers_none_for_an_unknown_guest(gateway):
    assert gateway.locate(999) is None
    assert not gateway.verify(999, "pve1")


# -- the form sent -------------------------------------------------------------------------------


def test_booleans_go_out_as_1_and_0():
    assert migrate_params(move(1, "qemu", "a", "b", online=True)) == {"target": "b", "online": 1}
    assert migrate_params(move(1, "qemu", "a", "b", with_local_disks=True)) == {
        "target": "b",
        "online": 0,
        "with-local-disks": 1,
    }
    assert migrate_params(move(1, "lxc", "a", "b", restart=True)) == {"target": "b", "restart": 1}
    assert migrate_params(move(1, "lxc", "a", "b")) == {"target": "b", "restart": 0}


def test_a_true_never_reaches_the_wire():
    transport = Transport(api=None, who="root@pam!proxflow", retry=RetryPolicy())
    with pytest.raises(TypeError, match=r"send booleans as 1/0, not True/False: \['online'\]"):
        transport.post("nodes/pve1/qemu/100/migrate", target="pve2", online=True)
    assert transport.calls == 0


def test_a_move_of_an_unknown_kind_is_refused_before_any_call():
    with pytest.raises(ValueError, match="kind 'vm' is not qemu or lxc"):
        migrate_params(move(7, "vm", "a", "b"))


@pytest.mark.parametrize(
    ("exitstatus", "ok"),
    [
        ("OK", True),
        ("WARNINGS: 2", True),
        ("migration aborted", False),
        ("unexpected status", False),
        ("WARNINGS: x", False),
    ],
)
def test_ok_and_warnings_are_success_anything_else_is_not(exitstatus, ok):
    assert is_success(exitstatus) is ok


def test_an_ha_request_the_manager_declines_fails_soon_with_the_reason(make_sim):
    sim = make_sim("small")  # paused: lock the guest before the HA manager gets to it
    ctl = Control(sim)
    gateway = connect(sim)
    upid = gateway.start_migration(move(103, "qemu", "pve2", "pve3", online=True))
    ctl.post("guests/103/lock", lock="backup")
    ctl.post("clock", speed=1000.0)
    outcome = gateway.wait_task(upid, timeout=20, poll=POLL)
    assert not outcome.ok and not outcome.timed_out
    assert outcome.exitstatus == "no migration" and outcome.followed == ()
    assert "HA manager started no migration within 120 s" in outcome.detail
    assert [e["vmid"] for e in ctl.events("ha_migration_skipped")] == [103]
    assert started(ctl, 103) == []
