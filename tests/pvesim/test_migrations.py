"""Migrations through proxmoxer against pvesim: lifecycle, durations, HA, containers, concurrency.

The simulator's event log is the ground truth next to what the API reports; the clock is paused
and stepped with the control API unless a test says otherwise.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from tests.conftest import Control, password_client, token_client
from tests.pvesim.migration_support import (
    STAMP,
    guest,
    log,
    logged_duration,
    migrate,
    migration_seconds,
    node,
    run_until_stopped,
    status,
)

UPID_RE = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):[0-9A-F]{8}:[0-9A-F]{8,9}:"
    r"[0-9A-F]{8}:(?P<type>[^:\s/]+):(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):$"
)

# the facts file's example of a successful live migration with shared storage (§3.5), in order
LIVE_LOG = [
    r"starting migration of VM 100 to node 'pve2' \({ip}\)",
    r"starting VM 100 on remote node 'pve2'",
    r"start remote tunnel",
    r"starting online/live migration on unix:/run/qemu-server/100\.migrate",
    r"set migration capabilities",
    r"migration downtime limit: 100 ms",
    r"start migrate command to unix:/run/qemu-server/100\.migrate",
    r"migration active, transferred \d+\.\d\d GiB of \d+\.\d\d GiB VM-state, \d+\.\d\d GiB/s",
    r"average migration speed: \d+\.\d\d GiB/s - downtime \d+ ms",
    r"migration completed, transferred \d+\.\d\d GiB VM-state",
    r"migration status: completed",
    r"migration finished successfully \(duration \d\d:\d\d:\d\d\)",
]


def node_ip(pve: ProxmoxAPI, name: str) -> str:
    return str(next(e["ip"] for e in pve.cluster.status.get() if e.get("name") == name))


def assert_in_order(lines: list[str], patterns: list[str]) -> None:
    """Each pattern matches a stamped line, in this order (other lines may sit in between)."""
    it = iter(lines)
    for pattern in patterns:
        full = re.compile(f"^{STAMP} {pattern}$")
        assert any(full.match(line) for line in it), f"{pattern!r} not found in order in {lines}"


# -- lifecycle of a live migration -----------------------------------------------------------


def test_a_live_migration_answers_a_qmigrate_upid_at_once_that_proxmoxer_decodes(pve, control):
    now = int(control.get("clock")["now"])
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)

    assert upid.endswith(":") and len(upid.split(":")) == 9
    m = UPID_RE.match(upid)
    assert m is not None, upid
    assert (m["node"], m["type"], m["id"], m["user"]) == (
        "pve1",
        "qmigrate",
        "100",
        "root@pam!proxflow",
    )
    decoded = Tasks.decode_upid(upid)
    assert decoded["node"] == "pve1"
    assert decoded["type"] == "qmigrate"
    assert decoded["id"] == "100"
    assert decoded["user"] == "root@pam"
    assert decoded["starttime"] == now
    assert decoded["comment"] == ""
    (started,) = control.events("migration_started")
    assert started["upid"] == upid
    assert (started["vmid"], started["source"], started["target"]) == (100, "pve1", "pve2")
    assert started["online"] is True and started["ha"] is False


def test_right_after_the_post_the_guest_is_locked_on_its_source_and_the_task_runs(pve, control):
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)

    entry = guest(pve, 100)
    assert entry["node"] == "pve1"
    assert entry["lock"] == "migrate"
    assert entry["status"] == "running"
    st = status(pve, upid)
    assert st["status"] == "running"
    assert "exitstatus" not in st
    assert (st["type"], st["id"], st["user"], st["tokenid"]) == (
        "qmigrate",
        "100",
        "root@pam",
        "proxflow",
    )
    assert isinstance(st["pid"], int) and isinstance(st["starttime"], int)
    active = pve.nodes("pve1").tasks.get(source="active")
    assert [(t["upid"], t["status"]) for t in active] == [(upid, "RUNNING")]
    assert pve.nodes("pve1").tasks.get() == []  # the default "archive" lists finished tasks only
    assert control.events("migration_finished") == []


def test_a_second_migration_of_a_migrating_guest_is_refused_because_it_is_locked(pve, control):
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)

    with pytest.raises(ResourceException) as info:
        migrate(pve, "pve1", 100, target="pve3", online=1)

    err = info.value
    assert err.status_code == 500
    assert err.content == "VM is locked (migrate)"
    assert str(err) == "500 Internal Server Error: VM is locked (migrate)"
    (refused,) = control.events("migration_refused")
    assert (refused["vmid"], refused["status"], refused["reason"]) == (
        100,
        500,
        "VM is locked (migrate)",
    )
    assert [t["upid"] for t in pve.cluster.tasks.get()] == [upid]
    assert len(control.events("migration_started")) == 1


def test_a_live_migration_ends_ok_with_the_guest_on_the_target_and_a_pve_like_log(pve, control):
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)

    st = run_until_stopped(pve, control, upid)

    assert st["status"] == "stopped"
    assert st["exitstatus"] == "OK"
    entry = guest(pve, 100)
    assert entry["node"] == "pve2"
    assert "lock" not in entry
    assert entry["status"] == "running"
    lines = log(pve, upid)
    assert lines[-1] == "TASK OK"
    assert all(re.match(f"^{STAMP} ", line) for line in lines[:-1]), lines
    ip = re.escape(node_ip(pve, "pve2"))
    assert_in_order(lines[:-1], [p.replace("{ip}", ip) for p in LIVE_LOG])
    (finished,) = control.events("migration_finished")
    assert finished["upid"] == upid
    assert finished["ok"] is True and finished["result"] == "OK"
    assert finished["node"] == "pve2"
    assert logged_duration(lines) == round(migration_seconds(control, upid))
    (listed,) = pve.nodes("pve1").tasks.get(typefilter="qmigrate")
    assert listed["upid"] == upid and listed["status"] == "OK"
    assert listed["endtime"] == int(finished["time"])


def test_the_guest_changes_node_while_still_locked_and_the_lock_clears_at_the_end(pve, control):
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)
    seen: list[tuple[str, str | None, str]] = []
    for _ in range(60):
        control.advance(0.5)
        entry = guest(pve, 100)
        st = status(pve, upid)["status"]
        seen.append((entry["node"], entry.get("lock"), st))
        if st == "stopped":
            break

    # phase3 moves the config first (node = target, lock still set), then unlocks
    first_on_target = next(i for i, s in enumerate(seen) if s[0] == "pve2")
    assert seen[first_on_target] == ("pve2", "migrate", "running")
    assert all(s == ("pve1", "migrate", "running") for s in seen[:first_on_target])
    assert seen[-1] == ("pve2", None, "stopped")


def test_a_16_gib_busy_guest_takes_longer_to_migrate_than_a_4_gib_one(pve, control):
    small = migrate(pve, "pve1", 100, target="pve2", online=1)  # 4 GiB, idle-ish
    run_until_stopped(pve, control, small)
    big = migrate(pve, "pve2", 102, target="pve3", online=1)  # 16 GiB, dirty_rate 0.6
    run_until_stopped(pve, control, big)

    small_s, big_s = migration_seconds(control, small), migration_seconds(control, big)
    assert big_s > 2 * small_s
    # the facts file's suggested defaults on 10 GbE: ≈ 8 s and ≈ 25-40 s
    assert 5 <= small_s <= 12
    assert 20 <= big_s <= 45
    assert logged_duration(log(pve, big)) == round(big_s)
    assert guest(pve, 102)["node"] == "pve3"


def test_node_cpu_and_memory_follow_the_guest_to_its_new_node(make_sim):
    moved_sim, still_sim = make_sim("small"), make_sim("small")
    pve, ref = token_client(moved_sim), token_client(still_sim)
    ctl, ref_ctl = Control(moved_sim), Control(still_sim)

    upid = migrate(pve, "pve1", 100, target="pve2", online=1)
    run_until_stopped(pve, ctl, upid)
    now = ctl.advance(20)  # past the migration's extra load, into a fresh refresh window
    assert ref_ctl.advance(now - ref_ctl.get("clock")["now"]) == now

    # same seed and instant: the only difference between the two clusters is where 100 runs
    entry = guest(pve, 100)
    assert entry["node"] == "pve2"
    src, tgt = node(pve, "pve1"), node(pve, "pve2")
    src_ref, tgt_ref = node(ref, "pve1"), node(ref, "pve2")
    assert src["mem"] < src_ref["mem"] and tgt["mem"] > tgt_ref["mem"]
    assert src_ref["mem"] - src["mem"] == entry["memhost"]
    assert tgt["mem"] - tgt_ref["mem"] == entry["memhost"]
    host_share = entry["cpu"] * entry["maxcpu"] / src["maxcpu"]
    assert src_ref["cpu"] - src["cpu"] == pytest.approx(host_share, abs=1e-5)
    assert tgt["cpu"] - tgt_ref["cpu"] == pytest.approx(host_share, abs=1e-5)
    assert node(pve, "pve3") == node(ref, "pve3")


def test_proxmoxer_blocking_status_waits_for_a_migration_while_the_clock_runs(make_sim):
    sim = make_sim("small", speed=50)  # ~8 simulated seconds pass in well under a real second
    pve = token_client(sim)
    upid = migrate(pve, "pve1", 100, target="pve2", online=1)

    st = Tasks.blocking_status(pve, upid, timeout=20, polling_interval=0.05)

    assert st is not None
    assert st["status"] == "stopped" and st["exitstatus"] == "OK"
    assert guest(pve, 100)["node"] == "pve2"
    assert log(pve, upid)[-1] == "TASK OK"


def test_a_ticket_client_migrates_with_its_csrf_token_and_a_bare_cookie_post_is_refused(
    sim, control
):
    pve = password_client(sim)
    ticket, _csrf = pve.get_tokens()
    bare = requests.post(
        f"{sim.url}/nodes/pve1/qemu/101/migrate",
        data={"target": "pve2", "online": 1},
        headers={"Cookie": f"PVEAuthCookie={ticket}"},
        verify=str(sim.ca_file),
        timeout=10,
    )
    assert bare.status_code == 401
    assert bare.reason == "Permission denied - invalid csrf token"
    assert control.events() == []

    upid = migrate(pve, "pve1", 101, target="pve2", online=1)  # proxmoxer adds the CSRF header

    assert upid.split(":")[7] == "root@pam"  # a ticket user, no token id
    st = status(pve, upid)
    assert st["user"] == "root@pam" and "tokenid" not in st
    assert run_until_stopped(pve, control, upid)["exitstatus"] == "OK"
    assert guest(pve, 101)["node"] == "pve2"
    (finished,) = control.events("migration_finished")
    assert finished["upid"] == upid and finished["ok"] is True


# -- offline migration -----------------------------------------------------------------------


def test_a_stopped_guest_migrates_offline_without_online_and_its_local_disk_is_copied(pve, control):
    upid = migrate(pve, "pve1", 106, target="pve2")

    st = run_until_stopped(pve, control, upid)

    assert st["exitstatus"] == "OK"
    entry = guest(pve, 106)
    assert (entry["node"], entry["status"]) == ("pve2", "stopped")
    assert "lock" not in entry
    lines = log(pve, upid)
    assert lines[-1] == "TASK OK"
    assert_in_order(
        lines,
        [
            r"starting migration of VM 106 to node 'pve2' \(.*\)",
            r"copying local disk images \(20\.00 GiB\)",
            r"migration finished successfully \(duration \d\d:\d\d:\d\d\)",
        ],
    )
    assert not any("online/live" in line for line in lines)
    (started,) = control.events("migration_started")
    assert started["online"] is False and started["upid"] == upid


def test_online_for_a_stopped_guest_is_ignored_and_the_migration_runs_offline(pve, control):
    upid = migrate(pve, "pve1", 106, target="pve2", online=1)

    assert run_until_stopped(pve, control, upid)["exitstatus"] == "OK"
    assert guest(pve, 106)["node"] == "pve2"
    assert not any("online/live" in line for line in log(pve, upid))
    (started,) = control.events("migration_started")
    assert started["online"] is False


# -- containers ------------------------------------------------------------------------------


def test_a_running_container_migrates_in_restart_mode_stopped_during_the_move(pve, control):
    upid = migrate(pve, "pve3", 200, "lxc", target="pve1", restart=1)

    decoded = Tasks.decode_upid(upid)
    assert (decoded["type"], decoded["node"], decoded["id"]) == ("vzmigrate", "pve3", "200")
    seen: list[tuple[str, str]] = []
    for _ in range(60):
        control.advance(0.5)
        entry = guest(pve, 200)
        seen.append((entry["node"], entry["status"]))
        if status(pve, upid)["status"] == "stopped":
            break

    assert status(pve, upid)["exitstatus"] == "OK"
    assert seen[0] == ("pve3", "running")
    assert ("pve3", "stopped") in seen  # shut down before the move
    assert ("pve1", "stopped") in seen  # moved, not yet started
    control.advance(10)  # one pvestatd refresh later the started CT shows as running
    entry = guest(pve, 200)
    assert (entry["node"], entry["status"]) == ("pve1", "running")
    assert "lock" not in entry
    lines = log(pve, upid)
    assert lines[-1] == "TASK OK"
    assert_in_order(
        lines,
        [
            r"shutdown CT 200",
            r"start container on target node",
            r"migration finished successfully \(duration \d\d:\d\d:\d\d\)",
        ],
    )
    (started,) = control.events("migration_started")
    assert (started["type"], started["restart"], started["online"]) == ("lxc", True, False)
    (finished,) = control.events("migration_finished")
    assert finished["ok"] is True and finished["node"] == "pve1"


# -- HA-managed guests -----------------------------------------------------------------------


def test_an_ha_guest_gets_a_quick_hamigrate_task_and_moves_later_in_a_qmigrate_task(pve, control):
    upid = migrate(pve, "pve2", 103, target="pve3", online=1)

    decoded = Tasks.decode_upid(upid)
    assert (decoded["type"], decoded["node"], decoded["id"]) == ("hamigrate", "pve2", "103")
    control.advance(2)
    st = status(pve, upid)
    assert st["status"] == "stopped" and st["exitstatus"] == "OK"
    assert log(pve, upid)[-1] == "TASK OK"
    # "task OK" does not mean "moved": only the request was queued
    entry = guest(pve, 103)
    assert entry["node"] == "pve2" and entry["hastate"] == "started"
    (requested,) = control.events("ha_migration_requested")
    assert (requested["upid"], requested["target"]) == (upid, "pve3")
    assert control.events("migration_started") == []

    seen: list[tuple[str, str]] = []
    for _ in range(40):
        control.advance(1)
        entry = guest(pve, 103)
        seen.append((entry["node"], entry["hastate"]))
        if entry["node"] == "pve3" and "lock" not in entry:
            break

    assert ("pve2", "migrate") in seen
    assert seen[-1] == ("pve3", "started")
    (qm,) = pve.nodes("pve2").tasks.get(typefilter="qmigrate", vmid=103)
    assert qm["upid"] != upid and qm["status"] == "OK"
    qm_decoded = Tasks.decode_upid(qm["upid"])
    assert (qm_decoded["type"], qm_decoded["id"]) == ("qmigrate", "103")
    assert status(pve, qm["upid"])["exitstatus"] == "OK"
    (started,) = control.events("migration_started")
    assert started["upid"] == qm["upid"] and started["ha"] is True
    assert started["time"] > requested["time"] + 2
    (finished,) = control.events("migration_finished")
    assert finished["upid"] == qm["upid"] and finished["node"] == "pve3"


# -- concurrency -----------------------------------------------------------------------------


def test_two_migrations_from_one_source_both_complete_and_the_second_shares_the_link(make_sim):
    both_sim, alone_sim = make_sim("small"), make_sim("small")
    pve, ctl = token_client(both_sim), Control(both_sim)
    alone, alone_ctl = token_client(alone_sim), Control(alone_sim)

    first = migrate(pve, "pve1", 100, target="pve2", online=1)
    second = migrate(pve, "pve1", 101, target="pve3", online=1)
    solo = migrate(alone, "pve1", 101, target="pve3", online=1)
    run_until_stopped(pve, ctl, first)
    run_until_stopped(pve, ctl, second)
    run_until_stopped(alone, alone_ctl, solo)

    assert status(pve, first)["exitstatus"] == "OK"
    assert status(pve, second)["exitstatus"] == "OK"
    assert (guest(pve, 100)["node"], guest(pve, 101)["node"]) == ("pve2", "pve3")
    assert migration_seconds(ctl, second) > migration_seconds(alone_ctl, solo)

    def speed(lines: list[str]) -> float:
        found = [
            m for line in lines if (m := re.search(r"average migration speed: ([\d.]+)", line))
        ]
        return float(found[0].group(1))

    assert speed(log(pve, second)) < speed(log(alone, solo))
    migration_events = [
        (e["kind"], e["upid"]) for e in ctl.events() if e["kind"].startswith("migration_")
    ]
    assert migration_events[:2] == [("migration_started", first), ("migration_started", second)]
    assert sorted(migration_events[2:]) == [
        ("migration_finished", first),
        ("migration_finished", second),
    ]
    assert all(e["ok"] for e in ctl.events("migration_finished"))


# -- determinism -----------------------------------------------------------------------------


def scripted_run(pve: ProxmoxAPI, control: Control) -> dict[str, Any]:
    """A fixed mix of migrations: live, failing, container restart, HA, and a refusal."""
    upids = [
        migrate(pve, "pve1", 100, target="pve2", online=1),
        migrate(pve, "pve1", 105, target="pve2", online=1),
        migrate(pve, "pve3", 200, "lxc", target="pve1", restart=1),
        migrate(pve, "pve2", 103, target="pve3", online=1),
    ]
    control.advance(3.5)
    control.post("guests/101/fail-next-migration", reason="link flap")
    upids.append(migrate(pve, "pve1", 101, target="pve3", online=1))
    with pytest.raises(ResourceException, match="VM is locked"):
        migrate(pve, "pve1", 101, target="pve2", online=1)
    control.advance(60)
    all_upids = [t["upid"] for t in pve.cluster.tasks.get()]
    return {
        "upids": upids,
        "tasks": all_upids,
        "logs": {u: log(pve, u) for u in all_upids},
        "events": control.events(),
        "placement": {vmid: guest(pve, vmid)["node"] for vmid in (100, 101, 103, 105, 200)},
    }


def test_the_same_requests_on_two_sims_with_the_same_seed_give_identical_upids_logs_and_events(
    make_sim,
):
    runs = []
    for _ in range(2):
        sim = make_sim("small", seed=11)
        runs.append(scripted_run(token_client(sim), Control(sim)))

    assert runs[0] == runs[1]
    kinds = {e["kind"] for e in runs[0]["events"]}
    assert {
        "migration_started",
        "migration_finished",
        "migration_refused",
        "ha_migration_requested",
    } <= kinds
    assert len(runs[0]["tasks"]) == 6  # five POSTs plus the HA stack's own qmigrate
