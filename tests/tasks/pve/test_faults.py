"""Injected faults: transient reads retried, refusals not, a lost POST answer never doubled."""

from __future__ import annotations

import logging

import pytest

from tasks.pve import Gateway, RetryPolicy, TransientError
from tasks.pve.transport import Transport
from tests.conftest import Control
from tests.tasks.pve.support import connect, fake_gateway, move, requests_made

RESOURCES = "GET /cluster/resources"
MIGRATE = "POST /nodes/{node}/qemu/{vmid}/migrate"


def set_faults(control: Control, **faults) -> None:
    """POST /_sim/faults (`Control.post` takes `path` itself, and faults have a `path` too)."""
    r = control.session.post(
        f"{control.base}/faults", json=faults, timeout=10, verify=control.verify
    )
    r.raise_for_status()


def started(control: Control, vmid: int) -> list[dict]:
    return [e for e in control.events("migration_started") if e["vmid"] == vmid]


def test_a_flaky_read_is_retried_until_it_works(sim, control: Control):
    gateway = connect(sim)
    set_faults(control, error_rate=0.5, error_code=503, path="^/cluster/resources$")
    control.delete("requests")
    before = gateway.calls
    for _ in range(3):
        assert len(gateway.inventory().guests) == 9
    made = requests_made(control)
    assert made[RESOURCES] > 3  # some answers were 503s, each retried
    assert gateway.calls - before == sum(made.values())


def test_a_read_that_keeps_failing_gives_up_after_the_policy_s_attempts(sim, control: Control):
    gateway = connect(sim, retry=RetryPolicy(attempts=3, base_delay=0.001))
    set_faults(control, error_rate=1.0, error_code=502, path="^/cluster/resources$")
    control.delete("requests")
    with pytest.raises(TransientError, match="HTTP 502 on GET /cluster/resources"):
        gateway.inventory()
    assert requests_made(control) == {RESOURCES: 3}


def test_a_500_verdict_is_not_retried(sim, control: Control):
    gateway = connect(sim)
    control.delete("requests")
    with pytest.raises(Exception, match="does not exist"):
        gateway._api.get("nodes/pve1/qemu/102/config")  # 102 lives on pve2
    assert requests_made(control) == {"GET /nodes/{node}/qemu/{vmid}/config": 1}


def test_an_offline_node_answers_595_and_the_rest_of_the_cluster_still_reads(sim, control):
    gateway = connect(sim)
    control.post("nodes/pve2/offline")
    inv = gateway.inventory()
    assert not next(n for n in inv.nodes if n.name == "pve2").online
    with pytest.raises(TransientError, match="No route to host") as failed:
        gateway._api.get("nodes/pve2/status")
    assert failed.value.status == 595


def test_configs_of_guests_on_an_offline_node_are_left_for_later(sim, control, caplog):
    gateway = connect(sim)
    inv = gateway.inventory()  # taken while pve2 was still up
    control.post("nodes/pve2/offline")
    with caplog.at_level(logging.WARNING, logger="proxflow.pve"):
        configs = gateway.guest_configs(inv, inv.guests)
    assert sorted(configs) == [100, 101, 104, 105, 106, 200]  # 102, 103, 201 are on pve2
    assert "could not read the configuration of 3 guest(s)" in caplog.text


def test_guests_on_a_node_known_to_be_offline_are_not_asked_about(sim, control: Control):
    gateway = connect(sim)
    control.post("nodes/pve2/offline")
    inv = gateway.inventory()
    control.delete("requests")
    configs = gateway.guest_configs(inv, inv.guests)
    assert sorted(configs) == [100, 101, 104, 105, 106, 200]
    made = requests_made(control)
    assert made["GET /nodes/{node}/qemu/{vmid}/migrate"] == 5  # 100, 101, 104, 105, 106
    assert made["GET /nodes/{node}/lxc/{vmid}/config"] == 1  # 200; 201 is on pve2


def test_a_migration_off_an_offline_node_is_not_attempted(sim, control: Control):
    gateway = connect(sim)
    control.post("nodes/pve2/offline")
    control.delete("requests")
    with pytest.raises(TransientError, match="No route to host") as failed:
        gateway.start_migration(move(102, "qemu", "pve2", "pve1", online=True))
    assert failed.value.status == 595
    assert MIGRATE not in requests_made(control)  # its task list was unreadable: no POST
    assert started(control, 102) == []


# -- a POST that fails transiently ---------------------------------------------------------------


def test_a_post_refused_by_an_outage_is_repeated_and_starts_one_migration(sim, control: Control):
    gateway = connect(sim)
    set_faults(control, error_rate=0.5, error_code=503, path="/migrate$")
    control.delete("requests")
    upid = gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    assert requests_made(control)[MIGRATE] > 1  # the seeded fault failed the first POST(s)
    assert [e["upid"] for e in started(control, 100)] == [upid]


