"""Authentication and permissions: tokens, tickets, CSRF, TLS, privileges (facts §1.4, §2, §5)."""

from __future__ import annotations

import re
import time

import pytest
import requests
from proxmoxer import AuthenticationError, ProxmoxAPI, ResourceException

from tests.conftest import password_client, token_client
from tests.pvesim.api_support import login, raw, running_sim, token_header

READ_ONLY = frozenset({"Sys.Audit", "VM.Audit", "Datastore.Audit"})


@pytest.fixture(scope="module")
def shared_sim():
    """One simulator for the tests that change nothing in it."""
    with running_sim() as sim:
        yield sim


@pytest.fixture(scope="module")
def read_only_sim():
    """A simulator whose token and user hold only the audit privileges."""
    with running_sim(privileges=READ_ONLY) as sim:
        yield sim


# -- the two ways in ---------------------------------------------------------------------------


def test_a_token_client_reads_the_cluster(shared_sim):
    pve = token_client(shared_sim)
    assert pve.version.get()["release"] == "9.1"
    assert {n["node"] for n in pve.nodes.get()} == {"pve1", "pve2", "pve3"}


def test_a_password_client_logs_in_and_reads_the_cluster(shared_sim):
    pve = password_client(shared_sim)
    ticket, csrf = pve.get_tokens()
    assert ticket.startswith("PVE:root@pam:")
    assert csrf
    assert pve.version.get()["release"] == "9.1"
    assert {n["node"] for n in pve.nodes.get()} == {"pve1", "pve2", "pve3"}


def test_a_password_client_can_post_because_proxmoxer_sends_the_csrf_token(sim):
    upid = password_client(sim).nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.startswith("UPID:pve1:")
    assert upid.endswith(":qmigrate:100:root@pam:")


def test_the_ticket_answer_has_pve_s_ticket_and_csrf_formats(shared_sim):
    data = login(shared_sim)
    assert data["username"] == "root@pam"
    assert re.fullmatch(r"PVE:root@pam:[0-9A-F]{8}::\S+", data["ticket"])
    assert re.fullmatch(r"[0-9A-F]{8}:\S+", data["CSRFPreventionToken"])
    assert data["clustername"] == "small"
    assert set(data["cap"]) == {"vms", "nodes", "access", "storage", "dc", "sdn", "mapping"}


def test_a_ticket_is_also_accepted_in_the_authorization_header(shared_sim):
    ticket = login(shared_sim)["ticket"]
    r = raw(
        shared_sim,
        "GET",
        "/version",
        auth=False,
        headers={"Authorization": f"PVEAuthCookie={ticket}"},
    )
    assert r.status_code == 200
    assert r.json()["data"]["release"] == "9.1"


def test_a_ticket_can_be_renewed_by_posting_it_as_the_password(shared_sim):
    old = login(shared_sim)["ticket"]
    r = raw(
        shared_sim,
        "POST",
        "/access/ticket",
        auth=False,
        data={"username": "root@pam", "password": old},
    )
    assert r.status_code == 200
    assert r.json()["data"]["ticket"].startswith("PVE:root@pam:")


# -- refusals ----------------------------------------------------------------------------------


def test_a_wrong_token_secret_gets_401_with_an_empty_body(shared_sim):
    r = raw(
        shared_sim,
        "GET",
        "/version",
        headers=token_header(shared_sim, "00000000-dead-beef-0000-000000000000"),
    )
    assert r.status_code == 401
    assert r.reason == "Authentication failed!"
    assert r.content == b""


def test_proxmoxer_raises_a_401_resource_exception_for_a_wrong_token_secret(shared_sim):
    pve = ProxmoxAPI(
        shared_sim.host,
        user=shared_sim.token.user,
        token_name=shared_sim.token.tokenid,
        token_value="00000000-dead-beef-0000-000000000000",
        verify_ssl=str(shared_sim.ca_file),
    )
    with pytest.raises(ResourceException) as exc:
        pve.version.get()
    assert exc.value.status_code == 401
    assert exc.value.content == "Authentication failed!"
    assert exc.value.errors == {"errors": b""}


def test_an_unknown_token_id_gets_401(shared_sim):
    r = raw(
        shared_sim,
        "GET",
        "/version",
        headers={"Authorization": f"PVEAPIToken=root@pam!nosuch={shared_sim.token_secret}"},
    )
    assert (r.status_code, r.content) == (401, b"")


