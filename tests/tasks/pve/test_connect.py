"""Connecting: token or password over verified TLS, privileges named, quorum read."""

from __future__ import annotations

import logging

import pytest

from pvesim.auth import ALL_PRIVILEGES
from tasks.pve import (
    AuthError,
    Gateway,
    PrivilegeError,
    QuorumLostError,
    TlsError,
    TransientError,
)
from tests.conftest import Control
from tests.tasks.pve.support import FAST, connect, password_endpoint, token_endpoint


def test_a_token_connects_and_reads_the_release(sim):
    gateway = connect(sim)
    assert gateway.version() == "9.1"
    assert gateway.calls == 1  # GET /version; tokens need no login call


def test_a_password_connects_with_a_ticket(sim):
    gateway = Gateway.connect(password_endpoint(sim), FAST)
    assert gateway.version() == "9.1"
    assert gateway.calls == 2  # POST /access/ticket, GET /version
    assert gateway.quorate()  # a GET with the ticket cookie works too


def test_a_pve_8_cluster_reports_its_release(make_sim):
    assert connect(make_sim("small", pve_version="8.4")).version() == "8.4"


def test_a_certificate_from_an_unknown_ca_fails_with_a_clear_message(sim):
    # verify=True trusts the system CAs only; the simulator's CA is not among them
    with pytest.raises(TlsError) as failed:
        connect(sim, verify=True)
    assert "not signed by a trusted CA" in str(failed.value)
    assert "set verify to the cluster's CA bundle path" in str(failed.value)


def test_a_password_login_also_checks_the_certificate(sim):
    with pytest.raises(TlsError):
        Gateway.connect(password_endpoint(sim, verify=True), FAST)


def test_verification_off_works_and_says_so_once(sim, caplog):
    with caplog.at_level(logging.WARNING):
        gateway = connect(sim, verify=False)
        gateway.inventory()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "TLS verification is off" in warnings[0].getMessage()


def test_a_wrong_token_secret_is_an_auth_error_naming_the_token_not_the_secret(sim):
    wrong = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(AuthError) as failed:
        connect(sim, token_value=wrong)
    text = str(failed.value)
    assert "root@pam!proxflow" in text
    assert wrong not in text and sim.token_secret not in text
    assert wrong not in repr(failed.value)


def test_a_wrong_password_is_an_auth_error_naming_the_user_not_the_password(sim):
    with pytest.raises(AuthError) as failed:
        Gateway.connect(password_endpoint(sim, password="not-the-password"), FAST)
    text = str(failed.value) + repr(failed.value)
    assert "root@pam" in text
    assert "not-the-password" not in text and sim.password not in text


def test_an_unreachable_cluster_is_transient_after_the_retries(sim):
    endpoint = token_endpoint(sim, verify=False)  # the CA file goes with the simulator
    sim.stop()  # nothing listens on the port any more
    with pytest.raises(TransientError, match="could not connect"):
        Gateway.connect(endpoint, FAST)


# -- privileges ----------------------------------------------------------------------------------


def test_all_privileges_present_means_nothing_missing(sim):
    gateway = connect(sim)
    assert gateway.missing_privileges() == []
    gateway.check_privileges()


def test_missing_privileges_are_each_named_with_their_path(make_sim):
    sim = make_sim("small", privileges=ALL_PRIVILEGES - {"VM.Migrate", "Datastore.Audit"})
    gateway = connect(sim)
    assert gateway.missing_privileges() == ["VM.Migrate on /vms", "Datastore.Audit on /storage"]
    with pytest.raises(PrivilegeError) as failed:
        gateway.check_privileges()
    assert str(failed.value) == (
        "token root@pam!proxflow lacks VM.Migrate on /vms, Datastore.Audit on /storage; grant: "
        "pveum acl modify /vms --tokens root@pam!proxflow --roles <a role with VM.Migrate>; "
        "pveum acl modify /storage --tokens root@pam!proxflow --roles <a role with "
        "Datastore.Audit> (HTTP 403 on /access/permissions)"
    )


def test_a_read_only_token_is_told_it_cannot_migrate(make_sim):
    sim = make_sim("small", privileges=frozenset({"Sys.Audit", "VM.Audit", "Datastore.Audit"}))
    assert connect(sim).missing_privileges() == ["VM.Migrate on /vms"]


# -- quorum --------------------------------------------------------------------------------------


def test_a_quorate_cluster_passes_the_quorum_check(sim):
    gateway = connect(sim)
    assert gateway.quorate()
    gateway.require_quorum()


def test_a_cluster_without_quorum_is_refused_for_changes(sim, control: Control):
    control.post("quorum", quorate=False)
    gateway = connect(sim)
    assert not gateway.quorate()
    with pytest.raises(QuorumLostError, match="no quorum"):
        gateway.require_quorum()


def test_the_cluster_time_is_the_simulated_clock(sim, control: Control):
    gateway = connect(sim)
    assert gateway.cluster_time() == 1_795_000_000  # the small scenario's start
    control.advance(42)
    assert gateway.cluster_time() == 1_795_000_042


def test_the_cluster_time_comes_from_another_node_when_one_goes_down(sim, control: Control):
    gateway = connect(sim)
    gateway.cluster_time()
    control.post("nodes/pve1/offline")
    assert gateway.cluster_time() == 1_795_000_000