def test_a_post_that_never_gets_through_starts_nothing(sim, control: Control):
    gateway = connect(sim)
    set_faults(control, error_rate=1.0, error_code=503, path="/migrate$")
    control.delete("requests")
    with pytest.raises(TransientError):
        gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    assert requests_made(control)[MIGRATE] == 4  # the policy's attempts
    assert started(control, 100) == []


class LosingAnswers(Transport):
    """The real simulator, but the answers of the first `lose` POSTs never come back."""

    def __init__(self, real: Transport, lose: int) -> None:
        super().__init__(real._api, real.who, real.retry)
        self.lose = lose

    def post(self, path: str, **data):
        answer = super().post(path, **data)
        if self.lose:
            self.lose -= 1
            raise TransientError(None, "timed out waiting for the cluster", f"POST /{path}")
        return answer


def losing(gateway: Gateway, lose: int) -> Gateway:
    return Gateway(LosingAnswers(gateway._api, lose), gateway._endpoint)


def test_a_post_whose_answer_is_lost_returns_the_migration_it_started(sim, control: Control):
    gateway = losing(connect(sim), lose=1)
    control.delete("requests")
    upid = gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    assert [e["upid"] for e in started(control, 100)] == [upid]
    assert requests_made(control)[MIGRATE] == 1  # not sent again


def test_a_lost_answer_for_an_ha_request_is_not_doubled_either(sim, control: Control):
    gateway = losing(connect(sim), lose=1)
    control.delete("requests")
    upid = gateway.start_migration(move(103, "qemu", "pve2", "pve3", online=True))
    requested = [e for e in control.events("ha_migration_requested") if e["vmid"] == 103]
    assert [e["upid"] for e in requested] == [upid]
    assert requests_made(control)[MIGRATE] == 1


def test_an_earlier_migration_of_the_guest_is_not_taken_for_the_lost_one(make_sim):
    sim = make_sim("small", speed=500.0)
    control = Control(sim)
    first = connect(sim)
    done = first.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    assert first.wait_task(done, timeout=10, poll=0.01).ok
    back = first.start_migration(move(100, "qemu", "pve2", "pve1", online=True))
    assert first.wait_task(back, timeout=10, poll=0.01).ok
    upid = losing(first, lose=1).start_migration(move(100, "qemu", "pve1", "pve2", online=True))
    assert upid not in (done, back)
    assert [e["upid"] for e in started(control, 100)] == [done, back, upid]


# -- waiting through trouble (a fake cluster) ----------------------------------------------------

UPID = "UPID:pve1:00000001:00000002:6AFD8800:qmigrate:100:root@pam!proxflow:"
STATUS = f"nodes/pve1/tasks/{UPID}/status"


def waiting_gateway(statuses: list) -> Gateway:
    def answer(path: str):
        if path == STATUS:
            return statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if path.endswith("/time"):
            return {"time": 1_795_000_100}
        if path == "cluster/status":
            return [{"type": "node", "name": "pve1", "online": 1, "local": 1}]
        raise AssertionError(path)

    return fake_gateway(answer)


def test_a_source_node_that_reboots_mid_task_is_waited_out():
    down = TransientError(595, "No route to host", STATUS)
    running = {"status": "running"}
    done = {"status": "stopped", "exitstatus": "OK"}
    outcome = waiting_gateway([running, down, down, running, done]).wait_task(
        UPID, timeout=5, poll=0.001
    )
    assert outcome.ok and outcome.finished == 1_795_000_100


def test_a_task_ending_with_warnings_counts_as_done_and_counts_them():
    outcome = waiting_gateway([{"status": "stopped", "exitstatus": "WARNINGS: 3"}]).wait_task(
        UPID, timeout=5, poll=0.001
    )
    assert (outcome.ok, outcome.warnings, outcome.exitstatus) == (True, 3, "WARNINGS: 3")


def test_the_wait_for_the_ha_manager_is_reported_as_progress():
    request = "UPID:pve2:00000001:00000002:6AFD8800:hamigrate:103:root@pam!proxflow:"
    real = "UPID:pve2:00000009:00000003:6AFD880D:qmigrate:103:root@pam:"
    listings = [[], [], [{"upid": real, "type": "qmigrate", "starttime": 0x6AFD880D}]]

    def answer(path: str):
        if path == f"nodes/pve2/tasks/{request}/status":
            return {"status": "stopped", "exitstatus": "OK"}
        if path == "nodes/pve2/tasks":
            return listings.pop(0)
        if path == f"nodes/pve2/tasks/{real}/status":
            return {"status": "stopped", "exitstatus": "OK"}
        if path.endswith("/time"):
            return {"time": 0x6AFD8810}
        if path == "cluster/status":
            return [{"type": "node", "name": "pve2", "online": 1}]
        raise AssertionError(path)

    seen: list[tuple[str, str]] = []
    outcome = fake_gateway(answer).wait_task(
        request, timeout=5, poll=0.001, on_progress=lambda *s: seen.append(s)
    )
    assert outcome.ok and outcome.followed == (real,)
    assert seen == [(request, "waiting for the HA manager to start the migration")] * 2
