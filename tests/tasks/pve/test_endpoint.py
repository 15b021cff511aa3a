"""Endpoint settings: one clear message per mistake, secrets never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.pve import DEFAULT_TIMEOUT, PveEndpoint

SECRET = "0b1f5e2a-6c57-4c3e-9b0e-3f1d2c4b5a69"


def test_a_token_endpoint_has_pve_s_defaults():
    ep = PveEndpoint(host="pve.example", token_name="proxflow", token_value=SECRET)
    assert (ep.port, ep.user, ep.verify, ep.timeout) == (8006, "root@pam", True, DEFAULT_TIMEOUT)
    assert ep.who == "root@pam!proxflow"
    assert ep.address == "pve.example:8006"


def test_the_timeout_outlasts_pveproxy_s_30_s_proxy_timeout():
    assert DEFAULT_TIMEOUT > 30  # so a dead node's 595 arrives before the client gives up


def test_an_ipv6_host_is_bracketed_for_proxmoxer():
    ep = PveEndpoint(host="fd00::11", password=SECRET)
    assert ep.address == "[fd00::11]:8006"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"host": "https://pve:8006", "password": "x"}, "host"),
        ({"host": "pve", "port": 70000, "password": "x"}, "port"),
        ({"host": "pve", "user": "root", "password": "x"}, "user"),
        ({"host": "pve", "verify": "/nonexistent/ca.pem", "password": "x"}, "verify"),
        ({"host": "pve", "timeout": 0, "password": "x"}, "timeout"),
        ({"host": "pve", "token_name": "proxflow"}, "token_value"),
        ({"host": "pve", "token_value": SECRET}, "token_name"),
        ({"host": "pve"}, "no credentials"),
        ({"host": "pve", "password": "x", "token_name": "a", "token_value": SECRET}, "not both"),
        ({"host": "pve", "password": "x", "passwd": "y"}, "passwd"),
        ({"host": "pve", "token_name": "pro flow", "token_value": SECRET}, "token_name"),
        ({"host": "pve", "token_name": "proxflow", "token_value": SECRET + "\n"}, "token_value"),
    ],
    ids=[
        "a URL as host",
        "a port out of range",
        "a user without realm",
        "a CA bundle that is not there",
        "a zero timeout",
        "a token name without its value",
        "a token value without its name",
        "no credentials",
        "two kinds of credentials",
        "a misspelt key",
        "a token id with a space",
        "a token secret with a line break",
    ],
)
def test_a_bad_setting_is_refused_with_a_message_naming_it(fields, named):
    with pytest.raises(ValidationError) as refused:
        PveEndpoint(**fields)
    assert named in str(refused.value)
    assert SECRET not in str(refused.value)


def test_the_secret_is_not_in_repr_str_or_a_dump():
    ep = PveEndpoint(host="pve", token_name="proxflow", token_value=SECRET, password=None)
    assert SECRET not in repr(ep)
    assert SECRET not in str(ep)
    assert SECRET not in ep.model_dump_json()
    assert ep.token_value is not None and ep.token_value.get_secret_value() == SECRET


@pytest.mark.parametrize(
    "fields",
    [
        {"port": "x", "password": "hunter2"},
        {"password": "hunter2", "token_name": "a", "token_value": "hunter2"},
        {"password": ["hunter2"]},
    ],
    ids=["a bad port", "two kinds of credentials", "a password that is not text"],
)
def test_a_bad_setting_next_to_a_secret_does_not_echo_any_of_it(fields):
    with pytest.raises(ValidationError) as refused:
        PveEndpoint(host="pve", **fields)
    assert "hunter" not in str(refused.value)