def test_a_wrong_password_gets_401_authentication_failure_with_an_empty_body(shared_sim):
    r = raw(
        shared_sim,
        "POST",
        "/access/ticket",
        auth=False,
        data={"username": "root@pam", "password": "no"},
    )
    assert r.status_code == 401
    assert r.reason == "authentication failure"
    assert r.content == b""


def test_proxmoxer_raises_authentication_error_for_a_wrong_password(shared_sim):
    with pytest.raises(AuthenticationError) as exc:
        ProxmoxAPI(
            shared_sim.host, user="root@pam", password="wrong", verify_ssl=str(shared_sim.ca_file)
        )
    assert "401" in str(exc.value)


def test_a_request_without_any_credentials_gets_401_no_ticket(shared_sim):
    r = requests.get(f"{shared_sim.url}/version", verify=str(shared_sim.ca_file), timeout=10)
    assert r.status_code == 401
    assert r.reason == "No ticket"
    assert r.content == b""


def test_a_post_without_any_credentials_also_gets_no_ticket(shared_sim):
    r = raw(shared_sim, "POST", "/nodes/pve1/qemu/100/migrate", auth=False, data={"target": "pve2"})
    assert (r.status_code, r.reason) == (401, "No ticket")


def test_a_ticket_post_without_the_csrf_header_gets_401_invalid_csrf_token(shared_sim):
    ticket = login(shared_sim)["ticket"]
    r = raw(
        shared_sim,
        "POST",
        "/nodes/pve1/qemu/100/migrate",
        auth=False,
        cookies={"PVEAuthCookie": ticket},
        data={"target": "pve2", "online": 1},
    )
    assert r.status_code == 401
    assert r.reason == "Permission denied - invalid csrf token"


def test_a_ticket_post_with_a_forged_csrf_header_gets_401(shared_sim):
    data = login(shared_sim)
    stamp = data["CSRFPreventionToken"].split(":")[0]
    r = raw(
        shared_sim,
        "POST",
        "/nodes/pve1/qemu/100/migrate",
        auth=False,
        cookies={"PVEAuthCookie": data["ticket"]},
        headers={"CSRFPreventionToken": f"{stamp}:Zm9yZ2Vk"},
        data={"target": "pve2", "online": 1},
    )
    assert (r.status_code, r.reason) == (401, "Permission denied - invalid csrf token")


def test_a_ticket_get_needs_no_csrf_header_and_a_post_with_it_succeeds(sim):
    data = login(sim)
    cookies = {"PVEAuthCookie": data["ticket"]}
    assert raw(sim, "GET", "/version", auth=False, cookies=cookies).status_code == 200
    r = raw(
        sim,
        "POST",
        "/nodes/pve1/qemu/100/migrate",
        auth=False,
        cookies=cookies,
        headers={"CSRFPreventionToken": data["CSRFPreventionToken"]},
        data={"target": "pve2", "online": 1},
    )
    assert r.status_code == 200
    assert r.json()["data"].endswith(":qmigrate:100:root@pam:")


def test_the_401_is_delayed_by_the_configured_failure_delay(make_sim):
    sim = make_sim("small", auth_failure_delay=0.3)
    started = time.perf_counter()
    r = raw(sim, "GET", "/version", auth=False)
    assert r.status_code == 401
    assert time.perf_counter() - started >= 0.3


# -- PVE 9.1 against 8.4 wording ---------------------------------------------------------------


def _tampered(ticket: str) -> str:
    plain, _, _sig = ticket.rpartition("::")
    return f"{plain}::AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


@pytest.mark.parametrize(
    ("version", "token_reason", "ticket_reason"),
    [
        ("9.1", "Authentication failed!", "Authentication failed!"),
        ("8.4", "invalid token value!", "permission denied - invalid PVE ticket"),
    ],
)
def test_bad_credentials_are_worded_as_the_pve_version_words_them(
    make_sim, version, token_reason, ticket_reason
):
    sim = make_sim("small", pve_version=version)
    r = raw(sim, "GET", "/version", headers=token_header(sim, "wrong"))
    assert (r.status_code, r.reason, r.content) == (401, token_reason, b"")
    bad_ticket = _tampered(login(sim)["ticket"])
    r = raw(sim, "GET", "/version", auth=False, cookies={"PVEAuthCookie": bad_ticket})
    assert (r.status_code, r.reason, r.content) == (401, ticket_reason, b"")
    r = raw(
        sim, "POST", "/access/ticket", auth=False, data={"username": "root@pam", "password": "x"}
    )
    assert (r.status_code, r.reason) == (401, "authentication failure")


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_is_really_verified_a_client_with_the_system_bundle_fails(shared_sim):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(
            f"{shared_sim.url}/version", headers=token_header(shared_sim), verify=True, timeout=10
        )


