"""Helpers for the pvesim API tests: raw `requests` calls and simulators shared by a module.

Raw calls show what proxmoxer hides (status line, body, headers). `verify` is passed on every
call: a session-level `verify` loses to REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from pvesim import SimConfig, Simulator


@contextmanager
def running_sim(scenario: str = "small", **overrides: Any) -> Iterator[Simulator]:
    """A simulator configured like conftest's `make_sim` (paused clock, no 401 delay)."""
    overrides.setdefault("speed", 0.0)
    overrides.setdefault("auth_failure_delay", 0.0)
    sim = Simulator(SimConfig(scenario=scenario, **overrides)).start()
    try:
        yield sim
    finally:
        sim.stop()


def token_header(sim: Simulator, secret: str | None = None) -> dict[str, str]:
    return {"Authorization": f"PVEAPIToken={sim.token_id}={secret or sim.token_secret}"}


def raw(
    sim: Simulator, method: str, path: str, *, auth: bool = True, **kwargs: Any
) -> requests.Response:
    """`method` on `/api2/json{path}`, with the API token unless `auth` is false."""
    headers = dict(kwargs.pop("headers", {}))
    if auth:
        headers = {**token_header(sim), **headers}
    return requests.request(
        method,
        f"{sim.url}{path}",
        headers=headers,
        verify=str(sim.ca_file),
        timeout=10,
        **kwargs,
    )


def login(sim: Simulator) -> dict[str, Any]:
    """A fresh ticket and CSRF token from POST /access/ticket."""
    r = raw(
        sim,
        "POST",
        "/access/ticket",
        auth=False,
        data={"username": sim.config.username, "password": sim.password},
    )
    r.raise_for_status()
    return dict(r.json()["data"])


# rrddata data sources per PVE version (facts file §4.6, §4.7): 9.x adds memory and pressure
NODE_SOURCES_8 = {
    "loadavg", "maxcpu", "cpu", "iowait", "memtotal", "memused", "swaptotal", "swapused",
    "roottotal", "rootused", "netin", "netout",
}  # fmt: skip
NODE_SOURCES_9 = NODE_SOURCES_8 | {
    "memavailable", "arcsize", "pressurecpusome", "pressureiosome", "pressureiofull",
    "pressurememorysome", "pressurememoryfull",
}  # fmt: skip
GUEST_SOURCES_8 = {
    "maxcpu", "cpu", "maxmem", "mem", "maxdisk", "disk", "netin", "netout", "diskread",
    "diskwrite",
}  # fmt: skip
GUEST_SOURCES_9 = GUEST_SOURCES_8 | {
    "memhost", "pressurecpusome", "pressurecpufull", "pressureiosome", "pressureiofull",
    "pressurememorysome", "pressurememoryfull",
}  # fmt: skip
