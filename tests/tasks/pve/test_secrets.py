"""No secret in any exception text, repr or log line the gateway produces."""

from __future__ import annotations

import logging

import pytest

from tasks.pve import AuthError, Gateway, PveError, TransientError
from tests.conftest import Control
from tests.tasks.pve.support import FAST, connect, move, password_endpoint, token_endpoint


def secrets_of(sim) -> list[str]:
    return [sim.token_secret, sim.password]


def assert_clean(text: str, sim) -> None:
    for secret in secrets_of(sim):
        assert secret not in text


def test_a_whole_working_session_logs_no_secret(sim, control: Control, caplog):
    with caplog.at_level(logging.DEBUG):
        for gateway in (connect(sim), Gateway.connect(password_endpoint(sim), FAST)):
            gateway.check_privileges()
            inv = gateway.inventory()
            gateway.guest_configs(inv, inv.guests[:2])
            upid = gateway.start_migration(move(100, "qemu", "pve1", "pve2", online=True))
            control.advance(60)
            gateway.wait_task(upid, timeout=5, poll=0.01)
            gateway.start_migration(move(100, "qemu", "pve2", "pve1", online=True))
            control.advance(60)
            assert_clean(repr(gateway), sim)
            assert_clean(repr(gateway._endpoint), sim)
            assert_clean(repr(inv), sim)
    assert caplog.records  # proxmoxer and the gateway did log
    assert_clean(caplog.text, sim)


@pytest.mark.parametrize("auth", ["token", "password"])
def test_failures_carry_no_secret_in_text_repr_or_cause(sim, control: Control, auth):
    endpoint = token_endpoint(sim) if auth == "token" else password_endpoint(sim)
    gateway = Gateway.connect(endpoint, FAST)
    control.post("nodes/pve2/offline")
    failures: list[BaseException] = []
    for attempt in (
        lambda: gateway.start_migration(move(102, "qemu", "pve2", "pve1", online=True)),
        lambda: gateway._api.get("nodes/pve1/qemu/999/config"),
        lambda: Gateway.connect(endpoint.model_copy(update={"port": 1}), FAST),
    ):
        with pytest.raises(PveError) as failed:
            attempt()
        failures.append(failed.value)
    wrong = (
        token_endpoint(sim, token_value="00000000-0000-0000-0000-000000000000")
        if auth == "token"
        else password_endpoint(sim, password="wrong-" + sim.password)
    )
    with pytest.raises(AuthError) as refused:
        Gateway.connect(wrong, FAST)
    failures.append(refused.value)
    assert isinstance(failures[0], TransientError)
    for exc in failures:
        assert exc.__cause__ is None and exc.__suppress_context__
        assert_clean(str(exc) + repr(exc) + repr(exc.args), sim)
        assert "0000-0000" not in str(exc) + repr(exc)