def test_proxmoxer_with_default_verification_raises_ssl_error(shared_sim):
    pve = ProxmoxAPI(
        shared_sim.host,
        user=shared_sim.token.user,
        token_name=shared_sim.token.tokenid,
        token_value=shared_sim.token_secret,
        verify_ssl=True,
    )
    with pytest.raises(requests.exceptions.SSLError):
        pve.version.get()
    with pytest.raises(requests.exceptions.SSLError):
        ProxmoxAPI(shared_sim.host, user="root@pam", password=shared_sim.password, verify_ssl=True)


def test_the_simulator_s_own_ca_file_verifies_it(shared_sim):
    r = requests.get(
        f"{shared_sim.url}/version",
        headers=token_header(shared_sim),
        verify=str(shared_sim.ca_file),
        timeout=10,
    )
    assert r.status_code == 200


# -- privileges --------------------------------------------------------------------------------


def test_permissions_list_every_privilege_of_the_default_token(shared_sim):
    perms = token_client(shared_sim).access.permissions.get()
    assert "/" in perms and "/vms" in perms
    assert perms["/"]["VM.Migrate"] == 1
    assert perms["/"]["Sys.Audit"] == 1


def test_permissions_reflect_the_configured_privileges(read_only_sim):
    sim = read_only_sim
    for pve in (token_client(sim), password_client(sim)):
        perms = pve.access.permissions.get()
        assert perms
        assert all(privs == {p: 1 for p in READ_ONLY} for privs in perms.values())
        assert pve.access.permissions.get(path="/vms/100") == {
            "/vms/100": {p: 1 for p in READ_ONLY}
        }


def test_a_token_without_vm_migrate_gets_403_on_post_migrate(read_only_sim):
    sim = read_only_sim
    with pytest.raises(ResourceException) as exc:
        token_client(sim).nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert exc.value.status_code == 403
    assert exc.value.content == "Permission check failed (/vms/100, VM.Migrate)"


def test_the_403_body_carries_the_message_with_a_newline(read_only_sim):
    sim = read_only_sim
    r = raw(sim, "POST", "/nodes/pve1/qemu/100/migrate", data={"target": "pve2", "online": 1})
    assert r.status_code == 403
    assert r.json() == {"data": None, "message": "Permission check failed (/vms/100, VM.Migrate)\n"}


def test_a_ticket_user_without_vm_migrate_gets_the_same_403(read_only_sim):
    sim = read_only_sim
    with pytest.raises(ResourceException) as exc:
        password_client(sim).nodes("pve1").qemu(101).migrate.post(target="pve2", online=1)
    assert exc.value.status_code == 403
    assert exc.value.content == "Permission check failed (/vms/101, VM.Migrate)"


def test_a_token_without_vm_audit_sees_no_guests_but_still_sees_nodes(make_sim):
    sim = make_sim("small", privileges=frozenset({"Sys.Audit"}))
    pve = token_client(sim)
    assert pve.cluster.resources.get(type="vm") == []
    assert len(pve.cluster.resources.get(type="node")) == 3
    with pytest.raises(ResourceException) as exc:
        pve.nodes("pve1").qemu(100).status.current.get()
    assert exc.value.status_code == 403
    assert exc.value.content == "Permission check failed (/vms/100, VM.Audit)"


def test_without_sys_audit_nodes_are_listed_without_figures_and_cluster_status_is_403(make_sim):
    sim = make_sim("small", privileges=frozenset({"VM.Audit"}))
    pve = token_client(sim)
    for node in pve.nodes.get():
        assert set(node) == {"id", "type", "node", "status", "level", "ssl_fingerprint"}
    assert pve.cluster.resources.get(type="node") == []
    with pytest.raises(ResourceException) as exc:
        pve.cluster.status.get()
    assert exc.value.status_code == 403
    assert exc.value.content == "Permission check failed (/, Sys.Audit)"
