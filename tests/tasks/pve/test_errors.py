"""PVE's answers sorted by what to do about them (facts §1.4, §8: ResourceException, requests)."""

from __future__ import annotations

import pytest
import requests
from proxmoxer import AuthenticationError, ResourceException

from tasks.pve import (
    AuthError,
    PrivilegeError,
    PveError,
    QuorumLostError,
    RefusedError,
    TlsError,
    TransientError,
)
from tasks.pve.errors import classify

WHO = "root@pam!proxflow"
PATH = "POST /nodes/pve1/qemu/100/migrate"


def pve(status: int, reason: str, errors=None) -> ResourceException:
    return ResourceException(status, "", reason, errors=errors)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pve(500, "VM is locked (migrate)"), RefusedError),
        (pve(500, "can't migrate running VM without --online"), RefusedError),
        (pve(500, "storage 'local-zfs' is not available on node 'pve2'"), RefusedError),
        (pve(500, "cluster not ready - no quorum?"), QuorumLostError),
        (
            pve(400, "Parameter verification failed.", {"target": "target is local node."}),
            RefusedError,
        ),
        (pve(595, "No route to host", {"errors": b""}), TransientError),
        (pve(596, "Connection timed out", {"errors": b""}), TransientError),
        (pve(503, "Service Unavailable"), TransientError),
        (pve(500, "simulated failure"), TransientError),
        (pve(401, "Authentication failed!", {"errors": b""}), AuthError),
        (pve(403, "Permission check failed (/vms/100, VM.Migrate)"), PrivilegeError),
        (pve(501, "Method 'GET /cluster/ha/rules' not implemented"), PveError),
        (requests.exceptions.ReadTimeout("read timed out"), TransientError),
        (requests.exceptions.ConnectionError("refused"), TransientError),
        (requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), TlsError),
        (AuthenticationError("Couldn't authenticate user: root@pam"), AuthError),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_each_failure_gets_the_class_that_says_what_to_do(exc, kind):
    err = classify(exc, PATH, WHO)
    assert type(err) is kind
    assert "\n" not in str(err)


def test_a_refusal_keeps_pve_s_message_and_parameter_errors_on_one_line():
    err = classify(
        pve(400, "Parameter verification failed.\n", {"target": "target is local node.\n"}),
        PATH,
        WHO,
    )
    assert str(err) == (
        "Parameter verification failed. target: target is local node. "
        "(HTTP 400 on POST /nodes/pve1/qemu/100/migrate)"
    )


def test_a_missing_privilege_names_the_token_the_privilege_and_the_path():
    err = classify(pve(403, "Permission check failed (/vms/100, VM.Migrate)"), PATH, WHO)
    assert isinstance(err, PrivilegeError)
    assert err.missing == ("VM.Migrate on /vms/100",)
    assert str(err).startswith("token root@pam!proxflow lacks VM.Migrate on /vms/100; grant")


def test_a_401_names_the_token_id():
    err = classify(pve(401, "invalid token value!", {"errors": b""}), "GET /version", WHO)
    assert str(err) == (
        "authentication failed for token root@pam!proxflow: invalid token value! "
        "(HTTP 401 on GET /version)"
    )


def test_a_header_requests_refuses_is_named_without_quoting_it():
    header = "PVEAPIToken=root@pam!proxflow=0b1f5e2a\nsecret"
    err = classify(requests.exceptions.InvalidHeader(f"Invalid header value {header!r}"), "/", WHO)
    assert isinstance(err, AuthError)
    assert "0b1f5e2a" not in str(err) and "cannot be sent" in str(err)


def test_an_unknown_ca_says_how_to_fix_it():
    err = classify(requests.exceptions.SSLError("verify failed"), "GET /version", WHO)
    assert "set verify to the cluster's CA bundle path" in str(err)
    assert err.status is None
